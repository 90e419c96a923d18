import { z } from "zod";
import { RESTORE_ID_PATTERN } from "./model.js";

// What crosses the Durable history into the restore's orchestration and activities: validated
// where it is read (`parseOrchestrationInput`).

const restoreError = z.object({ code: z.string(), message: z.string() });

/** A restore's orchestration input, as RestoreService.start writes it; every activity's base. */
export const restoreInputSchema = z.object({
  restoreId: z.string().regex(RESTORE_ID_PATTERN, "must be a restore id"),
  identityId: z.string().min(1),
});
export type RestoreInput = z.infer<typeof restoreInputSchema>;

/** One batch of one level of the plan. */
export const restoreBatchInputSchema = restoreInputSchema.extend({
  level: z.number().int().nonnegative(),
  batch: z.number().int().nonnegative(),
});
export type RestoreBatchInput = z.infer<typeof restoreBatchInputSchema>;

/**
 * A batch whose retries ran out, with the reason of its last failure (and its code: an outage
 * that outlasted the maximum is ERR_OUTAGE; by default ERR_BATCH_RETRIES_EXHAUSTED).
 */
export const restoreFailBatchInputSchema = restoreBatchInputSchema.extend({
  reason: z.string(),
  code: z.string().optional(),
});
export type RestoreFailBatchInput = z.infer<typeof restoreFailBatchInputSchema>;

export const restoreFinalizeInputSchema = restoreInputSchema.extend({
  outcome: z.enum(["completed", "failed"]),
  error: restoreError.optional(),
});
export type RestoreFinalizeInput = z.infer<typeof restoreFinalizeInputSchema>;

/** The last resort of an orchestration that could not finish its restore. */
export const restoreRecordFailureInputSchema = restoreInputSchema.extend({ error: restoreError });
export type RestoreRecordFailureInput = z.infer<typeof restoreRecordFailureInputSchema>;
