import type { GovernorStats, OrgRateGovernor, TrackedPacer } from "../arcgis/governor/index.js";
import type { PortalClient, PortalClientStats } from "../arcgis/portal-client.js";
import { mapWithConcurrency } from "../concurrency.js";
import { AppError, errorMessage } from "../errors.js";
import { isRetryableFailure } from "../failures.js";
import type { StoredIdentity } from "../identities/identity.js";
import type { IdentityService } from "../identities/identity-service.js";
import { indexRun, recordCapturedVersions } from "../item-index/indexer.js";
import type { ItemIndex } from "../item-index/item-index.js";
import type { Logger } from "../log.js";
import { DEFAULT_OUTAGE_SETTINGS, type OutagePause, type OutageSettings, outagePause } from "../outage.js";
import type { BatchInput, FailBatchInput, FinalizeInput, RecordFailureInput } from "./activity-inputs.js";
import type { BackupStore } from "./backup-store.js";
import { assertCacheWritable, type CacheSpace, cacheSpaceFor } from "./cache.js";
import {
  batchResultsSchema,
  exportItem,
  type ItemExportContext,
  type ItemResult,
  resultFor,
  type ServiceDataExporter,
} from "./export-item.js";
import {
  type BackupFilter,
  INVENTORY_CHUNK_SIZE,
  type InvalidInventoryLine,
  type InventoryEntry,
  type InventoryRecord,
  type InventorySummary,
  isInvalidLine,
  type PreviousRun,
  previousRunOf,
  readInventoryChunk,
  takeInventory,
} from "./inventory.js";
import { batchResultName, identityBlobName, manifestName } from "./layout.js";
import { type ManifestHeader, writeManifest } from "./manifest.js";
import { type BatchCounts, type BatchOutcome, emptyBatchCounts } from "./progress.js";
import { failRun, logRunCompleted } from "./run-end.js";
import { RunStopSignals } from "./run-stop.js";
import type { RunRecord, RunStatus, RunStore } from "./runs.js";

/** Items one activity exports; small enough to retry whole, big enough to amortise setup. */
export const BATCH_SIZE = 10;
/** Items of one batch exported at once. */
const ITEMS_IN_PARALLEL = 4;

export type InventoryOutcome =
  | ({ ok: true; chunkSize: number; batchSize: number } & InventorySummary)
  | { ok: false; error: { code: string; message: string } };

export type { BatchInput, FinalizeInput } from "./activity-inputs.js";

type RunError = { code: string; message: string };

export interface RunnerDependencies {
  identities: IdentityService;
  runs: RunStore;
  portalFor(identity: StoredIdentity): Promise<PortalClient>;
  /** The identity's backup store (its folder of its backup container). */
  openStore(identity: StoredIdentity): Promise<BackupStore>;
  /** The org's rate governor, shared by every run of the org (and across instances). */
  governorFor?(identity: StoredIdentity): Promise<OrgRateGovernor>;
  serviceDataFor?(portal: PortalClient, log: Logger): ServiceDataExporter;
  cacheMaxBytes: number;
  /** How a batch that meets an outage pauses (default DEFAULT_OUTAGE_SETTINGS). */
  outage?: OutageSettings;
  /** The item index (search, history), brought up to each run that ends with its manifest. */
  itemIndex?: ItemIndex;
  log: Logger;
}

/** Where an identity's runs are written: all the finalize step needs. */
interface RunTarget {
  identity: StoredIdentity;
  store: BackupStore;
  cacheSpace: CacheSpace;
}

interface IdentitySession extends RunTarget {
  portal: PortalClient;
  /** The org's shared rate governor (absent where pacing is off). */
  governor: OrgRateGovernor | undefined;
  openedAt: number;
}

const SESSION_TTL_MS = 10 * 60_000;
const INDEX_NOT_UPDATED = "Item index not updated; POST /api/identities/{id}/index/rebuild rebuilds it";
const CHUNKS_CACHED = 6;

/**
 * What the backup activities do. Sessions (identity, signed-in portal client, container) are
 * reused across the activities of a process for a few minutes, so a run of 2,000 items signs in
 * once, not 200 times; tokens still refresh on expiry inside the portal client.
 */
export class BackupRunner {
  private readonly sessions = new Map<string, Promise<IdentitySession>>();
  private readonly chunks = new Map<string, Promise<InventoryEntry[]>>();
  /** When each recent run started (a version row's first sighting), read once per process, not per batch. */
  private readonly runStarts = new Map<string, Promise<RunRecord | undefined>>();
  private readonly stops: RunStopSignals;

  constructor(private readonly deps: RunnerDependencies) {
    this.stops = new RunStopSignals(deps.runs);
  }

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
    let session: IdentitySession | undefined;
    try {
      session = await this.session(input.identityId);
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
      if (isRetryableFailure(error)) throw error;
      return { ok: false, error: runErrorOf(error, "ERR_INVENTORY", session?.store) };
    }
  }

  /**
   * What the newest earlier complete run captured, so unchanged items are recorded without being
   * exported (or even looked at) again: read from its results blobs into ids and versions (see
   * PreviousRun). A run a prune trimmed holds only deleted items and is not compared with, nor is
   * a filtered run (a snapshot of a few items): the newest whole-org run is what the item index
   * last took in, and what the items outside a filter were last captured by.
   */
  private async previousCaptures(
    session: IdentitySession,
    runId: string,
    log: Logger,
  ): Promise<PreviousRun | undefined> {
    const last = (await this.deps.runs.list(session.identity.id, 20)).find(
      (r) => r.runId !== runId && r.manifest && !r.heldForDeletedItems && !r.filter,
    );
    if (!last) return undefined;
    try {
      return await previousRunOf(session.store, last.runId);
    } catch (error) {
      if (isRetryableFailure(error)) throw error;
      log.warn("Previous run's results not readable; every item's marker is checked instead", {
        previousRunId: last.runId,
        reason: (error as Error).message,
      });
      return undefined;
    }
  }

  /**
   * Exports one batch of a chunk and writes its results blob (rewritten, never duplicated, on a
   * re-run). Once the run is cancelled, items not started yet are left out and those in flight are
   * aborted (and left out): the batch ends within about a second, `stopped`. When the portal or
   * the storage is unreachable past their clients' retries, the batch ends `paused`: it keeps the
   * results of the items it finished, and the orchestration runs it again later (`afterPause`),
   * which carries those over. A paused attempt reports its traffic; the one that finishes the
   * batch reports its items.
   */
  async exportBatch(input: BatchInput): Promise<BatchOutcome> {
    const stop = await this.stops.watch(input.identityId, input.runId);
    try {
      if (stop.signal.aborted) return { ...emptyBatchCounts(), stopped: true };
      const session = await this.session(input.identityId);
      const records = await this.batchRecords(session, input);
      const carried = input.afterPause
        ? await this.carriedResults(session, input)
        : new Map<string, ItemResult>();
      const log = this.deps.log.child({ runId: input.runId, identityId: input.identityId });
      const { portal, pacer } = this.workPortal(session, stop.signal);
      const serviceData = this.deps.serviceDataFor?.(portal, log);
      const context: StoppableExport = {
        runId: input.runId,
        portal,
        store: session.store,
        cacheDirectory: session.identity.cacheDirectory,
        cacheSpace: session.cacheSpace,
        log,
        signal: stop.signal,
        ...(serviceData ? { serviceData } : {}),
      };
      const { results, outage } = await exportEntries(context, records, carried);
      await session.store.uploadJson(
        batchResultName(input.runId, input.chunkIndex, input.batchIndex),
        results,
      );
      await this.recordVersions(input, results, log);
      if (outage !== undefined && !stop.signal.aborted) {
        const paused = this.pause(input, outage, log);
        return { ...countResults([], portal.stats, pacer?.stats()), stopped: false, paused };
      }
      return { ...countResults(results, portal.stats, pacer?.stats()), stopped: stop.signal.aborted };
    } catch (error) {
      // Opening the session, reading the chunk or writing the results met the outage: the batch
      // runs again later (what it exported without recording it is found by its completion marker).
      if (!isRetryableFailure(error) || stop.signal.aborted) throw error;
      const log = this.deps.log.child({ runId: input.runId, identityId: input.identityId });
      return { ...emptyBatchCounts(), stopped: false, paused: this.pause(input, error, log) };
    } finally {
      stop.release();
    }
  }

  /**
   * Records the versions the batch captured in the item index as it ends, so that a run's end does
   * not write one row per changed item. The index is derived: a failure is logged (a rebuild
   * mends it); an outage is thrown, for the batch's retry.
   */
  private async recordVersions(
    input: BatchInput,
    results: readonly ItemResult[],
    log: Logger,
  ): Promise<void> {
    if (!this.deps.itemIndex || !results.some((result) => result.status === "exported")) return;
    try {
      const run = await this.runStart(input);
      if (run) await recordCapturedVersions(this.deps.itemIndex, run, results);
    } catch (error) {
      if (isRetryableFailure(error)) throw error;
      log.warn(INDEX_NOT_UPDATED, {
        reason: errorMessage(error),
      });
    }
  }

  private runStart(input: BatchInput): Promise<RunRecord | undefined> {
    const key = `${input.identityId}/${input.runId}`;
    let run = this.runStarts.get(key);
    if (!run) {
      run = this.deps.runs.find(input.identityId, input.runId);
      run.catch(() => this.runStarts.delete(key));
      this.runStarts.set(key, run);
      for (const old of [...this.runStarts.keys()].slice(0, -CHUNKS_CACHED)) this.runStarts.delete(old);
    }
    return run;
  }

  /** What a batch that met an outage tells its orchestration (and the log). */
  private pause(input: BatchInput, outage: unknown, log: Logger): OutagePause {
    const paused = outagePause(outage, this.deps.outage ?? DEFAULT_OUTAGE_SETTINGS);
    log.warn("Batch paused: the portal or the storage is unreachable", {
      chunkIndex: input.chunkIndex,
      batchIndex: input.batchIndex,
      reason: paused.reason,
    });
    return paused;
  }

  /** What an earlier, paused attempt of the batch captured, by item id. */
  private async carriedResults(
    session: IdentitySession,
    input: BatchInput,
  ): Promise<Map<string, ItemResult>> {
    const name = batchResultName(input.runId, input.chunkIndex, input.batchIndex);
    const results = (await session.store.readJson(name, batchResultsSchema)) ?? [];
    return new Map(results.map((result) => [result.itemId, result]));
  }

  private async batchRecords(session: IdentitySession, input: BatchInput): Promise<InventoryEntry[]> {
    const chunk = await this.chunk(session, input);
    return chunk.slice(input.batchIndex * BATCH_SIZE, (input.batchIndex + 1) * BATCH_SIZE);
  }

  /** An inventory chunk, read once per process for all its batches (they run close together). */
  private chunk(session: IdentitySession, input: BatchInput): Promise<InventoryEntry[]> {
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
  private workPortal(
    session: IdentitySession,
    signal?: AbortSignal,
  ): { portal: PortalClient; pacer: TrackedPacer | undefined } {
    const pacer = session.governor?.track();
    return {
      portal: session.portal.fork({ ...(pacer ? { pacer } : {}), ...(signal ? { signal } : {}) }),
      pacer,
    };
  }

  /**
   * A batch that kept failing after its retries, or whose outage outlasted the maximum
   * (`code` ERR_OUTAGE): its items are recorded as failed, but those an earlier, paused attempt
   * finished keep their results.
   */
  async failBatch(input: FailBatchInput): Promise<BatchCounts> {
    const session = await this.session(input.identityId);
    const records = await this.batchRecords(session, input);
    const carried = await this.carriedResults(session, input);
    const error = { code: input.code ?? "ERR_BATCH_RETRIES_EXHAUSTED", message: input.reason };
    const failed: ItemResult[] = records
      .filter((entry) => !carried.has(entry.id))
      .map((entry) => (isInvalidLine(entry) ? invalidLineResult(entry) : { ...resultFor(entry), error }));
    const results = [...carried.values(), ...failed];
    await session.store.uploadJson(batchResultName(input.runId, input.chunkIndex, input.batchIndex), results);
    const log = this.deps.log.child({ runId: input.runId, identityId: input.identityId });
    for (const result of failed) {
      log.event(
        "BackupItemFailed",
        { itemId: result.itemId, code: result.error?.code, reason: result.error?.message },
        "warn",
      );
    }
    return countResults(results);
  }

  /**
   * Writes the manifest (last), closes the run record and releases the identity's lock. When the
   * identity's storage cannot be opened (an identity deleted, a setting that broke), the run ends
   * `failed` without a manifest, recorded through the runs table alone. An outage past the
   * storage's retries is thrown, for the activity's retries (the run keeps its lock meanwhile);
   * only a permanent failure ends the run `failed` here.
   */
  async finalize(input: FinalizeInput): Promise<RunRecord> {
    let target: RunTarget;
    try {
      target = await this.openTarget(input.identityId);
    } catch (error) {
      if (isRetryableFailure(error)) throw error;
      return this.recordFailure({ ...input, error: input.error ?? runErrorOf(error, "ERR_FINALIZE") });
    }
    let run = await this.deps.runs.update(input.identityId, input.runId, (next) => {
      next.endedAt = new Date().toISOString();
      if (input.traffic) next.traffic = input.traffic;
      if (input.error) next.error = input.error;
    });
    const status: RunStatus =
      input.outcome === "failed" ? "failed" : run.cancelRequestedAt ? "cancelled" : "completed";
    try {
      const header = await writeManifest({
        store: target.store,
        run: { ...run, status },
        identityName: target.identity.name,
        sharingUrl: target.identity.sharingUrl,
        cacheDirectory: target.identity.cacheDirectory,
        cacheSpace: target.cacheSpace,
      });
      const manifest = identityBlobName(run.identityId, manifestName(run.runId));
      // The run shows its end only once its items are in the index too: a next run started on
      // seeing "completed" must find the index at this run, not still being written.
      await this.updateIndex(target, { ...run, status: header.status, manifest });
      run = await this.deps.runs.update(input.identityId, input.runId, (next) => {
        recordManifest(next, header, manifest);
      });
    } catch (error) {
      if (isRetryableFailure(error)) throw error;
      run = await this.deps.runs.update(input.identityId, input.runId, (next) => {
        next.status = "failed";
        // A results blob that does not match its schema names itself (ERR_STORED_DOCUMENT_INVALID).
        next.error ??= runErrorOf(error, "ERR_MANIFEST", target.store);
      });
    }
    await this.deps.runs.releaseLock(input.identityId, input.runId);
    logRunCompleted(this.deps.log, run, target.identity.name);
    return run;
  }

  /**
   * Takes the run into the item index. The index is derived (rebuilt from the manifests on
   * request), so a failure here leaves the run as it ended and says so in the log; an outage is
   * thrown, for the activity's retry.
   */
  private async updateIndex(target: RunTarget, run: RunRecord): Promise<void> {
    if (!this.deps.itemIndex) return;
    try {
      await indexRun({
        store: target.store,
        index: this.deps.itemIndex,
        run,
        cacheDirectory: target.identity.cacheDirectory,
        cacheSpace: target.cacheSpace,
      });
    } catch (error) {
      if (isRetryableFailure(error)) throw error;
      this.deps.log.warn(INDEX_NOT_UPDATED, {
        runId: run.runId,
        identityId: run.identityId,
        reason: errorMessage(error),
      });
    }
  }

  /**
   * Activity: ends the run as `failed` with the reason through the runs table alone — the last
   * resort of an orchestration that could not finish its run (its finalize failed past its retries).
   */
  async recordFailure(input: RecordFailureInput): Promise<RunRecord> {
    return failRun(this.deps, input.identityId, input.runId, input.error);
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
    const target = await this.openTarget(identityId);
    const portal = await this.deps.portalFor(target.identity);
    const governor = await this.deps.governorFor?.(target.identity);
    return { ...target, portal, governor, openedAt: Date.now() };
  }

  private async openTarget(identityId: string): Promise<RunTarget> {
    const identity = await this.deps.identities.get(identityId);
    return {
      identity,
      store: await this.deps.openStore(identity),
      cacheSpace: cacheSpaceFor(identity.cacheDirectory, this.deps.cacheMaxBytes),
    };
  }
}

type StoppableExport = ItemExportContext & { signal: AbortSignal };

/** An inventory line that is not a record: its item fails with the line's reason. */
function invalidLineResult(line: InvalidInventoryLine): ItemResult {
  const unknown = {
    title: "",
    type: "",
    owner: "",
    folderId: null,
    folderTitle: null,
    access: "",
    groups: [],
  };
  return { itemId: line.id, ...unknown, status: "failed", files: [], bytes: 0, notes: [], error: line.error };
}

/**
 * The batch's items, a few at a time: carried over from a paused attempt, or exported. An item
 * that meets an outage is left for the next attempt, and no further item starts.
 */
async function exportEntries(
  context: StoppableExport,
  entries: InventoryEntry[],
  carried: Map<string, ItemResult>,
): Promise<{ results: ItemResult[]; outage: unknown }> {
  let outage: unknown;
  const results = await mapWithConcurrency(entries, ITEMS_IN_PARALLEL, async (entry) => {
    const done = carried.get(entry.id);
    if (done || outage !== undefined) return done;
    if (isInvalidLine(entry)) {
      // The monitoring contract: one BackupItemFailed line per failed item (see docs/deploy.md).
      const { code, message: reason } = entry.error;
      context.log.event("BackupItemFailed", { itemId: entry.id, code, reason }, "warn");
      return invalidLineResult(entry);
    }
    try {
      return await exportUnlessStopped(context, entry);
    } catch (error) {
      if (!isRetryableFailure(error)) throw error;
      outage ??= error;
      return undefined;
    }
  });
  return { results: results.filter((result): result is ItemResult => result !== undefined), outage };
}

/** An item's export, or undefined when the run stopped before or during it: it is left out of the run. */
async function exportUnlessStopped(
  context: StoppableExport,
  record: InventoryRecord,
): Promise<ItemResult | undefined> {
  if (context.signal.aborted) return undefined;
  try {
    return await exportItem(context, record);
  } catch (error) {
    if (context.signal.aborted) return undefined;
    throw error;
  }
}

/**
 * The run's error: an app error as it is, a failure of the backup storage in the app's words
 * (ERR_STORAGE_*: never the service's text), anything else under `fallbackCode`.
 */
function runErrorOf(error: unknown, fallbackCode: string, store?: BackupStore): RunError {
  const known = error instanceof AppError ? error : store?.storageErrorOf(error);
  return known
    ? { code: known.code, message: known.message }
    : { code: fallbackCode, message: errorMessage(error) };
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

/** Copies a run's end as its manifest says it (status and totals) into its record. */
function recordManifest(run: RunRecord, header: ManifestHeader, manifest: string): void {
  run.status = header.status;
  run.itemsTotal = Math.max(run.itemsTotal, header.totals.items);
  run.itemsExported = header.totals.exported;
  run.itemsUnchanged = header.totals.unchanged;
  run.itemsFailed = header.totals.failed;
  run.bytes = header.totals.bytes;
  run.manifest = manifest;
}
