import { z } from "zod";
import { newRunId } from "../backup/layout.js";

/**
 * The restore's vocabulary: the request, the run record, the plan (what will be created or
 * overwritten, in which order, with which references remapped), the progress kept per item (what
 * makes a re-run idempotent) and the final report.
 */

export type RestoreMode = "new" | "overwrite";

const ITEM_ID = z.string().regex(/^[0-9a-f]{32}$/, "must be 32-character item ids");

export const restoreRequestSchema = z.strictObject({
  runId: z.string().trim().min(1).max(64),
  itemIds: z.array(ITEM_ID).min(1).max(10_000).optional(),
  target: z.strictObject({
    identityId: z.string().trim().min(1).max(64).optional(),
    owner: z.string().trim().min(1).max(256).optional(),
    folder: z.string().trim().min(1).max(256).optional(),
    mode: z.enum(["new", "overwrite"]),
  }),
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
  }),
  /** Item ids asked for; absent: every item of the run. */
  itemIds: z.array(z.string()).optional(),
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

export type PlanKind = "item" | "feature-service" | "view";
export type PlanAction = "create" | "overwrite" | "skip";

export interface PlanReferences {
  /** Item ids (old) of the restore set this item refers to: remapped to the new items. */
  remapped: string[];
  /** Service URLs (old) of restored services this item refers to. */
  urls: string[];
  /** Ids that stay as they are: items of the backup not restored now, or not in the backup at all. */
  unchanged: Array<{ id: string; reason: "not-restored" | "not-in-backup" }>;
  /** Service URLs of backed-up services that are not restored now. */
  unchangedUrls: string[];
}

export interface PlanItem {
  itemId: string;
  title: string;
  type: string;
  kind: PlanKind;
  action: PlanAction;
  /** Why the item is skipped (action "skip"). */
  reason?: { code: string; message: string };
  /** Items are restored level by level; every dependency sits on a lower level (cycles share one). */
  level: number;
  dependsOn: string[];
  versionPath: string | null;
  /** Target owner and folder title (null: the owner's root folder). Overwrite keeps the item's own. */
  owner: string;
  folder: string | null;
  sourceOwner: string;
  sourceFolder: string | null;
  access: string;
  /** Target group ids to share with; groups missing in the target by their source title. */
  groups: string[];
  missingGroups: string[];
  references: PlanReferences;
  /** Relationships (old ids) to re-create once both ends exist. */
  relationships: Array<{ type: string; origin: string; dest: string }>;
  /** Hosted services: the name wanted for the new service, and the old service URL. */
  serviceName?: string;
  sourceUrl?: string;
  /** Hosted views: where their source is (old id when restored now, else the existing item). */
  viewSource?: { itemId: string; restored: boolean; url: string | null; name: string | null };
}

export interface RestorePlan {
  schemaVersion: 1;
  restoreId: string | null;
  runId: string;
  identityId: string;
  source: { sharingUrl: string; orgId: string | null };
  target: {
    identityId: string;
    orgId: string | null;
    username: string;
    sameOrg: boolean;
    mode: RestoreMode;
    owner?: string;
    folder?: string;
  };
  /** Item ids per level, then batches of a level (one service alone, up to 8 other items). */
  levels: string[][];
  batches: string[][][];
  /** Every item asked for, in restore order; skipped ones last. */
  items: PlanItem[];
  missingGroups: Array<{ id: string; title: string }>;
  warnings: string[];
  totals: { items: number; create: number; overwrite: number; skip: number };
}

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
  notes: string[];
  error?: { code: string; message: string };
  updatedAt: string;
}

export interface ReportItem {
  itemId: string;
  title: string;
  type: string;
  action: PlanAction;
  status: "restored" | "failed" | "skipped" | "pending";
  newId: string | null;
  newUrl?: string;
  owner?: string;
  notes: string[];
  error?: { code: string; message: string };
  counts?: Record<string, number>;
}

export interface RestoreReport {
  restoreId: string;
  runId: string;
  identityId: string;
  targetIdentityId: string;
  mode: RestoreMode;
  status: RestoreStatus;
  startedAt: string;
  endedAt: string;
  totals: { items: number; restored: number; failed: number; skipped: number };
  /** Old item id → new item id (overwrite: the same id). */
  idMap: Record<string, string>;
  /** Old service URL → new service URL. */
  urlMap: Record<string, string>;
  items: ReportItem[];
  failures: Array<{ itemId: string; title: string; type: string; code: string; message: string }>;
  /** References left as they were, per item that holds them. */
  unchangedReferences: Array<{ itemId: string; reference: string; reason: string }>;
  missingGroups: Array<{ id: string; title: string }>;
  notSharedWith: Array<{ itemId: string; groups: string[] }>;
}

export function restoreBlobPrefix(restoreId: string): string {
  return `restores/${restoreId}/`;
}
