import type { OrchestrationContext, Task } from "durable-functions";
import * as df from "durable-functions";

/** Activity retries: exponential from `firstMs`, four attempts, capped at `maxMs` apart. */
export function retryPolicy(firstMs: number, maxMs: number): df.RetryOptions {
  const retry = new df.RetryOptions(firstMs, 4);
  retry.backoffCoefficient = 2;
  retry.maxRetryIntervalInMilliseconds = maxMs;
  return retry;
}

/**
 * Keeps up to `limit` tasks running over `count` units of work; `onDone` sees each finished
 * task (maybe faulted) and may yield follow-up work. Once `stop` says so, no new work starts and
 * the tasks already running are waited for.
 */
export function* window(
  context: OrchestrationContext,
  count: number,
  limit: number,
  startTask: (index: number) => Task,
  onDone: (index: number, task: Task) => Generator<Task, void, unknown> | undefined,
  stop: () => boolean = () => false,
): Generator<Task, void, unknown> {
  const running = new Map<Task, number>();
  let next = 0;
  while (true) {
    while (!stop() && running.size < limit && next < count) {
      running.set(startTask(next), next);
      next++;
    }
    if (running.size === 0) return;
    const winner = (yield context.df.Task.any([...running.keys()])) as Task;
    const index = running.get(winner) ?? 0;
    running.delete(winner);
    const followUp = onDone(index, winner);
    if (followUp) yield* followUp;
  }
}
