/** The parts of Sharing REST responses the backup reads. */
export interface PortalItem {
  id: string;
  owner: string;
  orgId?: string;
  created: number;
  modified: number;
  name?: string | null;
  title: string;
  type: string;
  typeKeywords?: string[];
  tags?: string[];
  url?: string | null;
  access?: string;
  size?: number;
  ownerFolder?: string | null;
  thumbnail?: string | null;
  [key: string]: unknown;
}

export interface PagedResponse {
  total: number;
  start: number;
  num: number;
  nextStart: number;
}

export interface UserContentResponse extends PagedResponse {
  items: PortalItem[];
  folders?: Array<{ id: string; title: string; username?: string; created?: number }>;
}

export interface PortalUser {
  username: string;
  role?: string;
  [key: string]: unknown;
}

export interface PortalGroup {
  id: string;
  title: string;
  owner: string;
  [key: string]: unknown;
}
