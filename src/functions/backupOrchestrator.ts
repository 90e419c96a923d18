import type { OrchestrationContext, OrchestrationHandler, Task } from "durable-functions";
import * as df from "durable-functions";
import {
  type BackupRunInput,
  type BatchInput,
  backupRunInputSchema,
  batchInputSchema,
  type ChunkInput,
  chunkInputSchema,
  type FinalizeInput,
  failBatchInputSchema,
  finalizeInputSchema,
  recordFailureInputSchema,
} from "../core/backup/activity-inputs.js";
import type { InventoryOutcome } from "../core/backup/backup-runner.js";
import { BACKUP_ORCHESTRATOR } from "../core/backup/backup-service.js";
import {
  addBatchCounts,
  type BatchCounts,
  type BatchOutcome,
  emptyBatchCounts,
  itemsPerSecond,
  type RunProgress,
} from "../core/backup/progress.js";
import { PRUNE_ORCHESTRATOR } from "../core/backup/prune-service.js";
import { errorMessage } from "../core/errors.js";
import { getServices } from "../core/services.js";
import { PRUNE_AFTER_BACKUP_ACTIVITY } from "./pruneOrchestrator.js";
import { parseOrchestrationInput, validatedActivity } from "./shared/activity-input.js";
import { type OutageClock, retryPolicy, settleBatch, window } from "./shared/orchestration.js";

// A backup run: inventory → chunks of the inventory as sub-orchestrations (a few at a time) →
// batches of items as activities → manifest. Only counts cross the history; items stay in Blob.

export const INVENTORY_ACTIVITY = "backupInventory";
export const EXPORT_BATCH_ACTIVITY = "backupExportBatch";
export const FAIL_BATCH_ACTIVITY = "backupFailBatch";
export const FINALIZE_ACTIVITY = "backupFinalize";
export const RECORD_FAILURE_ACTIVITY = "backupRecordFailure";
export const CHUNK_ORCHESTRATOR = "backupChunkOrchestrator";

const CHUNKS_IN_FLIGHT = 3;
const BATCHES_IN_FLIGHT = 16;

const retry = () => retryPolicy(5_000, 60_000);

const chunkInstanceId = (runId: string, chunkIndex: number) => `${runId}-chunk-${chunkIndex}`;

const backupOrchestrator: OrchestrationHandler = function* (context) {
  const input = parseOrchestrationInput(backupRunInputSchema, context.df.getInput(), BACKUP_ORCHESTRATOR);
  try {
    return yield* runBackup(context, input);
  } catch (error) {
    // Whatever ended the run early (its finalize failed past its retries, a fault here): its record
    // ends failed with the reason, through the runs table alone.
    return yield context.df.callActivityWithRetry(RECORD_FAILURE_ACTIVITY, retry(), {
      runId: input.runId,
      identityId: input.identityId,
      error: { code: "ERR_RUN_FAILED", message: errorMessage(error) },
    });
  }
};

function* runBackup(context: OrchestrationContext, input: BackupRunInput): Generator<Task, unknown, unknown> {
  const progress: RunProgress = {
    ...emptyBatchCounts(),
    phase: "inventory",
    itemsTotal: 0,
    itemsDone: 0,
    chunksDone: 0,
    chunksTotal: 0,
    itemsPerSecond: 0,
    startedAt: context.df.currentUtcDateTime.toISOString(),
    runningChunks: [],
  };
  context.df.setCustomStatus(progress);
  const finalize = (outcome: Omit<FinalizeInput, "runId" | "identityId">) =>
    context.df.callActivityWithRetry(FINALIZE_ACTIVITY, retry(), {
      runId: input.runId,
      identityId: input.identityId,
      ...outcome,
    } satisfies FinalizeInput);

  let inventory: InventoryOutcome;
  try {
    inventory = (yield context.df.callActivityWithRetry(
      INVENTORY_ACTIVITY,
      retry(),
      input,
    )) as InventoryOutcome;
  } catch (error) {
    // Retries exhausted: the portal or the storage stayed unreachable.
    inventory = { ok: false, error: { code: "ERR_INVENTORY", message: errorMessage(error) } };
  }
  if (!inventory.ok) return yield finalize({ outcome: "failed", error: inventory.error });
  progress.phase = "export";
  progress.itemsTotal = inventory.itemCount + inventory.unchangedCount;
  progress.unchanged = inventory.unchangedCount;
  progress.itemsDone = inventory.unchangedCount;
  progress.chunksTotal = inventory.chunkCount;
  context.df.setCustomStatus(progress);

  yield* exportChunks(context, input, inventory, progress);

  progress.phase = "manifest";
  context.df.setCustomStatus(progress);
  const { requests, retries, throttled, requestUnits, budgetWaitMs } = progress;
  const ended = yield finalize({
    outcome: "completed",
    traffic: { requests, retries, throttled, requestUnits, budgetWaitMs },
  });
  yield* pruneAfterScheduledBackup(context, input);
  return ended;
}

/**
 * A scheduled backup of an identity with a retention policy is followed by a prune, once the
 * backup has ended and let go of the lock. A prune that cannot start or fails leaves the backup
 * as it ended (the prune's own record says why).
 */
function* pruneAfterScheduledBackup(
  context: OrchestrationContext,
  input: BackupRunInput,
): Generator<Task, void, unknown> {
  try {
    const pruneId = (yield context.df.callActivityWithRetry(PRUNE_AFTER_BACKUP_ACTIVITY, retry(), {
      runId: input.runId,
      identityId: input.identityId,
    })) as string | null;
    if (pruneId) {
      yield context.df.callSubOrchestrator(
        PRUNE_ORCHESTRATOR,
        { pruneId, identityId: input.identityId },
        pruneId,
      );
    }
  } catch {
    // Recorded by the prune, or (not started) retried after the next scheduled backup.
  }
}

/**
 * The run's chunks, a few at a time. Once one reports the run stopped (cancelled), no more start
 * and those in flight are waited for — their batches stop within seconds — so no work of the run
 * goes on after its record has ended.
 */
function* exportChunks(
  context: OrchestrationContext,
  input: BackupRunInput,
  inventory: Extract<InventoryOutcome, { ok: true }>,
  progress: RunProgress,
): Generator<Task, void, unknown> {
  let stopped = false;
  // As the chunk that ended last saw it: a chunk started during an outage does not wait it out anew.
  let outageSince: string | undefined;
  yield* window(
    context,
    inventory.chunkCount,
    CHUNKS_IN_FLIGHT,
    (chunkIndex) => {
      const chunk: ChunkInput = {
        ...input,
        chunkIndex,
        items: Math.min(inventory.chunkSize, inventory.itemCount - chunkIndex * inventory.chunkSize),
        batchSize: inventory.batchSize,
        ...(outageSince ? { outageSince } : {}),
      };
      const instanceId = chunkInstanceId(input.runId, chunkIndex);
      progress.runningChunks.push(instanceId);
      context.df.setCustomStatus(progress);
      return context.df.callSubOrchestrator(CHUNK_ORCHESTRATOR, chunk, instanceId);
    },
    (chunkIndex, task) => {
      const instanceId = chunkInstanceId(input.runId, chunkIndex);
      progress.runningChunks = progress.runningChunks.filter((id) => id !== instanceId);
      if (!task.isFaulted) {
        const outcome = task.result as ChunkOutcome;
        addBatchCounts(progress, outcome);
        stopped ||= outcome.stopped;
        outageSince = outcome.outageSince;
      }
      progress.itemsDone = progress.exported + progress.unchanged + progress.failed;
      progress.chunksDone++;
      progress.itemsPerSecond = itemsPerSecond(
        progress.itemsDone,
        progress.startedAt,
        context.df.currentUtcDateTime,
      );
      context.df.setCustomStatus(progress);
      return undefined;
    },
    () => stopped,
  );
}

/** A chunk's result; `outageSince`: an outage was still going on when it ended. */
type ChunkOutcome = BatchOutcome & { outageSince?: string };

const backupChunkOrchestrator: OrchestrationHandler = function* (context) {
  const input = parseOrchestrationInput(chunkInputSchema, context.df.getInput(), CHUNK_ORCHESTRATOR);
  const totals = emptyBatchCounts();
  let stopped = false;
  // An outage the chunks before met, still going on: counted from its start, not from this chunk's.
  const outage: OutageClock = { since: input.outageSince };
  const batches = Math.ceil(input.items / input.batchSize);
  const exportBatch = (batchIndex: number, afterPause: boolean) =>
    context.df.callActivityWithRetry(EXPORT_BATCH_ACTIVITY, retry(), {
      runId: input.runId,
      identityId: input.identityId,
      chunkIndex: input.chunkIndex,
      batchIndex,
      ...(afterPause ? { afterPause } : {}),
    } satisfies BatchInput);
  const count = (outcome: BatchOutcome) => {
    addBatchCounts(totals, outcome);
    // A cancelled run: no more batches start; those in flight stop on their own.
    stopped ||= outcome.stopped;
    context.df.setCustomStatus(totals);
  };
  yield* window(
    context,
    batches,
    BATCHES_IN_FLIGHT,
    (batchIndex) => exportBatch(batchIndex, false),
    function* (batchIndex, task) {
      const failure = yield* settleBatch(context, outage, task, () => exportBatch(batchIndex, true), count);
      if (!failure) return;
      const failed = (yield context.df.callActivityWithRetry(FAIL_BATCH_ACTIVITY, retry(), {
        runId: input.runId,
        identityId: input.identityId,
        chunkIndex: input.chunkIndex,
        batchIndex,
        ...failure,
      })) as BatchCounts;
      addBatchCounts(totals, failed);
      context.df.setCustomStatus(totals);
    },
    () => stopped,
  );
  const outcome: ChunkOutcome = {
    ...totals,
    stopped,
    ...(outage.since ? { outageSince: outage.since } : {}),
  };
  return outcome;
};

df.app.orchestration(BACKUP_ORCHESTRATOR, backupOrchestrator);
df.app.orchestration(CHUNK_ORCHESTRATOR, backupChunkOrchestrator);

validatedActivity(INVENTORY_ACTIVITY, backupRunInputSchema, async (input) =>
  (await getServices()).runner.inventory(input),
);
validatedActivity(EXPORT_BATCH_ACTIVITY, batchInputSchema, async (input) =>
  (await getServices()).runner.exportBatch(input),
);
validatedActivity(FAIL_BATCH_ACTIVITY, failBatchInputSchema, async (input) =>
  (await getServices()).runner.failBatch(input),
);
validatedActivity(FINALIZE_ACTIVITY, finalizeInputSchema, async (input) =>
  (await getServices()).runner.finalize(input),
);
validatedActivity(RECORD_FAILURE_ACTIVITY, recordFailureInputSchema, async (input) =>
  (await getServices()).runner.recordFailure(input),
);
