import { AppError } from "../errors.js";
import type { RunRecord, RunStore } from "./runs.js";

/** How often the batches in flight look at their run's record for a cancel. */
const POLL_MS = 1_000;

/** Work of a run that was cancelled (or has ended) stops with this. */
export class RunStoppedError extends AppError {
  constructor(message: string) {
    super(message, { code: "ERR_RUN_STOPPED", status: 409 });
  }
}

/** Why the work of a run must stop, or undefined while it may go on. */
function stopReason(runId: string, run: RunRecord | undefined): string | undefined {
  if (!run) return `Run ${runId} no longer exists`;
  if (run.cancelRequestedAt) return `Run ${runId} was cancelled`;
  if (run.status !== "running") return `Run ${runId} has ended (${run.status})`;
  return undefined;
}

interface Watch {
  controller: AbortController;
  holders: number;
  timer: NodeJS.Timeout;
  /** The first look at the record: a batch that starts after a cancel stops before any work. */
  ready: Promise<void>;
  checking: boolean;
}

export interface RunStopSignal {
  /** Aborts (with a RunStoppedError) once the run is cancelled or has ended. */
  signal: AbortSignal;
  release(): void;
}

/**
 * Tells the batches of a run in this process when to stop: as soon as its record asks for a
 * cancel or says the run has ended (e.g. failed because its orchestration was terminated). The
 * record is the one place a cancel is written, so a batch of any chunk, on any instance, sees it;
 * one read per run and process each second, however many batches are in flight.
 */
export class RunStopSignals {
  private readonly watches = new Map<string, Watch>();

  constructor(private readonly runs: RunStore) {}

  async watch(identityId: string, runId: string): Promise<RunStopSignal> {
    let watch = this.watches.get(runId);
    if (!watch) {
      const created: Watch = {
        controller: new AbortController(),
        holders: 0,
        timer: setInterval(() => void this.check(identityId, runId, created), POLL_MS).unref(),
        ready: Promise.resolve(),
        checking: false,
      };
      created.ready = this.check(identityId, runId, created);
      this.watches.set(runId, created);
      watch = created;
    }
    const held = watch;
    held.holders++;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      held.holders--;
      if (held.holders === 0) this.forget(runId, held);
    };
    await held.ready;
    return { signal: held.controller.signal, release };
  }

  private async check(identityId: string, runId: string, watch: Watch): Promise<void> {
    if (watch.checking || watch.controller.signal.aborted) return;
    watch.checking = true;
    try {
      const reason = stopReason(runId, await this.runs.find(identityId, runId));
      if (reason) {
        watch.controller.abort(new RunStoppedError(reason));
        clearInterval(watch.timer);
      }
    } catch {
      // The table did not answer: the work goes on, and the next look asks again.
    } finally {
      watch.checking = false;
    }
  }

  private forget(runId: string, watch: Watch): void {
    clearInterval(watch.timer);
    if (this.watches.get(runId) === watch) this.watches.delete(runId);
  }
}
