import type { RetentionPolicy } from "./retention-policy.js";
import type { RunRecord } from "./runs.js";

/** Failed and cancelled runs are kept this long after they ended, for diagnosis, then forgotten. */
export const DIAGNOSIS_DAYS = 7;

const DAY_MS = 86_400_000;

/** What the policy looks at of a run: a run with a `manifest` has its manifest written. */
export type RetentionRun = Pick<
  RunRecord,
  "status" | "startedAt" | "endedAt" | "manifest" | "heldForDeletedItems"
>;

/** Whether the policy keeps a run, and every rule that keeps it (empty when it is forgotten). */
export interface RetentionVerdict {
  keep: boolean;
  reasons: string[];
}

/** The calendar rules, in UTC: each keeps the newest complete run of each of its newest N periods. */
const PERIOD_RULES = [
  { rule: "keepDaily", label: "daily", periodOf: (time: Date) => time.toISOString().slice(0, 10) },
  { rule: "keepWeekly", label: "weekly", periodOf: isoWeek },
  { rule: "keepMonthly", label: "monthly", periodOf: (time: Date) => time.toISOString().slice(0, 7) },
  { rule: "keepYearly", label: "yearly", periodOf: (time: Date) => time.toISOString().slice(0, 4) },
] as const;

/**
 * What an identity's retention policy does with each of its runs (verdicts in the order of
 * `runs`), with restic's `forget` semantics. Only complete runs (ended `completed` or
 * `completed-with-failures`, manifest written) count for the rules; a running run is never
 * forgotten; a failed or cancelled run is kept for DIAGNOSIS_DAYS after it ended; a run a prune
 * trimmed to the deleted items it last saw is kept until their time is up. Unlike restic, the
 * newest complete run is always kept: the next backup compares against it. No policy keeps every
 * run. Pure: `now` is the only time it reads.
 */
export function evaluateRetention(
  runs: readonly RetentionRun[],
  policy: RetentionPolicy | undefined,
  now: Date,
): RetentionVerdict[] {
  if (!policy) return runs.map(() => ({ keep: true, reasons: ["no policy"] }));
  const reasons = runs.map((run) => (isCompleteRun(run) ? [] : incompleteReasons(run, now)));
  const newestFirst = runs
    .flatMap((run, index) => (isCompleteRun(run) ? [{ index, time: Date.parse(run.startedAt) }] : []))
    .sort((a, b) => b.time - a.time);
  const ruleReasons = completeRunReasons(
    newestFirst.map((run) => run.time),
    policy,
    now,
  );
  newestFirst.forEach((run, rank) => {
    reasons[run.index]?.push(...(ruleReasons[rank] ?? []));
  });
  const newest = newestFirst[0] && reasons[newestFirst[0].index];
  if (newest && newest.length === 0) newest.push("newest complete run");
  return reasons.map((why) => ({ keep: why.length > 0, reasons: why }));
}

/**
 * A run that counts for the keep rules. `completed-with-failures` does: like a restic snapshot
 * with unreadable files, it holds everything else, and an org with one broken item would otherwise
 * have no backup kept at all.
 */
export function isCompleteRun(run: RetentionRun): boolean {
  return (
    (run.status === "completed" || run.status === "completed-with-failures") &&
    !!run.manifest &&
    !run.heldForDeletedItems
  );
}

function incompleteReasons(run: RetentionRun, now: Date): string[] {
  if (run.status === "running") return ["running"];
  const held = run.heldForDeletedItems;
  if (held) {
    return now.getTime() < Date.parse(held.until)
      ? [`holds ${held.items} deleted item(s) until ${held.until}`]
      : [];
  }
  const what =
    run.status === "failed" || run.status === "cancelled" ? run.status : `${run.status} without a manifest`;
  const until = Date.parse(run.endedAt ?? run.startedAt) + DIAGNOSIS_DAYS * DAY_MS;
  return now.getTime() < until ? [`${what}: kept for diagnosis until ${new Date(until).toISOString()}`] : [];
}

/**
 * The keep reasons of each complete run, given their start times newest first. Counted back from
 * the newest run, as restic does: periods without a run do not count, and a rule whose count is
 * not used up also keeps the oldest run, so a short history keeps its beginning.
 */
function completeRunReasons(newestFirst: number[], policy: RetentionPolicy, now: Date): string[][] {
  const reasons = newestFirst.map((): string[] => []);
  const keepLast = Math.min(policy.keepLast ?? 0, newestFirst.length);
  for (let rank = 0; rank < keepLast; rank++) reasons[rank]?.push(`last ${rank + 1}`);

  const oldest = newestFirst.length - 1;
  for (const { rule, label, periodOf } of PERIOD_RULES) {
    let left = policy[rule] ?? 0;
    let previous: string | undefined;
    for (let rank = 0; rank <= oldest && left > 0; rank++) {
      const period = periodOf(new Date(newestFirst[rank] as number));
      if (period !== previous) reasons[rank]?.push(`${label} ${period}`);
      else if (rank === oldest) reasons[rank]?.push(`oldest ${label} ${period}`);
      else continue;
      previous = period;
      left--;
    }
  }

  const days = policy.keepWithinDays ?? 0;
  if (days > 0) {
    // The newest run not in the future: a clock set wrong once must not move the window.
    const newest = newestFirst.find((time) => time <= now.getTime()) ?? newestFirst[0] ?? 0;
    newestFirst.forEach((time, rank) => {
      if (time > newest - days * DAY_MS) reasons[rank]?.push(`within ${days} days`);
    });
  }
  return reasons;
}

/** The ISO 8601 week of a time in UTC, e.g. 2026-W49: weeks start on Monday, week 1 holds January 4. */
function isoWeek(time: Date): string {
  const mondayBased = (time.getUTCDay() + 6) % 7;
  const thursday = new Date(
    Date.UTC(time.getUTCFullYear(), time.getUTCMonth(), time.getUTCDate() - mondayBased + 3),
  );
  const year = thursday.getUTCFullYear();
  const week = 1 + Math.floor((thursday.getTime() - Date.UTC(year, 0, 1)) / (7 * DAY_MS));
  return `${year}-W${String(week).padStart(2, "0")}`;
}
