import { describe, expect, test } from "vitest";
import { DIAGNOSIS_DAYS, evaluateRetention, type RetentionRun } from "../../src/core/backup/retention.js";
import {
  type RetentionPolicy,
  RUN_RULES,
  retentionPolicySchema,
} from "../../src/core/backup/retention-policy.js";
import type { RunStatus } from "../../src/core/backup/runs.js";
import { ValidationError } from "../../src/core/errors.js";
import { parseInput } from "../../src/core/validation.js";

// The retention rules as restic's `forget` applies them, on a table of runs: which runs each
// policy keeps, and the reasons it gives.

const NOW = new Date("2026-12-04T15:00:00Z");

/** A run that started at `startedAt` and ended an hour later, with its manifest unless it failed. */
function run(
  startedAt: string,
  status: RunStatus = "completed",
  fields: Partial<RetentionRun> = {},
): RetentionRun {
  const ended = new Date(Date.parse(startedAt) + 3_600_000).toISOString();
  return {
    status,
    startedAt,
    ...(status === "running" ? {} : { endedAt: ended }),
    ...(status === "running" || status === "failed"
      ? {}
      : { manifest: `id/runs/${startedAt}/manifest.json` }),
    ...fields,
  };
}

const policy = (rules: Partial<RetentionPolicy>): RetentionPolicy => ({ keepDeletedDays: 365, ...rules });

/** Each run's start and its reasons (empty: forgotten), in the order given. */
function verdicts(runs: RetentionRun[], rules: Partial<RetentionPolicy> | undefined, now = NOW) {
  const result = evaluateRetention(runs, rules && policy(rules), now);
  result.forEach((verdict) => {
    expect(verdict.keep).toBe(verdict.reasons.length > 0);
  });
  return runs.map((r, i) => [r.startedAt, result[i]?.reasons]);
}

describe("a policy over months of runs", () => {
  test("every rule keeps its runs, counted back from the newest; a run is kept when any rule keeps it", () => {
    const runs = [
      run("2026-12-04T14:00:00Z"),
      run("2026-12-04T02:00:00Z"),
      run("2026-12-03T02:00:00Z", "completed-with-failures"),
      run("2026-12-02T02:00:00Z", "failed"),
      run("2026-12-01T02:00:00Z"),
      run("2026-11-30T02:00:00Z"),
      run("2026-11-28T02:00:00Z"),
      run("2026-11-24T02:00:00Z", "cancelled"),
      run("2026-11-22T02:00:00Z"),
      run("2026-11-15T02:00:00Z"),
      run("2026-10-31T02:00:00Z"),
      run("2026-10-15T02:00:00Z"),
      run("2026-09-30T02:00:00Z"),
      run("2026-09-01T02:00:00Z"),
      run("2025-12-31T02:00:00Z"),
      run("2025-06-01T02:00:00Z"),
    ];
    const rules = {
      keepLast: 2,
      keepDaily: 4,
      keepWeekly: 3,
      keepMonthly: 3,
      keepYearly: 2,
      keepWithinDays: 10,
    };
    expect(verdicts(runs, rules)).toEqual([
      [
        "2026-12-04T14:00:00Z",
        ["last 1", "daily 2026-12-04", "weekly 2026-W49", "monthly 2026-12", "yearly 2026", "within 10 days"],
      ],
      // The day's second run: only the newest of a day counts for the daily rule.
      ["2026-12-04T02:00:00Z", ["last 2", "within 10 days"]],
      // A run with failed items holds every other item: it counts.
      ["2026-12-03T02:00:00Z", ["daily 2026-12-03", "within 10 days"]],
      ["2026-12-02T02:00:00Z", ["failed: kept for diagnosis until 2026-12-09T03:00:00.000Z"]],
      ["2026-12-01T02:00:00Z", ["daily 2026-12-01", "within 10 days"]],
      ["2026-11-30T02:00:00Z", ["daily 2026-11-30", "monthly 2026-11", "within 10 days"]],
      ["2026-11-28T02:00:00Z", ["weekly 2026-W48", "within 10 days"]],
      // Cancelled, even with a manifest: kept 7 days after it ended, then forgotten.
      ["2026-11-24T02:00:00Z", []],
      ["2026-11-22T02:00:00Z", ["weekly 2026-W47"]],
      ["2026-11-15T02:00:00Z", []],
      ["2026-10-31T02:00:00Z", ["monthly 2026-10"]],
      ["2026-10-15T02:00:00Z", []],
      ["2026-09-30T02:00:00Z", []],
      ["2026-09-01T02:00:00Z", []],
      ["2025-12-31T02:00:00Z", ["yearly 2025"]],
      // Every count is used up: the oldest run is not kept.
      ["2025-06-01T02:00:00Z", []],
    ]);
  });

  test("days without a run do not count: the daily rule reaches back to the Nth day that has one", () => {
    const runs = ["2026-12-04", "2026-11-20", "2026-10-02", "2026-09-15"].map((day) =>
      run(`${day}T02:00:00Z`),
    );
    expect(verdicts(runs, { keepDaily: 3 }).map(([, reasons]) => reasons)).toEqual([
      ["daily 2026-12-04"],
      ["daily 2026-11-20"],
      ["daily 2026-10-02"],
      [],
    ]);
  });

  test("several runs in a day: the newest of the day counts, whatever the order given", () => {
    const runs = [
      run("2026-12-03T02:00:00Z"),
      run("2026-12-04T23:59:59Z"),
      run("2026-12-04T00:00:00Z"),
      run("2026-12-04T12:00:00Z"),
    ];
    expect(verdicts(runs, { keepDaily: 2 })).toEqual([
      ["2026-12-03T02:00:00Z", ["daily 2026-12-03"]],
      ["2026-12-04T23:59:59Z", ["daily 2026-12-04"]],
      ["2026-12-04T00:00:00Z", []],
      ["2026-12-04T12:00:00Z", []],
    ]);
  });

  test("days, weeks, months and years are UTC", () => {
    // 00:30 on Monday in UTC is still Sunday in Los Angeles, 23:30 on Sunday already Monday in Berlin.
    const runs = [run("2026-12-07T00:30:00Z"), run("2026-12-06T23:30:00Z")];
    expect(verdicts(runs, { keepDaily: 2, keepWeekly: 2 }).map(([, reasons]) => reasons)).toEqual([
      ["daily 2026-12-07", "weekly 2026-W50"],
      ["daily 2026-12-06", "weekly 2026-W49"],
    ]);
  });

  test("ISO weeks cross the year boundary: 2027-01-03 is in 2026-W53, and the yearly rule uses calendar years", () => {
    const runs = [
      run("2027-01-04T10:00:00Z"), // Monday: 2027-W01
      run("2027-01-03T10:00:00Z"), // Sunday: 2026-W53 (2026 has 53 ISO weeks)
      run("2026-12-29T10:00:00Z"), // Tuesday of the same week
      run("2026-12-27T10:00:00Z"), // Sunday: 2026-W52
    ];
    expect(verdicts(runs, { keepWeekly: 2 }).map(([, reasons]) => reasons)).toEqual([
      ["weekly 2027-W01"],
      ["weekly 2026-W53"],
      [],
      [],
    ]);
    expect(verdicts(runs, { keepYearly: 2 }).map(([, reasons]) => reasons)).toEqual([
      ["yearly 2027"],
      [],
      ["yearly 2026"],
      [],
    ]);
    // And a week of 2025 that starts in December 2024.
    const early = [run("2024-12-30T10:00:00Z"), run("2024-12-29T10:00:00Z")];
    expect(verdicts(early, { keepWeekly: 2 }).map(([, reasons]) => reasons)).toEqual([
      ["weekly 2025-W01"],
      ["weekly 2024-W52"],
    ]);
  });

  test("a rule whose count is not used up also keeps the oldest run, so a short history keeps its start", () => {
    const runs = ["2026-12-04", "2026-12-01", "2026-11-20", "2026-11-02"].map((day) =>
      run(`${day}T02:00:00Z`),
    );
    expect(verdicts(runs, { keepMonthly: 12 }).map(([, reasons]) => reasons)).toEqual([
      ["monthly 2026-12"],
      [],
      ["monthly 2026-11"],
      ["oldest monthly 2026-11"],
    ]);
  });

  test("keepLast keeps the newest N complete runs; failed runs are not among them", () => {
    const runs = [
      run("2026-12-04T02:00:00Z", "failed", { endedAt: "2026-11-01T00:00:00Z" }),
      run("2026-12-03T02:00:00Z"),
      run("2026-12-02T02:00:00Z"),
      run("2026-12-01T02:00:00Z"),
    ];
    expect(verdicts(runs, { keepLast: 2 }).map(([, reasons]) => reasons)).toEqual([
      [],
      ["last 1"],
      ["last 2"],
      [],
    ]);
  });

  test("keepWithinDays counts from the newest complete run, not from now, and never from a run in the future", () => {
    const runs = [run("2026-01-10T02:00:00Z"), run("2026-01-04T02:00:00Z"), run("2026-01-03T02:00:00Z")];
    expect(verdicts(runs, { keepWithinDays: 7 }).map(([, reasons]) => reasons)).toEqual([
      ["within 7 days"],
      ["within 7 days"],
      [],
    ]);
    // A run stamped by a clock set wrong (a year ahead) does not move the window.
    const skewed = [run("2027-12-04T02:00:00Z"), ...runs];
    expect(verdicts(skewed, { keepWithinDays: 7 }).map(([, reasons]) => reasons)).toEqual([
      ["within 7 days"],
      ["within 7 days"],
      ["within 7 days"],
      [],
    ]);
  });
});

describe("runs that are not complete", () => {
  test("a running run is never forgotten; failed and cancelled runs are kept 7 days after they ended", () => {
    const ended = "2026-11-27T15:00:00.000Z";
    const justBefore = new Date(Date.parse(ended) + DIAGNOSIS_DAYS * 86_400_000 - 1);
    const runs = [
      run("2026-12-04T14:00:00Z", "running"),
      run("2026-11-27T14:00:00Z", "failed", { endedAt: ended }),
      run("2026-11-27T13:00:00Z", "cancelled", { endedAt: ended }),
    ];
    expect(verdicts(runs, { keepLast: 1 }, justBefore).map(([, reasons]) => reasons)).toEqual([
      ["running"],
      ["failed: kept for diagnosis until 2026-12-04T15:00:00.000Z"],
      ["cancelled: kept for diagnosis until 2026-12-04T15:00:00.000Z"],
    ]);
    const atTheEnd = new Date(justBefore.getTime() + 1);
    expect(verdicts(runs, { keepLast: 1 }, atTheEnd).map(([, reasons]) => reasons)).toEqual([
      ["running"],
      [],
      [],
    ]);
  });

  test("a completed run without a manifest does not count; one without an end counts from its start", () => {
    const runs = [
      run("2026-12-04T02:00:00Z", "completed", { manifest: undefined }),
      run("2026-12-03T02:00:00Z", "failed", { endedAt: undefined }),
      run("2026-12-02T02:00:00Z"),
    ];
    expect(verdicts(runs, { keepLast: 1 }).map(([, reasons]) => reasons)).toEqual([
      ["completed without a manifest: kept for diagnosis until 2026-12-11T03:00:00.000Z"],
      ["failed: kept for diagnosis until 2026-12-10T02:00:00.000Z"],
      ["last 1"],
    ]);
  });

  test("no complete run at all: nothing for the rules, the rest as usual", () => {
    const runs = [run("2026-12-04T02:00:00Z", "running"), run("2026-10-01T02:00:00Z", "failed")];
    const rules = { keepLast: 3, keepDaily: 7, keepWithinDays: 30 };
    expect(verdicts(runs, rules).map(([, reasons]) => reasons)).toEqual([["running"], []]);
    expect(evaluateRetention([], policy(rules), NOW)).toEqual([]);
  });
});

describe("no policy", () => {
  test("keeps every run, whatever its state, with the reason 'no policy'", () => {
    const runs = [
      run("2026-12-04T02:00:00Z", "running"),
      run("2020-01-01T02:00:00Z", "failed"),
      run("2019-01-01T02:00:00Z"),
    ];
    expect(evaluateRetention(runs, undefined, NOW)).toEqual(
      runs.map(() => ({ keep: true, reasons: ["no policy"] })),
    );
  });
});

describe("the policy as input", () => {
  const parse = (body: unknown) => parseInput(retentionPolicySchema, body, "retention");

  test("keepDeletedDays defaults to 365; every rule is optional", () => {
    expect(parse({ keepDaily: 7 })).toEqual({ keepDaily: 7, keepDeletedDays: 365 });
    expect(parse({ keepLast: 10, keepDeletedDays: 30 })).toEqual({ keepLast: 10, keepDeletedDays: 30 });
  });

  test.each([
    [{ keepDaily: -1 }, "retention.keepDaily"],
    [{ keepDaily: 1.5 }, "retention.keepDaily"],
    [{ keepYearly: 101 }, "retention.keepYearly"],
    [{ keepLast: 10_001 }, "retention.keepLast"],
    [{ keepWithinDays: "30" }, "retention.keepWithinDays"],
    [{ keepDaily: 7, keepDeletedDays: -1 }, "retention.keepDeletedDays"],
    [{ keepDaily: 7, keepHourly: 24 }, "retention.keepHourly"],
    [{ keepLast: 0, keepDaily: 0 }, "retention"],
    [{ keepDeletedDays: 30 }, "retention"],
    [{}, "retention"],
  ])("%j is refused, naming %s", (body, field) => {
    let error: unknown;
    try {
      parse(body);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).field).toBe(field);
  });

  test("any policy that passes keeps the newest complete run", () => {
    const runs = [run("2026-12-04T02:00:00Z"), run("2026-12-03T02:00:00Z")];
    for (const rule of RUN_RULES) {
      const [newest] = evaluateRetention(runs, parse({ [rule]: 1 }), NOW);
      expect(newest?.keep, rule).toBe(true);
    }
  });
});

describe("what a prune left", () => {
  test("a run trimmed to the deleted items it holds is kept until their time is up, and counts for no rule", () => {
    const held = (until: string) => ({
      heldForDeletedItems: { items: 2, until, pruneId: "p-1", trimmedAt: "2026-11-01T00:00:00Z" },
    });
    const runs = [
      run("2026-12-04T02:00:00Z"),
      run("2026-12-03T02:00:00Z", "completed", held("2027-12-03T03:00:00.000Z")),
      run("2026-12-02T02:00:00Z", "completed", held("2026-12-04T00:00:00.000Z")),
      run("2026-12-01T02:00:00Z"),
    ];
    expect(verdicts(runs, { keepLast: 2 })).toEqual([
      ["2026-12-04T02:00:00Z", ["last 1"]],
      ["2026-12-03T02:00:00Z", ["holds 2 deleted item(s) until 2027-12-03T03:00:00.000Z"]],
      ["2026-12-02T02:00:00Z", []],
      ["2026-12-01T02:00:00Z", ["last 2"]],
    ]);
  });

  test("a policy of days alone still keeps the newest run, however old it is", () => {
    const runs = [run("2026-10-01T02:00:00Z"), run("2026-09-01T02:00:00Z")];
    const within = verdicts(runs, { keepWithinDays: 7 }, new Date("2026-12-04T00:00:00Z"));
    expect(within[0]).toEqual(["2026-10-01T02:00:00Z", ["within 7 days"]]);
    expect(within[1]).toEqual(["2026-09-01T02:00:00Z", []]);
  });
});
