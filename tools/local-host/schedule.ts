import { Cron } from "croner";

/**
 * Timer-trigger schedules as Azure Functions accepts them: a six-field NCRONTAB expression
 * (`{second} {minute} {hour} {day} {month} {day-of-week}`), or a TimeSpan `hh:mm:ss` (a fixed
 * interval), optionally given as an app-setting reference `%NAME%`.
 */
export interface Schedule {
  expression: string;
  /** The next occurrence strictly after `after`. */
  next(after: Date): Date;
  /** Nominal interval between two occurrences around `at` (used for the monitor threshold). */
  interval(at: Date): number;
}

export function resolveSetting(value: string, env: NodeJS.ProcessEnv = process.env): string {
  const match = /^%([^%]+)%$/.exec(value.trim());
  if (!match) return value;
  const resolved = env[match[1]!];
  if (resolved === undefined)
    throw new Error(`Timer schedule refers to app setting ${value}, which is not set`);
  return resolved;
}

export function parseSchedule(raw: string, timezone = "UTC"): Schedule {
  const expression = raw.trim();
  const timeSpan = /^(?:(\d+)\.)?(\d{1,2}):(\d{2})(?::(\d{2}))?$/.exec(expression);
  if (timeSpan) {
    const ms =
      ((Number(timeSpan[1] ?? 0) * 24 + Number(timeSpan[2])) * 3600 +
        Number(timeSpan[3]) * 60 +
        Number(timeSpan[4] ?? 0)) *
      1000;
    if (ms <= 0) throw new Error(`Invalid TimeSpan schedule "${raw}"`);
    return { expression, next: (after) => new Date(after.getTime() + ms), interval: () => ms };
  }
  const fields = expression.split(/\s+/);
  if (fields.length !== 6) {
    throw new Error(
      `Invalid NCRONTAB schedule "${raw}": expected six fields {second} {minute} {hour} {day} {month} {day-of-week}`,
    );
  }
  let cron: Cron;
  try {
    cron = new Cron(expression, { paused: true, timezone, mode: "6-part" });
  } catch (error) {
    throw new Error(`Invalid NCRONTAB schedule "${raw}": ${(error as Error).message}`);
  }
  const next = (after: Date): Date => {
    const run = cron.nextRun(after);
    if (!run) throw new Error(`Schedule "${raw}" has no future occurrence`);
    return run;
  };
  return {
    expression,
    next,
    interval: (at) => {
      const a = next(at);
      return next(a).getTime() - a.getTime();
    },
  };
}
