import { z } from "zod";

/** A list the portal may give as null: read as absent. */
const stringList = z
  .array(z.string())
  .nullish()
  .transform((list) => list ?? undefined)
  .optional();

/**
 * An item as the Sharing REST API gives it: the fields the backup and the restore read, typed;
 * every other field kept as it is. Also the schema `item.json` is read back with.
 */
export const portalItemSchema = z.looseObject({
  id: z.string().min(1),
  owner: z.string(),
  orgId: z.string().nullish(),
  created: z.number(),
  modified: z.number(),
  name: z.string().nullish(),
  title: z.string(),
  type: z.string(),
  typeKeywords: stringList,
  tags: stringList,
  url: z.string().nullish(),
  access: z.string().nullish(),
  size: z.number().nullish(),
  ownerFolder: z.string().nullish(),
  thumbnail: z.string().nullish(),
});
export type PortalItem = z.infer<typeof portalItemSchema>;

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
