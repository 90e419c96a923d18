import "../require-node.js";
import { copyFileSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import path from "node:path";
import { parseArgs } from "node:util";
import { developmentStorageConnectionString } from "../../src/core/config.js";
import { type RunningAzurite, startAzurite } from "../azurite.js";
import { type LocalHost, startLocalHost } from "./index.js";

/**
 * `npm start`: runs the function app locally without Core Tools.
 *
 *   node dist/tools/local-host/main.js [--port 7071] [--host 127.0.0.1] [--app-root .]
 *     [--entry <glob>]... [--task-hub <name>] [--max-activities <n>] [--no-timers]
 *
 * Like `func start`: local.settings.json (created from local.settings.example.json when missing)
 * supplies app settings; with development storage it starts Azurite on 10000-10002 with data in
 * .local/azurite. Environment: PORT, LOCAL_HOST_ADDRESS (listen address).
 */

const DEV_PORTS = [10000, 10001, 10002];

function usage(): string {
  return [
    "Usage: node dist/tools/local-host/main.js [options]",
    "  --port <n>            HTTP port (default $PORT or 7071; 0 = any free port)",
    "  --host <address>      listen address (default $LOCAL_HOST_ADDRESS or 127.0.0.1)",
    "  --app-root <dir>      app folder with package.json and host.json (default: current directory)",
    "  --entry <glob>        module(s) to load instead of package.json main (repeatable)",
    "  --task-hub <name>     Durable task hub (default host.json hubName)",
    "  --max-activities <n>  activity concurrency (default host.json maxConcurrentActivityFunctions)",
    "  --no-timers           do not run timer schedules",
  ].join("\n");
}

function loadLocalSettings(appRoot: string): string | undefined {
  const settingsPath = path.join(appRoot, "local.settings.json");
  const examplePath = path.join(appRoot, "local.settings.example.json");
  if (!existsSync(settingsPath) && existsSync(examplePath)) {
    copyFileSync(examplePath, settingsPath);
    console.log(`Created local.settings.json from local.settings.example.json`);
  }
  if (!existsSync(settingsPath)) return undefined;
  const settings = JSON.parse(readFileSync(settingsPath, "utf8")) as { Values?: Record<string, unknown> };
  for (const [key, value] of Object.entries(settings.Values ?? {})) {
    // Like func: a variable already set in the environment wins.
    if (process.env[key] === undefined && value !== null && value !== undefined)
      process.env[key] = String(value);
  }
  return settingsPath;
}

function isDevelopmentStorage(value: string | undefined): boolean {
  if (!value) return true;
  const normalized = value.replace(/\s+/g, "").replace(/;$/, "");
  return /^UseDevelopmentStorage=true$/i.test(normalized) || value === developmentStorageConnectionString();
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

async function isAzurite(port: number): Promise<boolean> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/devstoreaccount1?comp=list`, {
      signal: AbortSignal.timeout(2000),
    });
    return /azurite/i.test(response.headers.get("server") ?? "");
  } catch {
    return false;
  }
}

async function ensureDevelopmentStorage(appRoot: string): Promise<RunningAzurite | undefined> {
  const free = await Promise.all(DEV_PORTS.map(portFree));
  if (free.every(Boolean)) {
    const location = path.join(appRoot, ".local", "azurite");
    mkdirSync(location, { recursive: true });
    console.log(
      `Starting Azurite (blob 10000, queue 10001, table 10002), data in ${path.relative(appRoot, location)}`,
    );
    return startAzurite({ blobPort: 10000, queuePort: 10001, tablePort: 10002, location });
  }
  if (free.every((f) => !f) && (await isAzurite(10000))) {
    console.log("Using the Azurite already listening on ports 10000-10002");
    return undefined;
  }
  const taken = DEV_PORTS.filter((_, i) => !free[i]).join(", ");
  throw new Error(
    `AzureWebJobsStorage is development storage, but port(s) ${taken} are taken by something other than Azurite. ` +
      "Stop that program, or set AzureWebJobsStorage (environment or local.settings.json) to another storage account.",
  );
}

export function describeEndpoints(host: LocalHost): string[] {
  const lines: string[] = [];
  const http = host.functions.filter((f) => f.kind === "http");
  const timers = host.functions.filter((f) => f.kind === "timer");
  const orchestrations = host.functions.filter((f) => f.kind === "orchestration");
  const activities = host.functions.filter((f) => f.kind === "activity");
  const others = host.functions.filter(
    (f) => !["http", "timer", "orchestration", "activity"].includes(f.kind),
  );
  if (host.functions.length === 0) {
    lines.push('No functions found (package.json "main" matched no function registrations).');
    return lines;
  }
  lines.push("Functions:");
  for (const f of http)
    lines.push(`  ${f.name}: [${(f.methods ?? ["ANY"]).join(",")}] ${host.baseUrl}${f.path}`);
  for (const f of timers)
    lines.push(`  ${f.name}: timer "${f.schedule}"${f.runOnStartup ? " (runOnStartup)" : ""}`);
  for (const f of orchestrations) lines.push(`  ${f.name}: orchestrationTrigger`);
  for (const f of activities) lines.push(`  ${f.name}: activityTrigger`);
  for (const f of others) lines.push(`  ${f.name}: ${f.triggerType} (not run by the local host)`);
  lines.push(`Durable HTTP API: ${host.baseUrl}/runtime/webhooks/durabletask (task hub ${host.taskHub})`);
  return lines;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: "string" },
      host: { type: "string" },
      "app-root": { type: "string" },
      entry: { type: "string", multiple: true },
      "task-hub": { type: "string" },
      "max-activities": { type: "string" },
      "no-timers": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(usage());
    return;
  }
  const appRoot = path.resolve(values["app-root"] ?? process.cwd());
  loadLocalSettings(appRoot);

  let azurite: RunningAzurite | undefined;
  let storage = process.env.AzureWebJobsStorage;
  if (isDevelopmentStorage(storage)) {
    azurite = await ensureDevelopmentStorage(appRoot);
    storage = developmentStorageConnectionString();
  }

  const port = Number(values.port ?? process.env.PORT ?? 7071);
  const hostname = values.host ?? process.env.LOCAL_HOST_ADDRESS ?? "127.0.0.1";
  let host: LocalHost;
  try {
    host = await startLocalHost({
      appRoot,
      port,
      hostname,
      storageConnectionString: storage!,
      ...(values.entry ? { entryPoints: values.entry } : {}),
      ...(values["task-hub"] ? { taskHub: values["task-hub"] } : {}),
      ...(values["max-activities"]
        ? { maxConcurrentActivityFunctions: Number(values["max-activities"]) }
        : {}),
      timers: !values["no-timers"],
    });
  } catch (error) {
    await azurite?.stop();
    throw error;
  }

  for (const line of describeEndpoints(host)) console.log(line);
  if (hostname === "127.0.0.1" || hostname === "localhost" || hostname === "::1") {
    console.log("Function keys are not enforced; listening on the loopback interface only.");
  } else {
    console.log(`WARNING: function keys are not enforced and the host listens on ${hostname}.`);
  }
  console.log(`Listening on ${host.baseUrl}`);

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`${signal}: shutting down`);
    const force = setTimeout(() => process.exit(1), 10_000);
    force.unref();
    await host.close().catch((error) => console.error(error));
    await azurite?.stop().catch((error) => console.error(error));
    process.exit(0);
  };
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));
}

main().catch((error) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
