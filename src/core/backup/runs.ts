import type { TableClient } from "@azure/data-tables";
import { z } from "zod";
import { PreconditionFailedError } from "../errors.js";
import { isStatus } from "../identities/table-identity-store.js";
import { DocumentRows, quoteOData } from "../tables/document-rows.js";

const filterList = z.array(z.string().trim().min(1).max(256)).min(1).max(1000);

/** Which items a run backs up; absent: the whole org. */
export const backupFilterSchema = z.strictObject({
  types: filterList.optional(),
  owners: filterList.optional(),
  folders: filterList.optional(),
  tags: filterList.optional(),
  itemIds: z
    .array(z.string().regex(/^[0-9a-f]{32}$/, "must be 32-character item ids"))
    .min(1)
    .max(1000)
    .optional(),
});

export const RUN_STATUSES = [
  "running",
  "completed",
  "completed-with-failures",
  "failed",
  "cancelled",
] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

const count = z.number().int().nonnegative();
const runError = z.object({ code: z.string(), message: z.string() });

/** Portal traffic of a run: what the org's budget paid and what waiting cost. */
export const trafficSchema = z.object({
  requests: count,
  retries: count,
  throttled: count,
  requestUnits: z.number().nonnegative(),
  budgetWaitMs: z.number().nonnegative(),
});

/** A run's record as stored: read back through this schema, so a damaged row fails loudly. */
const runRecordSchema = z.object({
  runId: z.string(),
  identityId: z.string(),
  kind: z.literal("backup"),
  name: z.string(),
  trigger: z.enum(["manual", "schedule"]),
  status: z.enum(RUN_STATUSES),
  startedAt: z.string(),
  endedAt: z.string().optional(),
  /** Set by a cancel: the run's batches stop at once and the run ends `cancelled`. */
  cancelRequestedAt: z.string().optional(),
  filter: backupFilterSchema.optional(),
  itemsTotal: count,
  itemsExported: count,
  itemsUnchanged: count,
  itemsFailed: count,
  bytes: count,
  traffic: trafficSchema.optional(),
  manifest: z.string().optional(),
  error: runError.optional(),
  /**
   * Set by a prune that forgot this run while it was the last to see items since deleted from the
   * org: its manifest now lists only those items, kept until `until` (keepDeletedDays after the run).
   */
  heldForDeletedItems: z
    .object({ items: count, until: z.string(), pruneId: z.string(), trimmedAt: z.string() })
    .optional(),
});

export type RunRecord = z.infer<typeof runRecordSchema>;

/** A backup run as it starts: running, nothing counted yet. */
export function newRunRecord(
  fields: Pick<RunRecord, "runId" | "identityId" | "name" | "trigger"> & Partial<RunRecord>,
): RunRecord {
  return {
    kind: "backup",
    status: "running",
    startedAt: new Date().toISOString(),
    itemsTotal: 0,
    itemsExported: 0,
    itemsUnchanged: 0,
    itemsFailed: 0,
    bytes: 0,
    ...fields,
  };
}

const LOCK_ROW = "~lock-backup";

/** How many runs a list shows, newest first. */
export const RUN_LIST_LIMIT = 100;

/** Run records (one row per run, partitioned by identity) and the one-backup-at-a-time lock. */
export class RunStore {
  private readonly rows: DocumentRows<typeof runRecordSchema>;

  constructor(private readonly table: TableClient) {
    this.rows = new DocumentRows(table, runRecordSchema, "run");
  }

  create(run: RunRecord): Promise<void> {
    return this.rows.create(run.identityId, run.runId, run);
  }

  get(runId: string): Promise<RunRecord | undefined> {
    return this.rows.findInAnyPartition(runId);
  }

  /** A point read, for when the identity is known (cheaper than `get`). */
  find(identityId: string, runId: string): Promise<RunRecord | undefined> {
    return this.rows.find(identityId, runId);
  }

  /** Newest first (run ids sort that way). */
  list(identityId: string, limit = RUN_LIST_LIMIT): Promise<RunRecord[]> {
    return this.rows.list(`PartitionKey eq '${quoteOData(identityId)}' and RowKey lt '~'`, limit);
  }

  /** Removes a run's record (a prune forgot it); one already gone is no error. */
  async delete(identityId: string, runId: string): Promise<void> {
    try {
      await this.table.deleteEntity(identityId, runId);
    } catch (error) {
      if (!isStatus(error, 404)) throw error;
    }
  }

  /** Read-modify-write with the row's ETag, retried on a concurrent change. */
  update(identityId: string, runId: string, change: (run: RunRecord) => void): Promise<RunRecord> {
    return this.rows.update(identityId, runId, change);
  }

  /**
   * Ends a run that is still running as `failed` with the reason and releases its lock. A run that
   * has already ended keeps its outcome, so callers may race: `ended` says whether this call did it.
   */
  async endAsFailed(
    identityId: string,
    runId: string,
    error: { code: string; message: string },
  ): Promise<{ run: RunRecord; ended: boolean }> {
    let ended = false;
    const run = await this.update(identityId, runId, (next) => {
      ended = next.status === "running";
      if (!ended) return;
      next.status = "failed";
      next.endedAt = new Date().toISOString();
      next.error = error;
    });
    if (ended) await this.releaseLock(identityId, runId);
    return { run, ended };
  }

  /** Marks a running run to be cancelled (once: the first request's time stays). */
  async requestCancel(identityId: string, runId: string): Promise<RunRecord> {
    return this.update(identityId, runId, (next) => {
      if (next.status === "running") next.cancelRequestedAt ??= new Date().toISOString();
    });
  }

  /** Takes the identity's backup lock; returns the holder's run id when it is taken. */
  async acquireLock(identityId: string, runId: string): Promise<string | undefined> {
    try {
      await this.table.createEntity({ partitionKey: identityId, rowKey: LOCK_ROW, runId });
      return undefined;
    } catch (error) {
      if (!isStatus(error, 409)) throw error;
      const row = await this.table.getEntity<{ runId: string }>(identityId, LOCK_ROW);
      return row.runId;
    }
  }

  /** Replaces a lock whose holder is known to be finished (the holder may have let it go meanwhile). */
  async takeOverLock(identityId: string, staleRunId: string, runId: string): Promise<void> {
    const row = await this.table
      .getEntity<{ runId: string }>(identityId, LOCK_ROW)
      .catch((error: unknown) => {
        if (isStatus(error, 404)) return undefined;
        throw error;
      });
    if (!row) {
      if (await this.acquireLock(identityId, runId)) throw lockChangedHands();
      return;
    }
    if (row.runId !== staleRunId) throw lockChangedHands();
    await this.table.updateEntity({ partitionKey: identityId, rowKey: LOCK_ROW, runId }, "Replace", {
      etag: row.etag,
    });
  }

  async releaseLock(identityId: string, runId: string): Promise<void> {
    try {
      const row = await this.table.getEntity<{ runId: string }>(identityId, LOCK_ROW);
      if (row.runId === runId) await this.table.deleteEntity(identityId, LOCK_ROW, { etag: row.etag });
    } catch (error) {
      if (!isStatus(error, 404) && !isStatus(error, 412)) throw error;
    }
  }
}

function lockChangedHands(): PreconditionFailedError {
  return new PreconditionFailedError("The backup lock changed hands");
}
