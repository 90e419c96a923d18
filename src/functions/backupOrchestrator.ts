import type { OrchestrationHandler } from "durable-functions";
import * as df from "durable-functions";
import {
  type BackupRunner,
  type BatchCounts,
  type BatchInput,
  emptyBatchCounts,
  type InventoryOutcome,
} from "../core/backup/backup-runner.js";
import { BACKUP_ORCHESTRATOR, type BackupRunInput, CANCEL_EVENT } from "../core/backup/backup-service.js";
import { getServices } from "../core/services.js";
import { retryPolicy, window } from "./shared/orchestration.js";

// A backup run: inventory → chunks of the inventory as sub-orchestrations (a few at a time) →
// batches of items as activities → manifest. Only counts cross the history; items stay in Blob.

export const INVENTORY_ACTIVITY = "backupInventory";
export const EXPORT_BATCH_ACTIVITY = "backupExportBatch";
export const FAIL_BATCH_ACTIVITY = "backupFailBatch";
export const FINALIZE_ACTIVITY = "backupFinalize";
export const CHUNK_ORCHESTRATOR = "backupChunkOrchestrator";

const CHUNKS_IN_FLIGHT = 3;
const BATCHES_IN_FLIGHT = 16;

const retry = () => retryPolicy(5_000, 60_000);

interface ChunkInput extends BackupRunInput {
  chunkIndex: number;
  items: number;
  batchSize: number;
}

interface Progress extends BatchCounts {
  phase: "inventory" | "export" | "manifest";
  itemsTotal: number;
  itemsDone: number;
  chunksDone: number;
  chunksTotal: number;
  itemsPerSecond: number;
  startedAt: string;
  cancelRequested: boolean;
  /** Chunks in flight; their own custom status carries the counts they have so far. */
  runningChunks: string[];
}

function addCounts(into: BatchCounts, counts: BatchCounts): void {
  for (const key of Object.keys(counts) as Array<keyof BatchCounts>) into[key] += counts[key];
}

const backupOrchestrator: OrchestrationHandler = function* (context) {
  const input = context.df.getInput() as BackupRunInput;
  const started = context.df.currentUtcDateTime;
  const cancel = context.df.waitForExternalEvent(CANCEL_EVENT);
  const progress: Progress = {
    ...emptyBatchCounts(),
    phase: "inventory",
    itemsTotal: 0,
    itemsDone: 0,
    chunksDone: 0,
    chunksTotal: 0,
    itemsPerSecond: 0,
    startedAt: started.toISOString(),
    cancelRequested: false,
    runningChunks: [],
  };
  context.df.setCustomStatus(progress);

  let outcome: InventoryOutcome;
  try {
    outcome = yield context.df.callActivityWithRetry(INVENTORY_ACTIVITY, retry(), input);
  } catch (error) {
    // Retries exhausted: the portal or the storage stayed unreachable.
    outcome = { ok: false, error: { code: "ERR_INVENTORY", message: (error as Error).message } };
  }
  if (!outcome.ok) {
    return yield context.df.callActivityWithRetry(FINALIZE_ACTIVITY, retry(), {
      runId: input.runId,
      identityId: input.identityId,
      outcome: "failed",
      error: outcome.error,
    });
  }
  const inventory = outcome;
  progress.phase = "export";
  progress.itemsTotal = inventory.itemCount + inventory.unchangedCount;
  progress.unchanged = inventory.unchangedCount;
  progress.itemsDone = inventory.unchangedCount;
  progress.chunksTotal = inventory.chunkCount;
  context.df.setCustomStatus(progress);

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
      const instanceId = `${input.runId}-chunk-${chunkIndex}`;
      progress.runningChunks.push(instanceId);
      context.df.setCustomStatus(progress);
      return context.df.callSubOrchestrator(CHUNK_ORCHESTRATOR, chunk, instanceId);
    },
    (chunkIndex, task) => {
      progress.runningChunks = progress.runningChunks.filter(
        (id) => id !== `${input.runId}-chunk-${chunkIndex}`,
      );
      if (!task.isFaulted) addCounts(progress, task.result as BatchCounts);
      progress.itemsDone = progress.exported + progress.unchanged + progress.failed;
      progress.chunksDone++;
      const seconds = (context.df.currentUtcDateTime.getTime() - started.getTime()) / 1000;
      progress.itemsPerSecond = seconds > 0 ? Math.round((progress.itemsDone / seconds) * 10) / 10 : 0;
      context.df.setCustomStatus(progress);
      return undefined;
    },
    () => cancel.isCompleted,
    cancel,
  );

  progress.cancelRequested = cancel.isCompleted;
  progress.phase = "manifest";
  context.df.setCustomStatus(progress);
  return yield context.df.callActivityWithRetry(FINALIZE_ACTIVITY, retry(), {
    runId: input.runId,
    identityId: input.identityId,
    outcome: cancel.isCompleted ? "cancelled" : "completed",
    traffic: {
      requests: progress.requests,
      retries: progress.retries,
      throttled: progress.throttled,
      requestUnits: progress.requestUnits,
      budgetWaitMs: progress.budgetWaitMs,
    },
  });
};

const backupChunkOrchestrator: OrchestrationHandler = function* (context) {
  const input = context.df.getInput() as ChunkInput;
  const totals = emptyBatchCounts();
  const add = (counts: BatchCounts) => addCounts(totals, counts);
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
      }),
    function* (batchIndex, task) {
      if (!task.isFaulted) {
        add(task.result as BatchCounts);
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
      add(failed);
      context.df.setCustomStatus(totals);
    },
    () => false,
  );
  return totals;
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
  handler: async (input: Parameters<BackupRunner["finalize"]>[0]) =>
    (await getServices()).runner.finalize(input),
});
