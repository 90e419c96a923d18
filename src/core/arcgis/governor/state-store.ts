import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { RestError, type TableClient } from "@azure/data-tables";
import { emptyOrgState, type OrgState, parseOrgState, serializeOrgState } from "./org-state.js";

/** A change to the shared state: the new state (or null to write nothing) and a result. */
export type StateChange<T> = (state: OrgState) => { state: OrgState | null; result: T };

/** Where an org's governors keep their shared state. */
export interface GovernorStateStore {
  read(): Promise<OrgState>;
  /** Applies `change` atomically (retried on concurrent writes); returns its result and the state after. */
  update<T>(change: StateChange<T>): Promise<{ result: T; state: OrgState }>;
}

/** The table the app keeps governor rows in. */
export const GOVERNOR_TABLE = "OrgGovernors";
const PARTITION = "org-governor";
const MAX_ATTEMPTS = 20;

interface GovernorEntity {
  partitionKey: string;
  rowKey: string;
  orgKey: string;
  state: string;
}

/** Row key for an org key (an org id or a sharing URL; URLs hold characters a key may not). */
export function governorRowKey(orgKey: string): string {
  const normal = orgKey.trim().replace(/\/+$/, "").toLowerCase();
  return createHash("sha256").update(normal).digest("hex").slice(0, 40);
}

/**
 * One row per org in Azure Table storage, updated read-modify-write under the row's ETag: a
 * concurrent writer makes the update start over on the fresh row.
 */
export class TableGovernorStore implements GovernorStateStore {
  private readonly rowKey: string;

  constructor(
    private readonly table: TableClient,
    private readonly orgKey: string,
  ) {
    this.rowKey = governorRowKey(orgKey);
  }

  async read(): Promise<OrgState> {
    return (await this.load()).state;
  }

  async update<T>(change: StateChange<T>): Promise<{ result: T; state: OrgState }> {
    for (let attempt = 1; ; attempt++) {
      const { state, etag } = await this.load();
      const { state: next, result } = change(state);
      if (!next) return { result, state };
      const entity: GovernorEntity = {
        partitionKey: PARTITION,
        rowKey: this.rowKey,
        orgKey: this.orgKey,
        state: serializeOrgState(next),
      };
      try {
        if (etag === undefined) await this.table.createEntity(entity);
        else await this.table.updateEntity(entity, "Replace", { etag });
        return { result, state: next };
      } catch (error) {
        const conflict = isStatus(error, 412) || isStatus(error, 409) || isStatus(error, 404);
        if (!conflict || attempt >= MAX_ATTEMPTS) throw error;
        // Someone else wrote first: back off a little (jittered) and redo on the fresh row.
        await sleep(Math.random() * Math.min(50, 2 * attempt));
      }
    }
  }

  private async load(): Promise<{ state: OrgState; etag: string | undefined }> {
    try {
      const row = await this.table.getEntity<GovernorEntity>(PARTITION, this.rowKey);
      return { state: parseOrgState(row.state), etag: row.etag };
    } catch (error) {
      if (isStatus(error, 404)) return { state: emptyOrgState(), etag: undefined };
      throw error;
    }
  }
}

/** In-process state, for tests and a single instance. */
export class MemoryGovernorStore implements GovernorStateStore {
  private state = emptyOrgState();

  async read(): Promise<OrgState> {
    return this.state;
  }

  async update<T>(change: StateChange<T>): Promise<{ result: T; state: OrgState }> {
    const { state, result } = change(this.state);
    if (state) this.state = state;
    return { result, state: this.state };
  }
}

function isStatus(error: unknown, status: number): boolean {
  return error instanceof RestError && error.statusCode === status;
}
