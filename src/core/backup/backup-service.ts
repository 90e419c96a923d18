import { z } from "zod";
import { ConflictError, errorMessage, NotFoundError } from "../errors.js";
import type { IdentityService } from "../identities/identity-service.js";
import type { Logger } from "../log.js";
import { type OrchestrationClient, type OrchestrationState, readOrchestration } from "../orchestrations.js";
import { lastOccurrenceBetween } from "../schedule.js";
import { parseInput } from "../validation.js";
import type { BackupRunInput } from "./activity-inputs.js";
import { newRunId, PRUNE_ID_PATTERN, RUN_ID_PATTERN } from "./layout.js";
import { liveProgress, type RunProgress } from "./progress.js";
import { evaluateRetention, type RetentionVerdict } from "./retention.js";
import { failRun } from "./run-end.js";
import { backupFilterSchema, newRunRecord, RUN_LIST_LIMIT, type RunRecord, type RunStore } from "./runs.js";

export const BACKUP_ORCHESTRATOR = "backupOrchestrator";

export type { BackupRunInput };

const startSchema = z.strictObject({
  name: z.string().trim().min(1).max(200).optional(),
  filter: backupFilterSchema.optional(),
});

/** A run as the status endpoint shows it: while it runs, with live progress. */
export type RunView = RunRecord & { progress?: RunProgress & { cancelRequested: boolean } };

/** A run as the identity's list shows it: with what its retention policy does with it. */
export type RunListEntry = RunRecord & { retention: RetentionVerdict };

/** Start, list, follow and cancel backups, and start the scheduled ones that are due. */
export class BackupService {
  constructor(
    private readonly deps: {
      identities: IdentityService;
      runs: RunStore;
      log: Logger;
      /** Whether a prune holding the identity's lock still runs (see PruneService.holds). */
      pruneHolds?: (
        identityId: string,
        pruneId: string,
        orchestrations: OrchestrationClient,
      ) => Promise<boolean>;
    },
  ) {}

  async start(
    identityId: string,
    body: unknown,
    orchestrations: OrchestrationClient,
    trigger: RunRecord["trigger"] = "manual",
  ): Promise<RunRecord> {
    const input = parseInput(startSchema, body);
    const identity = await this.deps.identities.get(identityId);
    const runId = newRunId("b");
    const holder = await this.deps.runs.acquireLock(identity.id, runId);
    if (holder) {
      if (
        PRUNE_ID_PATTERN.test(holder) &&
        (await this.deps.pruneHolds?.(identity.id, holder, orchestrations))
      ) {
        throw new ConflictError(
          `A prune of this identity's backups is running (prune ${holder}); back up once it has ended`,
          "ERR_PRUNE_RUNNING",
        );
      }
      if (await this.isRunning(identity.id, holder, orchestrations)) {
        throw new ConflictError(
          `A backup of this identity is already running (run ${holder})`,
          "ERR_BACKUP_RUNNING",
        );
      }
      await this.deps.runs.takeOverLock(identity.id, holder, runId);
    }
    const run = newRunRecord({
      runId,
      identityId: identity.id,
      name: input.name ?? (trigger === "schedule" ? "scheduled" : "manual"),
      trigger,
      ...(input.filter ? { filter: input.filter } : {}),
    });
    try {
      await this.deps.runs.create(run);
      const orchestrationInput: BackupRunInput = {
        runId,
        identityId: identity.id,
        ...(input.filter ? { filter: input.filter } : {}),
      };
      await orchestrations.start(BACKUP_ORCHESTRATOR, runId, orchestrationInput);
    } catch (error) {
      await this.deps.runs.releaseLock(identity.id, runId);
      await this.deps.runs
        .endAsFailed(identity.id, runId, { code: "ERR_START", message: errorMessage(error) })
        .catch(() => {});
      throw error;
    }
    this.deps.log.info("Backup started", { runId, identityId: identity.id, trigger });
    return run;
  }

  /**
   * The identity's newest runs, newest first; a run whose orchestration has ended is shown ended.
   * Each says whether the identity's retention policy keeps it and why. With a policy every run is
   * read, shown or not: a rule whose count is not used up keeps the oldest run.
   */
  async list(identityId: string, orchestrations: OrchestrationClient): Promise<RunListEntry[]> {
    const identity = await this.deps.identities.get(identityId);
    const runs = await this.deps.runs.list(
      identity.id,
      identity.retention ? Number.POSITIVE_INFINITY : RUN_LIST_LIMIT,
    );
    const shown = await Promise.all(
      runs
        .slice(0, RUN_LIST_LIMIT)
        .map(async (run) => (run.status === "running" ? (await this.settle(run, orchestrations)).run : run)),
    );
    const verdicts = evaluateRetention(
      [...shown, ...runs.slice(RUN_LIST_LIMIT)],
      identity.retention,
      new Date(),
    );
    return shown.map((run, index) => ({ ...run, retention: verdicts[index] as RetentionVerdict }));
  }

  /** The run, with live progress from the orchestration while it runs. */
  async get(runId: string, orchestrations: OrchestrationClient): Promise<RunView> {
    const { run, state } = await this.settle(await this.existing(runId), orchestrations);
    if (run.status !== "running" || !state) return run;
    const progress = await liveProgress(
      state.customStatus,
      async (chunkId) => (await orchestrations.status(chunkId).catch(() => undefined))?.customStatus,
      new Date(),
    );
    if (!progress) return run;
    return { ...run, progress: { ...progress, cancelRequested: run.cancelRequestedAt !== undefined } };
  }

  /**
   * Asks a running run to stop: its record says so, which its batches read within a second; they
   * abort their downloads, and the run ends `cancelled` with a manifest of what it had captured.
   */
  async cancel(runId: string, orchestrations: OrchestrationClient): Promise<RunRecord> {
    const { run } = await this.settle(await this.existing(runId), orchestrations);
    const requested =
      run.status === "running" ? await this.deps.runs.requestCancel(run.identityId, runId) : run;
    if (requested.status !== "running")
      throw new ConflictError(`Backup run ${runId} has already ended (${requested.status})`);
    this.deps.log.info("Backup cancel requested", { runId, identityId: run.identityId });
    return requested;
  }

  /** The run as it stands (see `settle`), or undefined when there is no such run. */
  async current(runId: string, orchestrations: OrchestrationClient): Promise<RunRecord | undefined> {
    const run = await this.lookUp(runId);
    return run && (await this.settle(run, orchestrations)).run;
  }

  /**
   * Starts every scheduled backup that fell due since the identity's last scheduled start.
   * Several slots missed while the app was down start one run, not one per slot.
   */
  async startDue(now: Date, orchestrations: OrchestrationClient): Promise<string[]> {
    const started: string[] = [];
    for (const view of await this.deps.identities.list()) {
      if (!view.schedule?.enabled) continue;
      const since = new Date(view.lastScheduledAt ?? view.createdAt);
      const due = lastOccurrenceBetween(view.schedule.cron, since, now);
      if (!due) continue;
      await this.deps.identities.record(view.id, (identity) => {
        identity.lastScheduledAt = now.toISOString();
      });
      try {
        const run = await this.start(view.id, { name: "scheduled" }, orchestrations, "schedule");
        started.push(run.runId);
      } catch (error) {
        // A prune holds the lock: the slot stays due, and the next tick starts it.
        if (error instanceof ConflictError && error.code === "ERR_PRUNE_RUNNING") {
          await this.deps.identities.record(view.id, (identity) => {
            identity.lastScheduledAt = view.lastScheduledAt;
          });
        }
        this.deps.log.warn("Scheduled backup not started", {
          identityId: view.id,
          reason: (error as Error).message,
        });
      }
    }
    return started;
  }

  private async lookUp(runId: string): Promise<RunRecord | undefined> {
    return RUN_ID_PATTERN.test(runId) ? this.deps.runs.get(runId) : undefined;
  }

  private async existing(runId: string): Promise<RunRecord> {
    const run = await this.lookUp(runId);
    if (!run) throw new NotFoundError(`Backup run ${runId} not found`);
    return run;
  }

  /** Whether the lock holder still runs; a holder without a record is a start that never got that far. */
  private async isRunning(
    identityId: string,
    runId: string,
    orchestrations: OrchestrationClient,
  ): Promise<boolean> {
    const run = await this.deps.runs.find(identityId, runId);
    return run !== undefined && (await this.settle(run, orchestrations)).run.status === "running";
  }

  /**
   * The run as it really stands: a record still `running` whose orchestration has ended (failed,
   * terminated, crashed past its retries) is ended `failed` with the reason now, once, and its lock
   * released. Every view of a run's status goes through here, so none shows a run that is over.
   */
  private async settle(
    run: RunRecord,
    orchestrations: OrchestrationClient,
  ): Promise<{ run: RunRecord; state?: OrchestrationState }> {
    if (run.status !== "running") return { run };
    const reading = await readOrchestration(orchestrations, run.runId, run.startedAt, this.deps.log);
    if (!reading?.end) return { run, ...(reading?.state ? { state: reading.state } : {}) };
    this.deps.log.warn("Backup run ended by its orchestration", { runId: run.runId, ...reading.end });
    return { run: await failRun(this.deps, run.identityId, run.runId, reading.end) };
  }
}
