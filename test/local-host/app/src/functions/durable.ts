import { appendFileSync, existsSync } from "node:fs";
import { app, type HttpRequest, type HttpResponseInit, type InvocationContext } from "@azure/functions";
import type { OrchestrationContext, OrchestrationHandler } from "durable-functions";
import * as df from "durable-functions";
import { testAppState } from "../state.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// ---- activities --------------------------------------------------------------------------------

df.app.activity("sayHello", { handler: (name: string) => `Hello ${name}` });

df.app.activity("add", { handler: (input: { a: number; b: number }) => input.a + input.b });

/** Fails the first `failTimes` calls for a key, then succeeds. */
df.app.activity("flaky", {
  handler: (input: { key: string; failTimes: number }) => {
    const state = testAppState();
    const attempt = (state.attempts.get(input.key) ?? 0) + 1;
    state.attempts.set(input.key, attempt);
    if (attempt <= input.failTimes) throw new Error(`flaky attempt ${attempt}`);
    return { attempts: attempt };
  },
});

df.app.activity("alwaysFails", {
  handler: (input: { key?: string } | undefined) => {
    if (input?.key) {
      const state = testAppState();
      state.attempts.set(input.key, (state.attempts.get(input.key) ?? 0) + 1);
    }
    throw new Error("boom");
  },
});

/** Tracks how many activities run at once. */
df.app.activity("slow", {
  handler: async (input: { ms: number }) => {
    const state = testAppState();
    state.inFlight++;
    state.maxInFlight = Math.max(state.maxInFlight, state.inFlight);
    await sleep(input.ms);
    state.inFlight--;
    return state.maxInFlight;
  },
});

/**
 * Restart test: records each run in a file; odd items wait until the gate file exists, so that
 * the host can be killed while some activities are done and others are not.
 */
df.app.activity("sideEffect", {
  handler: async (input: { i: number; file: string; gate: string }) => {
    if (input.i % 2 === 1) {
      while (!existsSync(input.gate)) await sleep(20);
    }
    appendFileSync(input.file, `${input.i}\n`);
    return input.i;
  },
});

df.app.activity("noop", { handler: (i: number) => i });

df.app.activity("echoValue", { handler: (value: unknown) => value });

// ---- orchestrations ----------------------------------------------------------------------------

df.app.orchestration("sequence", function* (context: OrchestrationContext) {
  const results: string[] = [];
  for (const city of ["Tokyo", "Seattle", "London"]) {
    results.push(yield context.df.callActivity("sayHello", city));
    context.df.setCustomStatus({ done: results.length });
  }
  return results;
});

df.app.orchestration("fanOut", function* (context: OrchestrationContext) {
  const { n } = context.df.getInput() as { n: number };
  const tasks = [];
  for (let i = 0; i < n; i++) tasks.push(context.df.callActivity("add", { a: i, b: 1 }));
  const results = (yield context.df.Task.all(tasks)) as number[];
  return results.reduce((a, b) => a + b, 0);
});

df.app.orchestration("benchFanOut", function* (context: OrchestrationContext) {
  const { n } = context.df.getInput() as { n: number };
  const tasks = [];
  for (let i = 0; i < n; i++) tasks.push(context.df.callActivity("noop", i));
  const results = (yield context.df.Task.all(tasks)) as number[];
  return results.length;
});

df.app.orchestration("retrying", function* (context: OrchestrationContext) {
  const key = context.df.getInput() as string;
  const result = yield context.df.callActivityWithRetry("flaky", new df.RetryOptions(50, 3), {
    key,
    failTimes: 2,
  });
  return result;
});

df.app.orchestration("retryExhausted", function* (context: OrchestrationContext) {
  const key = context.df.getInput() as string;
  try {
    yield context.df.callActivityWithRetry("alwaysFails", new df.RetryOptions(20, 2), { key });
    return "unexpected";
  } catch (error) {
    return `caught: ${(error as Error).message.split("\n")[0]}`;
  }
});

df.app.orchestration("child", function* (context: OrchestrationContext) {
  const input = context.df.getInput() as { x: number };
  const sum = yield context.df.callActivity("add", { a: input.x, b: 100 });
  return { sum, parent: context.df.parentInstanceId };
});

/** Fails the first time it runs for a key (per process), then succeeds. */
df.app.orchestration("flakyChild", function* (context: OrchestrationContext) {
  const key = context.df.getInput() as string;
  const result = yield context.df.callActivity("flaky", { key, failTimes: 1 });
  return result;
});

df.app.orchestration("parent", function* (context: OrchestrationContext) {
  const key = context.df.getInput() as string;
  const first = yield context.df.callSubOrchestrator("child", { x: 1 });
  const second = yield context.df.callSubOrchestrator("child", { x: 2 }, `${context.df.instanceId}-explicit`);
  const retried = yield context.df.callSubOrchestratorWithRetry(
    "flakyChild",
    new df.RetryOptions(20, 3),
    key,
  );
  return { first, second, retried };
});

/** Large payloads: input, activity input and result, output. */
df.app.orchestration("large", function* (context: OrchestrationContext) {
  const value = context.df.getInput() as string;
  const echoed = (yield context.df.callActivity("echoValue", value)) as string;
  context.df.setCustomStatus({ length: echoed.length });
  return `${echoed}!`;
});

df.app.orchestration("timer", function* (context: OrchestrationContext) {
  const start = context.df.currentUtcDateTime.getTime();
  yield context.df.createTimer(new Date(start + 400));
  return context.df.currentUtcDateTime.getTime() - start;
});

df.app.orchestration("approval", function* (context: OrchestrationContext) {
  const timeout = context.df.createTimer(new Date(context.df.currentUtcDateTime.getTime() + 20_000));
  const approval = context.df.waitForExternalEvent("Approve");
  const winner = yield context.df.Task.any([approval, timeout]);
  if (winner === approval) {
    timeout.cancel();
    return { approved: approval.result };
  }
  return { approved: false };
});

df.app.orchestration("anyTimeout", function* (context: OrchestrationContext) {
  const timeout = context.df.createTimer(new Date(context.df.currentUtcDateTime.getTime() + 300));
  const never = context.df.waitForExternalEvent("Never");
  const winner = yield context.df.Task.any([never, timeout]);
  return winner === timeout ? "timed out" : "event";
});

df.app.orchestration("twoEvents", function* (context: OrchestrationContext) {
  const [a, b] = yield context.df.Task.all([
    context.df.waitForExternalEvent("A"),
    context.df.waitForExternalEvent("B"),
  ]);
  return { a, b };
});

df.app.orchestration("counter", function* (context: OrchestrationContext) {
  const n = (context.df.getInput() as number | undefined) ?? 0;
  yield context.df.callActivity("add", { a: n, b: 0 });
  if (n < 3) {
    context.df.continueAsNew(n + 1);
    return undefined;
  }
  return n;
});

df.app.orchestration("failing", function* (context: OrchestrationContext) {
  yield context.df.callActivity("sayHello", "x");
  throw new Error("orchestrator boom");
});

df.app.orchestration("failingActivity", function* (context: OrchestrationContext) {
  yield context.df.callActivity("alwaysFails");
  return "unreachable";
});

df.app.orchestration("waitForever", function* (context: OrchestrationContext) {
  context.df.setCustomStatus("waiting");
  const value = yield context.df.waitForExternalEvent("Go");
  const after = yield context.df.callActivity("sayHello", String(value));
  return after;
});

df.app.orchestration("concurrency", function* (context: OrchestrationContext) {
  const tasks = [];
  for (let i = 0; i < 12; i++) tasks.push(context.df.callActivity("slow", { ms: 80 }));
  const results = (yield context.df.Task.all(tasks)) as number[];
  return Math.max(...results);
});

const restartFanOut: OrchestrationHandler = function* (context: OrchestrationContext) {
  const input = context.df.getInput() as { n: number; file: string; gate: string };
  const tasks = [];
  for (let i = 0; i < input.n; i++)
    tasks.push(context.df.callActivity("sideEffect", { i, file: input.file, gate: input.gate }));
  const results = (yield context.df.Task.all(tasks)) as number[];
  return results.reduce((a, b) => a + b, 0);
};
df.app.orchestration("restartFanOut", restartFanOut);

// ---- HTTP functions using the durable client ---------------------------------------------------

/** Starts any orchestration: POST /api/orchestrators/{name}/{instanceId?} with the input as body. */
app.http("startOrchestration", {
  route: "orchestrators/{name}/{instanceId?}",
  methods: ["POST"],
  authLevel: "anonymous",
  extraInputs: [df.input.durableClient()],
  handler: async (request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> => {
    const client = df.getClient(context);
    const text = await request.text();
    const options: df.StartNewOptions = {};
    if (text) options.input = JSON.parse(text);
    if (request.params.instanceId) options.instanceId = request.params.instanceId;
    const instanceId = await client.startNew(request.params.name!, options);
    context.log(`Started ${request.params.name} ${instanceId}`);
    return client.createCheckStatusResponse(request, instanceId);
  },
});

/** Exercises the DurableClient methods (which call the host's rpcBaseUrl). */
app.http("clientOps", {
  route: "client/{op}/{id?}",
  methods: ["POST"],
  authLevel: "anonymous",
  extraInputs: [df.input.durableClient()],
  handler: async (request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> => {
    const client = df.getClient(context);
    const id = request.params.id ?? "";
    const body = request.query;
    switch (request.params.op) {
      case "status": {
        const status = await client.getStatus(id, {
          showHistory: body.get("history") === "true",
          showHistoryOutput: body.get("history") === "true",
          showInput: true,
        });
        return { jsonBody: status };
      }
      case "list": {
        const runtimeStatus = body.get("runtimeStatus");
        const from = body.get("from");
        const list = await client.getStatusBy({
          ...(runtimeStatus
            ? { runtimeStatus: runtimeStatus.split(",") as df.OrchestrationRuntimeStatus[] }
            : {}),
          ...(from ? { createdTimeFrom: new Date(from) } : {}),
        });
        return { jsonBody: list };
      }
      case "all":
        return { jsonBody: await client.getStatusAll() };
      case "raise":
        await client.raiseEvent(id, body.get("event")!, JSON.parse(body.get("data") ?? "null"));
        return { status: 202 };
      case "terminate":
        await client.terminate(id, body.get("reason") ?? "stopped");
        return { status: 202 };
      case "suspend":
        await client.suspend(id, "pause");
        return { status: 202 };
      case "resume":
        await client.resume(id, "continue");
        return { status: 202 };
      case "purge":
        return { jsonBody: await client.purgeInstanceHistory(id) };
      case "purgeBy": {
        const from = body.get("from");
        return {
          jsonBody: await client.purgeInstanceHistoryBy({
            createdTimeFrom: new Date(from ?? 0),
            runtimeStatus: (body.get("runtimeStatus") ?? "Completed").split(
              ",",
            ) as df.OrchestrationRuntimeStatus[],
          }),
        };
      }
      case "payload":
        return { jsonBody: client.createHttpManagementPayload(id) };
      case "wait":
        return client.waitForCompletionOrCreateCheckStatusResponse(request, id, {
          timeoutInMilliseconds: 20_000,
          retryIntervalInMilliseconds: 100,
        });
      default:
        return { status: 400 };
    }
  },
});
