import { z } from "zod";
import { newRunId } from "../backup/layout.js";
import { itemFailureSchema } from "../backup/manifest.js";
import { schemaVersion } from "../stored-document.js";
import {
  SCOPE_PARTS,
  scopeSchema,
  structureOutcomeSchema,
  USERS_MODES,
  usernameMapSchema,
  usersModeSchema,
} from "./structure-model.js";

/**
 * The restore's vocabulary: the request, the run record, the plan (what will be created or
 * overwritten, in which order, with which references remapped), the progress kept per item (what
 * makes a re-run idempotent) and the final report.
 */

export type RestoreMode = "new" | "overwrite";

export const ROW_MODES = ["diff", "replace"] as const;
export type RowMode = (typeof ROW_MODES)[number];

/** A row of a layer edited after the restored version: what restoring it in place undoes. */
export const editedRowSchema = z.object({
  layerId: z.number(),
  globalId: z.string(),
  /** The row's object id in the target now (null: deleted since, it comes back). */
  objectId: z.number().nullable(),
  change: z.enum(["added-since", "edited-since", "deleted-since"]),
});
export type EditedRow = z.infer<typeof editedRowSchema>;

/** A dry run's preview of a layer restored in place row by row. */
export const rowPreviewSchema = z.object({
  layerId: z.number(),
  mode: z.enum(ROW_MODES),
  adds: z.number(),
  updates: z.number(),
  deletes: z.number(),
  attachmentsAdded: z.number().optional(),
  attachmentsDeleted: z.number().optional(),
  /** The first rows edited after the version (the counts say how many in all). */
  editedSince: z.array(editedRowSchema),
});
export type RowPreview = z.infer<typeof rowPreviewSchema>;

const ITEM_ID = z.string().regex(/^[0-9a-f]{32}$/, "must be 32-character item ids");

export const restoreRequestSchema = z.strictObject({
  runId: z.string().trim().min(1).max(64),
  itemIds: z.array(ITEM_ID).min(1).max(10_000).optional(),
  target: z.strictObject({
    identityId: z.string().trim().min(1).max(64).optional(),
    owner: z.string().trim().min(1).max(256).optional(),
    folder: z.string().trim().min(1).max(256).optional(),
    mode: z.enum(["new", "overwrite"]),
    /**
     * Overwrite: how a hosted layer's rows go back. `diff` (default): only the rows that differ,
     * by GlobalID; `replace`: every row deleted, then the version's added (layers without GlobalIDs
     * are always restored so).
     */
    rows: z.enum(ROW_MODES).optional(),
  }),
  /** What to restore: items (default), groups, roles, categories, or all; one or a list. */
  scope: scopeSchema.optional(),
  /** Source username → target username, for owners and group members (orgs with other suffixes). */
  usernameMap: usernameMapSchema.optional(),
  /** The users the target lacks: `report` (default) or `invite` (needs a scope with groups). */
  users: usersModeSchema.optional(),
  dryRun: z.boolean().optional(),
});
export type RestoreRequest = z.infer<typeof restoreRequestSchema>;

/** Restore ids sort newest first like run ids: r-<inverted ms>-<random>. */
export function newRestoreId(now = Date.now()): string {
  return newRunId("r", now);
}
export const RESTORE_ID_PATTERN = /^r-\d{13}-[0-9a-z]{6}$/;

export const RESTORE_STATUSES = ["running", "completed", "completed-with-failures", "failed"] as const;
export type RestoreStatus = (typeof RESTORE_STATUSES)[number];

const count = z.number().int().nonnegative();

/** One restore, as its table row holds it (partition: the identity whose backup is restored). */
export const restoreRecordSchema = z.object({
  restoreId: z.string(),
  kind: z.literal("restore"),
  /** The identity whose backup is restored. */
  identityId: z.string(),
  runId: z.string(),
  target: z.object({
    identityId: z.string(),
    owner: z.string().optional(),
    folder: z.string().optional(),
    mode: z.enum(["new", "overwrite"]),
    rows: z.enum(ROW_MODES).optional(),
  }),
  /** Item ids asked for; absent: every item of the run. */
  itemIds: z.array(z.string()).optional(),
  /** The scope's parts; absent: items alone. */
  scope: z.array(z.enum(SCOPE_PARTS)).optional(),
  usernameMap: z.record(z.string(), z.string()).optional(),
  /** `invite`: missing users are invited or added; absent: reported only. */
  users: z.enum(USERS_MODES).optional(),
  status: z.enum(RESTORE_STATUSES),
  startedAt: z.string(),
  endedAt: z.string().optional(),
  itemsTotal: count,
  itemsRestored: count,
  itemsFailed: count,
  itemsSkipped: count,
  /** Blob names (relative to the identity's prefix) of the plan and the report. */
  plan: z.string().optional(),
  report: z.string().optional(),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
});
export type RestoreRecord = z.infer<typeof restoreRecordSchema>;

/** A restore as it starts: running, nothing restored yet. */
export function newRestoreRecord(
  fields: Pick<RestoreRecord, "identityId" | "runId" | "target" | "itemsTotal"> & Partial<RestoreRecord>,
): RestoreRecord {
  return {
    restoreId: newRestoreId(),
    kind: "restore",
    status: "running",
    startedAt: new Date().toISOString(),
    itemsRestored: 0,
    itemsFailed: 0,
    itemsSkipped: 0,
    ...fields,
  };
}

export type PlanKind = "item" | "feature-service" | "view";
export type PlanAction = "create" | "overwrite" | "skip";

const failure = z.object({ code: z.string(), message: z.string() });
const relationship = z.object({ type: z.string(), origin: z.string(), dest: z.string() });

export const planReferencesSchema = z.object({
  /** Item ids (old) of the restore set this item refers to: remapped to the new items. */
  remapped: z.array(z.string()),
  /** Service URLs (old) of restored services this item refers to. */
  urls: z.array(z.string()),
  /**
   * Ids that stay as they are: items of the backup not restored now, not in the backup at all, or
   * groups of the backed-up org that the target has no group for.
   */
  unchanged: z.array(
    z.object({ id: z.string(), reason: z.enum(["not-restored", "not-in-backup", "group-not-in-target"]) }),
  ),
  /** Service URLs of backed-up services that are not restored now. */
  unchangedUrls: z.array(z.string()),
  /** Group ids (old) of the backed-up org this item refers to: rewritten to the target's groups. */
  groups: z.array(z.string()).optional(),
});
export type PlanReferences = z.infer<typeof planReferencesSchema>;

export const planItemSchema = z.object({
  itemId: z.string(),
  title: z.string(),
  type: z.string(),
  kind: z.enum(["item", "feature-service", "view"]),
  action: z.enum(["create", "overwrite", "skip"]),
  /** Why the item is skipped (action "skip"). */
  reason: failure.optional(),
  /**
   * Items are restored level by level; every dependency sits on a lower level (cycles share one).
   * A skipped item has level -1.
   */
  level: z.number().int().min(-1),
  dependsOn: z.array(z.string()),
  versionPath: z.string().nullable(),
  /** Target owner and folder title (null: the owner's root folder). Overwrite keeps the item's own. */
  owner: z.string(),
  folder: z.string().nullable(),
  sourceOwner: z.string(),
  sourceFolder: z.string().nullable(),
  access: z.string(),
  /** Target group ids to share with; groups missing in the target by their source title. */
  groups: z.array(z.string()),
  missingGroups: z.array(z.string()),
  references: planReferencesSchema,
  /** Relationships (old ids) to re-create once both ends exist. */
  relationships: z.array(relationship),
  /** Hosted services: the name wanted for the new service, and the old service URL. */
  serviceName: z.string().optional(),
  sourceUrl: z.string().optional(),
  /** Hosted views: where their source is (old id when restored now, else the existing item). */
  viewSource: z
    .object({
      itemId: z.string(),
      restored: z.boolean(),
      url: z.string().nullable(),
      name: z.string().nullable(),
    })
    .optional(),
  /** Dry run of an overwrite: per layer, the rows that would change (and those edited since). */
  rowPreview: z.array(rowPreviewSchema).optional(),
  /** Content categories to assign once the item exists (scope with categories). */
  categories: z.array(z.string()).optional(),
});
export type PlanItem = z.infer<typeof planItemSchema>;

/** `restores/<restoreId>/plan.json` (schema version 1), also the answer of a dry run. */
export const restorePlanSchema = z.object({
  schemaVersion: schemaVersion(1),
  restoreId: z.string().nullable(),
  runId: z.string(),
  identityId: z.string(),
  source: z.object({ sharingUrl: z.string(), orgId: z.string().nullable() }),
  target: z.object({
    identityId: z.string(),
    orgId: z.string().nullable(),
    username: z.string(),
    sameOrg: z.boolean(),
    mode: z.enum(["new", "overwrite"]),
    owner: z.string().optional(),
    folder: z.string().optional(),
    rows: z.enum(ROW_MODES).optional(),
  }),
  /** Item ids per level, then batches of a level (one service alone, up to 8 other items). */
  levels: z.array(z.array(z.string())),
  batches: z.array(z.array(z.array(z.string()))),
  /** Every item asked for, in restore order; skipped ones last. */
  items: z.array(planItemSchema),
  missingGroups: z.array(z.object({ id: z.string(), title: z.string() })),
  /**
   * Source group id → target group id (the same group by id, one of the same title, or one the
   * structure step created), where they differ: group ids inside items are rewritten with the
   * item ids.
   */
  groupIds: z.record(z.string(), z.string()).optional(),
  warnings: z.array(z.string()),
  totals: z.object({ items: count, create: count, overwrite: count, skip: count }),
  /** Roles, categories and groups (a scope beyond items): done before the items, or planned. */
  structure: structureOutcomeSchema.optional(),
});
export type RestorePlan = z.infer<typeof restorePlanSchema>;

export type ItemStatus = "creating" | "created" | "done" | "failed" | "skipped";

/** What happened to one item so far; one table row per (restore, old item id). */
export interface ItemProgress {
  itemId: string;
  status: ItemStatus;
  action: "create" | "overwrite" | "skip";
  newId?: string;
  /** New service URL (hosted services). */
  newUrl?: string;
  serviceName?: string;
  /** Old layer id → new layer id, when the service gave other ids. */
  layerIds?: Record<string, number>;
  owner?: string;
  folderId?: string | null;
  /** typeKeyword that finds an item created just before a crash. */
  marker?: string;
  steps: {
    definition?: boolean;
    /** A multipart file upload committed. */
    data?: boolean;
    /** The item's fields written (last update of a new item; the update of an overwritten one). */
    item?: boolean;
    resources?: "started" | "done";
    features?: Record<string, "cleared" | "done">;
    /** Attachment records handled so far per layer, and the layers finished. */
    attachments?: Record<string, number>;
    attachmentsDone?: string[];
    sharing?: boolean;
    relationships?: boolean;
  };
  /** Old ids of the restore set that had no new id yet when this item's content was written. */
  pendingRefs?: string[];
  pendingRelationships?: Array<{ type: string; origin: string; dest: string }>;
  remapped?: { ids: number; urls: number };
  sharing?: { access: string; groups: string[]; missingGroups: string[]; notSharedWith: string[] };
  counts?: Record<string, number>;
  /** Rows edited after the version that a row-level restore put back (the first ones per layer). */
  editedSince?: EditedRow[];
  notes: string[];
  error?: { code: string; message: string };
  updatedAt: string;
}

export const reportItemSchema = z.object({
  itemId: z.string(),
  title: z.string(),
  type: z.string(),
  action: z.enum(["create", "overwrite", "skip"]),
  status: z.enum(["restored", "failed", "skipped", "pending"]),
  newId: z.string().nullable(),
  newUrl: z.string().optional(),
  owner: z.string().optional(),
  notes: z.array(z.string()),
  error: failure.optional(),
  counts: z.record(z.string(), z.number()).optional(),
  /** Rows edited after the version that the restore put back (row-level restore in place). */
  editedSince: z.array(editedRowSchema).optional(),
});
export type ReportItem = z.infer<typeof reportItemSchema>;

export const RESTORE_REPORT_SCHEMA_VERSION = 1;

/**
 * `restores/<restoreId>/report.json`, schema version 1. Reports written before the field
 * existed hold the same fields and read as version 1.
 */
export const restoreReportSchema = z.object({
  schemaVersion: schemaVersion(RESTORE_REPORT_SCHEMA_VERSION).default(RESTORE_REPORT_SCHEMA_VERSION),
  restoreId: z.string(),
  runId: z.string(),
  identityId: z.string(),
  targetIdentityId: z.string(),
  mode: z.enum(["new", "overwrite"]),
  status: z.enum(RESTORE_STATUSES),
  startedAt: z.string(),
  endedAt: z.string(),
  totals: z.object({ items: count, restored: count, failed: count, skipped: count }),
  /** Old item id → new item id (overwrite: the same id). */
  idMap: z.record(z.string(), z.string()),
  /** Old service URL → new service URL. */
  urlMap: z.record(z.string(), z.string()),
  items: z.array(reportItemSchema),
  failures: z.array(itemFailureSchema),
  /** References left as they were, per item that holds them. */
  unchangedReferences: z.array(z.object({ itemId: z.string(), reference: z.string(), reason: z.string() })),
  missingGroups: z.array(z.object({ id: z.string(), title: z.string() })),
  notSharedWith: z.array(z.object({ itemId: z.string(), groups: z.array(z.string()) })),
  /** Roles, categories and groups restored before the items (a scope beyond items). */
  structure: structureOutcomeSchema.optional(),
});
export type RestoreReport = z.infer<typeof restoreReportSchema>;
