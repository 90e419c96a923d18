import { type ChildProcess, spawn } from "node:child_process";
import { createRequire } from "node:module";
import path from "node:path";

/** The published development account of the storage emulator (not a secret). */
export const DEV_ACCOUNT_NAME = "devstoreaccount1";
export const DEV_ACCOUNT_KEY =
  "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

export interface AzuriteEndpoints {
  blobEndpoint: string;
  queueEndpoint: string;
  tableEndpoint: string;
  /** A connection string with explicit endpoints, valid on any ports. */
  connectionString: string;
}

export interface RunningAzurite extends AzuriteEndpoints {
  /** The emulator's process (benchmarks read its CPU time). */
  pid: number | undefined;
  stop(): Promise<void>;
}

export interface AzuriteOptions {
  /** 0 picks free ports (tests); the defaults 10000-10002 match UseDevelopmentStorage=true. */
  blobPort?: number;
  queuePort?: number;
  tablePort?: number;
  /** Folder for data on disk; omitted means in memory. */
  location?: string;
  /** In memory: the most blob content it may hold, in MB (Azurite's default is half the RAM). */
  extentMemoryLimitMb?: number;
  /** The emulator's V8 heap ceiling in MB (Node's default, about 4 GB here, when omitted). */
  maxOldSpaceMb?: number;
  /**
   * How often Azurite sweeps blob content no blob refers to (its default: every 10 minutes). A
   * sweep lists every blob, page by page, each page sorting all that remain, in one stretch: it
   * held the emulator for 3 minutes once ~60,000 items of the large org were stored, which a bench
   * would measure instead of the app. Azurite has no option for it.
   */
  extentGcIntervalMs?: number;
  startTimeoutMs?: number;
}

export function connectionStringFor(endpoints: Omit<AzuriteEndpoints, "connectionString">): string {
  return [
    "DefaultEndpointsProtocol=http",
    `AccountName=${DEV_ACCOUNT_NAME}`,
    `AccountKey=${DEV_ACCOUNT_KEY}`,
    `BlobEndpoint=${endpoints.blobEndpoint}`,
    `QueueEndpoint=${endpoints.queueEndpoint}`,
    `TableEndpoint=${endpoints.tableEndpoint}`,
  ].join(";");
}

/** Sets the interval Azurite's blob sweeper reads when it starts (a module of its, by path). */
const setExtentGcInterval = `data:text/javascript,${encodeURIComponent(
  'import { createRequire } from "node:module";' +
    'createRequire(process.argv[1])("./blob/utils/constants.js").DEFAULT_GC_INTERVAL_MS =' +
    " Number(process.env.AZURITE_EXTENT_GC_INTERVAL_MS);",
)}`;

const LISTENING = /Azurite (Blob|Queue|Table) service is successfully listening at (http:\/\/\S+)/;

/** Starts the storage emulator as a child process and resolves once all three services listen. */
export async function startAzurite(options: AzuriteOptions = {}): Promise<RunningAzurite> {
  const require = createRequire(import.meta.url);
  const entry = path.join(path.dirname(require.resolve("azurite/package.json")), "dist/src/azurite.js");
  const args = [
    entry,
    "--blobPort",
    String(options.blobPort ?? 0),
    "--queuePort",
    String(options.queuePort ?? 0),
    "--tablePort",
    String(options.tablePort ?? 0),
    "--skipApiVersionCheck",
    "--loose",
    "--disableTelemetry",
  ];
  if (options.location) args.push("--location", options.location);
  else args.push("--inMemoryPersistence");
  if (!options.location && options.extentMemoryLimitMb !== undefined) {
    args.push("--extentMemoryLimit", String(options.extentMemoryLimitMb));
  }
  const nodeFlags = options.maxOldSpaceMb ? [`--max-old-space-size=${options.maxOldSpaceMb}`] : [];
  const env = { ...process.env };
  if (options.extentGcIntervalMs !== undefined) {
    nodeFlags.push("--import", setExtentGcInterval);
    env.AZURITE_EXTENT_GC_INTERVAL_MS = String(options.extentGcIntervalMs);
  }
  const child = spawn(process.execPath, [...nodeFlags, ...args], { stdio: ["ignore", "pipe", "pipe"], env });
  const urls = await waitForListening(child, options.startTimeoutMs ?? 20_000);
  const endpoints = {
    blobEndpoint: `${urls.Blob}/${DEV_ACCOUNT_NAME}`,
    queueEndpoint: `${urls.Queue}/${DEV_ACCOUNT_NAME}`,
    tableEndpoint: `${urls.Table}/${DEV_ACCOUNT_NAME}`,
  };
  return {
    ...endpoints,
    connectionString: connectionStringFor(endpoints),
    pid: child.pid,
    stop: () => stopChild(child),
  };
}

function waitForListening(child: ChildProcess, timeoutMs: number): Promise<Record<string, string>> {
  return new Promise((resolve, reject) => {
    const urls: Record<string, string> = {};
    let output = "";
    const timer = setTimeout(
      () => fail(new Error(`Azurite did not start within ${timeoutMs} ms:\n${output}`)),
      timeoutMs,
    );
    const fail = (error: Error) => {
      clearTimeout(timer);
      child.kill("SIGKILL");
      reject(error);
    };
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      for (const line of output.split("\n")) {
        const match = LISTENING.exec(line);
        if (match?.[1] && match[2]) urls[match[1]] = match[2].replace(/\/$/, "");
      }
      if (urls.Blob && urls.Queue && urls.Table) {
        clearTimeout(timer);
        child.stdout?.off("data", onData);
        child.stderr?.off("data", onData);
        // Keep draining so a full pipe never blocks the emulator.
        child.stdout?.resume();
        child.stderr?.resume();
        resolve(urls);
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("exit", (code) => fail(new Error(`Azurite exited with code ${code}:\n${output}`)));
  });
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill("SIGTERM");
  });
}
