import { BlobServiceClient } from "@azure/storage-blob";
import { afterAll, beforeAll, expect, inject, test } from "vitest";
import { ManualClock } from "../../src/core/clock.js";
import { type LocalHost, startLocalHost } from "../../tools/local-host/index.js";
import { testAppState } from "./app/src/state.js";
import { APP_ROOT, poll } from "./helpers.js";

let host: LocalHost;
// The schedules run on this clock: an occurrence comes when a test moves it there. It starts at a
// fixed instant, far from the hour and from fromSetting's 09:30 on weekdays.
const START = Date.parse("2030-05-06T07:08:09.500Z");
const clock = new ManualClock(START);
const HOUR_MS = 3_600_000;
const statusBlob = "timers/local-localhosttimers/Host.Functions.hourly/status";
const container = () =>
  BlobServiceClient.fromConnectionString(inject("azurite").connectionString).getContainerClient(
    "azure-webjobs-hosts",
  );
const calls = (name: string) => testAppState().timerCalls.filter((c) => c.name === name);

beforeAll(async () => {
  // The schedule monitor saw the hourly timer's next occurrence two hours ago: it is past due.
  await container().createIfNotExists();
  const past = {
    Last: "2020-01-01T00:00:00.000Z",
    Next: new Date(START - 7_200_000).toISOString(),
    LastUpdated: "2020-01-01T00:00:00.000Z",
  };
  await container().getBlockBlobClient(statusBlob).upload(JSON.stringify(past), JSON.stringify(past).length);
  host = await startLocalHost({
    appRoot: APP_ROOT,
    port: 0,
    storageConnectionString: inject("azurite").connectionString,
    taskHub: "LocalHostTimers",
    env: { TEST_TIMER_SCHEDULE: "0 30 9 * * Mon-Fri" },
    log: () => {},
    clock,
  });
});

afterAll(async () => {
  await host?.close();
});

test("schedules from the registration and from an app setting", () => {
  const byName = new Map(host.functions.map((f) => [f.name, f]));
  expect(byName.get("fromSetting")?.schedule).toBe("0 30 9 * * Mon-Fri");
  expect(byName.get("hourly")?.schedule).toBe("0 0 * * * *");
});

test("runOnStartup runs once at start, not past due", async () => {
  await poll(() => (calls("startup").length > 0 ? true : undefined));
  expect(calls("startup")).toHaveLength(1);
  expect(calls("startup")[0]!.timer).toMatchObject({
    schedule: { adjustForDST: true },
    isPastDue: false,
    scheduleStatus: { next: expect.stringMatching(/^\d{4}-01-01T00:00:00/) },
  });
});

test("an occurrence missed while the host was down runs at start with isPastDue", async () => {
  await poll(() => (calls("hourly").length > 0 ? true : undefined));
  const timer = calls("hourly")[0]!.timer as {
    isPastDue: boolean;
    scheduleStatus: { last: string; next: string };
  };
  expect(timer.isPastDue).toBe(true);
  const nextHour = (Math.floor(START / HOUR_MS) + 1) * HOUR_MS;
  expect(new Date(timer.scheduleStatus.next).getTime()).toBe(nextHour);
  // The monitor's status now points at the next hour.
  await poll(async () => {
    const text = (await container().getBlockBlobClient(statusBlob).downloadToBuffer()).toString();
    return new Date((JSON.parse(text) as { Next: string }).Next).getTime() === nextHour ? true : undefined;
  });
});

test("a six-field schedule with seconds fires on time", async () => {
  // Every even second: not a millisecond before the next one, then at it, then again 2 s later.
  const occurrence = (Math.floor(clock.now() / 2_000) + 1) * 2_000;
  expect(clock.pending()).toContain(occurrence);
  await clock.advance(occurrence - 1 - clock.now());
  expect(calls("tick")).toHaveLength(0);
  await clock.advance(1);
  await poll(() => (calls("tick").length >= 1 ? true : undefined));
  expect(calls("tick")).toHaveLength(1);
  expect(clock.pending()).toContain(occurrence + 2_000);
  const first = calls("tick")[0]!;
  // Intervals under a minute are not monitored, like the Functions host.
  expect(first.timer).toEqual({ schedule: { adjustForDST: true }, scheduleStatus: null, isPastDue: false });
});

test("timers can be triggered on demand, in code or through the admin API", async () => {
  expect(calls("fromSetting")).toHaveLength(0);
  await host.triggerTimer("fromSetting");
  expect(calls("fromSetting")).toHaveLength(1);
  expect(calls("fromSetting")[0]!.timer).toMatchObject({ isPastDue: false });
  const response = await fetch(`${host.baseUrl}/admin/functions/fromSetting`, { method: "POST", body: "{}" });
  expect(response.status).toBe(202);
  await poll(() => (calls("fromSetting").length === 2 ? true : undefined));
  expect((await fetch(`${host.baseUrl}/admin/functions/nope`, { method: "POST" })).status).toBe(404);
});
