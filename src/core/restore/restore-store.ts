import type { TableClient } from "@azure/data-tables";
import { isStatus } from "../identities/table-identity-store.js";
import { type ItemProgress, type RestoreRecord, restoreRecordSchema } from "./model.js";

interface DocumentEntity {
  partitionKey: string;
  rowKey: string;
  document: string;
}

/**
 * Restore records and per-item progress, in the runs table next to the backup runs:
 *
 * - the record: partition = the identity whose backup is restored, row `~restore-<restoreId>`
 *   (rows from `~` on stay out of the backup run listing, like the backup lock);
 * - progress: partition `~restore-<restoreId>`, one row per old item id. A row is written before
 *   each portal write that creates something and right after it, so a re-run finds what exists.
 */
export class RestoreStore {
  constructor(private readonly table: TableClient) {}

  async create(record: RestoreRecord): Promise<void> {
    await this.table.createEntity(recordEntity(record));
  }

  async get(restoreId: string): Promise<RestoreRecord | undefined> {
    const rows = this.table.listEntities<DocumentEntity>({
      queryOptions: { filter: `RowKey eq '${quote(recordRow(restoreId))}'` },
    });
    for await (const row of rows) return recordOf(row);
    return undefined;
  }

  /** Restores of an identity's backups, newest first. */
  async list(identityId: string, limit = 100): Promise<RestoreRecord[]> {
    const out: RestoreRecord[] = [];
    const rows = this.table.listEntities<DocumentEntity>({
      queryOptions: {
        filter: `PartitionKey eq '${quote(identityId)}' and RowKey ge '~restore-' and RowKey lt '~restore.'`,
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
    restoreId: string,
    change: (record: RestoreRecord) => void,
  ): Promise<RestoreRecord> {
    for (let attempt = 0; ; attempt++) {
      const row = await this.table.getEntity<DocumentEntity>(identityId, recordRow(restoreId));
      const record = recordOf(row);
      change(record);
      try {
        await this.table.updateEntity(recordEntity(record), "Replace", { etag: row.etag });
        return record;
      } catch (error) {
        if (!isStatus(error, 412) || attempt >= 5) throw error;
      }
    }
  }

  /**
   * Ends a restore that is still running as `failed` with the reason; one that has already ended
   * keeps its outcome, so callers may race: `ended` says whether this call did it.
   */
  async endAsFailed(
    identityId: string,
    restoreId: string,
    error: { code: string; message: string },
  ): Promise<{ record: RestoreRecord; ended: boolean }> {
    let ended = false;
    const record = await this.update(identityId, restoreId, (next) => {
      ended = next.status === "running";
      if (!ended) return;
      next.status = "failed";
      next.endedAt = new Date().toISOString();
      next.error = error;
    });
    return { record, ended };
  }

  async getItem(restoreId: string, itemId: string): Promise<ItemProgress | undefined> {
    try {
      const row = await this.table.getEntity<DocumentEntity>(itemPartition(restoreId), itemId);
      return JSON.parse(row.document) as ItemProgress;
    } catch (error) {
      if (isStatus(error, 404)) return undefined;
      throw error;
    }
  }

  /** Only one activity works on an item at a time, so the last write wins. */
  async putItem(restoreId: string, progress: ItemProgress): Promise<void> {
    const document = JSON.stringify(withinRowLimit({ ...progress, updatedAt: new Date().toISOString() }));
    await this.table.upsertEntity(
      { partitionKey: itemPartition(restoreId), rowKey: progress.itemId, document },
      "Replace",
    );
  }

  async *items(restoreId: string): AsyncGenerator<ItemProgress> {
    const rows = this.table.listEntities<DocumentEntity>({
      queryOptions: { filter: `PartitionKey eq '${quote(itemPartition(restoreId))}'` },
    });
    for await (const row of rows) yield JSON.parse(row.document) as ItemProgress;
  }
}

function recordRow(restoreId: string): string {
  return `~restore-${restoreId}`;
}

function itemPartition(restoreId: string): string {
  return `~restore-${restoreId}`;
}

function recordEntity(record: RestoreRecord): DocumentEntity {
  return {
    partitionKey: record.identityId,
    rowKey: recordRow(record.restoreId),
    document: JSON.stringify(record),
  };
}

function recordOf(row: DocumentEntity): RestoreRecord {
  const parsed = restoreRecordSchema.safeParse(JSON.parse(row.document));
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(
      `The record of restore ${row.rowKey} is damaged: ${issue?.path.join(".")}: ${issue?.message}`,
    );
  }
  return parsed.data;
}

function quote(value: string): string {
  return value.replace(/'/g, "''");
}

/** A table string property holds 32K UTF-16 characters: long notes are cut, never the ids. */
function withinRowLimit(progress: ItemProgress): ItemProgress {
  const limit = 28_000;
  if (JSON.stringify(progress).length <= limit) return progress;
  const notes = progress.notes.slice(0, 20).map((n) => (n.length > 500 ? `${n.slice(0, 500)}…` : n));
  if (progress.notes.length > 20) notes.push(`… and ${progress.notes.length - 20} more notes`);
  const trimmed: ItemProgress = { ...progress, notes };
  if (trimmed.pendingRefs && trimmed.pendingRefs.length > 200)
    trimmed.pendingRefs = trimmed.pendingRefs.slice(0, 200);
  return trimmed;
}
