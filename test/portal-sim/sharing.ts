import {
  type Caller,
  cached,
  canSeeGroup,
  canSeeIndex,
  groupJson,
  type Handler,
  isAdmin,
  itemJson,
  type SimContext,
  signStorage,
  userJson,
} from "./context.js";
import { contentTypeOf, ERR, err, pageOf, pagingFields, type Reply } from "./http.js";
import type { SimItem, SimOrg } from "./model.js";
import { bufferSource } from "./prng.js";
import { matchQ, parseQ, type QNode, QueryParseError, type Searchable } from "./search-query.js";

export const SEARCH_CEILING = 10_000;

// ---------------------------------------------------------------------------------------------
// portal / users / groups

export const info: Handler = (ctx) => ({
  json: {
    owningSystemUrl: ctx.orgUrl,
    authInfo: { tokenServicesUrl: `${ctx.sharingUrl}/generateToken`, isTokenBasedSecurity: true },
  },
});

export const portalSelf: Handler = (ctx, _req, caller, m) => {
  const id = m[1];
  if (id && id !== "self" && id !== ctx.org.orgId)
    return err(400, "Portal does not exist or is inaccessible.", []);
  const online = ctx.kind === "online";
  const host = new URL(ctx.origin).host;
  const out: Record<string, unknown> = {
    access: "private",
    allSSL: false,
    allowedRedirectUris: [],
    authorizedCrossOriginDomains: [],
    canSearchPublic: true,
    canSharePublic: true,
    created: ctx.org.admin.created,
    culture: "en",
    currentVersion: online ? "2024.2" : "2024.1",
    customBaseUrl: online ? "maps.sim.invalid" : "",
    defaultExtent: {
      xmin: -13_600_000,
      ymin: 4_500_000,
      xmax: -13_000_000,
      ymax: 4_900_000,
      spatialReference: { wkid: 102100 },
    },
    description: `Simulated organization ${ctx.org.urlKey}`,
    helperServices: {},
    id: ctx.org.orgId,
    isPortal: !online,
    maxTokenExpirationMinutes: 20160,
    modified: ctx.org.admin.modified,
    name: `Sim Org ${ctx.org.urlKey}`,
    portalHostname: online ? `${ctx.org.urlKey}.maps.sim.invalid` : `${host}/portal`,
    portalMode: online ? "multitenant" : "singletenant",
    portalName: online ? "ArcGIS Online" : "ArcGIS Enterprise",
    region: "US",
    supportsOAuth: true,
    units: "english",
    urlKey: online ? ctx.org.urlKey : undefined,
  };
  if (online)
    out.subscriptionInfo = {
      id: ctx.org.orgId,
      type: "In House",
      state: "active",
      expDate: Date.UTC(2030, 0, 1),
      maxUsers: 1000,
      availableCredits: 10000,
      companyName: `Sim ${ctx.org.urlKey}`,
    };
  if (caller.user) out.user = userJson(ctx, caller.user, true);
  return { json: out };
};

function requireMember(caller: Caller): Reply | null {
  if (caller.user) return null;
  return caller.token ? ERR.forbidden() : ERR.tokenRequired();
}

export const portalUsers: Handler = (ctx, req, caller) => {
  const denied = requireMember(caller);
  if (denied) return denied;
  const p = pageOf(ctx.org.users, req.params);
  return {
    json: {
      ...pagingFields(p),
      users: p.page.map((u) => userJson(ctx, u, true)),
    },
  };
};

interface UserSearchable {
  username: string;
  role: string;
  fullname: string;
  email: string;
}

function matchUser(q: QNode, u: UserSearchable): boolean {
  switch (q.t) {
    case "all":
      return true;
    case "and":
      return matchUser(q.a, u) && matchUser(q.b, u);
    case "or":
      return matchUser(q.a, u) || matchUser(q.b, u);
    case "not":
      return !matchUser(q.a, u);
    case "range":
      return false;
    case "term": {
      const v = q.value.toLowerCase().replace(/\*$/, "");
      if (q.field === "role") return u.role.toLowerCase() === v;
      if (q.field === "username") return u.username.toLowerCase().startsWith(v);
      if (q.field === "email") return u.email.toLowerCase() === v;
      if (q.field === "orgid") return true;
      if (q.field === "fullname") return u.fullname.toLowerCase().includes(v);
      return u.username.toLowerCase().includes(v) || u.fullname.toLowerCase().includes(v);
    }
  }
}

function userSearch(ctx: SimContext, req: Parameters<Handler>[1], full: boolean): Reply {
  let q: QNode;
  try {
    q = parseQ(req.params.q ?? "");
  } catch (e) {
    return ERR.badParam(e instanceof Error ? e.message : "bad q");
  }
  const list = ctx.org.users.filter((u) =>
    matchUser(q, { username: u.username, role: u.role, fullname: u.fullName, email: u.email }),
  );
  const p = pageOf(list, req.params);
  return {
    json: {
      query: req.params.q ?? "",
      ...pagingFields(p),
      results: p.page.map((u) => userJson(ctx, u, full)),
    },
  };
}

export const portalUsersSearch: Handler = (ctx, req, caller) =>
  requireMember(caller) ?? userSearch(ctx, req, true);
export const communityUsers: Handler = (ctx, req, caller) => userSearch(ctx, req, !!caller.user);

export const communityUser: Handler = (ctx, _req, caller, m) => {
  const u = ctx.org.user(decodeURIComponent(m[1] ?? ""));
  if (!u) return err(400, "User not found", [], "COM_0019");
  if (!caller.user) return caller.token ? { json: userJson(ctx, u, false) } : ERR.forbidden();
  const full = caller.user.username === u.username || isAdmin(caller.user);
  const out = userJson(ctx, u, full);
  if (full) out.groups = userGroups(ctx, u.username, caller);
  return { json: out };
};

function userGroups(ctx: SimContext, username: string, caller: Caller): unknown[] {
  return ctx.org.groups
    .filter((g) => g.members.has(username))
    .map((g) => {
      const j = groupJson(ctx, g, caller);
      j.userMembership = { username, memberType: g.members.get(username), applications: 0 };
      return j;
    });
}

export const communitySelf: Handler = (ctx, _req, caller) => {
  if (!caller.user) return caller.token ? ERR.forbidden() : ERR.tokenRequired();
  const out = userJson(ctx, caller.user, true);
  out.groups = userGroups(ctx, caller.user.username, caller);
  return { json: out };
};

interface GroupSearchable {
  id: string;
  title: string;
  owner: string;
  access: string;
  tags: string[];
}

function matchGroup(q: QNode, g: GroupSearchable, orgId: string): boolean {
  switch (q.t) {
    case "all":
      return true;
    case "and":
      return matchGroup(q.a, g, orgId) && matchGroup(q.b, g, orgId);
    case "or":
      return matchGroup(q.a, g, orgId) || matchGroup(q.b, g, orgId);
    case "not":
      return !matchGroup(q.a, g, orgId);
    case "range":
      return false;
    case "term": {
      const v = q.value.toLowerCase();
      switch (q.field) {
        case "id":
          return g.id === v;
        case "owner":
          return g.owner.toLowerCase() === v;
        case "orgid":
          return orgId.toLowerCase() === v;
        case "access":
          return g.access === v;
        case "tags":
          return g.tags.some((t) => t.toLowerCase() === v);
        case "title":
          return g.title.toLowerCase().includes(v);
        default:
          return v === "*" || g.title.toLowerCase().includes(v);
      }
    }
  }
}

export const communityGroups: Handler = (ctx, req, caller) => {
  let q: QNode;
  try {
    q = parseQ(req.params.q ?? "");
  } catch (e) {
    return ERR.badParam(e instanceof Error ? e.message : "bad q");
  }
  const list = ctx.org.groups.filter((g) => canSeeGroup(caller, g) && matchGroup(q, g, ctx.org.orgId));
  const p = pageOf(list, req.params);
  return {
    json: {
      query: req.params.q ?? "",
      ...pagingFields(p),
      results: p.page.map((g) => groupJson(ctx, g, caller)),
    },
  };
};

export const communityGroup: Handler = (ctx, _req, caller, m) => {
  const g = ctx.org.group(m[1] ?? "");
  if (!g || !canSeeGroup(caller, g))
    return err(400, "Group does not exist or is inaccessible.", [], "COM_0003");
  return { json: groupJson(ctx, g, caller) };
};

export const communityGroupUsers: Handler = (ctx, _req, caller, m) => {
  const g = ctx.org.group(m[1] ?? "");
  if (!g || !canSeeGroup(caller, g))
    return err(400, "Group does not exist or is inaccessible.", [], "COM_0003");
  if (!caller.user || (!g.members.has(caller.user.username) && !isAdmin(caller.user))) return ERR.forbidden();
  const admins: string[] = [];
  const users: string[] = [];
  for (const [name, type] of g.members) {
    if (type === "owner" || type === "admin") admins.push(name);
    else users.push(name);
  }
  return { json: { owner: g.owner, admins, users } };
};

// ---------------------------------------------------------------------------------------------
// search

class ItemView implements Searchable {
  private full: SimItem | null = null;
  constructor(
    private readonly org: SimOrg,
    readonly index: number,
  ) {}
  private get item(): SimItem {
    this.full ??= this.org.itemAt(this.index);
    return this.full;
  }
  get id() {
    return this.full?.id ?? this.org.baseIdOf(this.index);
  }
  get owner() {
    return this.org.fast(this.index).owner;
  }
  get orgid() {
    return this.org.orgId;
  }
  get type() {
    return this.item.type;
  }
  get typekeywords() {
    return this.item.typeKeywords;
  }
  get created() {
    return this.org.fast(this.index).created;
  }
  get modified() {
    return this.org.fast(this.index).modified;
  }
  get access() {
    return this.org.fast(this.index).access;
  }
  get title() {
    return this.item.title;
  }
  get tags() {
    return this.item.tags;
  }
  get snippet() {
    return this.item.snippet ?? "";
  }
  get name() {
    return this.item.name ?? "";
  }
  get groups() {
    return this.org.groupsAt(this.index);
  }
}

const SORTABLE = new Set([
  "title",
  "created",
  "modified",
  "type",
  "owner",
  "numviews",
  "size",
  "avgrating",
  "uploaded",
]);

function sortIndices(
  ctx: SimContext,
  list: number[],
  sortField: string | undefined,
  sortOrder: string | undefined,
) {
  const field = (sortField ?? "").split(",")[0]?.trim().toLowerCase() ?? "";
  if (!field || !SORTABLE.has(field)) return list;
  const org = ctx.org;
  const keyOf = (i: number): string | number => {
    switch (field) {
      case "created":
      case "uploaded":
        return org.fast(i).created;
      case "modified":
        return org.fast(i).modified;
      case "owner":
        return org.fast(i).owner;
      case "title":
        return org.itemAt(i).title.toLowerCase();
      case "type":
        return org.itemAt(i).type;
      case "numviews":
        return org.itemAt(i).numViews;
      case "size":
        return org.itemAt(i).size;
      default:
        return 0;
    }
  };
  const keys = new Map<number, string | number>();
  for (const i of list) keys.set(i, keyOf(i));
  const dir = (sortOrder ?? "asc").toLowerCase() === "desc" ? -1 : 1;
  return [...list].sort((a, b) => {
    const ka = keys.get(a) ?? 0;
    const kb = keys.get(b) ?? 0;
    return ka < kb ? -dir : ka > kb ? dir : a - b;
  });
}

export function searchIndices(
  ctx: SimContext,
  caller: Caller,
  qText: string,
  sortField?: string,
  sortOrder?: string,
) {
  const key = `search\n${caller.user?.username ?? ""}\n${qText}\n${sortField ?? ""}\n${sortOrder ?? ""}`;
  return cached(ctx, key, () => {
    const q = parseQ(qText);
    const out: number[] = [];
    for (const i of ctx.org.indices()) {
      if (!canSeeIndex(ctx, caller, i)) continue;
      if (matchQ(q, new ItemView(ctx.org, i))) out.push(i);
    }
    return sortIndices(ctx, out, sortField, sortOrder);
  });
}

export const search: Handler = (ctx, req, caller) => {
  const q = req.params.q;
  if (!q && !req.params.bbox && !req.params.categories)
    return err(400, "Unable to search.", ["'q' or 'bbox' or 'categories' must be specified."]);
  let list: number[];
  try {
    list = searchIndices(ctx, caller, q ?? "", req.params.sortField, req.params.sortOrder);
  } catch (e) {
    if (e instanceof QueryParseError) return err(400, "Unable to search.", [`Invalid query: ${e.message}`]);
    throw e;
  }
  const p = pageOf(list, req.params);
  if (p.start > SEARCH_CEILING) {
    if (ctx.searchCeiling === "error")
      return err(400, "Unable to search.", [
        `'start' must be ${SEARCH_CEILING} or less: only the first ${SEARCH_CEILING} results of a search can be paged.`,
      ]);
    return {
      json: { query: q ?? "", total: p.total, start: p.start, num: p.num, nextStart: -1, results: [] },
    };
  }
  let page = p.page;
  let nextStart = p.nextStart;
  if (p.start - 1 + page.length > SEARCH_CEILING) page = page.slice(0, SEARCH_CEILING - (p.start - 1));
  if (ctx.searchCeiling === "empty" && nextStart > SEARCH_CEILING) nextStart = -1;
  return {
    json: {
      query: q ?? "",
      total: p.total,
      start: p.start,
      num: p.num,
      nextStart,
      results: page.map((i) => itemJson(ctx, ctx.org.itemAt(i), caller)),
    },
  };
};

// ---------------------------------------------------------------------------------------------
// content

interface OwnerIndex {
  root: number[];
  folders: Map<string, number[]>;
}

function ownerIndex(ctx: SimContext): Map<string, OwnerIndex> {
  return cached(ctx, "byOwner", () => {
    const map = new Map<string, OwnerIndex>();
    for (const i of ctx.org.indices()) {
      const owner = ctx.org.fast(i).owner;
      let e = map.get(owner);
      if (!e) {
        e = { root: [], folders: new Map() };
        map.set(owner, e);
      }
      const f = ctx.org.folderIdAt(i);
      if (f === null) e.root.push(i);
      else {
        const list = e.folders.get(f) ?? [];
        list.push(i);
        e.folders.set(f, list);
      }
    }
    return map;
  });
}

export const userContent: Handler = (ctx, req, caller, m) => {
  const username = decodeURIComponent(m[1] ?? "");
  const folderId = m[2];
  const u = ctx.org.user(username);
  if (!u) return err(400, "User not found", [], "COM_0019");
  if (!caller.user) return caller.token ? ERR.forbidden() : ERR.tokenRequired();
  if (caller.user.username !== u.username && !isAdmin(caller.user)) return ERR.forbidden();
  const idx = ownerIndex(ctx).get(u.username);
  const folderOut = (f: { username: string; id: string; title: string; created: number }) => ({
    username: f.username,
    id: f.id,
    title: f.title,
    created: f.created,
  });
  if (folderId) {
    const folder = ctx.org.folder(folderId);
    if (!folder || folder.username !== u.username) return err(400, "Folder does not exist.", [], "CONT_0005");
    const list = idx?.folders.get(folderId) ?? [];
    const p = pageOf(list, req.params);
    return {
      json: {
        username: u.username,
        currentFolder: folderOut(folder),
        ...pagingFields(p),
        items: p.page.map((i) => itemJson(ctx, ctx.org.itemAt(i), caller)),
      },
    };
  }
  const p = pageOf(idx?.root ?? [], req.params);
  return {
    json: {
      username: u.username,
      ...pagingFields(p),
      currentFolder: null,
      items: p.page.map((i) => itemJson(ctx, ctx.org.itemAt(i), caller)),
      folders: ctx.org.foldersOf(u.username).map(folderOut),
    },
  };
};

export function sharingOf(item: SimItem): { access: string; groups: string[] } {
  return { access: item.access, groups: item.groups };
}

export const userItem: Handler = (ctx, _req, caller, m) => {
  const i = ctx.org.indexOf(m[3] ?? "");
  if (i === null || !canSeeIndex(ctx, caller, i)) return ERR.noItem();
  const item = ctx.org.itemAt(i);
  if (item.owner.toLowerCase() !== decodeURIComponent(m[1] ?? "").toLowerCase()) return ERR.noItem();
  return { json: { item: itemJson(ctx, item, caller), sharing: sharingOf(item) } };
};

/** Index of a visible item, or the CONT_0001 reply. */
export function visibleIndex(ctx: SimContext, caller: Caller, id: string): number | Reply {
  const i = ctx.org.indexOf(id);
  if (i === null || !canSeeIndex(ctx, caller, i)) return ERR.noItem();
  return i;
}

export const item: Handler = (ctx, _req, caller, m) => {
  const i = visibleIndex(ctx, caller, m[1] ?? "");
  if (typeof i !== "number") return i;
  return { json: itemJson(ctx, ctx.org.itemAt(i), caller) };
};

export function storageUrl(ctx: SimContext, path: string, filename: string): string {
  const exp = Date.now() + ctx.storageUrlTtlMs;
  const sig = signStorage(ctx, path, exp);
  return `${ctx.storageOrigin}${path}?se=${exp}&sp=r&sig=${sig}&rscd=${encodeURIComponent(`attachment; filename="${filename}"`)}`;
}

export const itemData: Handler = (ctx, _req, caller, m) => {
  const i = visibleIndex(ctx, caller, m[1] ?? "");
  if (typeof i !== "number") return i;
  const d = ctx.org.itemData(i);
  if (d.kind === "none") return { body: "", headers: { "content-type": "text/plain; charset=utf-8" } };
  if (d.kind === "json")
    return { body: d.text, headers: { "content-type": "application/json; charset=utf-8" } };
  const it = ctx.org.itemAt(i);
  const path = `/blob/${ctx.org.orgId}/${it.id}/${ctx.org.version}/${encodeURIComponent(d.filename)}`;
  return { status: 302, headers: { location: storageUrl(ctx, path, d.filename) }, body: "" };
};

export const itemInfo: Handler = (ctx, _req, caller, m) => {
  const i = visibleIndex(ctx, caller, m[1] ?? "");
  if (typeof i !== "number") return i;
  const rest = (m[2] ?? "").split("/").map(decodeURIComponent).join("/");
  const it = ctx.org.itemAt(i);
  if (rest === "metadata/metadata.xml") {
    const xml = ctx.org.metadataAt(i);
    if (xml === null) return err(400, "Item info file does not exist or is inaccessible.", [], "CONT_0036");
    return { body: xml, headers: { "content-type": "application/xml" } };
  }
  if (rest === "iteminfo.xml") {
    return {
      body: `<?xml version="1.0" encoding="UTF-8"?>\n<ESRI_ItemInformation Culture="en-US"><name>${it.name ?? ""}</name><title>${it.title.replace(/&/g, "&amp;").replace(/</g, "&lt;")}</title><type>${it.type}</type></ESRI_ItemInformation>\n`,
      headers: { "content-type": "application/xml" },
    };
  }
  if (it.thumbnail && rest === it.thumbnail) {
    const png = ctx.org.thumbnailAt(i);
    if (png) return { body: png, headers: { "content-type": contentTypeOf(rest) } };
  }
  return err(400, "Item info file does not exist or is inaccessible.", [], "CONT_0036");
};

export const itemResources: Handler = (ctx, req, caller, m) => {
  const i = visibleIndex(ctx, caller, m[1] ?? "");
  if (typeof i !== "number") return i;
  const list = ctx.org.resourcesAt(i);
  const p = pageOf(list, req.params, 1000, 10);
  return {
    json: {
      ...pagingFields(p),
      resources: p.page.map((r) => ({
        resource: r.resource,
        created: r.created,
        size: r.size,
        access: r.access,
      })),
    },
  };
};

export const itemResource: Handler = (ctx, _req, caller, m) => {
  const i = visibleIndex(ctx, caller, m[1] ?? "");
  if (typeof i !== "number") return i;
  let path: string;
  try {
    path = (m[2] ?? "").split("/").map(decodeURIComponent).join("/");
  } catch {
    return ERR.badParam("bad resource path");
  }
  const r = ctx.org.resourcesAt(i).find((x) => x.resource === path);
  if (!r) return err(404, "Resource does not exist or is inaccessible.", [], "CONT_0004");
  return { source: { src: r.source }, headers: { "content-type": contentTypeOf(path) } };
};

export const relatedItems: Handler = (ctx, req, caller, m) => {
  const i = visibleIndex(ctx, caller, m[1] ?? "");
  if (typeof i !== "number") return i;
  const types = (req.params.relationshipType ?? req.params.relationshipTypes ?? "")
    .split(",")
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
  if (types.length === 0)
    return err(400, "Unable to get related items.", ["'relationshipType' must be specified."]);
  const reverse = (req.params.direction ?? "forward").toLowerCase() === "reverse";
  const out: Record<string, unknown>[] = [];
  for (const r of ctx.org.relationshipsOf(i)) {
    if (!types.includes(r.type.toLowerCase())) continue;
    const other = reverse ? (r.dest === i ? r.origin : null) : r.origin === i ? r.dest : null;
    if (other === null || !canSeeIndex(ctx, caller, other)) continue;
    out.push(itemJson(ctx, ctx.org.itemAt(other), caller));
  }
  return { json: { total: out.length, relatedItems: out } };
};

export const itemGroups: Handler = (ctx, _req, caller, m) => {
  const i = visibleIndex(ctx, caller, m[1] ?? "");
  if (typeof i !== "number") return i;
  const admin: unknown[] = [];
  const member: unknown[] = [];
  const other: unknown[] = [];
  for (const gid of ctx.org.groupsAt(i)) {
    const g = ctx.org.group(gid);
    if (!g || !canSeeGroup(caller, g)) continue;
    const mt = caller.user ? g.members.get(caller.user.username) : undefined;
    const j = groupJson(ctx, g, caller);
    if (mt === "owner" || mt === "admin") admin.push(j);
    else if (mt === "member") member.push(j);
    else other.push(j);
  }
  return { json: { admin, member, other } };
};

export const groupContent: Handler = (ctx, req, caller, m) => {
  const g = ctx.org.group(m[1] ?? "");
  if (!g || !canSeeGroup(caller, g))
    return err(400, "Group does not exist or is inaccessible.", [], "COM_0003");
  const list = cached(ctx, `group\n${g.id}\n${caller.user?.username ?? ""}`, () => {
    const out: number[] = [];
    for (const i of ctx.org.indices()) {
      if (ctx.org.groupsAt(i).includes(g.id) && canSeeIndex(ctx, caller, i)) out.push(i);
    }
    return out;
  });
  const p = pageOf(list, req.params);
  return {
    json: {
      ...pagingFields(p),
      items: p.page.map((i) => itemJson(ctx, ctx.org.itemAt(i), caller)),
    },
  };
};

export const bytesReply = (buf: Buffer, contentType: string): Reply => ({
  source: { src: bufferSource(buf) },
  headers: { "content-type": contentType },
});
