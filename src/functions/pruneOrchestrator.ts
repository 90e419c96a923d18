import type { OrchestrationHandler } from "durable-functions";
import * as df from "durable-functions";
import { z } from "zod";
import {
  PRUNE_ORCHESTRATOR,
  type PruneFinishInput,
  type PruneRunInput,
  pruneFinishInputSchema,
  pruneRunInputSchema,
} from "../core/backup/prune-service.js";
import { errorMessage } from "../core/errors.js";
import { getServices } from "../core/services.js";
import { parseOrchestrationInput, validatedActivity } from "./shared/activity-input.js";
import { retryPolicy } from "./shared/orchestration.js";

// A prune: plan (each run kept, trimmed or forgotten; written to Blob) → sweep of unreferenced item
// blobs → forgotten and trimmed runs → report. Each step reads the plan, so a retried step (or a
// restarted host) does the same thing again; deleting what is already gone is no error.

export const PRUNE_PLAN_ACTIVITY = "prunePlan";
export const PRUNE_SWEEP_ACTIVITY = "pruneSweep";
export const PRUNE_RUNS_ACTIVITY = "pruneRuns";
export const PRUNE_FINISH_ACTIVITY = "pruneFinish";
export const PRUNE_RECORD_FAILURE_ACTIVITY = "pruneRecordFailure";
/** After a scheduled backup: starts the identity's prune when it has a policy. */
export const PRUNE_AFTER_BACKUP_ACTIVITY = "pruneAfterScheduledBackup";

const retry = () => retryPolicy(5_000, 60_000);

const pruneOrchestrator: OrchestrationHandler = function* (context) {
  const input = parseOrchestrationInput(pruneRunInputSchema, context.df.getInput(), PRUNE_ORCHESTRATOR);
  try {
    context.df.setCustomStatus({ phase: "plan" });
    const runs = yield context.df.callActivityWithRetry(PRUNE_PLAN_ACTIVITY, retry(), input);
    context.df.setCustomStatus({ phase: "sweep", runs });
    const sweep = yield context.df.callActivityWithRetry(PRUNE_SWEEP_ACTIVITY, retry(), input);
    context.df.setCustomStatus({ phase: "runs", runs, sweep });
    const forgotten = yield context.df.callActivityWithRetry(PRUNE_RUNS_ACTIVITY, retry(), input);
    return yield context.df.callActivityWithRetry(PRUNE_FINISH_ACTIVITY, retry(), {
      ...input,
      sweep,
      runs: forgotten,
    } as PruneFinishInput);
  } catch (error) {
    return yield context.df.callActivityWithRetry(PRUNE_RECORD_FAILURE_ACTIVITY, retry(), {
      ...input,
      error: { code: "ERR_PRUNE_FAILED", message: errorMessage(error) },
    });
  }
};

df.app.orchestration(PRUNE_ORCHESTRATOR, pruneOrchestrator);

const failureInputSchema = pruneRunInputSchema.extend({
  error: z.object({ code: z.string(), message: z.string() }),
});
const afterBackupInputSchema = z.object({ runId: z.string(), identityId: z.string() });

validatedActivity(PRUNE_PLAN_ACTIVITY, pruneRunInputSchema, async (input: PruneRunInput) =>
  (await getServices()).prunes.plan(input),
);
validatedActivity(PRUNE_SWEEP_ACTIVITY, pruneRunInputSchema, async (input: PruneRunInput) =>
  (await getServices()).prunes.sweep(input),
);
validatedActivity(PRUNE_RUNS_ACTIVITY, pruneRunInputSchema, async (input: PruneRunInput) =>
  (await getServices()).prunes.forgetRuns(input),
);
validatedActivity(PRUNE_FINISH_ACTIVITY, pruneFinishInputSchema, async (input) =>
  (await getServices()).prunes.finish(input),
);
validatedActivity(PRUNE_RECORD_FAILURE_ACTIVITY, failureInputSchema, async ({ error, ...input }) =>
  (await getServices()).prunes.fail(input, error),
);
validatedActivity(PRUNE_AFTER_BACKUP_ACTIVITY, afterBackupInputSchema, async (input) =>
  (await getServices()).prunes.afterScheduledBackup(input.identityId, input.runId),
);
