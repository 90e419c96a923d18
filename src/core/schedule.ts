import { Cron } from "croner";
import { ValidationError } from "./errors.js";

/**
 * NCRONTAB, as Azure Functions timers use it: six fields, seconds first, evaluated in UTC.
 * Returns the parsed schedule or a ValidationError naming the field.
 */
export function parseNcrontab(expression: string, field = "schedule.cron"): Cron {
  const parts = expression.trim().split(/\s+/);
  if (parts.length !== 6) {
    throw new ValidationError(
      `${field} must be an NCRONTAB expression with six fields (second minute hour day month weekday), e.g. "0 0 2 * * *"`,
      field,
    );
  }
  try {
    return new Cron(parts.join(" "), { paused: true, timezone: "UTC" });
  } catch (error) {
    throw new ValidationError(
      `${field} is not a valid NCRONTAB expression: ${(error as Error).message}`,
      field,
    );
  }
}

/** The latest scheduled time in (after, until], or undefined when none fell in between. */
export function lastOccurrenceBetween(expression: string, after: Date, until: Date): Date | undefined {
  const cron = parseNcrontab(expression);
  let latest: Date | undefined;
  let next = cron.nextRun(after);
  // Walk forward; a backlog of missed slots collapses into the latest one.
  for (let steps = 0; next && next <= until && steps < 100_000; steps++) {
    latest = next;
    next = cron.nextRun(next);
  }
  return latest;
}
