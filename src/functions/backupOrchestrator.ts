import type { OrchestrationContext, OrchestrationHandler, Task } from "durable-functions";
import * as df from "durable-functions";
import { z } from "zod";
import type {
  BackupRunner,
  BatchInput,
  FinalizeInput,
  InventoryOutcome,
} from "../core/backup/backup-runner.js";
import { BACKUP_ORCHESTRATOR, type BackupRunInput } from "../core/backup/backup-service.js";
import { RUN_ID_PATTERN } from "../core/backup/layout.js";
import {
  addBatchCounts,
  type BatchCounts,
  type BatchOutcome,
  emptyBatchCounts,
  itemsPerSecond,
  type RunProgress,
} from "../core/backup/progress.js";
import { backupFilterSchema } from "../core/backup/runs.js";
import { errorMessage } from "../core/errors.js";
import { getServices } from "../core/services.js";
import { retryPolicy, window } from "./shared/orchestration.js";

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

const runInputSchema = z.object({
  runId: z.string().regex(RUN_ID_PATTERN),
  identityId: z.string().min(1),
  filter: backupFilterSchema.optional(),
});

interface ChunkInput extends BackupRunInput {
  chunkIndex: number;
  items: number;
  batchSize: number;
}

const chunkInstanceId = (runId: string, chunkIndex: number) => `${runId}-chunk-${chunkIndex}`;

const backupOrchestrator: OrchestrationHandler = function* (context) {
  const parsed = runInputSchema.safeParse(context.df.getInput());
  if (!parsed.success) throw new Error(`${BACKUP_ORCHESTRATOR}: invalid input: ${parsed.error.message}`);
  const input = parsed.data;
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
  return yield finalize({
    outcome: "completed",
    traffic: { requests, retries, throttled, requestUnits, budgetWaitMs },
  });
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
        const outcome = task.result as BatchOutcome;
        addBatchCounts(progress, outcome);
        stopped ||= outcome.stopped;
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

const backupChunkOrchestrator: OrchestrationHandler = function* (context) {
  const input = context.df.getInput() as ChunkInput;
  const totals = emptyBatchCounts();
  let stopped = false;
  const batches = Math.ceil(input.items / input.batchSize);
  yield* window(
    context,
    batches,
    BATCHES_IN_FLIGHT,
    (batchIndex) =>
      context.df.callActivityWithRetry(EXPORT_BATCH_ACTIVITY, retry(), {
        runId: input.runId,
        identityId: input.identityId,
        chunkIndex: input.chunkIndex,
        batchIndex,
      } satisfies BatchInput),
    function* (batchIndex, task) {
      if (!task.isFaulted) {
        const outcome = task.result as BatchOutcome;
        addBatchCounts(totals, outcome);
        // A cancelled run: no more batches start; those in flight stop on their own.
        stopped ||= outcome.stopped;
        context.df.setCustomStatus(totals);
        return;
      }
      // Retries exhausted (the portal stayed down or throttled): record the batch as failed.
      const failed = (yield context.df.callActivityWithRetry(FAIL_BATCH_ACTIVITY, retry(), {
        runId: input.runId,
        identityId: input.identityId,
        chunkIndex: input.chunkIndex,
        batchIndex,
        reason: String((task.result as Error | undefined)?.message ?? "the batch failed after its retries"),
      })) as BatchCounts;
      addBatchCounts(totals, failed);
      context.df.setCustomStatus(totals);
    },
    () => stopped,
  );
  const outcome: BatchOutcome = { ...totals, stopped };
  return outcome;
};

df.app.orchestration(BACKUP_ORCHESTRATOR, backupOrchestrator);
df.app.orchestration(CHUNK_ORCHESTRATOR, backupChunkOrchestrator);

df.app.activity(INVENTORY_ACTIVITY, {
  handler: async (input: BackupRunInput) => (await getServices()).runner.inventory(input),
});
df.app.activity(EXPORT_BATCH_ACTIVITY, {
  handler: async (input: BatchInput) => (await getServices()).runner.exportBatch(input),
});
df.app.activity(FAIL_BATCH_ACTIVITY, {
  handler: async (input: BatchInput & { reason: string }) => (await getServices()).runner.failBatch(input),
});
df.app.activity(FINALIZE_ACTIVITY, {
  handler: async (input: FinalizeInput) => (await getServices()).runner.finalize(input),
});
df.app.activity(RECORD_FAILURE_ACTIVITY, {
  handler: async (input: Parameters<BackupRunner["recordFailure"]>[0]) =>
    (await getServices()).runner.recordFailure(input),
});
