import { createHmac } from "node:crypto";
import type { AuthState } from "./auth.js";
import type { ParsedRequest, Reply } from "./http.js";
import type { SimGroup, SimItem, SimOrg, SimUser } from "./model.js";

export interface OAuthApp {
  clientId: string;
  clientSecret: string;
  redirectUris: string[];
}

export interface SimContext {
  org: SimOrg;
  auth: AuthState;
  kind: "online" | "enterprise";
  /** http://127.0.0.1:<port> */
  origin: string;
  orgUrl: string;
  sharingUrl: string;
  storageOrigin: string;
  oauthApp: OAuthApp;
  storageSecret: Buffer;
  storageUrlTtlMs: number;
  searchCeiling: "error" | "empty";
  /** Small caches keyed by org.version. */
  cache: Map<string, { version: number; value: unknown }>;
}

export interface Caller {
  user: SimUser | null;
  token: string | null;
  /** A client_credentials (app) token. */
  app: boolean;
}

export type Handler = (
  ctx: SimContext,
  req: ParsedRequest,
  caller: Caller,
  m: string[],
) => Reply | Promise<Reply>;

export function cached<T>(ctx: SimContext, key: string, make: () => T): T {
  const hit = ctx.cache.get(key);
  if (hit && hit.version === ctx.org.version) return hit.value as T;
  const value = make();
  ctx.cache.set(key, { version: ctx.org.version, value });
  if (ctx.cache.size > 64) {
    const oldest = ctx.cache.keys().next().value;
    if (oldest !== undefined) ctx.cache.delete(oldest);
  }
  return value;
}

export const isAdmin = (u: SimUser | null): boolean => !!u && u.privileges.includes("portal:admin:viewItems");

/** Whether the caller may see the item at index i. */
export function canSeeIndex(ctx: SimContext, caller: Caller, i: number): boolean {
  const f = ctx.org.fast(i);
  if (f.access === "public") return true;
  const u = caller.user;
  if (!u) return false;
  if (f.owner === u.username || isAdmin(u)) return true;
  if (f.access === "org") return true;
  const mine = ctx.org.groupsOfUser(u.username);
  return mine.length > 0 && ctx.org.groupsAt(i).some((g) => mine.includes(g));
}

export function canEditItem(caller: Caller, item: SimItem): boolean {
  const u = caller.user;
  return !!u && (u.username === item.owner || u.privileges.includes("portal:admin:updateItems"));
}

export function itemJson(_ctx: SimContext, item: SimItem, caller: Caller): Record<string, unknown> {
  const out: Record<string, unknown> = {
    id: item.id,
    owner: item.owner,
    orgId: item.orgId,
    created: item.created,
    isOrgItem: true,
    modified: item.modified,
    guid: null,
    name: item.name,
    title: item.title,
    type: item.type,
    typeKeywords: item.typeKeywords,
    description: item.description,
    tags: item.tags,
    snippet: item.snippet,
    thumbnail: item.thumbnail,
    documentation: null,
    extent: item.extent,
    categories: item.categories,
    spatialReference: item.spatialReference,
    accessInformation: item.accessInformation,
    classification: null,
    licenseInfo: item.licenseInfo,
    culture: item.culture,
    properties: item.properties,
    advancedSettings: null,
    url: item.url,
    proxyFilter: null,
    access: item.access,
    size: item.size,
    subInfo: 0,
    appCategories: [],
    industries: [],
    languages: [],
    largeThumbnail: null,
    banner: null,
    screenshots: [],
    listed: false,
    ownerFolder: item.folderId,
    protected: item.protected,
    commentsEnabled: false,
    numComments: 0,
    numRatings: 0,
    avgRating: 0,
    numViews: item.numViews,
    contentOrigin: "self",
  };
  const u = caller.user;
  if (u && u.username !== item.owner && isAdmin(u)) out.itemControl = "admin";
  return out;
}

export function userJson(ctx: SimContext, u: SimUser, full: boolean): Record<string, unknown> {
  const base: Record<string, unknown> = {
    username: u.username,
    udn: null,
    id: createHmac("md5", u.username).update(ctx.org.orgId).digest("hex"),
    fullName: u.fullName,
    firstName: u.firstName,
    lastName: u.lastName,
    description: u.description,
    tags: u.tags,
    culture: "en",
    cultureFormat: "us",
    region: "US",
    units: "english",
    thumbnail: null,
    access: "org",
    created: u.created,
    modified: u.modified,
    provider: "arcgis",
  };
  if (!full) return base;
  return {
    ...base,
    email: u.email,
    orgId: ctx.org.orgId,
    role: u.role,
    privileges: u.privileges,
    userLicenseTypeId: u.userType,
    userType: "both",
    level: u.userType === "viewerUT" ? "1" : "2",
    disabled: false,
    storageUsage: 0,
    storageQuota: 2199023255552,
    mfaEnabled: false,
    lastLogin: u.lastLogin,
    idpUsername: null,
  };
}

export function groupJson(ctx: SimContext, g: SimGroup, caller: Caller): Record<string, unknown> {
  const out: Record<string, unknown> = {
    id: g.id,
    title: g.title,
    isInvitationOnly: g.isInvitationOnly,
    owner: g.owner,
    description: g.description,
    snippet: g.snippet,
    tags: g.tags,
    typeKeywords: [],
    phone: null,
    sortField: g.sortField ?? "modified",
    sortOrder: g.sortOrder ?? "desc",
    isViewOnly: g.isViewOnly,
    featuredItemsId: null,
    thumbnail: g.thumbnail?.name ?? null,
    created: g.created,
    modified: g.modified,
    access: g.access,
    capabilities: g.capabilities ?? [],
    isFav: false,
    isReadOnly: false,
    protected: g.protected ?? false,
    autoJoin: g.autoJoin ?? false,
    membershipAccess: g.membershipAccess ?? "org",
    hasCategorySchema: (g.categorySchema?.length ?? 0) > 0,
    notificationsEnabled: false,
    provider: null,
    providerGroupName: null,
    leavingDisallowed: false,
    hiddenMembers: false,
    displaySettings: { itemTypes: "" },
    orgId: ctx.org.orgId,
  };
  if (caller.user) {
    const mt = g.members.get(caller.user.username);
    out.userMembership = {
      username: caller.user.username,
      memberType: mt ?? "none",
      ...(mt ? { applications: 0 } : {}),
    };
  }
  return out;
}

export function canSeeGroup(caller: Caller, g: SimGroup): boolean {
  if (g.access === "public") return true;
  const u = caller.user;
  if (!u) return false;
  if (g.access === "org" || isAdmin(u)) return true;
  return g.members.has(u.username);
}

/** Signature for a storage URL. */
export function signStorage(ctx: SimContext, path: string, exp: number): string {
  return createHmac("sha256", ctx.storageSecret).update(`${path}\n${exp}`).digest("base64url");
}
