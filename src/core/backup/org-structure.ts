import { z } from "zod";
import type { PortalClient } from "../arcgis/portal-client.js";
import { isPortalRefusal } from "../arcgis/portal-errors.js";
import { mapWithConcurrency } from "../concurrency.js";
import type { Logger } from "../log.js";
import { type BackupStore, ndjsonBytes } from "./backup-store.js";
import { pages } from "./inventory.js";
import { groupThumbnailName, type orgRecordNames } from "./layout.js";
import type { PagedResponse } from "./portal-types.js";

/**
 * The org's structure, next to its items, so that an org-to-org move can rebuild it: custom roles
 * with their privileges, the content category schema, the settings worth restoring, and for each
 * group its settings, thumbnail, own category schema and members with their role in the group.
 * Written by a whole-org run after its group records; read back (validated) by a restore.
 */

type OrgRecords = ReturnType<typeof orgRecordNames>;

export interface CategoryNode {
  title: string;
  description?: string | null | undefined;
  categories?: CategoryNode[] | undefined;
}

export const categoryNodeSchema: z.ZodType<CategoryNode> = z.lazy(() =>
  z.object({
    title: z.string(),
    description: z.string().nullish(),
    categories: z.array(categoryNodeSchema).optional(),
  }),
);

/** `org/roles.ndjson`: one custom role a line. */
export const roleRecordSchema = z.object({
  id: z.string(),
  name: z.string(),
  description: z.string().nullish(),
  privileges: z.array(z.string()),
});
export type RoleRecord = z.infer<typeof roleRecordSchema>;

/** `org/categories.json`: the org's content category schema. */
export const categoriesRecordSchema = z.object({ categorySchema: z.array(categoryNodeSchema) });

/** `org/settings.json`: the portal settings a move may put back (by hand or later). */
export const settingsRecordSchema = z.record(z.string(), z.unknown());

export const MEMBER_TYPES = ["owner", "admin", "member"] as const;
export type MemberType = (typeof MEMBER_TYPES)[number];

/**
 * A line of `org/groups.ndjson`. Runs before the org structure was captured hold the group JSON,
 * `members` ({ owner, admins, users }) and `itemIds`; later ones add `memberships`,
 * `categorySchema` and `thumbnailBlob`. Everything but id and title is optional, so both read.
 */
export const groupRecordSchema = z.looseObject({
  id: z.string(),
  title: z.string(),
  owner: z.string().optional(),
  // Lenient: a value this app does not know must not fail a backup (a restore falls back to private).
  access: z.string().optional(),
  description: z.string().nullish(),
  snippet: z.string().nullish(),
  tags: z.array(z.string()).optional(),
  thumbnail: z.string().nullish(),
  isInvitationOnly: z.boolean().optional(),
  isViewOnly: z.boolean().optional(),
  autoJoin: z.boolean().optional(),
  protected: z.boolean().optional(),
  sortField: z.string().nullish(),
  sortOrder: z.string().nullish(),
  membershipAccess: z.string().nullish(),
  capabilities: z.array(z.string()).optional(),
  members: z
    .object({
      owner: z.string().optional(),
      admins: z.array(z.string()).optional(),
      users: z.array(z.string()).optional(),
    })
    .optional(),
  itemIds: z.array(z.string()).optional(),
  memberships: z.array(z.object({ username: z.string(), memberType: z.enum(MEMBER_TYPES) })).optional(),
  categorySchema: z.array(categoryNodeSchema).optional(),
  /** The thumbnail's blob, relative to the identity's folder. */
  thumbnailBlob: z.string().optional(),
});
export type GroupRecord = z.infer<typeof groupRecordSchema>;

/** Portal settings an org move cares about (home page, basemap gallery, featured content, extent). */
const SETTINGS_KEYS = [
  "name",
  "description",
  "culture",
  "region",
  "units",
  "defaultExtent",
  "defaultBasemap",
  "basemapGalleryGroupQuery",
  "useVectorBasemaps",
  "vectorBasemapGalleryGroupQuery",
  "featuredGroups",
  "featuredItemsGroupQuery",
  "homePageFeaturedContent",
  "homePageFeaturedContentCount",
  "rotatorPanels",
  "portalProperties",
  "thumbnail",
];

const STRUCTURE_CONCURRENCY = 4;

/** Writes roles, categories, settings, and enriches the group records; answers what it wrote. */
export async function captureOrgStructure(options: {
  portal: PortalClient;
  store: BackupStore;
  org: OrgRecords;
  /** The portals/self answer the inventory read. */
  self: object;
  log?: Logger;
}): Promise<{ roles: number; categories: number; groups: number }> {
  const { portal, store, org } = options;
  const roles = await readRoles(portal, options.log);
  await store.uploadBuffer(org.roles, ndjsonBytes(roles), "application/x-ndjson");
  const categorySchema = await readOrRefused(
    () =>
      portal.json<{ categorySchema?: CategoryNode[] }>("portals/self/categorySchema", {}, { method: "GET" }),
    {},
  );
  await store.uploadJson(org.categories, { categorySchema: categorySchema.categorySchema ?? [] });
  const self = options.self as Record<string, unknown>;
  const settings = Object.fromEntries(SETTINGS_KEYS.filter((k) => k in self).map((k) => [k, self[k]]));
  await store.uploadJson(org.settings, settings);
  const groups = await enrichGroups(options);
  return { roles: roles.length, categories: countCategories(categorySchema.categorySchema ?? []), groups };
}

/** Custom roles with their privileges; none when the identity may not list them. */
async function readRoles(portal: PortalClient, log?: Logger): Promise<RoleRecord[]> {
  const roles: RoleRecord[] = [];
  try {
    for await (const page of pages<PagedResponse & { roles?: Array<Partial<RoleRecord>> }>(
      portal,
      "portals/self/roles",
      { returnPrivileges: true },
    )) {
      for (const role of page.roles ?? []) {
        if (!role.id || !role.name) continue;
        const privileges =
          role.privileges ??
          (
            await portal.json<{ privileges?: string[] }>(
              `portals/self/roles/${encodeURIComponent(role.id)}/privileges`,
              {},
              { method: "GET" },
            )
          ).privileges ??
          [];
        roles.push({ id: role.id, name: role.name, description: role.description ?? null, privileges });
      }
    }
  } catch (error) {
    if (!isPortalRefusal(error)) throw error;
    log?.warn("Custom roles not captured: the identity may not list them", {});
  }
  return roles;
}

/** Each group record with its memberships, own category schema and thumbnail (as a blob). */
async function enrichGroups(options: {
  portal: PortalClient;
  store: BackupStore;
  org: OrgRecords;
}): Promise<number> {
  const { portal, store, org } = options;
  const groups = (await store.readNdjson(org.groups, groupRecordSchema)) ?? [];
  const enriched = await mapWithConcurrency(groups, STRUCTURE_CONCURRENCY, async (group) => {
    const out: GroupRecord = { ...group, memberships: membershipsOf(group) };
    if (group.hasCategorySchema !== false) {
      const schema = await readOrRefused(
        () =>
          portal.json<{ categorySchema?: CategoryNode[] }>(
            `community/groups/${group.id}/categorySchema`,
            {},
            { method: "GET" },
          ),
        {},
      );
      if (schema.categorySchema?.length) out.categorySchema = schema.categorySchema;
    }
    if (group.thumbnail) {
      const bytes = await readOrRefused(
        () =>
          portal.bytes(`community/groups/${group.id}/info/${encodeURIComponent(group.thumbnail as string)}`),
        undefined,
      );
      if (bytes) {
        const name = groupThumbnailName(org, group.id, group.thumbnail);
        await store.uploadBuffer(name, bytes, contentTypeOf(group.thumbnail));
        out.thumbnailBlob = name;
      }
    }
    return out;
  });
  await store.uploadBuffer(org.groups, ndjsonBytes(enriched), "application/x-ndjson");
  return enriched.length;
}

/** Members with their role in the group, from `{ owner, admins, users }`. */
export function membershipsOf(group: GroupRecord): Array<{ username: string; memberType: MemberType }> {
  if (group.memberships) return group.memberships;
  const owner = group.members?.owner ?? group.owner;
  const out = new Map<string, MemberType>();
  for (const name of group.members?.users ?? []) out.set(name, "member");
  for (const name of group.members?.admins ?? []) out.set(name, "admin");
  if (owner) out.set(owner, "owner");
  return [...out].map(([username, memberType]) => ({ username, memberType }));
}

async function readOrRefused<T>(read: () => Promise<T>, fallback: T): Promise<T> {
  try {
    return await read();
  } catch (error) {
    if (isPortalRefusal(error)) return fallback;
    throw error;
  }
}

/** The portal refused this request for good (forbidden, missing): the rest of the run goes on. */
function countCategories(trees: CategoryNode[]): number {
  return trees.reduce((n, node) => n + 1 + countCategories(node.categories ?? []), 0);
}

function contentTypeOf(name: string): string {
  const ext = name.toLowerCase().split(".").pop();
  if (ext === "png") return "image/png";
  if (ext === "jpg" || ext === "jpeg") return "image/jpeg";
  if (ext === "gif") return "image/gif";
  return "application/octet-stream";
}
