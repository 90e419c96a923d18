import { z } from "zod";
import { RUN_ID_PATTERN } from "./layout.js";
import { backupFilterSchema, trafficSchema } from "./runs.js";

// What crosses the Durable history into the backup's orchestrations and activities: validated
// where it is read (`parseOrchestrationInput`), as history written by another version of the
// app may hold something else.

const runError = z.object({ code: z.string(), message: z.string() });
const index = z.number().int().nonnegative();

/** A backup run's orchestration input, as BackupService.start writes it. */
export const backupRunInputSchema = z.object({
  runId: z.string().regex(RUN_ID_PATTERN, "must be a run id"),
  identityId: z.string().min(1),
  filter: backupFilterSchema.optional(),
});
export type BackupRunInput = z.infer<typeof backupRunInputSchema>;

/** One chunk of the inventory: a sub-orchestration over its batches. */
export const chunkInputSchema = backupRunInputSchema.extend({
  chunkIndex: index,
  items: index,
  batchSize: z.number().int().positive(),
  /** An outage the chunks before met, still going on when the last of them ended (ISO time). */
  outageSince: z.string().optional(),
});
export type ChunkInput = z.infer<typeof chunkInputSchema>;

export const batchInputSchema = z.object({
  runId: z.string().regex(RUN_ID_PATTERN, "must be a run id"),
  identityId: z.string().min(1),
  chunkIndex: index,
  batchIndex: index,
  /** The batch ran before and paused on an outage: what that attempt finished is carried over. */
  afterPause: z.boolean().optional(),
});
export type BatchInput = z.infer<typeof batchInputSchema>;

/**
 * A batch whose retries ran out, with the reason of its last failure (and its code: an outage
 * that outlasted the maximum is ERR_OUTAGE; by default ERR_BATCH_RETRIES_EXHAUSTED).
 */
export const failBatchInputSchema = batchInputSchema.extend({
  reason: z.string(),
  code: z.string().optional(),
});
export type FailBatchInput = z.infer<typeof failBatchInputSchema>;

export const finalizeInputSchema = z.object({
  runId: z.string().regex(RUN_ID_PATTERN, "must be a run id"),
  identityId: z.string().min(1),
  /** "completed" ends `cancelled` when the run's record asks for a cancel. */
  outcome: z.enum(["completed", "failed"]),
  traffic: trafficSchema.optional(),
  error: runError.optional(),
});
export type FinalizeInput = z.infer<typeof finalizeInputSchema>;

/** The last resort of an orchestration that could not finish its run. */
export const recordFailureInputSchema = z.object({
  runId: z.string().regex(RUN_ID_PATTERN, "must be a run id"),
  identityId: z.string().min(1),
  error: runError,
});
export type RecordFailureInput = z.infer<typeof recordFailureInputSchema>;
