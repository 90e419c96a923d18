import { randomBytes } from "node:crypto";
import { readFile, rm } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { TableClient } from "@azure/data-tables";
import { BlobServiceClient } from "@azure/storage-blob";
import { PortalClient } from "../src/core/arcgis/portal-client.js";
import { UsernamePasswordTokenProvider } from "../src/core/arcgis/token-providers.js";
import { CacheSpace } from "../src/core/backup/cache.js";
import { exportItem } from "../src/core/backup/export-item.js";
import {
  type InventoryRecord,
  isInvalidLine,
  readInventoryChunk,
  takeInventory,
} from "../src/core/backup/inventory.js";
import { silentLogger } from "../src/core/log.js";
import { BlobBackupStore } from "../src/core/storage/blob-backup-store.js";
import type { PortalSim } from "../test/portal-sim/index.js";
import type { RunningAzurite } from "../tools/azurite.js";
import { type SpawnedHost, spawnLocalHost } from "../tools/local-host/spawn.js";

/** What the backup benchmarks share: the app in its own process, its API, CPU and memory readings. */

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** host.json maxConcurrentActivityFunctions × items exported at once per batch. */
export const CONCURRENT_ITEMS = 16 * 4;

/**
 * The simulated org's request-unit budget per minute in the throughput benchmarks: high enough that
 * pacing (the `pacing` section's subject) never waits, so items/s shows the app, not the budget.
 * At the simulator's default of 10,000 (our share 5,000) a 2,010-item run waits on the budget.
 */
export const UNPACED_BUDGET = 10_000_000;

/** User + system CPU seconds a process has used so far (Linux /proc). */
export async function cpuSeconds(pid: number | undefined): Promise<number> {
  if (pid === undefined) return Number.NaN;
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function ownCpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

/** CPU seconds so far of the app, Azurite and this process (simulator and bench). */
export async function cpuOf(app: SpawnedHost, azurite: RunningAzurite): Promise<number[]> {
  return [await cpuSeconds(app.child.pid), await cpuSeconds(azurite.pid), ownCpuSeconds()];
}

export function cpuSpent(before: number[], after: number[]): number[] {
  return after.map((value, i) => value - (before[i] ?? 0));
}

/** The process's peak resident memory so far (VmHWM), in MB. */
export function peakRssMb(pid: number | undefined): Promise<number> {
  return statusFieldMb(pid, "VmHWM");
}

/** The process's resident memory now (VmRSS), in MB. */
export function rssMb(pid: number | undefined): Promise<number> {
  return statusFieldMb(pid, "VmRSS");
}

function statusFieldMb(pid: number | undefined, field: string): Promise<number> {
  return readFile(`/proc/${pid ?? 0}/status`, "utf8").then(
    (status) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? Number.NaN) / 1024,
    () => Number.NaN,
  );
}

/** Tables of this app instance get a suffix, so runs of a bench never share state. */
export interface BenchApp {
  host: SpawnedHost;
  tableSuffix: string;
}

/** Stops what a backup bench started: the app, the emulator, and its work folder. */
export async function stopApp(app: BenchApp, azurite: RunningAzurite, workDir: string): Promise<void> {
  app.host.child.kill("SIGTERM");
  await azurite.stop();
  await rm(workDir, { recursive: true, force: true });
}

export async function startApp(azurite: RunningAzurite, workDir: string): Promise<BenchApp> {
  const tableSuffix = randomBytes(4).toString("hex");
  const host = await spawnLocalHost({
    args: ["dist/tools/local-host/main.js", "--port", "0", "--no-timers"],
    cwd: REPO,
    env: {
      ...process.env,
      AzureWebJobsStorage: azurite.connectionString,
      IDENTITIES_TABLE: `identities${tableSuffix}`,
      RUNS_TABLE: `runs${tableSuffix}`,
      SECRET_STORE: "file",
      FILE_SECRET_STORE_PATH: path.join(workDir, "secrets.json"),
      ALLOW_INSECURE_LOOPBACK: "true",
      CACHE_ROOT: path.join(workDir, "cache"),
      LOG_LEVEL: "error",
    },
  });
  return { host, tableSuffix };
}

/**
 * A call to the app's API. node:http rather than fetch: fetch gives up on an answer whose headers
 * take over 5 minutes, and a bench should report a slow answer, not crash on it.
 */
export function api(
  baseUrl: string,
  method: string,
  route: string,
  body?: unknown,
): Promise<Record<string, unknown>> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const request = httpRequest(
      `${baseUrl}${route}`,
      { method, headers: payload === undefined ? {} : { "content-type": "application/json" } },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("error", reject);
        response.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          const status = response.statusCode ?? 0;
          if (status >= 400) return reject(new Error(`${method} ${route}: ${status} ${text}`));
          try {
            resolve(JSON.parse(text) as Record<string, unknown>);
          } catch (error) {
            reject(error);
          }
        });
      },
    );
    request.on("error", reject);
    request.end(payload);
  });
}

/** Starts a backup and polls it to its end; `onPoll` sees every status (e.g. to sample memory). */
export async function timedBackup(
  baseUrl: string,
  identityId: string,
  body: unknown = {},
  onPoll: (status: Record<string, unknown>) => void | Promise<void> = () => {},
) {
  const started = performance.now();
  const run = await api(baseUrl, "POST", `/api/identities/${identityId}/backups`, body);
  const startSeconds = (performance.now() - started) / 1000;
  let status: Record<string, unknown> = {};
  for (;;) {
    status = await api(baseUrl, "GET", `/api/backups/${run.runId}`);
    await onPoll(status);
    if (status.status !== "running") break;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return { seconds: (performance.now() - started) / 1000, startSeconds, run: status };
}

export async function registerIdentity(
  baseUrl: string,
  sim: PortalSim,
  azurite: RunningAzurite,
  container: string,
) {
  await BlobServiceClient.fromConnectionString(azurite.connectionString)
    .getContainerClient(container)
    .createIfNotExists();
  const identity = await api(baseUrl, "POST", "/api/identities", {
    name: "Bench org",
    kind: "arcgis-online",
    portalUrl: sim.orgUrl,
    auth: { type: "builtin", username: sim.admin.username, password: sim.admin.password },
    storage: { type: "azure-blob", container, connectionString: azurite.connectionString },
  });
  return identity.id as string;
}

/** A signed-in portal client of the simulator's administrator, as the app builds one. */
export function adminPortalClient(sim: PortalSim): PortalClient {
  const tokenClient = new PortalClient({ sharingUrl: sim.sharingUrl });
  return new PortalClient({
    sharingUrl: sim.sharingUrl,
    tokens: new UsernamePasswordTokenProvider(tokenClient, { ...sim.admin, referer: tokenClient.referer }),
  });
}

/** The same requests as a backup, one item at a time, on a sample of the org. */
export async function naiveItemsPerSecond(
  sim: PortalSim,
  azurite: RunningAzurite,
  workDir: string,
  sample: number,
) {
  const portal = adminPortalClient(sim);
  const container = BlobServiceClient.fromConnectionString(azurite.connectionString).getContainerClient(
    `naive-${randomBytes(3).toString("hex")}`,
  );
  await container.create();
  const store = new BlobBackupStore(container, "00000000-0000-4000-8000-000000000001");
  await takeInventory({ portal, store, runId: "b-naive", log: silentLogger });
  const records = (await readInventoryChunk(store, "b-naive", 0))
    .filter((entry): entry is InventoryRecord => !isInvalidLine(entry))
    .slice(0, sample);
  const space = new CacheSpace(1024 ** 3);
  const started = performance.now();
  for (const record of records) {
    await exportItem(
      {
        runId: "b-naive",
        portal,
        store,
        cacheDirectory: path.join(workDir, "naive"),
        cacheSpace: space,
        log: silentLogger,
      },
      record,
    );
  }
  return records.length / ((performance.now() - started) / 1000);
}

/** Rows of the local host's Durable tables: the state a run leaves behind. */
export async function durableStateRows(azurite: RunningAzurite, taskHub = "ArcgisOrgBackup") {
  const count = async (table: string) => {
    const client = TableClient.fromConnectionString(azurite.connectionString, table, {
      allowInsecureConnection: true,
    });
    let rows = 0;
    const instances = new Set<string>();
    for await (const entity of client.listEntities({ queryOptions: { select: ["PartitionKey"] } })) {
      rows++;
      instances.add(String(entity.partitionKey));
    }
    return { rows, instances: instances.size };
  };
  const [instances, history] = await Promise.all([count(`${taskHub}Instances`), count(`${taskHub}History`)]);
  return { instances: instances.rows, historyRows: history.rows };
}
