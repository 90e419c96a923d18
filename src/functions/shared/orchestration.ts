import type { OrchestrationContext, Task } from "durable-functions";
import * as df from "durable-functions";
import { errorMessage } from "../../core/errors.js";
import { OUTAGE_ERROR_CODE, type OutagePause, outageReason } from "../../core/outage.js";

/**
 * Activity retries: exponential from `firstMs`, four attempts, capped at `maxMs` apart. They are
 * for activities that crash (a host restart, an unexpected error); an outage of the portal or the
 * storage pauses a batch instead (`settleBatch`).
 */
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
    // A task that ended while a follow-up was yielding: Task.any over it would never resolve (the
    // SDK's compound tasks hear only of completions that come after them), so it is taken as is.
    const ended = [...running.keys()].find((task) => task.isCompleted || task.isFaulted);
    const winner = ended ?? ((yield context.df.Task.any([...running.keys()])) as Task);
    const index = running.get(winner) ?? 0;
    running.delete(winner);
    const followUp = onDone(index, winner);
    if (followUp) yield* followUp;
  }
}

/** When the outage an orchestration is waiting out began (ISO time; undefined: none going on). */
export interface OutageClock {
  since: string | undefined;
}

/** Why a batch's items fail: its activity failed past its retries, or its outage lasted too long. */
export interface BatchFailure {
  code: string;
  reason: string;
}

/**
 * Sees a batch the window reports finished through to its end. While it reports an outage
 * (`paused`), waits `pauseMs` on a durable timer and runs it again (`rerun`); `count` gets every
 * outcome, paused ones (their traffic) included. Answers why its items must fail — it failed past
 * its activity retries, or the outage lasted `maxOutageMs` (counted from the first pause of the
 * outage, across batches: `clock`) — or undefined when it ended.
 */
export function* settleBatch<T extends { paused?: OutagePause }>(
  context: OrchestrationContext,
  clock: OutageClock,
  task: Task,
  rerun: () => Task,
  count: (outcome: T) => void,
): Generator<Task, BatchFailure | undefined, unknown> {
  if (task.isFaulted) return crashed(task.result);
  let outcome = task.result as T;
  count(outcome);
  while (outcome.paused) {
    const now = context.df.currentUtcDateTime;
    clock.since ??= now.toISOString();
    if (now.getTime() - Date.parse(clock.since) >= outcome.paused.maxOutageMs) {
      return { code: OUTAGE_ERROR_CODE, reason: outageReason(outcome.paused) };
    }
    yield context.df.createTimer(new Date(now.getTime() + outcome.paused.pauseMs));
    try {
      outcome = (yield rerun()) as T;
    } catch (error) {
      return crashed(error);
    }
    count(outcome);
  }
  clock.since = undefined;
  return undefined;
}

function crashed(error: unknown): BatchFailure {
  const reason = error === undefined ? "the batch failed after its retries" : errorMessage(error);
  return { code: "ERR_BATCH_RETRIES_EXHAUSTED", reason };
}
