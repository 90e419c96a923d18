import type { PortalClient } from "../arcgis/portal-client.js";
import { isPortalRefusal } from "../arcgis/portal-errors.js";
import { pages } from "../backup/inventory.js";
import type { PagedResponse, PortalGroup, PortalItem, UserContentResponse } from "../backup/portal-types.js";
import { AppError } from "../errors.js";

/** The signed-in user of the target org: who restored items belong to by default. */
export interface TargetSelf {
  username: string;
  orgId: string | null;
  role: string | null;
  privileges: string[];
}

export const PRIVILEGES = {
  createItem: "portal:user:createItem",
  publishFeatures: "portal:publisher:publishFeatures",
  adminUpdateItems: "portal:admin:updateItems",
} as const;

/** The target user may not create content at all. */
export class TargetPrivilegeError extends AppError {
  constructor(username: string, missing: string) {
    super(
      `The target user ${username} cannot create content (missing privilege ${missing}); use an identity whose user may create items`,
      { code: "ERR_TARGET_PRIVILEGES", status: 403, field: "target.identityId" },
    );
  }
}

export async function readTargetSelf(portal: PortalClient): Promise<TargetSelf> {
  const self = await portal.json<{ username?: string; orgId?: string; role?: string; privileges?: string[] }>(
    "community/self",
    {},
    { method: "GET" },
  );
  if (!self.username) {
    throw new AppError("The target identity is not signed in as a user (community/self has no username)", {
      code: "ERR_TARGET_NOT_A_USER",
      status: 400,
      field: "target.identityId",
    });
  }
  return {
    username: self.username,
    orgId: self.orgId ?? null,
    role: self.role ?? null,
    privileges: self.privileges ?? [],
  };
}

export function assertCanCreate(self: TargetSelf): void {
  if (!self.privileges.includes(PRIVILEGES.createItem)) {
    throw new TargetPrivilegeError(self.username, PRIVILEGES.createItem);
  }
}

export interface TargetUser {
  username: string;
  role?: string;
  privileges?: string[];
  userLicenseTypeId?: string;
}

/**
 * Members of the target org by lowercase username. A user who may not list the org's members
 * (not an administrator) knows only itself: every item is then theirs.
 */
export async function readTargetUsers(
  portal: PortalClient,
  self: TargetSelf,
): Promise<Map<string, TargetUser>> {
  const users = new Map<string, TargetUser>();
  try {
    for await (const page of pages<PagedResponse & { users: TargetUser[] }>(portal, "portals/self/users")) {
      for (const user of page.users ?? []) users.set(user.username.toLowerCase(), user);
    }
  } catch (error) {
    if (!isPortalRefusal(error)) throw error;
  }
  if (!users.has(self.username.toLowerCase())) {
    users.set(self.username.toLowerCase(), {
      username: self.username,
      privileges: self.privileges,
      ...(self.role ? { role: self.role } : {}),
    });
  }
  return users;
}

/** Groups of the target org, by id and by lowercase title. */
export async function readTargetGroups(
  portal: PortalClient,
  orgId: string | null,
): Promise<{ byId: Map<string, PortalGroup>; byTitle: Map<string, PortalGroup> }> {
  const byId = new Map<string, PortalGroup>();
  const byTitle = new Map<string, PortalGroup>();
  for await (const page of pages<PagedResponse & { results: PortalGroup[] }>(portal, "community/groups", {
    q: orgId ? `orgid:${orgId}` : "*",
  })) {
    for (const group of page.results ?? []) {
      byId.set(group.id, group);
      const key = group.title.toLowerCase();
      if (!byTitle.has(key)) byTitle.set(key, group);
    }
  }
  return { byId, byTitle };
}

/** Whether a user may own published hosted services (by privilege, else by role). */
export function canPublish(user: TargetUser | undefined): boolean {
  if (!user) return false;
  if (user.privileges) return user.privileges.includes(PRIVILEGES.publishFeatures);
  return user.role === "org_admin" || user.role === "org_publisher";
}

/**
 * Folders of target owners, found by title (case-insensitive) and created when missing; known
 * folders are shared by the batches of a process. Two activities creating the same folder at
 * once: the loser reads the winner's folder. Requests go through the caller's client, so they
 * count in the traffic of the batch that made them.
 */
export class FolderResolver {
  private readonly byOwner = new Map<string, Promise<Map<string, string>>>();

  async ensure(portal: PortalClient, owner: string, title: string | null): Promise<string | null> {
    if (!title) return null;
    const key = title.trim().toLowerCase();
    const folders = await this.folders(portal, owner);
    const known = folders.get(key);
    if (known) return known;
    try {
      const created = await portal.json<{ folder?: { id: string; title: string } }>(
        `content/users/${encodeURIComponent(owner)}/createFolder`,
        { title: title.trim() },
      );
      if (created.folder?.id) {
        folders.set(key, created.folder.id);
        return created.folder.id;
      }
    } catch (error) {
      if (!isPortalRefusal(error)) throw error;
      // Taken meanwhile (another activity, another user of the org): read the folders again.
    }
    this.byOwner.delete(owner.toLowerCase());
    const again = await this.folders(portal, owner);
    const found = again.get(key);
    if (!found) {
      throw new AppError(`Folder "${title}" of ${owner} could not be created or found`, {
        code: "ERR_TARGET_FOLDER",
        status: 502,
      });
    }
    return found;
  }

  private folders(portal: PortalClient, owner: string): Promise<Map<string, string>> {
    const key = owner.toLowerCase();
    let pending = this.byOwner.get(key);
    if (!pending) {
      pending = portal
        .json<UserContentResponse>(
          `content/users/${encodeURIComponent(owner)}`,
          { start: 1, num: 1 },
          { method: "GET" },
        )
        .then((page) => new Map((page.folders ?? []).map((f) => [f.title.toLowerCase(), f.id])));
      pending.catch(() => this.byOwner.delete(key));
      this.byOwner.set(key, pending);
    }
    return pending;
  }
}

/** The first item of an owner's folder (or root) that matches. */
async function findInOwnerContent(
  portal: PortalClient,
  owner: string,
  folderId: string | null | undefined,
  matches: (item: PortalItem) => boolean,
): Promise<PortalItem | undefined> {
  const path = `content/users/${encodeURIComponent(owner)}${folderId ? `/${folderId}` : ""}`;
  for await (const page of pages<UserContentResponse>(portal, path)) {
    const hit = page.items.find(matches);
    if (hit) return hit;
  }
  return undefined;
}

/** Items of an owner's folder (or root) that carry a typeKeyword: what a crashed create left. */
export function findByKeyword(
  portal: PortalClient,
  owner: string,
  folderId: string | null | undefined,
  keyword: string,
): Promise<PortalItem | undefined> {
  return findInOwnerContent(portal, owner, folderId, (item) => (item.typeKeywords ?? []).includes(keyword));
}

/** An owner's item (root or folder) whose service URL names this service. */
export function findServiceItem(
  portal: PortalClient,
  owner: string,
  folderId: string | null | undefined,
  serviceName: string,
): Promise<PortalItem | undefined> {
  const url = new RegExp(`/services/(?:Hosted/)?${escapeRegExp(serviceName)}/FeatureServer/?$`, "i");
  return findInOwnerContent(
    portal,
    owner,
    folderId,
    (item) => item.type === "Feature Service" && typeof item.url === "string" && url.test(item.url),
  );
}

function escapeRegExp(value: string): string {
  return value.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** The portal refused this one request (not an outage, not our sign-in): the caller may carry on. */
