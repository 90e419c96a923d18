import { z } from "zod";
import { ConflictError, errorMessage, NotFoundError } from "../errors.js";
import type { StoredIdentity } from "../identities/identity.js";
import type { IdentityService } from "../identities/identity-service.js";
import type { Logger } from "../log.js";
import { type OrchestrationClient, readOrchestration } from "../orchestrations.js";
import { schemaVersion } from "../stored-document.js";
import { parseInput } from "../validation.js";
import type { BackupService } from "./backup-service.js";
import type { BackupStore } from "./backup-store.js";
import { PRUNE_ID_PATTERN, pruneReportName } from "./layout.js";
import {
  type PruneDecision,
  type PrunePlan,
  planPrune,
  pruneRuns,
  type RunCounts,
  readPlan,
  referencedBlobs,
  type SweepCounts,
  sweepItems,
  writePlan,
} from "./prune.js";
import { newPruneRecord, type PruneCounts, type PruneRecord, type PruneStore } from "./prune-store.js";
import { isCompleteRun } from "./retention.js";
import type { RunStore } from "./runs.js";

export const PRUNE_ORCHESTRATOR = "pruneOrchestrator";

/** The orchestration's input, and every step's. */
export const pruneRunInputSchema = z.object({
  pruneId: z.string().regex(PRUNE_ID_PATTERN),
  identityId: z.string(),
});
export type PruneRunInput = z.infer<typeof pruneRunInputSchema>;

export const pruneFinishInputSchema = pruneRunInputSchema.extend({
  sweep: z.object({
    blobsDeleted: z.number(),
    bytesDeleted: z.number(),
    blobsKeptByPolicy: z.number(),
    bytesKeptByPolicy: z.number(),
    keptByPolicySample: z.array(z.string()),
  }),
  runs: z.object({
    runsForgotten: z.number(),
    runsTrimmed: z.number(),
    runBlobsDeleted: z.number(),
    runBytesDeleted: z.number(),
    runBlobsKeptByPolicy: z.number(),
  }),
});
export type PruneFinishInput = z.infer<typeof pruneFinishInputSchema>;

const startSchema = z.strictObject({ dryRun: z.boolean().optional() });

/** A run as a prune report or preview lists it (held item ids counted, not listed). */
type DecisionView = Omit<PruneDecision, "heldItems" | "itemsFrom"> & { heldItems?: number };

/** What a prune would do (dry run) or did (report). */
export interface PruneSummary {
  runs: { kept: number; trimmed: number; forgotten: number; decisions: DecisionView[] };
  blobs: { deleted: number; bytes: number; keptByPolicy: number; bytesKeptByPolicy: number };
}

export type PruneStart = { dryRun: true; preview: PruneSummary } | { dryRun: false; prune: PruneRecord };

export const pruneReportSchema = z.object({
  schemaVersion: schemaVersion(1),
  kind: z.literal("arcgis-org-backup/prune-report"),
  pruneId: z.string(),
  identityId: z.string(),
  trigger: z.enum(["manual", "schedule"]),
  startedAt: z.string(),
  endedAt: z.string(),
  keepDeletedDays: z.number(),
  counts: z.record(z.string(), z.number()),
  keptByPolicySample: z.array(z.string()),
  runs: z.array(z.record(z.string(), z.unknown())),
});
export type PruneReport = z.infer<typeof pruneReportSchema>;

/** A prune as the API shows it: the record and, once it has ended, its report. */
export type PruneView = Omit<PruneRecord, "report"> & { reportBlob?: string; report?: PruneReport };

interface PruneDeps {
  identities: IdentityService;
  runs: RunStore;
  prunes: PruneStore;
  backups: BackupService;
  openStore(identity: StoredIdentity): Promise<BackupStore>;
  /** Backup runs a running restore of the identity reads: never pruned under it. */
  restoresInUse(identityId: string): Promise<Set<string>>;
  log: Logger;
}

/**
 * Applies an identity's retention policy to its backups: forgets runs, trims runs that hold
 * deleted items, deletes every item blob no kept run names. A prune holds the identity's backup
 * lock from start to end, so no backup runs meanwhile and no blob a backup could reference
 * (a version it finds complete, a file it reuses) vanishes under it; a backup asked for during a
 * prune is refused with 409 (the scheduler tries again on its next tick).
 */
export class PruneService {
  constructor(private readonly deps: PruneDeps) {}

  async start(identityId: string, body: unknown, orchestrations: OrchestrationClient): Promise<PruneStart> {
    const input = parseInput(startSchema, body === undefined ? {} : body);
    const identity = await this.deps.identities.get(identityId);
    if (!identity.retention) {
      throw new ConflictError(
        "This identity has no retention policy, so every run is kept and there is nothing to prune: set `retention` first",
        "ERR_NO_RETENTION_POLICY",
      );
    }
    if (input.dryRun) return { dryRun: true, preview: await this.preview(identity) };
    const record = await this.begin(identity, "manual", orchestrations);
    return { dryRun: false, prune: record };
  }

  /**
   * After a scheduled backup that completed: records a prune when the identity has a policy and
   * nothing else holds its lock, and answers its id (the backup's orchestration runs it as a
   * sub-orchestration of that id); null when there is nothing to prune.
   */
  async afterScheduledBackup(identityId: string, runId: string): Promise<string | null> {
    // The run first: a manual or failed run (say, of an identity deleted mid-run) needs no identity.
    const run = await this.deps.runs.find(identityId, runId);
    if (run?.trigger !== "schedule" || !isCompleteRun(run)) return null;
    const identity = await this.deps.identities.find(identityId);
    if (!identity?.retention) return null;
    try {
      return (await this.begin(identity, "schedule")).pruneId;
    } catch (error) {
      if (!(error instanceof ConflictError)) throw error;
      this.deps.log.warn("Scheduled prune not started", { identityId, reason: error.message });
      return null;
    }
  }

  async get(pruneId: string, orchestrations: OrchestrationClient): Promise<PruneView> {
    const found = PRUNE_ID_PATTERN.test(pruneId) ? await this.deps.prunes.get(pruneId) : undefined;
    if (!found) throw new NotFoundError(`Prune ${pruneId} not found`);
    const { report: reportBlob, ...record } = await this.settle(found, orchestrations);
    if (!reportBlob) return record;
    const { store } = await this.open(record.identityId);
    const report = await store.readJson(reportBlob, pruneReportSchema);
    return { ...record, reportBlob, ...(report ? { report } : {}) };
  }

  async list(identityId: string, orchestrations: OrchestrationClient): Promise<PruneRecord[]> {
    const identity = await this.deps.identities.get(identityId);
    const records = await this.deps.prunes.list(identity.id);
    return Promise.all(records.map((record) => this.settle(record, orchestrations)));
  }

  /** Whether the lock holder `pruneId` still runs (a record ended, or an orchestration gone, does not). */
  async holds(identityId: string, pruneId: string, orchestrations: OrchestrationClient): Promise<boolean> {
    const record = await this.deps.prunes.find(identityId, pruneId);
    return record !== undefined && (await this.settle(record, orchestrations)).status === "running";
  }

  // --- the steps of the orchestration -----------------------------------------------------

  /** Decides each run's fate and writes the plan every later step (and retry) follows. */
  async plan(input: PruneRunInput): Promise<{ kept: number; trimmed: number; forgotten: number }> {
    const { identity, store } = await this.open(input.identityId);
    const plan = await this.decide(identity, store, input.pruneId);
    await writePlan(store, plan);
    return countDecisions(plan.runs);
  }

  /** Deletes every blob of `items/` that no kept run (nor a held deleted item) names. */
  async sweep(input: PruneRunInput): Promise<SweepCounts> {
    const { store } = await this.open(input.identityId);
    const plan = await readPlan(store, input.pruneId);
    return sweepItems(store, await referencedBlobs(store, plan), false);
  }

  /** Forgets and trims runs, after the sweep (which reads them for what they hold). */
  async forgetRuns(input: PruneRunInput): Promise<RunCounts> {
    const { store } = await this.open(input.identityId);
    const plan = await readPlan(store, input.pruneId);
    return pruneRuns({ store, runs: this.deps.runs, plan, dryRun: false, now: new Date() });
  }

  /** Writes the report, ends the record `completed` and lets go of the lock. */
  async finish(input: PruneFinishInput): Promise<PruneRecord> {
    const { store } = await this.open(input.identityId);
    const plan = await readPlan(store, input.pruneId);
    const record = await this.deps.prunes.find(input.identityId, input.pruneId);
    if (!record) throw new NotFoundError(`Prune ${input.pruneId} not found`);
    const summary = summaryOf(plan, input.sweep, input.runs);
    const counts: PruneCounts = {
      runsKept: summary.runs.kept,
      runsTrimmed: summary.runs.trimmed,
      runsForgotten: summary.runs.forgotten,
      blobsDeleted: summary.blobs.deleted,
      bytesDeleted: summary.blobs.bytes,
      blobsKeptByPolicy: summary.blobs.keptByPolicy,
    };
    const endedAt = new Date().toISOString();
    const report: PruneReport = {
      schemaVersion: 1,
      kind: "arcgis-org-backup/prune-report",
      pruneId: input.pruneId,
      identityId: input.identityId,
      trigger: record.trigger,
      startedAt: record.startedAt,
      endedAt,
      keepDeletedDays: plan.keepDeletedDays,
      counts: { ...counts, bytesKeptByPolicy: summary.blobs.bytesKeptByPolicy },
      keptByPolicySample: input.sweep.keptByPolicySample,
      runs: summary.runs.decisions,
    };
    const reportName = pruneReportName(input.pruneId);
    await store.uploadJson(reportName, report);
    const ended = await this.deps.prunes.update(input.identityId, input.pruneId, (next) => {
      if (next.status !== "running") return;
      next.status = "completed";
      next.endedAt = endedAt;
      next.counts = counts;
      next.report = reportName;
    });
    await this.deps.runs.releaseLock(input.identityId, input.pruneId);
    this.deps.log.event("PruneCompleted", {
      pruneId: input.pruneId,
      identityId: input.identityId,
      ...counts,
    });
    return ended;
  }

  /** Ends a prune `failed` (through the runs table alone) and lets go of the lock. */
  async fail(input: PruneRunInput, error: { code: string; message: string }): Promise<PruneRecord> {
    const ended = await this.deps.prunes.update(input.identityId, input.pruneId, (next) => {
      if (next.status !== "running") return;
      next.status = "failed";
      next.endedAt = new Date().toISOString();
      next.error = error;
    });
    await this.deps.runs.releaseLock(input.identityId, input.pruneId);
    return ended;
  }

  // --- inside -------------------------------------------------------------------------------

  private async preview(identity: StoredIdentity): Promise<PruneSummary> {
    const store = await this.deps.openStore(identity);
    const plan = await this.decide(identity, store, null);
    const sweep = await sweepItems(store, await referencedBlobs(store, plan), true);
    const runs = await pruneRuns({ store, runs: this.deps.runs, plan, dryRun: true, now: new Date() });
    return summaryOf(plan, sweep, runs);
  }

  private async decide(
    identity: StoredIdentity,
    store: BackupStore,
    pruneId: string | null,
  ): Promise<PrunePlan> {
    if (!identity.retention)
      throw new ConflictError("This identity has no retention policy", "ERR_NO_RETENTION_POLICY");
    return planPrune({
      store,
      runs: await this.deps.runs.list(identity.id, Number.POSITIVE_INFINITY),
      policy: identity.retention,
      restoresInUse: await this.deps.restoresInUse(identity.id),
      now: new Date(),
      pruneId,
      identityId: identity.id,
    });
  }

  /**
   * Takes the identity's backup lock for a new prune and records it; with an orchestration client,
   * starts its orchestration too (else the caller runs it). Without one, a held lock is not looked
   * into: the prune is refused.
   */
  private async begin(
    identity: StoredIdentity,
    trigger: PruneRecord["trigger"],
    orchestrations?: OrchestrationClient,
  ): Promise<PruneRecord> {
    const record = newPruneRecord(identity.id, trigger);
    const holder = await this.deps.runs.acquireLock(identity.id, record.pruneId);
    if (holder && !orchestrations) {
      throw new ConflictError(`The identity's lock is held (by ${holder})`, "ERR_LOCKED");
    }
    if (holder && orchestrations) {
      if (PRUNE_ID_PATTERN.test(holder)) {
        if (await this.holds(identity.id, holder, orchestrations)) {
          throw new ConflictError(
            `A prune of this identity is already running (prune ${holder})`,
            "ERR_PRUNE_RUNNING",
          );
        }
      } else if ((await this.deps.backups.current(holder, orchestrations))?.status === "running") {
        throw new ConflictError(
          `A backup of this identity is running (run ${holder}); prune once it has ended`,
          "ERR_BACKUP_RUNNING",
        );
      }
      await this.deps.runs.takeOverLock(identity.id, holder, record.pruneId);
    }
    try {
      await this.deps.prunes.create(record);
      if (orchestrations) {
        const input: PruneRunInput = { pruneId: record.pruneId, identityId: identity.id };
        await orchestrations.start(PRUNE_ORCHESTRATOR, record.pruneId, input);
      }
    } catch (error) {
      await this.deps.runs.releaseLock(identity.id, record.pruneId);
      await this.fail(
        { pruneId: record.pruneId, identityId: identity.id },
        {
          code: "ERR_START",
          message: errorMessage(error),
        },
      ).catch(() => {});
      throw error;
    }
    this.deps.log.info("Prune started", { pruneId: record.pruneId, identityId: identity.id, trigger });
    return record;
  }

  /** A running record whose orchestration has ended without ending it is ended `failed` now, once. */
  private async settle(record: PruneRecord, orchestrations: OrchestrationClient): Promise<PruneRecord> {
    if (record.status !== "running") return record;
    const reading = await readOrchestration(orchestrations, record.pruneId, record.startedAt, this.deps.log);
    if (!reading?.end) return record;
    return this.fail(record, reading.end);
  }

  private async open(identityId: string) {
    const identity = await this.deps.identities.get(identityId);
    return { identity, store: await this.deps.openStore(identity) };
  }
}

function countDecisions(decisions: readonly PruneDecision[]) {
  return {
    kept: decisions.filter((d) => d.action === "keep").length,
    trimmed: decisions.filter((d) => d.action === "trim").length,
    forgotten: decisions.filter((d) => d.action === "forget").length,
  };
}

function summaryOf(plan: PrunePlan, sweep: SweepCounts, runs: RunCounts): PruneSummary {
  return {
    runs: {
      ...countDecisions(plan.runs),
      decisions: plan.runs.map(({ heldItems, itemsFrom: _from, ...decision }) => ({
        ...decision,
        ...(heldItems ? { heldItems: heldItems.length } : {}),
      })),
    },
    blobs: {
      deleted: sweep.blobsDeleted + runs.runBlobsDeleted,
      bytes: sweep.bytesDeleted + runs.runBytesDeleted,
      keptByPolicy: sweep.blobsKeptByPolicy + runs.runBlobsKeptByPolicy,
      bytesKeptByPolicy: sweep.bytesKeptByPolicy,
    },
  };
}
