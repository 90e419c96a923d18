import type { OrchestrationContext, OrchestrationHandler, Task } from "durable-functions";
import * as df from "durable-functions";
import type {
  BackupRunner,
  BatchCounts,
  BatchInput,
  InventoryOutcome,
} from "../core/backup/backup-runner.js";
import { BACKUP_ORCHESTRATOR, type BackupRunInput, CANCEL_EVENT } from "../core/backup/backup-service.js";
import { getServices } from "../core/services.js";

// A backup run: inventory → chunks of the inventory as sub-orchestrations (a few at a time) →
// batches of items as activities → manifest. Only counts cross the history; items stay in Blob.

export const INVENTORY_ACTIVITY = "backupInventory";
export const EXPORT_BATCH_ACTIVITY = "backupExportBatch";
export const FAIL_BATCH_ACTIVITY = "backupFailBatch";
export const FINALIZE_ACTIVITY = "backupFinalize";
export const CHUNK_ORCHESTRATOR = "backupChunkOrchestrator";

const CHUNKS_IN_FLIGHT = 3;
const BATCHES_IN_FLIGHT = 16;

function retryPolicy(): df.RetryOptions {
  const retry = new df.RetryOptions(5_000, 4);
  retry.backoffCoefficient = 2;
  retry.maxRetryIntervalInMilliseconds = 60_000;
  return retry;
}

interface ChunkInput extends BackupRunInput {
  chunkIndex: number;
  items: number;
  batchSize: number;
}

interface Progress {
  phase: "inventory" | "export" | "manifest";
  itemsTotal: number;
  itemsDone: number;
  exported: number;
  unchanged: number;
  failed: number;
  bytes: number;
  requests: number;
  retries: number;
  throttled: number;
  requestUnits: number;
  budgetWaitMs: number;
  chunksDone: number;
  chunksTotal: number;
  itemsPerSecond: number;
  startedAt: string;
  cancelRequested: boolean;
  /** Chunks in flight; their own custom status carries the counts they have so far. */
  runningChunks: string[];
}

function addCounts(progress: Progress, counts: BatchCounts): void {
  progress.exported += counts.exported;
  progress.unchanged += counts.unchanged;
  progress.failed += counts.failed;
  progress.bytes += counts.bytes;
  progress.requests += counts.requests;
  progress.retries += counts.retries;
  progress.throttled += counts.throttled;
  progress.requestUnits += counts.requestUnits;
  progress.budgetWaitMs += counts.budgetWaitMs;
  progress.itemsDone = progress.exported + progress.unchanged + progress.failed;
}

/**
 * Keeps up to `limit` tasks running over `count` units of work; `onDone` sees each finished
 * task (maybe faulted). Stops starting new work once `stop()` says so.
 */
function* window(
  context: OrchestrationContext,
  count: number,
  limit: number,
  startTask: (index: number) => Task,
  onDone: (index: number, task: Task) => Generator<Task, void, unknown> | undefined,
  stop: () => boolean,
  interrupt?: Task,
): Generator<Task, void, unknown> {
  const running = new Map<Task, number>();
  let next = 0;
  while (true) {
    while (!stop() && running.size < limit && next < count) {
      running.set(startTask(next), next);
      next++;
    }
    if (running.size === 0) return;
    const watch = [...running.keys()];
    if (interrupt && !interrupt.isCompleted) watch.push(interrupt);
    const winner = (yield context.df.Task.any(watch)) as Task;
    if (winner === interrupt) continue;
    const index = running.get(winner) ?? 0;
    running.delete(winner);
    const followUp = onDone(index, winner);
    if (followUp) yield* followUp;
    if (stop() && interrupt?.isCompleted) {
      // Cancelled: what already finished counts, the rest is abandoned.
      return;
    }
  }
}

const backupOrchestrator: OrchestrationHandler = function* (context) {
  const input = context.df.getInput() as BackupRunInput;
  const started = context.df.currentUtcDateTime;
  const cancel = context.df.waitForExternalEvent(CANCEL_EVENT);
  const progress: Progress = {
    phase: "inventory",
    itemsTotal: 0,
    itemsDone: 0,
    exported: 0,
    unchanged: 0,
    failed: 0,
    bytes: 0,
    requests: 0,
    retries: 0,
    throttled: 0,
    requestUnits: 0,
    budgetWaitMs: 0,
    chunksDone: 0,
    chunksTotal: 0,
    itemsPerSecond: 0,
    startedAt: started.toISOString(),
    cancelRequested: false,
    runningChunks: [],
  };
  context.df.setCustomStatus(progress);

  let inventory: {
    itemCount: number;
    unchangedCount: number;
    chunkCount: number;
    chunkSize: number;
    batchSize: number;
  };
  try {
    inventory = yield context.df.callActivityWithRetry(INVENTORY_ACTIVITY, retryPolicy(), input);
  } catch (error) {
    return yield context.df.callActivityWithRetry(FINALIZE_ACTIVITY, retryPolicy(), {
      runId: input.runId,
      identityId: input.identityId,
      outcome: "failed",
      error: { code: "ERR_INVENTORY", message: (error as Error).message },
    });
  }
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
  return yield context.df.callActivityWithRetry(FINALIZE_ACTIVITY, retryPolicy(), {
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
  const totals: BatchCounts = {
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
  const add = (counts: BatchCounts) => {
    for (const key of Object.keys(totals) as Array<keyof BatchCounts>) totals[key] += counts[key];
  };
  const batches = Math.ceil(input.items / input.batchSize);
  yield* window(
    context,
    batches,
    BATCHES_IN_FLIGHT,
    (batchIndex) =>
      context.df.callActivityWithRetry(EXPORT_BATCH_ACTIVITY, retryPolicy(), {
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
      const failed = (yield context.df.callActivityWithRetry(FAIL_BATCH_ACTIVITY, retryPolicy(), {
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
