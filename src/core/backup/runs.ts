import type { TableClient } from "@azure/data-tables";
import { PreconditionFailedError } from "../errors.js";
import { isStatus } from "../identities/table-identity-store.js";
import type { BackupFilter } from "./inventory.js";

export type RunStatus = "running" | "completed" | "completed-with-failures" | "failed" | "cancelled";

export interface RunCounts {
  itemsTotal: number;
  itemsExported: number;
  itemsUnchanged: number;
  itemsFailed: number;
  bytes: number;
}

/** Portal traffic of a run: what the org's budget paid and what waiting cost. */
export interface RunTraffic {
  requests: number;
  retries: number;
  throttled: number;
  requestUnits: number;
  budgetWaitMs: number;
}

export interface RunRecord extends RunCounts {
  runId: string;
  identityId: string;
  kind: "backup";
  name: string;
  trigger: "manual" | "schedule";
  status: RunStatus;
  startedAt: string;
  endedAt?: string;
  filter?: BackupFilter;
  traffic?: RunTraffic;
  manifest?: string;
  error?: { code: string; message: string };
}

interface RunEntity {
  partitionKey: string;
  rowKey: string;
  document: string;
}

const LOCK_ROW = "~lock-backup";

/** Run records (one row per run, partitioned by identity) and the one-backup-at-a-time lock. */
export class RunStore {
  constructor(private readonly table: TableClient) {}

  async create(run: RunRecord): Promise<void> {
    await this.table.createEntity(toEntity(run));
  }

  async get(runId: string): Promise<RunRecord | undefined> {
    const rows = this.table.listEntities<RunEntity>({
      queryOptions: { filter: `RowKey eq '${quoteOData(runId)}'` },
    });
    for await (const row of rows) return JSON.parse(row.document) as RunRecord;
    return undefined;
  }

  /** Newest first (run ids sort that way). */
  async list(identityId: string, limit = 100): Promise<RunRecord[]> {
    const runs: RunRecord[] = [];
    const rows = this.table.listEntities<RunEntity>({
      queryOptions: { filter: `PartitionKey eq '${quoteOData(identityId)}' and RowKey lt '~'` },
    });
    for await (const row of rows) {
      runs.push(JSON.parse(row.document) as RunRecord);
      if (runs.length >= limit) break;
    }
    return runs;
  }

  /** Read-modify-write with the row's ETag, retried on a concurrent change. */
  async update(identityId: string, runId: string, change: (run: RunRecord) => void): Promise<RunRecord> {
    for (let attempt = 0; ; attempt++) {
      const row = await this.table.getEntity<RunEntity>(identityId, runId);
      const run = JSON.parse(row.document) as RunRecord;
      change(run);
      try {
        await this.table.updateEntity(toEntity(run), "Replace", { etag: row.etag });
        return run;
      } catch (error) {
        if (!isStatus(error, 412) || attempt >= 5) throw error;
      }
    }
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

  /** Replaces a lock whose holder is known to be finished. */
  async takeOverLock(identityId: string, staleRunId: string, runId: string): Promise<void> {
    const row = await this.table.getEntity<{ runId: string }>(identityId, LOCK_ROW);
    if (row.runId !== staleRunId) throw new PreconditionFailedError("The backup lock changed hands");
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

function toEntity(run: RunRecord): RunEntity {
  return { partitionKey: run.identityId, rowKey: run.runId, document: JSON.stringify(run) };
}

function quoteOData(value: string): string {
  return value.replace(/'/g, "''");
}
