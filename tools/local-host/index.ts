import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { BlobServiceClient } from "@azure/storage-blob";
import type { Clock } from "../../src/core/clock.js";
import { type CapturedFunction, coreState, installCoreApi } from "./core-api.js";
import { DurableApi } from "./durable/api.js";
import { DurableEngine, type OrchestrationStatus } from "./durable/engine.js";
import { DurableStore, type InstanceRecord } from "./durable/store.js";
import { buildRoutes, createRequestHandler, routeUrl } from "./http.js";
import { Invoker, loadFunctionsLibrary } from "./invoke.js";
import { globFiles, importEntryPoints, resolveMainEntryPoints } from "./loader.js";
import { TimerScheduler } from "./timers.js";

/**
 * A local Azure Functions host for this app, without Core Tools: it provides
 * `@azure/functions-core` to the app, captures the registrations, and serves HTTP triggers,
 * timer triggers and Durable Functions (orchestrations, activities, the durable client and its
 * HTTP API) with Durable state in the app's storage account.
 *
 * Loading the app registers functions into module-level state, so there is one host per process
 * (a second `startLocalHost` after `close()` reuses the same registrations).
 */

export interface LocalHostOptions {
  /** Folder with package.json and host.json; defaults to the current directory. */
  appRoot?: string;
  /**
   * Modules to import instead of package.json "main" (e.g. TypeScript sources under vitest or
   * tsx), relative to appRoot; globs such as `src/{index.ts,functions/*.ts}` are expanded.
   */
  entryPoints?: string[];
  /** 0 picks a free port; default 7071. */
  port?: number;
  /** Address to listen on; default 127.0.0.1 (function keys are not enforced). */
  hostname?: string;
  /** The app's storage (AzureWebJobsStorage); Durable state lives there. */
  storageConnectionString: string;
  /** Durable task hub; defaults to host.json extensions.durableTask.hubName. */
  taskHub?: string;
  /** Applied to process.env before the app loads. */
  env?: Record<string, string>;
  /** Defaults to host.json extensions.durableTask.maxConcurrentActivityFunctions, else 10. */
  maxConcurrentActivityFunctions?: number;
  /** Run timer schedules and runOnStartup (default true); triggerTimer works either way. */
  timers?: boolean;
  /** Where host and function logs go; default console.log. */
  log?: (line: string) => void;
  /**
   * Time for timer schedules, orchestrations' currentUtcDateTime and durable timers: the system
   * clock by default; tests give a ManualClock and move it themselves.
   */
  clock?: Clock;
}

export type FunctionKind = "http" | "timer" | "orchestration" | "activity" | "entity" | "other";

export interface FunctionInfo {
  name: string;
  kind: FunctionKind;
  triggerType: string;
  /** HTTP: methods (undefined = any) and the URL path including the route prefix. */
  methods?: string[];
  path?: string;
  route?: string;
  /** Timers. */
  schedule?: string;
  runOnStartup?: boolean;
  /** Uses the durable client input binding. */
  durableClient?: boolean;
}

export interface WaitOptions {
  timeoutMs?: number;
}

export interface LocalHost {
  /** e.g. http://127.0.0.1:7071 */
  readonly baseUrl: string;
  readonly port: number;
  readonly taskHub: string;
  readonly functions: FunctionInfo[];
  /** Invokes a timer function now (isPastDue false) and resolves when it has finished. */
  triggerTimer(name: string): Promise<void>;
  /** Resolves with the final status once the instance is Completed, Failed or Terminated. */
  waitForInstance(instanceId: string, options?: WaitOptions): Promise<OrchestrationStatus>;
  /** The instance's status as the Durable HTTP API returns it, or undefined. */
  getStatus(
    instanceId: string,
    options?: { showHistory?: boolean; showHistoryOutput?: boolean },
  ): Promise<OrchestrationStatus | undefined>;
  /** Starts an orchestration directly (as the durable client would) and returns its instance id. */
  startOrchestration(name: string, input?: unknown, instanceId?: string): Promise<string>;
  /** Engine counters (episodes, activities, flushes, maxConcurrentActivities). */
  readonly stats: DurableEngine["stats"];
  close(): Promise<void>;
}

interface HostJson {
  extensions?: {
    http?: { routePrefix?: string };
    durableTask?: { hubName?: string; maxConcurrentActivityFunctions?: number };
  };
}

const LOADED_KEY = Symbol.for("arcgis-org-backup.local-host.loaded");
const globalState = globalThis as unknown as Record<symbol, string[] | undefined>;

export function readHostJson(appRoot: string): HostJson {
  try {
    return JSON.parse(readFileSync(path.join(appRoot, "host.json"), "utf8")) as HostJson;
  } catch {
    return {};
  }
}

function classify(fn: CapturedFunction): FunctionKind {
  switch (fn.trigger.type.toLowerCase()) {
    case "httptrigger":
      return "http";
    case "timertrigger":
      return "timer";
    case "orchestrationtrigger":
      return "orchestration";
    case "activitytrigger":
      return "activity";
    case "entitytrigger":
      return "entity";
    default:
      return "other";
  }
}

function usesDurableClient(fn: CapturedFunction): string | undefined {
  return Object.entries(fn.bindings).find(
    ([, b]) => b.direction === "in" && (b.type === "durableClient" || b.type === "orchestrationClient"),
  )?.[0];
}

/** Loads the app (once per process), captures its registrations and starts serving. */
export async function startLocalHost(options: LocalHostOptions): Promise<LocalHost> {
  const appRoot = path.resolve(options.appRoot ?? process.cwd());
  const log = options.log ?? ((line: string) => console.log(line));
  const hostJson = readHostJson(appRoot);
  const routePrefix = (hostJson.extensions?.http?.routePrefix ?? "api").replace(/^\/+|\/+$/g, "");
  const taskHub = options.taskHub ?? hostJson.extensions?.durableTask?.hubName ?? "TestHubName";
  const maxActivities =
    options.maxConcurrentActivityFunctions ??
    hostJson.extensions?.durableTask?.maxConcurrentActivityFunctions ??
    10;
  const hostname = options.hostname ?? "127.0.0.1";

  process.env.AzureWebJobsStorage = options.storageConnectionString;
  process.env.FUNCTIONS_WORKER_RUNTIME ??= "node";
  for (const [key, value] of Object.entries(options.env ?? {})) process.env[key] = value;

  // Provide @azure/functions-core, then load the app the way the worker does.
  const core = installCoreApi();
  core.log = (level, category, message) => {
    if (level === "debug" || level === "trace") return;
    log(`${category === "system" ? "[host] " : ""}${message}`);
  };
  const entryPoints = options.entryPoints
    ? options.entryPoints.flatMap((p) =>
        /[*?{]/.test(p) ? globFiles(appRoot, p) : [path.resolve(appRoot, p)],
      )
    : resolveMainEntryPoints(appRoot);
  const loaded = globalState[LOADED_KEY];
  if (!loaded) {
    globalState[LOADED_KEY] = entryPoints;
    await importEntryPoints(entryPoints);
  } else if (loaded.join("\n") !== entryPoints.join("\n")) {
    throw new Error("startLocalHost: this process already loaded a different app; use one host per process");
  }
  const functions = coreState().functions;
  const lib = loadFunctionsLibrary(appRoot);
  const invoker = new Invoker(lib, log);

  const store = new DurableStore(options.storageConnectionString, taskHub);
  const engine = new DurableEngine({
    store,
    functions,
    invoker,
    maxConcurrentActivities: maxActivities,
    log,
    clock: options.clock,
  });
  let baseUrl = "";
  const durable = new DurableApi(engine, taskHub, () => baseUrl);
  const timerContainer = BlobServiceClient.fromConnectionString(
    options.storageConnectionString,
  ).getContainerClient("azure-webjobs-hosts");
  const extraInputs = (fn: CapturedFunction) => {
    const binding = usesDurableClient(fn);
    return binding ? { [binding]: durable.clientData() } : {};
  };
  const timers = new TimerScheduler(
    functions.values(),
    invoker,
    timerContainer,
    `local-${taskHub.toLowerCase()}`,
    log,
    extraInputs,
    options.clock,
  );
  const routes = buildRoutes(functions.values());

  const handler = createRequestHandler({
    routePrefix,
    routes,
    invoker,
    durable,
    log,
    extraInputs,
    adminInvoke: async (name) => {
      const fn = functions.get(name);
      if (!fn) return 404;
      if (timers.has(name)) {
        void timers.trigger(name);
        return 202;
      }
      return 400;
    },
  });

  const server: Server = createServer((req, res) => {
    void handler(req, res);
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 7071, hostname, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const displayHost = hostname === "0.0.0.0" || hostname === "::" ? "127.0.0.1" : hostname;
  baseUrl = `http://${displayHost.includes(":") ? `[${displayHost}]` : displayHost}:${port}`;
  // durable-functions rewrites client URLs to localhost:7071 unless WEBSITE_HOSTNAME is set.
  process.env.WEBSITE_HOSTNAME = new URL(baseUrl).host;

  log(`[host] listening on ${baseUrl} (function keys are not enforced)`);
  const recovered = await engine.start();
  if (recovered > 0) log(`[host] resuming ${recovered} unfinished orchestration instance(s)`);
  await invoker.appHook("appStart");
  if (options.timers !== false) await timers.start();

  const infos: FunctionInfo[] = [...functions.values()].map((fn) => {
    const info: FunctionInfo = { name: fn.name, kind: classify(fn), triggerType: fn.trigger.type };
    const route = routes.find((r) => r.fn === fn);
    if (route) {
      if (route.methods) info.methods = route.methods;
      info.route = route.route.template;
      info.path = routeUrl(routePrefix, route.route.template);
    }
    const schedule = timers.describe(fn.name);
    if (schedule) {
      info.schedule = schedule;
      info.runOnStartup = fn.trigger.runOnStartup === true;
    }
    if (usesDurableClient(fn)) info.durableClient = true;
    return info;
  });

  let closed = false;
  return {
    baseUrl,
    port,
    taskHub,
    functions: infos,
    stats: engine.stats,
    triggerTimer: (name) => timers.trigger(name),
    async waitForInstance(instanceId, wait = {}) {
      await engine.waitForInstance(instanceId, wait.timeoutMs ?? 30_000);
      const status = await engine.getStatus(instanceId);
      if (!status) throw new Error(`Instance ${instanceId} disappeared`);
      return status;
    },
    getStatus: (instanceId, statusOptions = {}) => engine.getStatus(instanceId, statusOptions),
    startOrchestration: (name, input, instanceId) =>
      engine.startNew(name, {
        ...(instanceId ? { instanceId } : {}),
        ...(input === undefined ? {} : { input: JSON.stringify(input) }),
      }),
    async close() {
      if (closed) return;
      closed = true;
      await timers.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await engine.close();
      await invoker.appHook("appTerminate").catch(() => {});
    },
  };
}

export type { CapturedFunction, InstanceRecord, OrchestrationStatus };
