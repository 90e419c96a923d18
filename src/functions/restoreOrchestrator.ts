import type { OrchestrationContext, OrchestrationHandler, Task } from "durable-functions";
import * as df from "durable-functions";
import { errorMessage } from "../core/errors.js";
import {
  type RestoreBatchInput,
  restoreBatchInputSchema,
  restoreFailBatchInputSchema,
  restoreFinalizeInputSchema,
  restoreInputSchema,
  restoreRecordFailureInputSchema,
} from "../core/restore/activity-inputs.js";
import type { BatchCounts, BatchOutcome, PlanSummary } from "../core/restore/restore-runner.js";
import { RESTORE_ORCHESTRATOR, type RestoreRunInput } from "../core/restore/restore-service.js";
import { getRestoreServices } from "../core/restore/restore-services.js";
import { parseOrchestrationInput, validatedActivity } from "./shared/activity-input.js";
import { type OutageClock, retryPolicy, settleBatch, window } from "./shared/orchestration.js";

// A restore: plan (dependency levels) → level by level, batches of items as activities, a few at a
// time → a last pass for references between items of one level → the report. Only counts cross
// the history; the plan, progress rows and report live in Blob and Table.

export const PLAN_ACTIVITY = "restorePlan";
export const BATCH_ACTIVITY = "restoreBatch";
export const FAIL_BATCH_ACTIVITY = "restoreFailBatch";
export const RELINK_ACTIVITY = "restoreRelink";
export const FINALIZE_ACTIVITY = "restoreFinalize";
export const RECORD_FAILURE_ACTIVITY = "restoreRecordFailure";

/** Batches of one level in flight: bounded parallelism against the target org. */
const BATCHES_IN_FLIGHT = 4;

const retry = () => retryPolicy(2_000, 30_000);

interface Progress {
  phase: "plan" | "restore" | "relink" | "report";
  level: number;
  levels: number;
  itemsTotal: number;
  itemsDone: number;
  restored: number;
  failed: number;
  skipped: number;
  requests: number;
  retries: number;
  throttled: number;
  startedAt: string;
}

function addCounts(progress: Progress, counts: BatchCounts): void {
  progress.restored += counts.restored;
  progress.failed += counts.failed;
  progress.requests += counts.requests;
  progress.retries += counts.retries;
  progress.throttled += counts.throttled;
  progress.itemsDone = progress.restored + progress.failed + progress.skipped;
}

const restoreOrchestrator: OrchestrationHandler = function* (context) {
  const input = parseOrchestrationInput(restoreInputSchema, context.df.getInput(), RESTORE_ORCHESTRATOR);
  try {
    return yield* runRestore(context, input);
  } catch (error) {
    // Whatever ended the restore early (its report failed past its retries, a fault here): its
    // record ends failed with the reason, through the runs table alone.
    return yield context.df.callActivityWithRetry(RECORD_FAILURE_ACTIVITY, retry(), {
      ...input,
      error: { code: "ERR_RESTORE_FAILED", message: errorMessage(error) },
    });
  }
};

function* runRestore(
  context: OrchestrationContext,
  input: RestoreRunInput,
): Generator<Task, unknown, unknown> {
  const progress: Progress = {
    phase: "plan",
    level: 0,
    levels: 0,
    itemsTotal: 0,
    itemsDone: 0,
    restored: 0,
    failed: 0,
    skipped: 0,
    requests: 0,
    retries: 0,
    throttled: 0,
    startedAt: context.df.currentUtcDateTime.toISOString(),
  };
  context.df.setCustomStatus(progress);

  let summary: PlanSummary;
  try {
    summary = (yield context.df.callActivityWithRetry(PLAN_ACTIVITY, retry(), input)) as PlanSummary;
  } catch (error) {
    return yield context.df.callActivityWithRetry(FINALIZE_ACTIVITY, retry(), {
      ...input,
      outcome: "failed",
      error: { code: "ERR_PLAN", message: errorMessage(error) },
    });
  }
  progress.phase = "restore";
  progress.levels = summary.batchesPerLevel.length;
  progress.itemsTotal = summary.items;
  progress.skipped = summary.skipped;
  progress.itemsDone = summary.skipped;
  context.df.setCustomStatus(progress);

  const outage: OutageClock = { since: undefined };
  const count = (counts: BatchCounts) => {
    addCounts(progress, counts);
    context.df.setCustomStatus(progress);
  };
  for (let level = 0; level < summary.batchesPerLevel.length; level++) {
    progress.level = level;
    context.df.setCustomStatus(progress);
    const restoreBatch = (batch: number) =>
      context.df.callActivityWithRetry(BATCH_ACTIVITY, retry(), {
        ...input,
        level,
        batch,
      } satisfies RestoreBatchInput);
    yield* window(
      context,
      summary.batchesPerLevel[level] ?? 0,
      BATCHES_IN_FLIGHT,
      restoreBatch,
      function* (batch, task) {
        // A paused batch runs again from its items' progress rows; one that cannot end fails its items.
        const failure = yield* settleBatch<BatchOutcome>(
          context,
          outage,
          task,
          () => restoreBatch(batch),
          count,
        );
        if (!failure) return;
        count(
          (yield context.df.callActivityWithRetry(FAIL_BATCH_ACTIVITY, retry(), {
            ...input,
            level,
            batch,
            ...failure,
          })) as BatchCounts,
        );
      },
    );
  }

  progress.phase = "relink";
  context.df.setCustomStatus(progress);
  try {
    yield context.df.callActivityWithRetry(RELINK_ACTIVITY, retry(), input);
  } catch {
    // References left unwritten are reported as unchanged; the restore itself stands.
  }
  progress.phase = "report";
  context.df.setCustomStatus(progress);
  return yield context.df.callActivityWithRetry(FINALIZE_ACTIVITY, retry(), {
    ...input,
    outcome: "completed",
  });
}

df.app.orchestration(RESTORE_ORCHESTRATOR, restoreOrchestrator);

validatedActivity(PLAN_ACTIVITY, restoreInputSchema, async (input) =>
  (await getRestoreServices()).runner.plan(input),
);
validatedActivity(BATCH_ACTIVITY, restoreBatchInputSchema, async (input) =>
  (await getRestoreServices()).runner.restoreBatch(input),
);
validatedActivity(FAIL_BATCH_ACTIVITY, restoreFailBatchInputSchema, async (input) =>
  (await getRestoreServices()).runner.failBatch(input),
);
validatedActivity(RELINK_ACTIVITY, restoreInputSchema, async (input) =>
  (await getRestoreServices()).runner.relink(input),
);
validatedActivity(RECORD_FAILURE_ACTIVITY, restoreRecordFailureInputSchema, async (input) =>
  (await getRestoreServices()).runner.recordFailure(input),
);
validatedActivity(FINALIZE_ACTIVITY, restoreFinalizeInputSchema, async (input) =>
  (await getRestoreServices()).runner.finalize(input),
);
