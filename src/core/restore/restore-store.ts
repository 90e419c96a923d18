import type { TableClient } from "@azure/data-tables";
import { isStatus } from "../identities/table-identity-store.js";
import { DocumentRows, quoteOData } from "../tables/document-rows.js";
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
  private readonly records: DocumentRows<typeof restoreRecordSchema>;

  constructor(private readonly table: TableClient) {
    this.records = new DocumentRows(table, restoreRecordSchema, "restore");
  }

  create(record: RestoreRecord): Promise<void> {
    return this.records.create(record.identityId, recordRow(record.restoreId), record);
  }

  get(restoreId: string): Promise<RestoreRecord | undefined> {
    return this.records.findInAnyPartition(recordRow(restoreId));
  }

  /** Restores of an identity's backups, newest first. */
  list(identityId: string, limit = 100): Promise<RestoreRecord[]> {
    return this.records.list(
      `PartitionKey eq '${quoteOData(identityId)}' and RowKey ge '~restore-' and RowKey lt '~restore.'`,
      limit,
    );
  }

  /** Read-modify-write with the row's ETag, retried on a concurrent change. */
  update(
    identityId: string,
    restoreId: string,
    change: (record: RestoreRecord) => void,
  ): Promise<RestoreRecord> {
    return this.records.update(identityId, recordRow(restoreId), change);
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
      queryOptions: { filter: `PartitionKey eq '${quoteOData(itemPartition(restoreId))}'` },
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
