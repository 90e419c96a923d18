import { z } from "zod";
import { PortalError } from "../arcgis/portal-errors.js";
import { isSystemicFailure } from "../failures.js";

/**
 * What a restore's `scope` asks for beyond items (custom roles, the content category schema,
 * groups with their members), and what the structure step did or — in a dry run — would do.
 * The outcome is stored in the plan (the step runs before the plan is built, so items are shared
 * into the groups it created) and copied into the report.
 */

/** What a scope can name besides `"all"`. */
export const SCOPE_PARTS = ["items", "groups", "roles", "categories"] as const;
export type ScopePart = (typeof SCOPE_PARTS)[number];
export const RESTORE_SCOPES = [...SCOPE_PARTS, "all"] as const;
export type RestoreScope = (typeof RESTORE_SCOPES)[number];

/** `"all"`, one part, or a list of parts; absent: items alone (a restore as it always was). */
export const scopeSchema = z.union([z.enum(RESTORE_SCOPES), z.array(z.enum(RESTORE_SCOPES)).min(1).max(5)]);

/**
 * Source username → target username, for orgs whose usernames differ (another org's suffix). An
 * entry `"*_contoso": "*_fabrikam"` maps every name with that suffix; exact entries win. Kept in
 * the restore's record (one table row), hence at most 300 entries.
 */
export const MAX_USERNAME_MAP = 300;
export const usernameMapSchema = z
  .record(z.string().trim().min(1).max(128), z.string().trim().min(1).max(128))
  .refine((map) => Object.keys(map).length <= MAX_USERNAME_MAP, `at most ${MAX_USERNAME_MAP} entries`)
  .refine(
    (map) => Object.entries(map).every(([from, to]) => from.startsWith("*") === to.startsWith("*")),
    'a suffix entry maps "*<suffix>" to "*<suffix>"',
  );

/**
 * What a restore does with the users the target lacks: `report` (default) lists them; `invite`
 * invites them on ArcGIS Online and adds identity-provider accounts on ArcGIS Enterprise.
 */
export const USERS_MODES = ["report", "invite"] as const;
export type UsersMode = (typeof USERS_MODES)[number];
export const usersModeSchema = z.enum(USERS_MODES);

/** The parts a scope stands for, in the order the structure step handles them. */
export function scopeParts(scope: RestoreScope | RestoreScope[] | undefined): ScopePart[] {
  const asked = scope === undefined ? ["items"] : Array.isArray(scope) ? scope : [scope];
  const all = asked.includes("all");
  const order: ScopePart[] = ["roles", "categories", "groups", "items"];
  return order.filter((part) => all || asked.includes(part));
}

export function hasStructure(parts: readonly ScopePart[]): boolean {
  return parts.some((p) => p !== "items");
}

/** The target username for a source one: the map's exact entry, else its suffix entry, else the same. */
export function mapUsername(username: string, usernameMap: Record<string, string> | undefined): string {
  if (!usernameMap) return username;
  const lower = username.toLowerCase();
  const entries = Object.entries(usernameMap);
  const exact = usernameMap[username] ?? entries.find(([from]) => from.toLowerCase() === lower)?.[1];
  if (exact) return exact;
  const suffix = entries
    .filter(([from]) => from.startsWith("*") && lower.endsWith(from.slice(1).toLowerCase()))
    .sort((a, b) => b[0].length - a[0].length)[0];
  if (!suffix) return username;
  return `${username.slice(0, username.length - (suffix[0].length - 1))}${suffix[1].slice(1)}`;
}

/** The target's group for a source group: the same group (same org, by id), else one of the same title. */
export function matchGroup<G>(
  groups: { byId: ReadonlyMap<string, G>; byTitle: ReadonlyMap<string, G> },
  sameOrg: boolean,
  source: { id: string; title?: string | undefined },
): G | undefined {
  return (
    (sameOrg ? groups.byId.get(source.id) : undefined) ??
    (source.title !== undefined ? groups.byTitle.get(source.title.toLowerCase()) : undefined)
  );
}

const status = z.enum(["planned", "done", "failed", "skipped"]);
const error = z.object({ code: z.string(), message: z.string() });

export const roleOutcomeSchema = z.object({
  sourceId: z.string(),
  name: z.string(),
  action: z.enum(["create", "match"]),
  targetId: z.string().nullable(),
  /** Privileges of the backed-up role that the target org does not offer: left out. */
  unsupportedPrivileges: z.array(z.string()),
  status,
  error: error.optional(),
});

export const categoriesOutcomeSchema = z.object({
  /** assign: the target had none; merge: categories added to the target's; match: nothing to add. */
  action: z.enum(["assign", "merge", "match"]),
  /** Category paths (`/Categories/Parks`) the target gains. */
  added: z.array(z.string()),
  status,
  error: error.optional(),
});

export const groupOutcomeSchema = z.object({
  sourceId: z.string(),
  title: z.string(),
  action: z.enum(["create", "match"]),
  targetId: z.string().nullable(),
  /** Target usernames added (or, planned, to add) with their role in the group. */
  members: z.array(z.object({ username: z.string(), memberType: z.enum(["admin", "member"]) })),
  /** Source usernames whose (mapped) user is not in the target. */
  missingMembers: z.array(z.string()),
  /** Usernames the target refused to add. */
  notAdded: z.array(z.string()),
  thumbnail: z.boolean(),
  categorySchema: z.boolean(),
  notes: z.array(z.string()),
  status,
  error: error.optional(),
});

export const missingUserSchema = z.object({
  username: z.string(),
  /** The target username looked for (after usernameMap). */
  targetUsername: z.string(),
  role: z.string().nullable(),
  userType: z.string().nullable(),
  groups: z.array(z.string()),
  /** With `users: "invite"`: an invitation (Online) or an identity-provider account (Enterprise). */
  action: z.enum(["invite", "create"]).optional(),
  /** planned (dry run), invited, created, pending (invited before), skipped or failed (see reason). */
  status: z.enum(["planned", "invited", "created", "pending", "skipped", "failed"]).optional(),
  reason: z.string().optional(),
});

export const structureOutcomeSchema = z.object({
  scope: z.array(z.enum(SCOPE_PARTS)),
  applied: z.boolean(),
  roles: z.array(roleOutcomeSchema),
  categories: categoriesOutcomeSchema.nullable(),
  groups: z.array(groupOutcomeSchema),
  /** Users of the backup the target lacks: invited or added only with `users: "invite"`. */
  missingUsers: z.array(missingUserSchema),
  /** What the step does not do, and why. */
  notRestored: z.array(z.string()),
  totals: z.object({
    created: z.number().int().nonnegative(),
    matched: z.number().int().nonnegative(),
    failed: z.number().int().nonnegative(),
  }),
});
export type StructureOutcome = z.infer<typeof structureOutcomeSchema>;
export type RoleOutcome = z.infer<typeof roleOutcomeSchema>;
export type GroupOutcome = z.infer<typeof groupOutcomeSchema>;
export type CategoriesOutcome = z.infer<typeof categoriesOutcomeSchema>;
export type MissingUser = z.infer<typeof missingUserSchema>;

export const USERS_NOT_CREATED =
  "Users are never created: the plan lists those the target lacks (missingUsers); invite or create them (or restore with users: invite), then restore again with the same scope";
export const USERS_INVITED =
  "Missing users are invited (ArcGIS Online) or added as identity-provider accounts (ArcGIS Enterprise) as the request asks; built-in Enterprise accounts are never created, a restore cannot know their password";

export const NOT_RESTORED = [
  USERS_NOT_CREATED,
  "Users' roles, user types and licenses are not changed in the target",
  "Group ownership stays with the restoring identity's user; the original owner (when in the target) becomes a group manager",
  "Portal settings (home page, basemap gallery, featured content, default extent) are kept in the backup (org/settings.json), not written",
  "Items' categories within a group's own category schema are not assigned",
  "Ids of groups the target has no group for are left as they are inside items (the others are rewritten to the target's groups with the item ids)",
];

/**
 * Runs a write; a refusal by the portal marks the outcome failed with its reason, an outage or a
 * refused sign-in is thrown (the activity is retried, and finds by name what this attempt created).
 */
export async function recordFailure(
  outcome: { status: string; error?: { code: string; message: string } },
  write: () => Promise<unknown>,
): Promise<void> {
  try {
    await write();
  } catch (error) {
    if (isSystemicFailure(error) || !(error instanceof Error)) throw error;
    outcome.status = "failed";
    outcome.error = {
      code: error instanceof PortalError ? error.code : "ERR_STRUCTURE",
      message: error.message,
    };
  }
}
