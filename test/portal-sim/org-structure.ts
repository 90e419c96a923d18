/**
 * The org's structure as the Sharing API documents it (checked against Esri's "Users, groups and
 * items" reference): custom roles (`portals/self/roles`, `roles/{id}/privileges`, `createRole`,
 * `roles/{id}/setPrivileges`), the content category schema (`portals/self/categorySchema`,
 * `assignCategorySchema`), item categories (`content/updateItems`), and groups (`community/createGroup`,
 * `groups/{id}/update`, `addUsers`, `info/<thumbnail>`, `categorySchema`, `assignCategorySchema`).
 */
import { type Caller, canSeeGroup, groupJson, type Handler, isAdmin, type SimContext } from "./context.js";
import { contentTypeOf, ERR, err, type ParsedRequest, pageOf, pagingFields, type Reply } from "./http.js";
import { ADMIN_PRIVILEGES, type CategoryNode, type SimGroup, type SimRole } from "./model.js";

/** Privileges this org knows; setPrivileges refuses any other, as a portal refuses one it lacks. */
export const KNOWN_PRIVILEGES = new Set(ADMIN_PRIVILEGES);

const MAX_CATEGORY_TREES = 5;
const MAX_CATEGORY_DEPTH = 4;
const MAX_CATEGORIES = 200;

function requireAdmin(caller: Caller, privilege: string): Reply | null {
  if (!caller.user) return caller.token ? ERR.forbidden() : ERR.tokenRequired();
  return isAdmin(caller.user) && caller.user.privileges.includes(privilege) ? null : ERR.forbidden();
}

function requireMember(caller: Caller): Reply | null {
  if (caller.user) return null;
  return caller.token ? ERR.forbidden() : ERR.tokenRequired();
}

function jsonParam<T>(req: ParsedRequest, name: string): T | undefined {
  const raw = req.params[name];
  if (raw === undefined || raw.trim() === "") return undefined;
  try {
    return JSON.parse(raw) as T;
  } catch {
    return undefined;
  }
}

// --- roles ------------------------------------------------------------------------------------

const roleJson = (role: SimRole, withPrivileges: boolean) => ({
  id: role.id,
  name: role.name,
  description: role.description,
  created: role.created,
  modified: role.modified,
  ...(withPrivileges ? { privileges: role.privileges } : {}),
});

export const listRoles: Handler = (ctx, req, caller) => {
  const denied = requireMember(caller);
  if (denied) return denied;
  const p = pageOf(ctx.org.roles, req.params);
  const withPrivileges = req.params.returnPrivileges === "true";
  return {
    json: {
      ...pagingFields(p),
      roles: p.page.map((r) => roleJson(r, withPrivileges)),
    },
  };
};

function roleOf(ctx: SimContext, id: string): SimRole | Reply {
  return ctx.org.roles.find((r) => r.id === id) ?? err(400, "Role does not exist.", [], "COM_0097");
}

export const rolePrivileges: Handler = (ctx, _req, caller, m) => {
  const denied = requireMember(caller);
  if (denied) return denied;
  const role = roleOf(ctx, m[1] ?? "");
  return "privileges" in role ? { json: { privileges: role.privileges } } : role;
};

export const createRole: Handler = (ctx, req, caller) => {
  const denied = requireAdmin(caller, "portal:admin:manageRoles");
  if (denied) return denied;
  const name = (req.params.name ?? "").trim();
  const description = req.params.description ?? "";
  if (!name || name.length > 128)
    return err(400, "Unable to create role.", ["'name' must be 1 to 128 characters."]);
  if (description.length > 250)
    return err(400, "Unable to create role.", ["'description' exceeds 250 characters."]);
  if (ctx.org.roles.some((r) => r.name.toLowerCase() === name.toLowerCase()))
    return err(400, "Unable to create role.", [`A role named '${name}' already exists.`]);
  const role = ctx.org.addRole(name, description);
  return { json: { success: true, id: role.id } };
};

export const setRolePrivileges: Handler = (ctx, req, caller, m) => {
  const denied = requireAdmin(caller, "portal:admin:manageRoles");
  if (denied) return denied;
  const role = roleOf(ctx, m[1] ?? "");
  if (!("privileges" in role)) return role;
  const body = jsonParam<{ privileges?: unknown }>(req, "privileges");
  const list = body?.privileges;
  if (!Array.isArray(list) || list.some((p) => typeof p !== "string"))
    return err(400, "Unable to set privileges.", ["'privileges' must be {\"privileges\":[...]}."]);
  const unknown = (list as string[]).filter((p) => !KNOWN_PRIVILEGES.has(p));
  if (unknown.length > 0)
    return err(400, "Unable to set privileges.", [`Invalid privileges: ${unknown.join(",")}`]);
  role.privileges = [...new Set(list as string[])];
  role.modified = Date.now();
  return { json: { success: true } };
};

// --- category schemas ---------------------------------------------------------------------------

/** Why a schema is refused (the documented limits), or null. */
function schemaProblem(trees: unknown): string | null {
  if (!Array.isArray(trees)) return "'categorySchema' must be {\"categorySchema\":[...]}.";
  if (trees.length > MAX_CATEGORY_TREES) return `At most ${MAX_CATEGORY_TREES} category trees.`;
  let count = 0;
  const walk = (nodes: unknown, depth: number): string | null => {
    if (nodes === undefined) return null;
    if (!Array.isArray(nodes)) return "'categories' must be an array.";
    for (const node of nodes as CategoryNode[]) {
      if (typeof node?.title !== "string" || !node.title || node.title.length > 100)
        return "Each category needs a title of 1 to 100 characters.";
      if (depth > MAX_CATEGORY_DEPTH) return `Categories nest at most ${MAX_CATEGORY_DEPTH} levels.`;
      if (++count > MAX_CATEGORIES) return `At most ${MAX_CATEGORIES} categories.`;
      const inner = walk(node.categories, depth + 1);
      if (inner) return inner;
    }
    return null;
  };
  return walk(trees, 0);
}

/** Every path of a schema (`/Categories/Parks/Trails`), lowercase: what an item may be assigned. */
export function categoryPaths(trees: CategoryNode[]): Set<string> {
  const out = new Set<string>();
  const walk = (nodes: CategoryNode[] | undefined, prefix: string) => {
    for (const node of nodes ?? []) {
      const path = `${prefix}/${node.title}`;
      out.add(path.toLowerCase());
      walk(node.categories, path);
    }
  };
  walk(trees, "");
  return out;
}

export const orgCategorySchema: Handler = (ctx, _req, caller) =>
  requireMember(caller) ?? { json: { categorySchema: ctx.org.categorySchema } };

export const assignOrgCategorySchema: Handler = (ctx, req, caller) => {
  const denied = requireAdmin(caller, "portal:admin:updateItemCategorySchema");
  if (denied) return denied;
  const trees = jsonParam<{ categorySchema?: unknown }>(req, "categorySchema")?.categorySchema;
  const problem = schemaProblem(trees);
  if (problem) return err(400, "Unable to assign category schema.", [problem]);
  ctx.org.categorySchema = trees as CategoryNode[];
  ctx.org.version++;
  return { json: { success: true } };
};

/** `items=[{"<id>":{"categories":[...]}}]`: categories only, each a path of the org's schema. */
export const updateItems: Handler = (ctx, req, caller) => {
  const denied = requireMember(caller);
  if (denied) return denied;
  const entries = jsonParam<Array<Record<string, { categories?: unknown }>>>(req, "items");
  if (!Array.isArray(entries) || entries.length > 100)
    return err(400, "Unable to update items.", ["'items' must be an array of at most 100 entries."]);
  const known = categoryPaths(ctx.org.categorySchema);
  const results = entries.flatMap((entry) =>
    Object.entries(entry ?? {}).map(([itemId, change]) => {
      const i = ctx.org.indexOf(itemId);
      const item = i === null ? undefined : ctx.org.itemAt(i);
      const mayEdit =
        !!item &&
        !!caller.user &&
        (item.owner === caller.user.username ||
          caller.user.privileges.includes("portal:admin:categorizeItems"));
      if (i === null || !mayEdit)
        return {
          itemId,
          success: false,
          error: { code: 400, message: "Item does not exist or is inaccessible." },
        };
      const categories = Array.isArray(change?.categories) ? (change.categories as string[]) : [];
      const unknown = categories.filter((c) => !known.has(String(c).toLowerCase()));
      if (unknown.length > 0)
        return {
          itemId,
          success: false,
          error: { code: 400, message: `Invalid categories: ${unknown.join(",")}` },
        };
      ctx.org.editable(i).categories = categories;
      ctx.org.version++;
      return { itemId, success: true };
    }),
  );
  return { json: { results } };
};

// --- groups -------------------------------------------------------------------------------------

const SORT_FIELDS = new Set(["title", "owner", "avgrating", "numviews", "created", "modified"]);

/** Group settings present in the request, checked; an error reply for a bad value. */
function groupSettings(req: ParsedRequest): Partial<SimGroup> | Reply {
  const p = req.params;
  const out: Partial<SimGroup> = {};
  const bool = (v: string | undefined) => (v === undefined ? undefined : v === "true");
  if (p.access !== undefined) {
    const access = p.access === "account" ? "org" : p.access;
    if (!["private", "org", "public"].includes(access)) return ERR.badParam("access");
    out.access = access as SimGroup["access"];
  }
  if (p.description !== undefined) out.description = p.description;
  if (p.snippet !== undefined) out.snippet = p.snippet;
  if (p.tags !== undefined)
    out.tags = p.tags
      .split(",")
      .map((t) => t.trim())
      .filter(Boolean);
  if (p.sortField !== undefined) {
    if (!SORT_FIELDS.has(p.sortField)) return ERR.badParam("sortField");
    out.sortField = p.sortField;
  }
  if (p.sortOrder !== undefined) {
    if (p.sortOrder !== "asc" && p.sortOrder !== "desc") return ERR.badParam("sortOrder");
    out.sortOrder = p.sortOrder;
  }
  if (p.membershipAccess !== undefined) {
    if (!["org", "collaboration", "none"].includes(p.membershipAccess))
      return ERR.badParam("membershipAccess");
    out.membershipAccess = p.membershipAccess as SimGroup["membershipAccess"];
  }
  if (p.capabilities !== undefined) out.capabilities = p.capabilities.split(",").filter(Boolean);
  const flags = ["isInvitationOnly", "isViewOnly", "autoJoin", "protected"] as const;
  for (const flag of flags) {
    const value = bool(p[flag]);
    if (value !== undefined) out[flag] = value;
  }
  const thumbnail = req.files.thumbnail;
  if (thumbnail) out.thumbnail = { name: thumbnail.filename, data: thumbnail.data };
  return out;
}

export const createGroup: Handler = (ctx, req, caller) => {
  if (!caller.user) return caller.token ? ERR.forbidden() : ERR.tokenRequired();
  if (!caller.user.privileges.includes("portal:user:createGroup")) return ERR.forbidden();
  const owner = caller.user.username;
  const title = (req.params.title ?? "").trim();
  if (!title) return err(400, "Unable to create group.", ["'title' must be specified."]);
  if (ctx.org.groups.some((g) => g.owner === owner && g.title.toLowerCase() === title.toLowerCase()))
    return err(400, "Unable to create group.", [
      `You already have a group named '${title}'. Try a different name.`,
    ]);
  const settings = groupSettings(req);
  if ("status" in settings || "json" in settings) return settings as Reply;
  const group = ctx.org.addGroup({
    title,
    owner,
    description: "",
    snippet: "",
    tags: [],
    access: "private",
    isInvitationOnly: false,
    isViewOnly: false,
    ...settings,
  });
  return { json: { success: true, group: groupJson(ctx, group, caller) } };
};

function managedGroup(ctx: SimContext, caller: Caller, id: string): SimGroup | Reply {
  const g = ctx.org.group(id);
  if (!g || !canSeeGroup(caller, g))
    return err(400, "Group does not exist or is inaccessible.", [], "COM_0003");
  const u = caller.user;
  const type = u ? g.members.get(u.username) : undefined;
  const admin = u?.privileges.includes("portal:admin:updateGroups") ?? false;
  return type === "owner" || type === "admin" || admin ? g : ERR.forbidden();
}

export const updateGroup: Handler = (ctx, req, caller, m) => {
  const g = managedGroup(ctx, caller, m[1] ?? "");
  if (!("members" in g)) return g;
  const settings = groupSettings(req);
  if ("status" in settings || "json" in settings) return settings as Reply;
  const title = req.params.title?.trim();
  Object.assign(g, settings, title ? { title } : {}, { modified: Date.now() });
  ctx.org.version++;
  return { json: { success: true, groupId: g.id } };
};

/** `users` join as members, `admins` as group managers; a name outside the org is `notAdded`. */
export const addUsers: Handler = (ctx, req, caller, m) => {
  const g = managedGroup(ctx, caller, m[1] ?? "");
  if (!("members" in g)) return g;
  const names = (v: string | undefined) =>
    (v ?? "")
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean);
  const asked = [
    ...names(req.params.users).map((n) => [n, "member"] as const),
    ...names(req.params.admins).map((n) => [n, "admin"] as const),
  ];
  if (asked.length > 25) return err(400, "Unable to add users.", ["At most 25 users per request."]);
  const notAdded: string[] = [];
  for (const [name, type] of asked) {
    const user = ctx.org.user(name);
    if (!user) notAdded.push(name);
    else if (g.members.get(user.username) !== "owner") g.members.set(user.username, type);
  }
  ctx.org.membersChanged();
  return { json: { notAdded } };
};

export const groupThumbnail: Handler = (ctx, _req, caller, m) => {
  const g = ctx.org.group(m[1] ?? "");
  if (!g || !canSeeGroup(caller, g))
    return err(400, "Group does not exist or is inaccessible.", [], "COM_0003");
  const name = decodeURIComponent(m[2] ?? "");
  if (!g.thumbnail || g.thumbnail.name !== name)
    return err(400, "File does not exist or is inaccessible.", []);
  return { body: g.thumbnail.data, headers: { "content-type": contentTypeOf(name) } };
};

export const groupCategorySchema: Handler = (ctx, _req, caller, m) => {
  const g = ctx.org.group(m[1] ?? "");
  if (!g || !canSeeGroup(caller, g))
    return err(400, "Group does not exist or is inaccessible.", [], "COM_0003");
  return { json: { categorySchema: g.categorySchema ?? [] } };
};

export const assignGroupCategorySchema: Handler = (ctx, req, caller, m) => {
  const g = managedGroup(ctx, caller, m[1] ?? "");
  if (!("members" in g)) return g;
  const trees = jsonParam<{ categorySchema?: unknown }>(req, "categorySchema")?.categorySchema;
  const problem = schemaProblem(trees);
  if (problem) return err(400, "Unable to assign category schema.", [problem]);
  g.categorySchema = trees as CategoryNode[];
  ctx.org.version++;
  return { json: { success: true } };
};

// --- invitations --------------------------------------------------------------------------------

const INVITATION_DAYS = 14;

interface InvitationParam {
  username?: unknown;
  email?: unknown;
  fullname?: unknown;
  role?: unknown;
  userLicenseType?: unknown;
  targetUserProvider?: unknown;
  idpUsername?: unknown;
  password?: unknown;
}

/**
 * `invitationList={"invitations":[{username,email,fullname,role,userLicenseType,…}]}`. ArcGIS
 * Online sends each an email and keeps the invitation pending until accepted; ArcGIS Enterprise
 * adds an identity-provider account (`targetUserProvider: "enterprise"`, `idpUsername`) at once and a
 * built-in one only with a password. Refused entries are answered in `notInvited`.
 */
export const invite: Handler = (ctx, req, caller) => {
  const denied = requireAdmin(caller, "portal:admin:inviteUsers");
  if (denied) return denied;
  const list = jsonParam<{ invitations?: unknown }>(req, "invitationList")?.invitations;
  if (!Array.isArray(list) || list.length === 0 || list.length > 100)
    return err(400, "Unable to invite users.", ["'invitationList' must hold 1 to 100 invitations."]);
  const notInvited: string[] = [];
  for (const entry of list as InvitationParam[]) {
    const username = typeof entry.username === "string" ? entry.username.trim() : "";
    const email = typeof entry.email === "string" ? entry.email.trim() : "";
    const taken =
      !!ctx.org.user(username) ||
      ctx.org.invitations.some((i) => i.username.toLowerCase() === username.toLowerCase());
    const enterprise = ctx.kind === "enterprise";
    const addable =
      entry.targetUserProvider === "enterprise"
        ? typeof entry.idpUsername === "string"
        : typeof entry.password === "string";
    if (!username || !email.includes("@") || taken || (enterprise && !addable)) {
      notInvited.push(username || email);
      continue;
    }
    const spec = {
      username,
      email,
      fullName: typeof entry.fullname === "string" ? entry.fullname : username,
      role: typeof entry.role === "string" ? entry.role : "org_user",
      userType: typeof entry.userLicenseType === "string" ? entry.userLicenseType : "creatorUT",
    };
    if (enterprise) ctx.org.addMember(spec);
    else {
      const now = Date.now();
      ctx.org.invitations.push({
        id: ctx.org.newId(),
        username,
        email,
        fullname: spec.fullName,
        role: spec.role,
        userLicenseType: spec.userType,
        created: now,
        expiration: now + INVITATION_DAYS * 86_400_000,
      });
      ctx.org.version++;
    }
  }
  return { json: { success: true, notInvited } };
};

/** The org's pending invitations (administrators). */
export const listInvitations: Handler = (ctx, req, caller) => {
  const denied = requireAdmin(caller, "portal:admin:inviteUsers");
  if (denied) return denied;
  const p = pageOf(ctx.org.invitations, req.params);
  return {
    json: {
      ...pagingFields(p),
      invitations: p.page.map((i) => ({ ...i })),
    },
  };
};
