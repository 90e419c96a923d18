import type { ContainerClient } from "@azure/storage-blob";
import { type Clock, systemClock } from "../../src/core/clock.js";
import type { CapturedFunction } from "./core-api.js";
import type { Invoker } from "./invoke.js";
import { parseSchedule, resolveSetting, type Schedule } from "./schedule.js";

/** The timer object the worker passes (the host's JSON, camel-cased by `@azure/functions`). */
export interface TimerInput {
  schedule: { adjustForDST: boolean };
  scheduleStatus: { last: string; next: string; lastUpdated: string } | null;
  isPastDue: boolean;
}

interface ScheduleStatus {
  Last: string;
  Next: string;
  LastUpdated: string;
}

interface TimerEntry {
  fn: CapturedFunction;
  schedule: Schedule;
  useMonitor: boolean;
  running?: Promise<void>;
  status?: ScheduleStatus;
}

const MIN_DATE = "0001-01-01T00:00:00.000Z";

/**
 * Runs timer triggers on their NCRONTAB schedules (UTC, or WEBSITE_TIME_ZONE), `runOnStartup`, and
 * the schedule monitor: the last and next occurrences are kept in the blob the Functions host uses
 * (`azure-webjobs-hosts/timers/<hostId>/Host.Functions.<name>/status`), so an occurrence missed while
 * the host was down runs at start with `isPastDue: true`.
 */
export class TimerScheduler {
  private readonly entries = new Map<string, TimerEntry>();
  private closed = false;
  /** Aborted on close: ends every schedule's wait. */
  private readonly stopped = new AbortController();

  constructor(
    functions: Iterable<CapturedFunction>,
    private readonly invoker: Invoker,
    private readonly statusContainer: ContainerClient | undefined,
    private readonly hostId: string,
    private readonly log: (line: string) => void,
    /** Input bindings a timer function declares (the durable client). */
    private readonly extraInputs: (fn: CapturedFunction) => Record<string, unknown> = () => ({}),
    /** When occurrences come (the system clock by default). */
    private readonly clock: Clock = systemClock,
  ) {
    const timezone = process.env.WEBSITE_TIME_ZONE || "UTC";
    for (const fn of functions) {
      if (fn.trigger.type.toLowerCase() !== "timertrigger") continue;
      let schedule: Schedule;
      try {
        schedule = parseSchedule(resolveSetting(String(fn.trigger.schedule)), timezone);
      } catch (error) {
        this.log(`[host] timer function ${fn.name} is disabled: ${(error as Error).message}`);
        continue;
      }
      const useMonitor =
        typeof fn.trigger.useMonitor === "boolean"
          ? fn.trigger.useMonitor
          : schedule.interval(this.date()) >= 60_000;
      this.entries.set(fn.name, { fn, schedule, useMonitor });
    }
  }

  describe(name: string): string | undefined {
    return this.entries.get(name)?.schedule.expression;
  }

  nextOccurrence(name: string): Date | undefined {
    return this.entries.get(name)?.schedule.next(this.date());
  }

  /** Starts the schedules: past-due and runOnStartup invocations first. */
  async start(): Promise<void> {
    await this.statusReady();
    for (const entry of this.entries.values()) {
      const now = this.date();
      let pastDue = false;
      if (entry.useMonitor) {
        entry.status = await this.readStatus(entry);
        if (entry.status && new Date(entry.status.Next).getTime() < now.getTime()) pastDue = true;
      }
      if (pastDue) void this.fire(entry, true);
      else if (entry.fn.trigger.runOnStartup === true) void this.fire(entry, false);
      this.arm(entry);
    }
  }

  private arm(entry: TimerEntry): void {
    if (this.closed) return;
    const next = entry.schedule.next(this.date()).getTime();
    void this.clock.sleep(next - this.clock.now(), this.stopped.signal).then(() => {
      if (this.closed) return;
      void this.fire(entry, false);
      this.arm(entry);
    });
  }

  private date(): Date {
    return new Date(this.clock.now());
  }

  /** Invokes a timer function now (not past due), as `POST /admin/functions/<name>` does. */
  async trigger(name: string): Promise<void> {
    const entry = this.entries.get(name);
    if (!entry) throw new Error(`No timer function named ${name}`);
    await this.statusReady();
    await this.fire(entry, false);
  }

  private containerReady: Promise<void> | undefined;

  /** The schedule monitor's container, created once (also when timers only run on demand). */
  private statusReady(): Promise<void> {
    this.containerReady ??= this.statusContainer
      ? this.statusContainer.createIfNotExists().then(
          () => undefined,
          () => undefined,
        )
      : Promise.resolve();
    return this.containerReady;
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  private async fire(entry: TimerEntry, isPastDue: boolean): Promise<void> {
    if (entry.running) {
      this.log(`[${entry.fn.name}] previous invocation still running; occurrence skipped`);
      return entry.running;
    }
    const run = async () => {
      const now = this.date();
      const next = entry.schedule.next(now);
      const last = entry.status?.Next && isPastDue ? entry.status.Next : (entry.status?.Last ?? MIN_DATE);
      const input: TimerInput = {
        schedule: { adjustForDST: true },
        scheduleStatus: entry.useMonitor
          ? { last, next: next.toISOString(), lastUpdated: entry.status?.LastUpdated ?? now.toISOString() }
          : null,
        isPastDue,
      };
      try {
        await this.invoker.invoke(entry.fn, [input], { extraInputs: this.extraInputs(entry.fn) });
      } catch (error) {
        this.log(`[${entry.fn.name}] failed: ${(error as Error)?.stack ?? error}`);
      }
      if (entry.useMonitor) {
        entry.status = {
          Last: now.toISOString(),
          Next: next.toISOString(),
          LastUpdated: this.date().toISOString(),
        };
        await this.writeStatus(entry).catch((error) => this.log(`timer status not saved: ${error}`));
      }
    };
    entry.running = run().finally(() => {
      entry.running = undefined;
    });
    return entry.running;
  }

  private blobName(entry: TimerEntry): string {
    return `timers/${this.hostId}/Host.Functions.${entry.fn.name}/status`;
  }

  private async readStatus(entry: TimerEntry): Promise<ScheduleStatus | undefined> {
    if (!this.statusContainer) return undefined;
    try {
      const buffer = await this.statusContainer.getBlockBlobClient(this.blobName(entry)).downloadToBuffer();
      return JSON.parse(buffer.toString("utf8")) as ScheduleStatus;
    } catch {
      // First start: record the next occurrence so that a later outage is detected.
      const now = this.date();
      entry.status = {
        Last: MIN_DATE,
        Next: entry.schedule.next(now).toISOString(),
        LastUpdated: now.toISOString(),
      };
      await this.writeStatus(entry).catch(() => {});
      return entry.status;
    }
  }

  private async writeStatus(entry: TimerEntry): Promise<void> {
    if (!this.statusContainer || !entry.status) return;
    const text = JSON.stringify(entry.status);
    await this.statusContainer.getBlockBlobClient(this.blobName(entry)).upload(text, Buffer.byteLength(text));
  }

  async close(): Promise<void> {
    this.closed = true;
    this.stopped.abort();
    await Promise.allSettled([...this.entries.values()].map((e) => e.running));
  }
}
