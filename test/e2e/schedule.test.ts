import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { lastOccurrenceBetween } from "../../src/core/schedule.js";
import { type AppHarness, startAppHarness } from "../support/app-harness.js";

let app: AppHarness;

beforeAll(async () => {
  app = await startAppHarness({ sim: { size: "tiny", seed: 61 } });
});

afterAll(async () => {
  await app?.close();
});

describe("scheduled backups", () => {
  test("slots missed while the app was down collapse into the latest one", () => {
    const after = new Date("2026-01-01T00:00:00Z");
    const until = new Date("2026-01-05T12:00:00Z");
    // Daily at 02:00 UTC: four slots were missed; one run, for the latest.
    expect(lastOccurrenceBetween("0 0 2 * * *", after, until)?.toISOString()).toBe(
      "2026-01-05T02:00:00.000Z",
    );
    expect(lastOccurrenceBetween("0 0 2 * * *", until, new Date("2026-01-05T13:00:00Z"))).toBeUndefined();
  });

  test("the timer starts a due backup once, marked as scheduled; a disabled schedule starts nothing", async () => {
    const due = await app.createIdentity({ extra: { schedule: { cron: "* * * * * *", enabled: true } } });
    const off = await app.createIdentity({ extra: { schedule: { cron: "* * * * * *", enabled: false } } });
    await new Promise((resolve) => setTimeout(resolve, 2_100));
    // Two seconds of slots went by: the timer starts one run for them, not one per slot.
    await app.host.triggerTimer("scheduledBackups");
    const runs = (await app.call("GET", `/api/identities/${due.body.id}/backups`)).body.runs;
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({ trigger: "schedule", name: "scheduled" });
    expect((await app.call("GET", `/api/identities/${off.body.id}/backups`)).body.runs).toEqual([]);
    await app.host.waitForInstance(runs[0].runId, { timeoutMs: 60_000 });
    const identity = (await app.call("GET", `/api/identities/${due.body.id}`)).body;
    expect(identity.lastScheduledAt).toBeDefined();
  });

  test("a scheduled backup of an identity with a retention policy is followed by a prune", async () => {
    const due = await app.createIdentity({
      extra: { schedule: { cron: "* * * * * *", enabled: true }, retention: { keepLast: 1 } },
    });
    const id = due.body.id as string;
    const backups = async () => (await app.call("GET", `/api/identities/${id}/backups`)).body.runs;
    const scheduled = async () => {
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      await app.host.triggerTimer("scheduledBackups");
      const [run] = await backups();
      // The backup's orchestration ends after its prune.
      await app.host.waitForInstance(run.runId, { timeoutMs: 60_000 });
      return run.runId as string;
    };
    const first = await scheduled();
    const second = await scheduled();
    const prunes = (await app.call("GET", `/api/identities/${id}/prunes`)).body.prunes;
    expect(prunes).toHaveLength(2);
    expect(prunes[0]).toMatchObject({ trigger: "schedule", status: "completed" });
    expect(prunes[0].counts).toMatchObject({ runsKept: 1, runsForgotten: 1 });
    // keepLast 1: the second prune forgot the first run.
    expect((await backups()).map((run: { runId: string }) => run.runId)).toEqual([second]);
    expect((await app.call("GET", `/api/backups/${first}`)).status).toBe(404);
  });
});
