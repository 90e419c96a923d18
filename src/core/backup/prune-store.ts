import type { TableClient } from "@azure/data-tables";
import { z } from "zod";
import { DocumentRows, quoteOData } from "../tables/document-rows.js";
import { newRunId } from "./layout.js";

const count = z.number().int().nonnegative();

/** What a prune did, as its record and report count it. */
export const pruneCountsSchema = z.object({
  runsKept: count,
  runsTrimmed: count,
  runsForgotten: count,
  blobsDeleted: count,
  bytesDeleted: count,
  blobsKeptByPolicy: count,
});
export type PruneCounts = z.infer<typeof pruneCountsSchema>;

export const pruneRecordSchema = z.object({
  pruneId: z.string(),
  kind: z.literal("prune"),
  identityId: z.string(),
  trigger: z.enum(["manual", "schedule"]),
  status: z.enum(["running", "completed", "failed"]),
  startedAt: z.string(),
  endedAt: z.string().optional(),
  counts: pruneCountsSchema.optional(),
  /** The report blob, relative to the identity's folder. */
  report: z.string().optional(),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
});
export type PruneRecord = z.infer<typeof pruneRecordSchema>;

export function newPruneRecord(identityId: string, trigger: PruneRecord["trigger"]): PruneRecord {
  return {
    pruneId: newRunId("p"),
    kind: "prune",
    identityId,
    trigger,
    status: "running",
    startedAt: new Date().toISOString(),
  };
}

const ROW_PREFIX = "~prune-";

/**
 * Prune records in the runs table next to the backup runs: partition = the identity, row
 * `~prune-<pruneId>` (rows from `~` on stay out of the backup run listing, like restores).
 */
export class PruneStore {
  private readonly rows: DocumentRows<typeof pruneRecordSchema>;

  constructor(table: TableClient) {
    this.rows = new DocumentRows(table, pruneRecordSchema, "prune");
  }

  create(record: PruneRecord): Promise<void> {
    return this.rows.create(record.identityId, `${ROW_PREFIX}${record.pruneId}`, record);
  }

  find(identityId: string, pruneId: string): Promise<PruneRecord | undefined> {
    return this.rows.find(identityId, `${ROW_PREFIX}${pruneId}`);
  }

  get(pruneId: string): Promise<PruneRecord | undefined> {
    return this.rows.findInAnyPartition(`${ROW_PREFIX}${pruneId}`);
  }

  /** The identity's prunes, newest first. */
  list(identityId: string, limit = 100): Promise<PruneRecord[]> {
    return this.rows.list(
      `PartitionKey eq '${quoteOData(identityId)}' and RowKey ge '${ROW_PREFIX}' and RowKey lt '~prune.'`,
      limit,
    );
  }

  update(identityId: string, pruneId: string, change: (record: PruneRecord) => void): Promise<PruneRecord> {
    return this.rows.update(identityId, `${ROW_PREFIX}${pruneId}`, change);
  }
}
