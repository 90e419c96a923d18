import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { BlobServiceClient } from "@azure/storage-blob";
import { PortalClient } from "../src/core/arcgis/portal-client.js";
import { UsernamePasswordTokenProvider } from "../src/core/arcgis/token-providers.js";
import { BackupStore } from "../src/core/backup/backup-store.js";
import { CacheSpace } from "../src/core/backup/cache.js";
import { exportItem } from "../src/core/backup/export-item.js";
import { readInventoryChunk, takeInventory } from "../src/core/backup/inventory.js";
import { silentLogger } from "../src/core/log.js";
import { ITEM_KINDS, type PortalSim, startPortalSim } from "../test/portal-sim/index.js";
import { type RunningAzurite, startAzurite } from "../tools/azurite.js";
import { type SpawnedHost, spawnLocalHost } from "../tools/local-host/spawn.js";
import type { BenchResult, BenchSection } from "./types.js";

/**
 * Backups end to end: the built app on the local host in its own process (as `npm start` runs
 * it), the portal simulator with 20 ms latency per request in this process, in-memory Azurite.
 *
 * - A large file item (first, on the empty emulator): upload throughput against a plain
 *   @azure/storage-blob uploadFile of the same bytes to the same emulator.
 * - Full backup of ~2,000 mixed items: items/s against (a) a naive exporter doing the same
 *   requests one at a time (measured on a sample) and (b) the latency bound
 *   concurrency / (requests per item × latency).
 * - The same backup again with nothing changed: speed-up and portal requests.
 * - Peak RSS of the app process over all of it.
 */
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const LATENCY_MS = 20;
/** host.json maxConcurrentActivityFunctions × items exported at once per batch. */
const CONCURRENT_ITEMS = 16 * 4;

/** User + system CPU seconds a process has used so far (Linux /proc). */
async function cpuSeconds(pid: number | undefined): Promise<number> {
  if (pid === undefined) return Number.NaN;
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function ownCpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

function peakRssMb(pid: number): Promise<number> {
  return readFile(`/proc/${pid}/status`, "utf8").then(
    (status) => Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN) / 1024,
    () => Number.NaN,
  );
}

function startApp(azurite: RunningAzurite, workDir: string): Promise<SpawnedHost> {
  const suffix = randomBytes(4).toString("hex");
  return spawnLocalHost({
    args: ["dist/tools/local-host/main.js", "--port", "0", "--no-timers"],
    cwd: REPO,
    env: {
      ...process.env,
      AzureWebJobsStorage: azurite.connectionString,
      IDENTITIES_TABLE: `identities${suffix}`,
      RUNS_TABLE: `runs${suffix}`,
      SECRET_STORE: "file",
      FILE_SECRET_STORE_PATH: path.join(workDir, "secrets.json"),
      ALLOW_INSECURE_LOOPBACK: "true",
      CACHE_ROOT: path.join(workDir, "cache"),
      LOG_LEVEL: "error",
    },
  });
}

async function api(baseUrl: string, method: string, route: string, body?: unknown) {
  const response = await fetch(`${baseUrl}${route}`, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const json = (await response.json()) as Record<string, unknown>;
  if (response.status >= 400)
    throw new Error(`${method} ${route}: ${response.status} ${JSON.stringify(json)}`);
  return json;
}

async function timedBackup(baseUrl: string, identityId: string, body: unknown = {}) {
  const started = performance.now();
  const run = await api(baseUrl, "POST", `/api/identities/${identityId}/backups`, body);
  let status: Record<string, unknown> = {};
  for (;;) {
    status = await api(baseUrl, "GET", `/api/backups/${run.runId}`);
    if (status.status !== "running") break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { seconds: (performance.now() - started) / 1000, run: status };
}

async function registerIdentity(baseUrl: string, sim: PortalSim, azurite: RunningAzurite, container: string) {
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

/** The same requests, one item at a time, on a sample of the org. */
async function naiveItemsPerSecond(sim: PortalSim, azurite: RunningAzurite, workDir: string, sample: number) {
  const tokenClient = new PortalClient({ sharingUrl: sim.sharingUrl });
  const portal = new PortalClient({
    sharingUrl: sim.sharingUrl,
    tokens: new UsernamePasswordTokenProvider(tokenClient, { ...sim.admin, referer: tokenClient.referer }),
  });
  const container = BlobServiceClient.fromConnectionString(azurite.connectionString).getContainerClient(
    `naive-${randomBytes(3).toString("hex")}`,
  );
  await container.create();
  const store = new BackupStore(container, "00000000-0000-4000-8000-000000000001");
  await takeInventory({ portal, store, runId: "b-naive", log: silentLogger });
  const records = (await readInventoryChunk(store, "b-naive", 0)).slice(0, sample);
  const space = new CacheSpace(1024 ** 3);
  const started = performance.now();
  for (const record of records) {
    await exportItem(
      { portal, store, cacheDirectory: path.join(workDir, "naive"), cacheSpace: space, log: silentLogger },
      record,
    );
  }
  return records.length / ((performance.now() - started) / 1000);
}

/**
 * A large file item: our export against a plain SDK upload of the same bytes to the same
 * emulator, with the CPU each process spent. Measured first, on an empty emulator: Azurite's
 * in-memory store scans every blob of the account on each write, so after the ~35,000 blobs the
 * other phases leave, each of the file's blocks would mostly measure that scan.
 */
async function measureLargeFile(
  app: SpawnedHost,
  azurite: RunningAzurite,
  workDir: string,
  bigBytes: number,
  metrics: BenchResult["metrics"],
): Promise<BenchResult["ratios"][number]> {
  const bigSim = await startPortalSim({
    size: "tiny",
    seed: 6,
    overrides: { items: { fgdb: 1 }, bigFileBytes: bigBytes },
  });
  try {
    const bigItem = [...bigSim.model.items()][0]!;
    const bigIdentity = await registerIdentity(app.baseUrl, bigSim, azurite, "bench-big");
    const cpuBefore = await cpuOf(app, azurite);
    const ours = await timedBackup(app.baseUrl, bigIdentity, { filter: { itemIds: [bigItem.id] } });
    const oursCpu = cpuSpent(cpuBefore, await cpuOf(app, azurite));
    const file = path.join(workDir, "plain.bin");
    await new Promise<void>((resolve, reject) => {
      const out = createWriteStream(file);
      out.on("error", reject);
      bigSim.model
        .itemDataStream(bigItem.id)
        ?.pipe(out)
        .on("finish", () => resolve());
    });
    const plainCpuBefore = await cpuOf(app, azurite);
    const plainStarted = performance.now();
    await BlobServiceClient.fromConnectionString(azurite.connectionString)
      .getContainerClient("bench-big")
      .getBlockBlobClient("plain/plain.bin")
      .uploadFile(file, { blockSize: 8 * 1024 ** 2, concurrency: 4 });
    const plainSeconds = (performance.now() - plainStarted) / 1000;
    const plainCpu = cpuSpent(plainCpuBefore, await cpuOf(app, azurite));
    await rm(file, { force: true });
    metrics.bigFileMb = (bigBytes / 1024 ** 2).toFixed(0);
    metrics.bigFileStatus = String(ours.run.status);
    metrics.bigFileOursMbPerSecond = (bigBytes / 1024 ** 2 / ours.seconds).toFixed(1);
    metrics.bigFilePlainUploadMbPerSecond = (bigBytes / 1024 ** 2 / plainSeconds).toFixed(1);
    // CPU seconds of app / Azurite / simulator+bench process (the plain upload runs in the latter).
    metrics.bigFileCpuSecondsOurs = oursCpu.map((s) => s.toFixed(1)).join(" / ");
    metrics.bigFileCpuSecondsPlain = plainCpu.map((s) => s.toFixed(1)).join(" / ");
    return {
      name: "large file: ours vs plain uploadFile (MB/s)",
      value: plainSeconds / ours.seconds,
      target: 0.8,
    };
  } finally {
    await bigSim.close();
  }
}

/** CPU seconds so far of the app, Azurite and this process (simulator and bench). */
async function cpuOf(app: SpawnedHost, azurite: RunningAzurite): Promise<number[]> {
  return [await cpuSeconds(app.child.pid), await cpuSeconds(azurite.pid), ownCpuSeconds()];
}

function cpuSpent(before: number[], after: number[]): number[] {
  return after.map((value, i) => value - (before[i] ?? 0));
}

export const benchBackup: BenchSection = async ({ quick }): Promise<BenchResult> => {
  execFileSync("npm", ["run", "build", "--silent"], { cwd: REPO, stdio: "inherit" });
  const workDir = await mkdtemp(path.join(os.tmpdir(), "bench-backup-"));
  const azurite = await startAzurite();
  const perKind = quick ? 20 : 134;
  const sim = await startPortalSim({
    size: "tiny",
    seed: 5,
    latencyMs: LATENCY_MS,
    overrides: { items: Object.fromEntries(ITEM_KINDS.map((k) => [k, perKind])), publishers: 6, viewers: 4 },
  });
  const app = await startApp(azurite, workDir);
  const metrics: BenchResult["metrics"] = {};
  const ratios: BenchResult["ratios"] = [];
  try {
    const bigRatio = await measureLargeFile(
      app,
      azurite,
      workDir,
      quick ? 200 * 1024 ** 2 : 2 * 1024 ** 3,
      metrics,
    );
    const items = sim.model.itemCount();
    const identityId = await registerIdentity(app.baseUrl, sim, azurite, "bench-full");
    sim.stats.reset();
    const cpuBefore = await cpuOf(app, azurite);
    const full = await timedBackup(app.baseUrl, identityId);
    const fullRequests = sim.stats.count();
    const cpuMsPerItem = cpuSpent(cpuBefore, await cpuOf(app, azurite)).map(
      (seconds) => (seconds * 1000) / items,
    );
    const itemsPerSecond = items / full.seconds;
    const requestsPerItem = fullRequests / items;
    const bound = CONCURRENT_ITEMS / (requestsPerItem * (LATENCY_MS / 1000));
    metrics.items = items;
    metrics.fullStatus = String(full.run.status);
    metrics.fullSeconds = full.seconds.toFixed(1);
    metrics.fullItemsPerSecond = itemsPerSecond.toFixed(1);
    metrics.portalRequestsFull = fullRequests;
    metrics.requestsPerItem = requestsPerItem.toFixed(2);
    metrics.latencyBoundItemsPerSecond = bound.toFixed(1);
    // Where the machine's CPU went during the full run (everything shares the same cores).
    metrics.cpuMsPerItemApp = cpuMsPerItem[0]?.toFixed(1) ?? "";
    metrics.cpuMsPerItemAzurite = cpuMsPerItem[1]?.toFixed(1) ?? "";
    metrics.cpuMsPerItemSimulator = cpuMsPerItem[2]?.toFixed(1) ?? "";
    metrics.cpuCoresBusyDuringFull = (
      (cpuMsPerItem.reduce((sum, ms) => sum + ms, 0) * items) /
      1000 /
      full.seconds
    ).toFixed(2);
    metrics.machineCores = os.availableParallelism();
    metrics.appPeakRssMbAfterFull = (await peakRssMb(app.child.pid ?? 0)).toFixed(0);

    const naive = await naiveItemsPerSecond(sim, azurite, workDir, quick ? 15 : 40);
    metrics.naiveItemsPerSecond = naive.toFixed(2);
    ratios.push({ name: "full vs naive sequential (items/s)", value: itemsPerSecond / naive, target: 10 });
    ratios.push({ name: "full vs latency bound (items/s)", value: itemsPerSecond / bound, target: 0.8 });

    sim.stats.reset();
    const again = await timedBackup(app.baseUrl, identityId);
    metrics.unchangedSeconds = again.seconds.toFixed(2);
    metrics.unchangedItems = String(again.run.itemsUnchanged);
    metrics.portalRequestsUnchanged = sim.stats.count();
    ratios.push({
      name: "unchanged run speed-up (full / unchanged time)",
      value: full.seconds / again.seconds,
      target: 10,
    });
    ratios.push(bigRatio);
    metrics.appPeakRssMb = (await peakRssMb(app.child.pid ?? 0)).toFixed(0);
    ratios.push({
      name: "app peak RSS (MB) vs 300 MB",
      value: Number(metrics.appPeakRssMb) / 300,
      target: 1,
      higherIsBetter: false,
    });
  } finally {
    app.child.kill("SIGTERM");
    await sim.close();
    await azurite.stop();
    await rm(workDir, { recursive: true, force: true });
  }
  return { name: "backup", metrics, ratios };
};
