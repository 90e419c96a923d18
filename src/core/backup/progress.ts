import { z } from "zod";
import type { OutagePause } from "../outage.js";

// What crosses the orchestration history of a backup: counts only, summed batch → chunk → run,
// and the progress the status endpoint shows while the run is in flight.

const amount = z.number().nonnegative();

/** Item counts and portal traffic of a batch, a chunk (its batches summed) or a run. */
const batchCountsSchema = z.object({
  exported: amount,
  unchanged: amount,
  failed: amount,
  bytes: amount,
  requests: amount,
  retries: amount,
  throttled: amount,
  requestUnits: amount,
  budgetWaitMs: amount,
});

export type BatchCounts = z.infer<typeof batchCountsSchema>;

const BATCH_COUNT_KEYS = Object.keys(batchCountsSchema.shape) as Array<keyof BatchCounts>;

export function emptyBatchCounts(): BatchCounts {
  return Object.fromEntries(BATCH_COUNT_KEYS.map((key) => [key, 0])) as BatchCounts;
}

export function addBatchCounts(into: BatchCounts, counts: BatchCounts): void {
  for (const key of BATCH_COUNT_KEYS) into[key] += counts[key];
}

/**
 * A batch's or chunk's result. `stopped`: it ended early because its run was cancelled (or ended
 * from outside); the orchestration then starts no more work. `paused` (a batch): it met an outage
 * and asks to run again later; its counts are then its traffic alone.
 */
export interface BatchOutcome extends BatchCounts {
  stopped: boolean;
  paused?: OutagePause;
}

const runProgressSchema = batchCountsSchema.extend({
  phase: z.enum(["inventory", "export", "manifest"]),
  itemsTotal: amount,
  itemsDone: amount,
  chunksDone: amount,
  chunksTotal: amount,
  itemsPerSecond: amount,
  startedAt: z.string(),
  /** Chunks in flight; their own custom status carries the counts of their batches so far. */
  runningChunks: z.array(z.string()),
});

/** A run's progress as its orchestration publishes it (its custom status). */
export type RunProgress = z.infer<typeof runProgressSchema>;

/** Items done per second since the run started, to a tenth. */
export function itemsPerSecond(itemsDone: number, startedAt: string, now: Date): number {
  const seconds = (now.getTime() - Date.parse(startedAt)) / 1000;
  return seconds > 0 ? Math.round((itemsDone / seconds) * 10) / 10 : 0;
}

/**
 * Progress as the status endpoint shows it: the run's own (finished chunks) plus what the chunks in
 * flight have done so far, so it moves batch by batch. Undefined before the orchestration published any.
 */
export async function liveProgress(
  customStatus: unknown,
  chunkStatus: (instanceId: string) => Promise<unknown>,
  now: Date,
): Promise<RunProgress | undefined> {
  const parsed = runProgressSchema.safeParse(customStatus);
  if (!parsed.success) return undefined;
  const progress = parsed.data;
  if (progress.runningChunks.length === 0) return progress;
  for (const chunkId of progress.runningChunks) {
    const chunk = batchCountsSchema.safeParse(await chunkStatus(chunkId));
    if (chunk.success) addBatchCounts(progress, chunk.data);
  }
  progress.itemsDone = progress.exported + progress.unchanged + progress.failed;
  progress.itemsPerSecond = itemsPerSecond(progress.itemsDone, progress.startedAt, now);
  return progress;
}
