import type { ContainerClient } from "@azure/storage-blob";
import type { GovernorStats, OrgRateGovernor, TrackedPacer } from "../arcgis/governor/index.js";
import type { PortalClient, PortalClientStats } from "../arcgis/portal-client.js";
import { isRetryablePortalError } from "../arcgis/portal-errors.js";
import { mapWithConcurrency } from "../concurrency.js";
import { errorMessage } from "../errors.js";
import type { StoredIdentity } from "../identities/identity.js";
import type { IdentityService } from "../identities/identity-service.js";
import type { Logger } from "../log.js";
import { BackupStore } from "./backup-store.js";
import { assertCacheWritable, type CacheSpace, cacheSpaceFor } from "./cache.js";
import { exportItem, type ItemResult, resultFor, type ServiceDataExporter } from "./export-item.js";
import {
  type BackupFilter,
  INVENTORY_CHUNK_SIZE,
  type InventoryRecord,
  type InventorySummary,
  type PreviousCapture,
  readInventoryChunk,
  takeInventory,
} from "./inventory.js";
import { batchResultName, MANIFEST_NAME, runPrefix } from "./layout.js";
import { readManifest, writeManifest } from "./manifest.js";
import type { RunRecord, RunStatus, RunStore } from "./runs.js";

/** Items one activity exports; small enough to retry whole, big enough to amortise setup. */
export const BATCH_SIZE = 10;
/** Items of one batch exported at once. */
const ITEMS_IN_PARALLEL = 4;

export type InventoryOutcome =
  | ({ ok: true; chunkSize: number; batchSize: number } & InventorySummary)
  | { ok: false; error: { code: string; message: string } };

/** Throttling, an unreachable portal, storage 5xx or a dropped connection: a later attempt may work. */
export function isWorthRetrying(error: unknown): boolean {
  if (isRetryablePortalError(error)) return true;
  const status = (error as { statusCode?: number }).statusCode;
  if (typeof status === "number") return status >= 500 || status === 408 || status === 429;
  const code = (error as { code?: string }).code ?? "";
  return ["ECONNRESET", "ECONNREFUSED", "ETIMEDOUT", "EAI_AGAIN", "REQUEST_SEND_ERROR"].includes(code);
}

export interface BatchInput {
  runId: string;
  identityId: string;
  chunkIndex: number;
  batchIndex: number;
}

export interface BatchCounts {
  exported: number;
  unchanged: number;
  failed: number;
  bytes: number;
  requests: number;
  retries: number;
  throttled: number;
  requestUnits: number;
  budgetWaitMs: number;
}

export function emptyBatchCounts(): BatchCounts {
  return {
    exported: 0,
    unchanged: 0,
    failed: 0,
    bytes: 0,
    requests: 0,
    retries: 0,
    throttled: 0,
    requestUnits: 0,
    budgetWaitMs: 0,
  };
}

export interface RunnerDependencies {
  identities: IdentityService;
  runs: RunStore;
  portalFor(identity: StoredIdentity): Promise<PortalClient>;
  openContainer(identity: StoredIdentity): Promise<ContainerClient>;
  /** The org's rate governor, shared by every run of the org (and across instances). */
  governorFor?(identity: StoredIdentity): Promise<OrgRateGovernor>;
  serviceDataFor?(portal: PortalClient, log: Logger): ServiceDataExporter;
  cacheMaxBytes: number;
  log: Logger;
}

interface IdentitySession {
  identity: StoredIdentity;
  portal: PortalClient;
  /** The org's shared rate governor (absent where pacing is off). */
  governor: OrgRateGovernor | undefined;
  store: BackupStore;
  cacheSpace: CacheSpace;
  openedAt: number;
}

const SESSION_TTL_MS = 10 * 60_000;
const CHUNKS_CACHED = 6;
/** Larger manifests (hundreds of thousands of items) are not loaded whole. */
const MAX_PREVIOUS_MANIFEST_BYTES = 256 * 1024 * 1024;

/**
 * What the backup activities do. Sessions (identity, signed-in portal client, container) are
 * reused across the activities of a process for a few minutes, so a run of 2,000 items signs in
 * once, not 200 times; tokens still refresh on expiry inside the portal client.
 */
export class BackupRunner {
  private readonly sessions = new Map<string, Promise<IdentitySession>>();
  private readonly chunks = new Map<string, Promise<InventoryRecord[]>>();

  constructor(private readonly deps: RunnerDependencies) {}

  /**
   * Takes the inventory. An expected failure (a cache folder that cannot be written, a sign-in
   * the portal refuses) comes back as an outcome, so the orchestration fails the run at once;
   * only what is worth retrying (throttling, an unreachable portal or storage) is thrown.
   */
  async inventory(input: {
    runId: string;
    identityId: string;
    filter?: BackupFilter;
  }): Promise<InventoryOutcome> {
    try {
      const session = await this.session(input.identityId);
      await assertCacheWritable(session.identity.cacheDirectory);
      const log = this.deps.log.child({ runId: input.runId, identityId: input.identityId });
      const previous = await this.previousCaptures(session, input.runId, log);
      const summary = await takeInventory({
        portal: this.workPortal(session).portal,
        store: session.store,
        runId: input.runId,
        ...(input.filter ? { filter: input.filter } : {}),
        ...(previous ? { previous } : {}),
        log,
      });
      await this.deps.runs.update(input.identityId, input.runId, (run) => {
        run.itemsTotal = summary.itemCount + summary.unchangedCount;
      });
      return { ok: true, ...summary, chunkSize: INVENTORY_CHUNK_SIZE, batchSize: BATCH_SIZE };
    } catch (error) {
      if (isWorthRetrying(error)) throw error;
      return {
        ok: false,
        error: { code: (error as { code?: string }).code ?? "ERR_INVENTORY", message: errorMessage(error) },
      };
    }
  }

  /**
   * What the newest earlier run with a manifest captured, so unchanged items are recorded
   * without being exported (or even looked at) again. Skipped for very large manifests, where
   * each item's completion marker answers the same question during the export.
   */
  private async previousCaptures(
    session: IdentitySession,
    runId: string,
    log: Logger,
  ): Promise<Map<string, PreviousCapture> | undefined> {
    const last = (await this.deps.runs.list(session.identity.id, 20)).find(
      (r) => r.runId !== runId && r.manifest,
    );
    if (!last) return undefined;
    const name = `${runPrefix(last.runId)}${MANIFEST_NAME}`;
    try {
      const properties = await session.store.container
        .getBlobClient(session.store.blobName(name))
        .getProperties();
      if ((properties.contentLength ?? 0) > MAX_PREVIOUS_MANIFEST_BYTES) return undefined;
      const manifest = await readManifest(session.store, last.runId);
      const captures = new Map<string, PreviousCapture>();
      for (const item of manifest?.items ?? []) {
        if (item.status !== "failed" && item.version) {
          const { versionPath: _path, ...result } = item;
          captures.set(item.itemId, { version: item.version, result });
        }
      }
      return captures;
    } catch (error) {
      log.warn("Previous manifest not readable; every item's marker is checked instead", {
        previousRunId: last.runId,
        reason: (error as Error).message,
      });
      return undefined;
    }
  }

  /** Exports one batch of a chunk and writes its results blob (rewritten, never duplicated, on a re-run). */
  async exportBatch(input: BatchInput): Promise<BatchCounts> {
    const session = await this.session(input.identityId);
    const records = (await this.chunk(session, input)).slice(
      input.batchIndex * BATCH_SIZE,
      (input.batchIndex + 1) * BATCH_SIZE,
    );
    const log = this.deps.log.child({ runId: input.runId, identityId: input.identityId });
    const { portal, pacer } = this.workPortal(session);
    const serviceData = this.deps.serviceDataFor?.(portal, log);
    const results = await mapWithConcurrency(records, ITEMS_IN_PARALLEL, (record) =>
      exportItem(
        {
          portal,
          store: session.store,
          cacheDirectory: session.identity.cacheDirectory,
          cacheSpace: session.cacheSpace,
          log,
          ...(serviceData ? { serviceData } : {}),
        },
        record,
      ),
    );
    await session.store.uploadJson(batchResultName(input.runId, input.chunkIndex, input.batchIndex), results);
    return countResults(results, portal.stats, pacer?.stats());
  }

  /** An inventory chunk, read once per process for all its batches (they run close together). */
  private chunk(session: IdentitySession, input: BatchInput): Promise<InventoryRecord[]> {
    const key = `${input.identityId}/${input.runId}/${input.chunkIndex}`;
    let chunk = this.chunks.get(key);
    if (!chunk) {
      chunk = readInventoryChunk(session.store, input.runId, input.chunkIndex);
      chunk.catch(() => this.chunks.delete(key));
      this.chunks.set(key, chunk);
      // A handful of chunks are in flight at a time; keep the newest few.
      for (const old of [...this.chunks.keys()].slice(0, -CHUNKS_CACHED)) this.chunks.delete(old);
    }
    return chunk;
  }

  /** A portal client for one unit of work: its own counters, paced by the org's governor. */
  private workPortal(session: IdentitySession): { portal: PortalClient; pacer: TrackedPacer | undefined } {
    const pacer = session.governor?.track();
    return { portal: session.portal.fork(pacer ? { pacer } : {}), pacer };
  }

  /** A batch that kept failing after its retries: every item of it is recorded as failed. */
  async failBatch(input: BatchInput & { reason: string }): Promise<BatchCounts> {
    const session = await this.session(input.identityId);
    const records = (await this.chunk(session, input)).slice(
      input.batchIndex * BATCH_SIZE,
      (input.batchIndex + 1) * BATCH_SIZE,
    );
    const results: ItemResult[] = records.map((record) => ({
      ...resultFor(record),
      error: { code: "ERR_BATCH_RETRIES_EXHAUSTED", message: input.reason },
    }));
    await session.store.uploadJson(batchResultName(input.runId, input.chunkIndex, input.batchIndex), results);
    const log = this.deps.log.child({ runId: input.runId, identityId: input.identityId });
    for (const result of results) {
      log.event(
        "BackupItemFailed",
        { itemId: result.itemId, code: "ERR_BATCH_RETRIES_EXHAUSTED", reason: input.reason },
        "warn",
      );
    }
    return countResults(results);
  }

  /** Writes the manifest (last), closes the run record and releases the identity's lock. */
  async finalize(input: {
    runId: string;
    identityId: string;
    outcome: "completed" | "cancelled" | "failed";
    traffic?: RunRecord["traffic"];
    error?: { code: string; message: string };
  }): Promise<RunRecord> {
    const session = await this.session(input.identityId);
    const endedAt = new Date().toISOString();
    let run = await this.deps.runs.update(input.identityId, input.runId, (next) => {
      next.endedAt = endedAt;
      if (input.traffic) next.traffic = input.traffic;
      if (input.error) next.error = input.error;
    });
    let status: RunStatus = input.outcome;
    try {
      const header = await writeManifest({
        store: session.store,
        run: { ...run, status },
        identityName: session.identity.name,
        sharingUrl: session.identity.sharingUrl,
        cacheDirectory: session.identity.cacheDirectory,
        cacheSpace: session.cacheSpace,
      });
      if (status === "completed" && header.totals.failed > 0) status = "completed-with-failures";
      if (status === "completed-with-failures" || status === "completed") {
        // The manifest's own status must match; rewrite the header when failures changed it.
        if (header.status !== status) {
          await writeManifest({
            store: session.store,
            run: { ...run, status },
            identityName: session.identity.name,
            sharingUrl: session.identity.sharingUrl,
            cacheDirectory: session.identity.cacheDirectory,
            cacheSpace: session.cacheSpace,
          });
        }
      }
      run = await this.deps.runs.update(input.identityId, input.runId, (next) => {
        next.status = status;
        next.itemsTotal = Math.max(next.itemsTotal, header.totals.items);
        next.itemsExported = header.totals.exported;
        next.itemsUnchanged = header.totals.unchanged;
        next.itemsFailed = header.totals.failed;
        next.bytes = header.totals.bytes;
        next.manifest = session.store.blobName(`runs/${input.runId}/manifest.json`);
      });
    } catch (error) {
      run = await this.deps.runs.update(input.identityId, input.runId, (next) => {
        next.status = "failed";
        next.error ??= { code: "ERR_MANIFEST", message: (error as Error).message };
      });
    } finally {
      await this.deps.runs.releaseLock(input.identityId, input.runId);
    }
    this.deps.log.event("BackupRunCompleted", {
      runId: run.runId,
      identityId: run.identityId,
      identityName: session.identity.name,
      status: run.status,
      itemsTotal: run.itemsTotal,
      itemsExported: run.itemsExported,
      itemsUnchanged: run.itemsUnchanged,
      itemsFailed: run.itemsFailed,
      bytes: run.bytes,
      durationMs: Date.parse(run.endedAt ?? endedAt) - Date.parse(run.startedAt),
    });
    return run;
  }

  private session(identityId: string): Promise<IdentitySession> {
    const cached = this.sessions.get(identityId);
    if (cached) {
      return cached.then((session) => {
        if (Date.now() - session.openedAt < SESSION_TTL_MS) return session;
        this.sessions.delete(identityId);
        return this.session(identityId);
      });
    }
    const opening = this.open(identityId).catch((error: unknown) => {
      this.sessions.delete(identityId);
      throw error;
    });
    this.sessions.set(identityId, opening);
    return opening;
  }

  private async open(identityId: string): Promise<IdentitySession> {
    const identity = await this.deps.identities.get(identityId);
    const portal = await this.deps.portalFor(identity);
    const container = await this.deps.openContainer(identity);
    const governor = await this.deps.governorFor?.(identity);
    return {
      identity,
      portal,
      governor,
      store: new BackupStore(container, identity.id),
      cacheSpace: cacheSpaceFor(identity.cacheDirectory, this.deps.cacheMaxBytes),
      openedAt: Date.now(),
    };
  }
}

function countResults(results: ItemResult[], portal?: PortalClientStats, paced?: GovernorStats): BatchCounts {
  const counts: BatchCounts = {
    ...emptyBatchCounts(),
    requests: portal?.requests ?? 0,
    retries: portal?.retries ?? 0,
    throttled: Math.max(portal?.throttled ?? 0, paced?.throttled ?? 0),
    requestUnits: paced?.requestUnits ?? 0,
    budgetWaitMs: paced?.budgetWaitMs ?? 0,
  };
  for (const result of results) {
    counts[result.status]++;
    counts.bytes += result.bytes;
  }
  return counts;
}
