import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { ManualClock } from "../../src/core/clock.js";
import { DurableStore } from "../../tools/local-host/durable/store.js";
import { type LocalHost, startLocalHost } from "../../tools/local-host/index.js";
import { testAppState } from "./app/src/state.js";
import { APP_ENV, APP_ROOT, poll } from "./helpers.js";

let host: LocalHost;
const logs: string[] = [];
// Orchestration time: durable timers fire when a test moves this clock, never on their own.
const clock = new ManualClock(Date.now());

beforeAll(async () => {
  host = await startLocalHost({
    appRoot: APP_ROOT,
    port: 0,
    storageConnectionString: inject("azurite").connectionString,
    taskHub: "LocalHostDurable",
    env: APP_ENV,
    timers: false,
    log: (line) => logs.push(line),
    clock,
  });
});

afterAll(async () => {
  await host?.close();
});

const url = (path: string) => `${host.baseUrl}${path}`;

interface CheckStatus {
  id: string;
  statusQueryGetUri: string;
  sendEventPostUri: string;
  terminatePostUri: string;
  purgeHistoryDeleteUri: string;
  suspendPostUri: string;
  resumePostUri: string;
}

async function start(name: string, input?: unknown, instanceId?: string): Promise<CheckStatus> {
  const response = await fetch(url(`/api/orchestrators/${name}${instanceId ? `/${instanceId}` : ""}`), {
    method: "POST",
    body: input === undefined ? "" : JSON.stringify(input),
  });
  expect(response.status).toBe(202);
  const body = (await response.json()) as CheckStatus;
  expect(response.headers.get("location")).toBe(body.statusQueryGetUri);
  return body;
}

async function statusOf(id: string, query = "") {
  const response = await fetch(url(`/runtime/webhooks/durabletask/instances/${id}${query}`));
  return { code: response.status, body: (await response.json()) as Record<string, unknown> };
}

async function finished(id: string) {
  return host.waitForInstance(id, { timeoutMs: 15_000 });
}

/** Waits for the instance to finish, moving orchestration time to each durable timer it sets. */
async function finishedFiringTimers(id: string) {
  return clock.advanceUntilSettled(finished(id));
}

/** Event types of the instance's history, in order. */
async function historyOf(id: string): Promise<string[]> {
  const status = await host.getStatus(id, { showHistory: true });
  return (status?.history ?? []).map((event) => String(event.EventType));
}

async function clientOp(op: string, id = "", query = "") {
  const response = await fetch(url(`/api/client/${op}/${id}${query}`), { method: "POST" });
  const text = await response.text();
  return { code: response.status, body: text ? JSON.parse(text) : undefined };
}

describe("durable client and HTTP API", () => {
  test("createCheckStatusResponse URLs work against the host", async () => {
    const check = await start("sequence");
    expect(
      check.statusQueryGetUri.startsWith(
        `${host.baseUrl}/runtime/webhooks/durabletask/instances/${check.id}?`,
      ),
    ).toBe(true);
    expect(check.statusQueryGetUri).toContain("taskHub=LocalHostDurable");
    await finished(check.id);
    const response = await fetch(check.statusQueryGetUri);
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({
      name: "sequence",
      instanceId: check.id,
      runtimeStatus: "Completed",
      output: ["Hello Tokyo", "Hello Seattle", "Hello London"],
      customStatus: { done: 3 },
    });
    // The purge URL from the payload deletes the instance.
    const purge = await fetch(check.purgeHistoryDeleteUri, { method: "DELETE" });
    expect(await purge.json()).toEqual({ instancesDeleted: 1 });
    expect((await fetch(check.statusQueryGetUri)).status).toBe(404);
  });

  test("status with input, output and history through DurableClient.getStatus", async () => {
    const check = await start("fanOut", { n: 5 }, "fan-out-history");
    await finished(check.id);
    const { body } = await clientOp("status", check.id, "?history=true");
    expect(body).toMatchObject({ runtimeStatus: "Completed", input: { n: 5 }, output: 15 });
    const history = body.history as { EventType: string; FunctionName?: string; Result?: unknown }[];
    expect(history[0]).toMatchObject({ EventType: "ExecutionStarted", FunctionName: "fanOut" });
    expect(history.filter((e) => e.EventType === "TaskCompleted")).toHaveLength(5);
    expect(history.find((e) => e.EventType === "TaskCompleted")).toMatchObject({ FunctionName: "add" });
    expect(history.at(-1)).toMatchObject({
      EventType: "ExecutionCompleted",
      OrchestrationStatus: "Completed",
      Result: 15,
    });
    // Starting again with a finished instance's id replaces it.
    const again = await start("fanOut", { n: 2 }, "fan-out-history");
    expect((await finished(again.id)).output).toBe(3);
  });

  test("list and filter instances", async () => {
    const since = new Date(Date.now() - 1000).toISOString();
    const waiting = await start("waitForever", undefined, "list-waiting");
    const done = await start("sequence", undefined, "list-done");
    await finished(done.id);
    await poll(async () =>
      (await statusOf(waiting.id)).body.runtimeStatus === "Running" ? true : undefined,
    );
    const running = (await clientOp("list", "", "?runtimeStatus=Running")).body as { instanceId: string }[];
    expect(running.map((s) => s.instanceId)).toContain("list-waiting");
    expect(running.map((s) => s.instanceId)).not.toContain("list-done");
    const recent = (await clientOp("list", "", `?runtimeStatus=Completed,Running&from=${since}`)).body as {
      instanceId: string;
    }[];
    expect(recent.map((s) => s.instanceId)).toEqual(expect.arrayContaining(["list-waiting", "list-done"]));
    const all = (await clientOp("all")).body as unknown[];
    expect(all.length).toBeGreaterThanOrEqual(2);
    const page = await fetch(url("/runtime/webhooks/durabletask/instances?top=1"));
    expect(page.headers.get("x-ms-continuation-token")).toBe("1");
    await clientOp("terminate", waiting.id, "?reason=cleanup");
  });

  test("raise events, terminate, suspend and resume", async () => {
    const a = await start("waitForever", undefined, "events-a");
    expect((await statusOf(a.id)).code).toBe(202);
    await poll(async () => ((await statusOf(a.id)).body.customStatus === "waiting" ? true : undefined));
    // Suspended: events queue up and nothing runs until resumed.
    expect((await clientOp("suspend", a.id)).code).toBe(202);
    expect((await statusOf(a.id)).body.runtimeStatus).toBe("Suspended");
    expect((await clientOp("raise", a.id, "?event=Go&data=%22ok%22")).code).toBe(202);
    expect((await statusOf(a.id)).body.runtimeStatus).toBe("Suspended");
    expect((await clientOp("resume", a.id)).code).toBe(202);
    expect(await finished(a.id)).toMatchObject({ runtimeStatus: "Completed", output: "Hello ok" });
    // The history tells the order: the event was taken in only after the resume.
    const history = await historyOf(a.id);
    expect(history.indexOf("ExecutionSuspended")).toBeGreaterThan(0);
    expect(history.indexOf("ExecutionResumed")).toBeGreaterThan(history.indexOf("ExecutionSuspended"));
    expect(history.indexOf("EventRaised")).toBeGreaterThan(history.indexOf("ExecutionResumed"));

    // Raising through the sendEventPostUri of the management payload.
    const b = await start("twoEvents", undefined, "events-b");
    const send = (name: string, data: unknown) =>
      fetch(b.sendEventPostUri.replace("{eventName}", name), { method: "POST", body: JSON.stringify(data) });
    expect((await send("B", { n: 2 })).status).toBe(202);
    expect((await send("A", [1])).status).toBe(202);
    expect((await finished(b.id)).output).toEqual({ a: [1], b: { n: 2 } });
    expect((await send("A", 1)).status).toBe(410);
    expect((await clientOp("raise", "no-such-instance", "?event=A")).code).toBe(500);

    const c = await start("waitForever", undefined, "events-c");
    const terminate = await fetch(c.terminatePostUri.replace("{text}", "enough"), { method: "POST" });
    expect(terminate.status).toBe(202);
    expect(await finished(c.id)).toMatchObject({ runtimeStatus: "Terminated", output: "enough" });
  });

  test("purge by filter", async () => {
    const since = new Date().toISOString();
    const one = await start("sequence");
    const two = await start("sequence");
    await Promise.all([finished(one.id), finished(two.id)]);
    const result = await clientOp("purgeBy", "", `?from=${since}&runtimeStatus=Completed`);
    expect(result.body.instancesDeleted).toBeGreaterThanOrEqual(2);
    expect((await statusOf(one.id)).code).toBe(404);
    expect((await clientOp("purge", "never-existed")).body).toEqual({ instancesDeleted: 0 });
  });

  test("waitForCompletionOrCreateCheckStatusResponse and starting unknown orchestrators", async () => {
    const check = await start("timer");
    const waiting = fetch(url(`/api/client/wait/${check.id}`), { method: "POST" });
    await clock.advance((await clock.whenSleeping()) - clock.now());
    const response = await waiting;
    expect(response.status).toBe(200);
    expect(await response.json()).toBe(400);
    const bad = await fetch(url("/api/orchestrators/noSuchOrchestrator"), { method: "POST" });
    expect(bad.status).toBe(500);
    const direct = await fetch(url("/runtime/webhooks/durabletask/orchestrators/noSuchOrchestrator"), {
      method: "POST",
    });
    expect(direct.status).toBe(400);
  });
});

describe("orchestrations", () => {
  test("fan-out over activities", async () => {
    const id = await host.startOrchestration("fanOut", { n: 200 });
    expect(await finished(id)).toMatchObject({ runtimeStatus: "Completed", output: (199 * 200) / 2 + 200 });
  });

  test("activity retry: succeeds on the third attempt", async () => {
    const id = await host.startOrchestration("retrying", "retry-key");
    expect((await finishedFiringTimers(id)).output).toEqual({ attempts: 3 });
    expect(testAppState().attempts.get("retry-key")).toBe(3);
  });

  test("activity retry exhausted: the orchestrator catches the failure", async () => {
    const id = await host.startOrchestration("retryExhausted", "exhausted-key");
    const status = await finishedFiringTimers(id);
    expect(status.output).toMatch(/^caught: .*boom/);
    expect(testAppState().attempts.get("exhausted-key")).toBe(2);
  });

  test("sub-orchestrations, with explicit ids and with retry", async () => {
    const id = await host.startOrchestration("parent", "child-key", "parent-1");
    const status = await finishedFiringTimers(id);
    expect(status.runtimeStatus).toBe("Completed");
    expect(status.output).toEqual({
      first: { sum: 101, parent: "parent-1" },
      second: { sum: 102, parent: "parent-1" },
      retried: { attempts: 2 },
    });
    expect((await statusOf("parent-1-explicit")).body).toMatchObject({
      name: "child",
      runtimeStatus: "Completed",
    });
  });

  test("durable timers and Task.any with a timer", async () => {
    const id = await host.startOrchestration("timer");
    const fireAt = await clock.whenSleeping();
    expect(fireAt - clock.now()).toBe(400);
    await clock.advance(399);
    expect((await host.getStatus(id))?.runtimeStatus).toBe("Running");
    await clock.advance(1);
    // Its currentUtcDateTime moved by the timer's 400 ms, on the engine's clock.
    expect((await finished(id)).output).toBe(400);
    const timeout = await host.startOrchestration("anyTimeout");
    await clock.advance((await clock.whenSleeping()) - clock.now());
    expect((await finished(timeout)).output).toBe("timed out");
  });

  test("external event wins Task.any against a timer", async () => {
    const id = await host.startOrchestration("approval", undefined, "approval-1");
    // Its 20 s timer is set, and fires only if the clock is moved: the event wins for certain.
    expect((await clock.whenSleeping()) - clock.now()).toBe(20_000);
    await fetch(url(`/runtime/webhooks/durabletask/instances/${id}/raiseEvent/Approve`), {
      method: "POST",
      body: JSON.stringify({ by: "ops" }),
    });
    expect((await finished(id)).output).toEqual({ approved: { by: "ops" } });
  });

  test("continueAsNew restarts with new input", async () => {
    const id = await host.startOrchestration("counter", 0, "counter-1");
    const status = await finished(id);
    expect(status).toMatchObject({ runtimeStatus: "Completed", output: 3, input: 3 });
    const withHistory = await host.getStatus(id, { showHistory: true });
    expect(withHistory?.history?.filter((e) => e.EventType === "TaskCompleted")).toHaveLength(1);
  });

  test("failures: orchestrator throws, or an activity failure is not caught", async () => {
    const a = await host.startOrchestration("failing");
    const failed = await finished(a);
    expect(failed.runtimeStatus).toBe("Failed");
    expect(String(failed.output)).toContain("orchestrator boom");
    const b = await host.startOrchestration("failingActivity");
    const failedActivity = await finished(b);
    expect(failedActivity.runtimeStatus).toBe("Failed");
    expect(String(failedActivity.output)).toContain("boom");
    const { code } = await statusOf(b);
    expect(code).toBe(200);
  });

  test("large payloads go to blobs and come back intact", async () => {
    const big = `${"x".repeat(150_000)}é😀`;
    const id = await host.startOrchestration("large", big, "large-1");
    const status = await finished(id);
    expect(status.output).toBe(`${big}!`);
    expect(status.customStatus).toEqual({ length: big.length });
    const store = new DurableStore(inject("azurite").connectionString, "LocalHostDurable");
    const record = await store.instances.getEntity<Record<string, unknown>>(id, "");
    expect(typeof record.outputRef).toBe("string");
    const loaded = await store.load(id);
    const scheduled = loaded?.history.find((e) => e.EventType === 4);
    expect(scheduled?.Input).toBe(JSON.stringify(big));
    const blobs: string[] = [];
    for await (const blob of store.blobs.listBlobsFlat({ prefix: "large-1/" })) blobs.push(blob.name);
    expect(blobs.length).toBeGreaterThanOrEqual(3);
  });

  test("activity concurrency is capped by maxConcurrentActivityFunctions (host.json: 4)", async () => {
    const id = await host.startOrchestration("concurrency");
    const status = await finished(id);
    expect(status.output).toBe(4);
    expect(host.stats.maxConcurrentActivities).toBeLessThanOrEqual(4);
  });
});
