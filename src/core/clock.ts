/**
 * Time as code that paces or schedules sees it: the epoch milliseconds now, and a sleep. Such
 * code takes a Clock, so that tests run it on virtual time (ManualClock) while its I/O stays real.
 * vitest's fake timers cannot do that: they replace the timers and Date of the whole worker,
 * those of the storage SDK, the HTTP stack and the test's own servers included.
 */
export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
  /** Resolves once `ms` have passed on this clock, or as soon as `signal` aborts; never rejects. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** setTimeout's longest delay: longer sleeps go in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The real clock: Date.now and setTimeout. */
export const systemClock: Clock = {
  now: () => Date.now(),
  sleep(ms, signal) {
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve();
      const deadline = Date.now() + ms;
      let timer: NodeJS.Timeout | undefined;
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        resolve();
      };
      // A timer may fire a millisecond early: sleep again until the deadline has really passed.
      const arm = () => {
        const left = deadline - Date.now();
        if (left <= 0) done();
        else timer = setTimeout(arm, Math.min(left, MAX_TIMER_MS));
      };
      signal?.addEventListener("abort", done, { once: true });
      arm();
    });
  },
};

interface Sleeper {
  deadline: number;
  wake: () => void;
}

/**
 * A clock for tests: time moves only when the test moves it, and a sleep ends when time reaches
 * its deadline. Tests then assert on virtual time or on the order of events, which no load on the
 * machine can change.
 */
export class ManualClock implements Clock {
  private time: number;
  /** Pending sleeps, earliest deadline first (ties in the order they began). */
  private readonly sleepers: Sleeper[] = [];
  private readonly onSleep = new Set<() => void>();

  constructor(start = 0) {
    this.time = start;
  }

  now(): number {
    return this.time;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted || !(ms > 0)) return resolve();
      const sleeper: Sleeper = {
        deadline: this.time + ms,
        wake: () => {
          signal?.removeEventListener("abort", abort);
          resolve();
        },
      };
      const abort = () => {
        this.remove(sleeper);
        resolve();
      };
      signal?.addEventListener("abort", abort, { once: true });
      const at = this.sleepers.findIndex((other) => other.deadline > sleeper.deadline);
      this.sleepers.splice(at < 0 ? this.sleepers.length : at, 0, sleeper);
      for (const notify of [...this.onSleep]) notify();
    });
  }

  /** Deadlines of the pending sleeps, earliest first. */
  pending(): number[] {
    return this.sleepers.map((sleeper) => sleeper.deadline);
  }

  /** Resolves with the earliest pending deadline as soon as a sleep is pending. */
  whenSleeping(): Promise<number> {
    return new Promise((resolve) => {
      const check = () => {
        const first = this.sleepers[0];
        if (!first) return;
        this.onSleep.delete(check);
        resolve(first.deadline);
      };
      this.onSleep.add(check);
      check();
    });
  }

  /**
   * Moves time forward by `ms`. Sleeps end in deadline order, each seeing its own deadline as the
   * time, and what they do next runs (up to its next I/O or sleep) before later deadlines come.
   */
  async advance(ms: number): Promise<void> {
    if (!(ms >= 0)) throw new RangeError(`ManualClock.advance: ${ms} ms`);
    const target = this.time + ms;
    for (;;) {
      const first = this.sleepers[0];
      if (!first || first.deadline > target) break;
      this.time = first.deadline;
      const due = this.sleepers.filter((sleeper) => sleeper.deadline <= this.time);
      this.sleepers.splice(0, due.length);
      for (const sleeper of due) sleeper.wake();
      await nextTurn();
    }
    this.time = target;
  }

  /** Moves time to the earliest pending deadline; false when nothing sleeps. */
  async advanceToNext(): Promise<boolean> {
    const first = this.sleepers[0];
    if (!first) return false;
    await this.advance(first.deadline - this.time);
    return true;
  }

  /**
   * Settles `work`, moving time to the next deadline each time nothing else is left to run (a
   * turn of the event loop went by): the time the work takes when only its sleeps take time.
   * With I/O in flight, a turn cannot tell an answer on its way from none coming, so time may
   * reach a deadline before an answer that would have ended that sleep sooner: virtual times are
   * then upper bounds, good for "nothing happened before t", not for "it happened by t".
   */
  async advanceUntilSettled<T>(work: Promise<T>): Promise<T> {
    let settled = false;
    const watched = work.then(
      () => {
        settled = true;
      },
      () => {
        settled = true;
      },
    );
    for (;;) {
      await nextTurn();
      if (settled) return work;
      // Nothing sleeps: the work waits on I/O, until it ends or sleeps.
      if (!(await this.advanceToNext())) await Promise.race([watched, this.whenSleeping()]);
    }
  }

  private remove(sleeper: Sleeper): void {
    const at = this.sleepers.indexOf(sleeper);
    if (at >= 0) this.sleepers.splice(at, 1);
  }
}

/** After every promise callback queued so far (and those they queue) has run. */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
