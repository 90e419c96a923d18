import { z } from "zod";
import { ConflictError, NotFoundError } from "../errors.js";
import type { IdentityService } from "../identities/identity-service.js";
import type { Logger } from "../log.js";
import { lastOccurrenceBetween } from "../schedule.js";
import { parseInput } from "../validation.js";
import type { BackupFilter } from "./inventory.js";
import { newRunId, RUN_ID_PATTERN } from "./layout.js";
import type { RunRecord, RunStore } from "./runs.js";

/** The orchestration engine, as the backup use cases need it (Durable Functions in the app). */
export interface OrchestrationClient {
  start(orchestrator: string, instanceId: string, input: unknown): Promise<void>;
  status(instanceId: string): Promise<{ runtimeStatus: string; customStatus: unknown } | undefined>;
  raiseEvent(instanceId: string, eventName: string, data: unknown): Promise<void>;
}

export const BACKUP_ORCHESTRATOR = "backupOrchestrator";
export const CANCEL_EVENT = "cancel";

export interface BackupRunInput {
  runId: string;
  identityId: string;
  filter?: BackupFilter;
}

const list = z.array(z.string().trim().min(1).max(256)).min(1).max(1000);
const startSchema = z.strictObject({
  name: z.string().trim().min(1).max(200).optional(),
  filter: z
    .strictObject({
      types: list.optional(),
      owners: list.optional(),
      folders: list.optional(),
      tags: list.optional(),
      itemIds: z
        .array(z.string().regex(/^[0-9a-f]{32}$/, "must be 32-character item ids"))
        .min(1)
        .max(1000)
        .optional(),
    })
    .optional(),
});

const COUNT_KEYS = [
  "exported",
  "unchanged",
  "failed",
  "bytes",
  "requests",
  "retries",
  "throttled",
  "requestUnits",
  "budgetWaitMs",
] as const;
type LiveCounts = Record<(typeof COUNT_KEYS)[number], number>;
type LiveProgress = LiveCounts & { itemsDone: number; runningChunks?: string[] };

const TERMINAL = new Set(["Completed", "Failed", "Terminated", "Canceled"]);

/** Start, list, follow and cancel backups, and start the scheduled ones that are due. */
export class BackupService {
  constructor(private readonly deps: { identities: IdentityService; runs: RunStore; log: Logger }) {}

  async start(
    identityId: string,
    body: unknown,
    orchestrations: OrchestrationClient,
    trigger: RunRecord["trigger"] = "manual",
  ): Promise<RunRecord> {
    const input = parseInput(startSchema, body ?? {});
    const identity = await this.deps.identities.get(identityId);
    const runId = newRunId("b");
    const holder = await this.deps.runs.acquireLock(identity.id, runId);
    if (holder) {
      if (await this.isActive(holder, orchestrations)) {
        throw new ConflictError(
          `A backup of this identity is already running (run ${holder})`,
          "ERR_BACKUP_RUNNING",
        );
      }
      await this.deps.runs.takeOverLock(identity.id, holder, runId);
    }
    const run: RunRecord = {
      runId,
      identityId: identity.id,
      kind: "backup",
      name: input.name ?? (trigger === "schedule" ? "scheduled" : "manual"),
      trigger,
      status: "running",
      startedAt: new Date().toISOString(),
      itemsTotal: 0,
      itemsExported: 0,
      itemsUnchanged: 0,
      itemsFailed: 0,
      bytes: 0,
      ...(input.filter ? { filter: input.filter } : {}),
    };
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
        .update(identity.id, runId, (next) => {
          next.status = "failed";
          next.endedAt = new Date().toISOString();
          next.error = { code: "ERR_START", message: (error as Error).message };
        })
        .catch(() => {});
      throw error;
    }
    this.deps.log.info("Backup started", { runId, identityId: identity.id, trigger });
    return run;
  }

  async list(identityId: string): Promise<RunRecord[]> {
    const identity = await this.deps.identities.get(identityId);
    return this.deps.runs.list(identity.id);
  }

  /** The run, with live progress from the orchestration while it runs. */
  async get(runId: string, orchestrations: OrchestrationClient): Promise<RunRecord & { progress?: unknown }> {
    const run = RUN_ID_PATTERN.test(runId) ? await this.deps.runs.get(runId) : undefined;
    if (!run) throw new NotFoundError(`Backup run ${runId} not found`);
    if (run.status !== "running") return run;
    const status = await orchestrations.status(runId);
    const progress = status?.customStatus as LiveProgress | undefined;
    if (progress?.runningChunks?.length) {
      // Chunks in flight report their own counts; add them so progress moves batch by batch.
      for (const chunkId of progress.runningChunks) {
        const chunk = (await orchestrations.status(chunkId))?.customStatus as Partial<LiveCounts> | undefined;
        for (const key of COUNT_KEYS) progress[key] += chunk?.[key] ?? 0;
      }
      progress.itemsDone = progress.exported + progress.unchanged + progress.failed;
    }
    return { ...run, ...(progress ? { progress } : {}) };
  }

  async cancel(runId: string, orchestrations: OrchestrationClient): Promise<RunRecord> {
    const run = RUN_ID_PATTERN.test(runId) ? await this.deps.runs.get(runId) : undefined;
    if (!run) throw new NotFoundError(`Backup run ${runId} not found`);
    if (run.status !== "running")
      throw new ConflictError(`Backup run ${runId} has already ended (${run.status})`);
    await orchestrations.raiseEvent(runId, CANCEL_EVENT, { requestedAt: new Date().toISOString() });
    this.deps.log.info("Backup cancel requested", { runId, identityId: run.identityId });
    return run;
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
        this.deps.log.warn("Scheduled backup not started", {
          identityId: view.id,
          reason: (error as Error).message,
        });
      }
    }
    return started;
  }

  private async isActive(runId: string, orchestrations: OrchestrationClient): Promise<boolean> {
    const status = await orchestrations.status(runId).catch(() => undefined);
    if (!status) {
      const run = await this.deps.runs.get(runId);
      return run?.status === "running" && Date.now() - Date.parse(run.startedAt) < 60_000;
    }
    return !TERMINAL.has(status.runtimeStatus);
  }
}
