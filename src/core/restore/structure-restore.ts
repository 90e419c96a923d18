import type { PortalClient } from "../arcgis/portal-client.js";
import type { BackupStore } from "../backup/backup-store.js";
import { pages } from "../backup/inventory.js";
import { orgRecordNames } from "../backup/layout.js";
import {
  type CategoryNode,
  categoriesRecordSchema,
  groupRecordSchema,
  type RoleRecord,
  roleRecordSchema,
} from "../backup/org-structure.js";
import type { PagedResponse } from "../backup/portal-types.js";
import type { Logger } from "../log.js";
import { writeOnce } from "./context.js";
import { restoreGroups } from "./structure-groups.js";
import {
  type CategoriesOutcome,
  NOT_RESTORED,
  type RoleOutcome,
  recordFailure,
  type ScopePart,
  type StructureOutcome,
  USERS_INVITED,
  USERS_NOT_CREATED,
  type UsersMode,
} from "./structure-model.js";
import { inviteMissingUsers, sourceUserSchema } from "./structure-users.js";
import { readTargetGroups, readTargetUsers, type TargetSelf } from "./target.js";

export interface StructureInput {
  /** The target org's client. */
  portal: PortalClient;
  /** The source identity's backup store. */
  store: BackupStore;
  runId: string;
  self: TargetSelf;
  sameOrg: boolean;
  parts: readonly ScopePart[];
  usernameMap?: Record<string, string>;
  /** What to do with the users the target lacks (default: report them). */
  users?: UsersMode;
  /** false: a dry run — everything is read, nothing is written. */
  apply: boolean;
  log: Logger;
}

/**
 * The org's structure into the target, before its items: custom roles, then the content
 * categories, then groups (created when missing, with their settings, thumbnail and category
 * schema; members who exist in the target added). Everything is matched by name or title first,
 * so a retried step finds what an earlier attempt created.
 */
export async function restoreStructure(input: StructureInput): Promise<StructureOutcome> {
  const names = orgRecordNames(input.runId);
  const users = input.users ?? "report";
  const notRestored = NOT_RESTORED.map((note) =>
    note === USERS_NOT_CREATED && users === "invite" ? USERS_INVITED : note,
  );
  const roles = input.parts.includes("roles") ? await restoreRoles(input, names.roles, notRestored) : [];
  const categories = input.parts.includes("categories")
    ? await restoreCategories(input, names.categories, notRestored)
    : null;
  let groups: StructureOutcome["groups"] = [];
  let missingUsers: StructureOutcome["missingUsers"] = [];
  if (input.parts.includes("groups")) {
    const [sourceGroups, sourceUsers, targetUsers, targetGroups] = await Promise.all([
      input.store.readNdjson(names.groups, groupRecordSchema),
      input.store.readNdjson(names.users, sourceUserSchema),
      readTargetUsers(input.portal, input.self),
      readTargetGroups(input.portal, input.self.orgId),
    ]);
    const result = await restoreGroups({
      ...input,
      sourceGroups: sourceGroups ?? [],
      sourceUsers: sourceUsers ?? [],
      targetUsers,
      targetGroups,
    });
    groups = result.groups;
    missingUsers = result.missingUsers;
    const roleIds = new Map(roles.flatMap((r) => (r.targetId ? [[r.sourceId, r.targetId] as const] : [])));
    notRestored.push(
      ...(await inviteMissingUsers({
        portal: input.portal,
        apply: input.apply,
        mode: users,
        missing: missingUsers,
        sourceUsers: sourceUsers ?? [],
        roleIds,
      })),
    );
  }
  const all = [...roles, ...groups, ...missingUsers, ...(categories ? [categories] : [])];
  return {
    scope: [...input.parts],
    applied: input.apply,
    roles,
    categories,
    groups,
    missingUsers,
    notRestored,
    totals: {
      created:
        roles.filter((r) => r.action === "create" && r.status !== "failed").length +
        groups.filter((g) => g.action === "create" && g.status !== "failed").length,
      matched:
        roles.filter((r) => r.action === "match").length + groups.filter((g) => g.action === "match").length,
      failed: all.filter((o) => o.status === "failed").length,
    },
  };
}

/** Custom roles by name: matched, or created with the privileges the target offers. */
async function restoreRoles(input: StructureInput, blob: string, notes: string[]): Promise<RoleOutcome[]> {
  const source = await input.store.readNdjson(blob, roleRecordSchema);
  if (!source) {
    notes.push("Custom roles: this backup has no roles record (taken before roles were captured)");
    return [];
  }
  const refusal: RoleOutcome["error"] = { code: "ERR_TARGET_PRIVILEGES", message: "" };
  const existing = await refusedAs(refusal, () => targetRoles(input.portal));
  if (!existing) {
    // Whoever may not list the org's roles may not create them either.
    return source.map((role) => ({
      sourceId: role.id,
      name: role.name,
      action: "create",
      targetId: null,
      unsupportedPrivileges: [],
      status: "failed",
      error: { ...refusal, message: `The target refused to list its roles: ${refusal.message}` },
    }));
  }
  // An org administrator holds every privilege the org offers: what it lacks, the org lacks.
  const offered = new Set(input.self.privileges);
  const out: RoleOutcome[] = [];
  for (const role of source) {
    const targetId = existing.get(role.name.toLowerCase()) ?? null;
    const outcome: RoleOutcome = {
      sourceId: role.id,
      name: role.name,
      action: targetId ? "match" : "create",
      targetId,
      unsupportedPrivileges: targetId ? [] : role.privileges.filter((p) => !offered.has(p)),
      status: input.apply ? "done" : "planned",
    };
    if (input.apply && !targetId) await createRole(input.portal, role, outcome, offered);
    out.push(outcome);
  }
  return out;
}

/** The target's custom roles: lowercase name → id. */
async function targetRoles(portal: PortalClient): Promise<Map<string, string>> {
  const roles = new Map<string, string>();
  for await (const page of pages<PagedResponse & { roles?: Array<{ id: string; name: string }> }>(
    portal,
    "portals/self/roles",
  )) {
    for (const role of page.roles ?? []) roles.set(role.name.toLowerCase(), role.id);
  }
  return roles;
}

async function createRole(
  portal: PortalClient,
  role: RoleRecord,
  outcome: RoleOutcome,
  offered: ReadonlySet<string>,
): Promise<void> {
  await recordFailure(outcome, async () => {
    // Not repeated blindly: when the answer is lost, the role may exist all the same.
    const created = await writeOnce(
      (options) =>
        portal.json<{ id?: string }>(
          "portals/self/createRole",
          { name: role.name, description: role.description ?? "" },
          options,
        ),
      async () => {
        const id = (await targetRoles(portal)).get(role.name.toLowerCase());
        return id ? { id } : undefined;
      },
    );
    outcome.targetId = created.id ?? null;
    if (!created.id) throw new Error("createRole answered no role id");
    const privileges = role.privileges.filter((p) => offered.has(p));
    await portal.json(`portals/self/roles/${encodeURIComponent(created.id)}/setPrivileges`, {
      privileges: JSON.stringify({ privileges }),
    });
  });
}

/** The backup's category trees merged into the target's (by title, level by level). */
async function restoreCategories(
  input: StructureInput,
  blob: string,
  notes: string[],
): Promise<CategoriesOutcome | null> {
  const source = await input.store.readJson(blob, categoriesRecordSchema);
  if (!source) {
    notes.push("Content categories: this backup has no categories record (taken before they were captured)");
    return null;
  }
  const refusal = { code: "ERR_TARGET_PRIVILEGES", message: "" };
  const current = await refusedAs(refusal, () =>
    input.portal.json<{ categorySchema?: CategoryNode[] }>(
      "portals/self/categorySchema",
      {},
      { method: "GET" },
    ),
  );
  if (!current) return { action: "assign", added: [], status: "failed", error: refusal };
  const target = current.categorySchema ?? [];
  const merged = mergeCategoryTrees(target, source.categorySchema);
  const before = new Set(categoryPaths(target));
  const added = categoryPaths(merged).filter((p) => !before.has(p));
  const outcome: CategoriesOutcome = {
    action: target.length === 0 && added.length > 0 ? "assign" : added.length > 0 ? "merge" : "match",
    added,
    status: input.apply ? "done" : "planned",
  };
  if (input.apply && added.length > 0) {
    await recordFailure(outcome, () =>
      input.portal.json("portals/self/assignCategorySchema", {
        categorySchema: JSON.stringify({ categorySchema: merged }),
      }),
    );
  }
  return outcome;
}

/** `into` with every category of `from` it lacks; titles compare case-insensitively. */
export function mergeCategoryTrees(into: CategoryNode[], from: CategoryNode[]): CategoryNode[] {
  const out: CategoryNode[] = into.map((node) => ({ ...node }));
  for (const node of from) {
    const index = out.findIndex((n) => n.title.toLowerCase() === node.title.toLowerCase());
    const same = out[index];
    if (!same) out.push(node);
    else {
      const categories = mergeCategoryTrees(same.categories ?? [], node.categories ?? []);
      out[index] = categories.length > 0 ? { ...same, categories } : same;
    }
  }
  return out;
}

/** Every path of a tree, `/Categories/Parks/Trails`. */
export function categoryPaths(trees: CategoryNode[], prefix = ""): string[] {
  return trees.flatMap((node) => {
    const path = `${prefix}/${node.title}`;
    return [path, ...categoryPaths(node.categories ?? [], path)];
  });
}

/** The read's answer, or undefined when the target refused it (its message kept in `refusal`). */
async function refusedAs<T>(
  refusal: { code: string; message: string },
  read: () => Promise<T>,
): Promise<T | undefined> {
  const outcome: { status: string; error?: { code: string; message: string } } = { status: "done" };
  let value: T | undefined;
  await recordFailure(outcome, async () => {
    value = await read();
  });
  if (outcome.error) {
    refusal.code = outcome.error.code;
    refusal.message = outcome.error.message;
  }
  return value;
}
