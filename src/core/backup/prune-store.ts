import type { TableClient } from "@azure/data-tables";
import { z } from "zod";
import { isStatus } from "../identities/table-identity-store.js";
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

interface DocumentEntity {
  partitionKey: string;
  rowKey: string;
  document: string;
}

const ROW_PREFIX = "~prune-";

/**
 * Prune records in the runs table next to the backup runs: partition = the identity, row
 * `~prune-<pruneId>` (rows from `~` on stay out of the backup run listing, like restores).
 */
export class PruneStore {
  constructor(private readonly table: TableClient) {}

  async create(record: PruneRecord): Promise<void> {
    await this.table.createEntity(entityOf(record));
  }

  async find(identityId: string, pruneId: string): Promise<PruneRecord | undefined> {
    try {
      return recordOf(await this.table.getEntity<DocumentEntity>(identityId, `${ROW_PREFIX}${pruneId}`));
    } catch (error) {
      if (isStatus(error, 404)) return undefined;
      throw error;
    }
  }

  async get(pruneId: string): Promise<PruneRecord | undefined> {
    const rows = this.table.listEntities<DocumentEntity>({
      queryOptions: { filter: `RowKey eq '${ROW_PREFIX}${pruneId.replace(/'/g, "''")}'` },
    });
    for await (const row of rows) return recordOf(row);
    return undefined;
  }

  /** The identity's prunes, newest first. */
  async list(identityId: string, limit = 100): Promise<PruneRecord[]> {
    const out: PruneRecord[] = [];
    const rows = this.table.listEntities<DocumentEntity>({
      queryOptions: {
        filter: `PartitionKey eq '${identityId.replace(/'/g, "''")}' and RowKey ge '${ROW_PREFIX}' and RowKey lt '~prune.'`,
      },
    });
    for await (const row of rows) {
      out.push(recordOf(row));
      if (out.length >= limit) break;
    }
    return out;
  }

  /** Read-modify-write with the row's ETag, retried on a concurrent change. */
  async update(
    identityId: string,
    pruneId: string,
    change: (record: PruneRecord) => void,
  ): Promise<PruneRecord> {
    for (let attempt = 0; ; attempt++) {
      const row = await this.table.getEntity<DocumentEntity>(identityId, `${ROW_PREFIX}${pruneId}`);
      const record = recordOf(row);
      change(record);
      try {
        await this.table.updateEntity(entityOf(record), "Replace", { etag: row.etag });
        return record;
      } catch (error) {
        if (!isStatus(error, 412) || attempt >= 5) throw error;
      }
    }
  }
}

function entityOf(record: PruneRecord): DocumentEntity {
  return {
    partitionKey: record.identityId,
    rowKey: `${ROW_PREFIX}${record.pruneId}`,
    document: JSON.stringify(record),
  };
}

function recordOf(row: DocumentEntity): PruneRecord {
  const parsed = pruneRecordSchema.safeParse(JSON.parse(row.document));
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(
      `The record of prune ${row.rowKey} is damaged: ${issue?.path.join(".")}: ${issue?.message}`,
    );
  }
  return parsed.data;
}
