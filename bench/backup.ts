import { execFileSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import type { Readable } from "node:stream";
import { BlobServiceClient } from "@azure/storage-blob";
import { ITEM_KINDS, type PortalSim, startPortalSim } from "../test/portal-sim/index.js";
import { tokenFor } from "../test/portal-sim/test-helpers.js";
import { type RunningAzurite, startAzurite } from "../tools/azurite.js";
import {
  type BenchApp,
  CONCURRENT_ITEMS,
  cpuOf,
  cpuSpent,
  naiveItemsPerSecond,
  peakRssMb,
  REPO,
  registerIdentity,
  startApp,
  timedBackup,
  UNPACED_BUDGET,
} from "./backup-support.js";
import type { BenchResult, BenchSection } from "./types.js";

/**
 * Backups end to end: the built app on the local host in its own process (as `npm start` runs
 * it), the portal simulator in this process, Azurite in memory. Everything shares the machine's
 * cores, so each figure is set against what bounds it in the same run.
 *
 * - A 2 GB file item (first): our export against the best plain pipeline doing the same network
 *   work, a download from the simulator piped into the SDK's `uploadStream` (no cache, no hash).
 * - A full backup of ~2,000 mixed items at 20 ms and at 100 ms portal latency, each against
 *   (a) a naive exporter doing the same requests one at a time (on a sample) and (b) the lower of
 *   two bounds: latency (items in flight / (requests per item × latency)) and CPU (cores / CPU
 *   seconds per item of all processes).
 * - The same backup again with nothing changed: speed-up and portal requests.
 * - Peak RSS of the app process over all of it.
 */
const LATENCIES_MS = [20, 100];

export const benchBackup: BenchSection = async ({ quick }): Promise<BenchResult> => {
  execFileSync("npm", ["run", "build", "--silent"], { cwd: REPO, stdio: "inherit" });
  const workDir = await mkdtemp(path.join(os.tmpdir(), "bench-backup-"));
  const azurite = await startAzurite();
  const app = await startApp(azurite, workDir);
  const metrics: BenchResult["metrics"] = {};
  const ratios: BenchResult["ratios"] = [];
  try {
    ratios.push(await measureLargeFile(app, azurite, quick ? 200 * 1024 ** 2 : 2 * 1024 ** 3, metrics));
    // The high-water mark after each phase: where the peak was reached.
    metrics.appRssHighWaterAfterLargeFileMb = (await peakRssMb(app.host.child.pid)).toFixed(0);
    for (const latencyMs of LATENCIES_MS) {
      ratios.push(...(await measureFullBackup(app, azurite, workDir, { latencyMs, quick }, metrics)));
      metrics[`appRssHighWaterAfter${latencyMs}msMb`] = (await peakRssMb(app.host.child.pid)).toFixed(0);
    }
    metrics.appPeakRssMb = (await peakRssMb(app.host.child.pid)).toFixed(0);
    ratios.push({
      name: "app peak RSS (MB) vs 300 MB",
      value: Number(metrics.appPeakRssMb) / 300,
      target: 1,
      higherIsBetter: false,
    });
  } finally {
    app.host.child.kill("SIGTERM");
    await azurite.stop();
    await rm(workDir, { recursive: true, force: true });
  }
  return { name: "backup", metrics, ratios };
};

/**
 * A full backup of ~2,000 items at one portal latency, the naive exporter on a sample, and (at
 * the lowest latency) the unchanged re-run. Metrics are suffixed with the latency.
 */
async function measureFullBackup(
  app: BenchApp,
  azurite: RunningAzurite,
  workDir: string,
  options: { latencyMs: number; quick: boolean },
  metrics: BenchResult["metrics"],
): Promise<BenchResult["ratios"]> {
  const { latencyMs, quick } = options;
  const at = `@${latencyMs}ms`;
  const perKind = quick ? 20 : 134;
  const sim = await startPortalSim({
    size: "tiny",
    seed: 5,
    latencyMs,
    requestUnitsPerMinute: UNPACED_BUDGET,
    overrides: { items: Object.fromEntries(ITEM_KINDS.map((k) => [k, perKind])), publishers: 6, viewers: 4 },
  });
  const ratios: BenchResult["ratios"] = [];
  try {
    const items = sim.model.itemCount();
    const identityId = await registerIdentity(app.host.baseUrl, sim, azurite, `bench-full-${latencyMs}`);
    sim.stats.reset();
    const cpuBefore = await cpuOf(app.host, azurite);
    const full = await timedBackup(app.host.baseUrl, identityId);
    const requests = sim.stats.count();
    const cpuMsPerItem = cpuSpent(cpuBefore, await cpuOf(app.host, azurite)).map((s) => (s * 1000) / items);
    const itemsPerSecond = items / full.seconds;
    const latencyBound = CONCURRENT_ITEMS / ((requests / items) * (latencyMs / 1000));
    const cores = os.availableParallelism();
    const cpuBound = cores / (cpuMsPerItem.reduce((sum, ms) => sum + ms, 0) / 1000);
    Object.assign(metrics, {
      [`items${at}`]: items,
      [`fullStatus${at}`]: String(full.run.status),
      [`fullSeconds${at}`]: full.seconds.toFixed(1),
      [`fullItemsPerSecond${at}`]: itemsPerSecond.toFixed(1),
      [`requestsPerItem${at}`]: (requests / items).toFixed(2),
      [`latencyBoundItemsPerSecond${at}`]: latencyBound.toFixed(1),
      [`cpuBoundItemsPerSecond${at}`]: cpuBound.toFixed(1),
      // Where the machine's CPU went during the full run: app / Azurite / simulator and bench.
      [`cpuMsPerItem${at}`]: cpuMsPerItem.map((ms) => ms.toFixed(1)).join(" / "),
      [`cpuCoresBusy${at}`]: (
        (cpuMsPerItem.reduce((s, ms) => s + ms, 0) * items) /
        1000 /
        full.seconds
      ).toFixed(2),
    });
    const naive = await naiveItemsPerSecond(sim, azurite, workDir, quick ? 15 : 40);
    metrics[`naiveItemsPerSecond${at}`] = naive.toFixed(2);
    ratios.push({
      name: `full vs naive one-at-a-time, ${latencyMs} ms (items/s)`,
      value: itemsPerSecond / naive,
      ...(latencyMs >= 100 ? { target: 10 } : {}),
    });
    ratios.push({
      name: `full vs min(latency bound, CPU bound), ${latencyMs} ms (items/s)`,
      value: itemsPerSecond / Math.min(latencyBound, cpuBound),
      target: 0.8,
    });
    if (latencyMs === LATENCIES_MS[0])
      ratios.push(await measureUnchangedRun(sim, app, identityId, full.seconds, metrics));
  } finally {
    await sim.close();
  }
  return ratios;
}

async function measureUnchangedRun(
  sim: PortalSim,
  app: BenchApp,
  identityId: string,
  fullSeconds: number,
  metrics: BenchResult["metrics"],
): Promise<BenchResult["ratios"][number]> {
  sim.stats.reset();
  const again = await timedBackup(app.host.baseUrl, identityId);
  metrics.unchangedSeconds = again.seconds.toFixed(2);
  metrics.unchangedItems = String(again.run.itemsUnchanged);
  metrics.portalRequestsUnchanged = sim.stats.count();
  return {
    name: "unchanged run speed-up (full / unchanged time)",
    value: fullSeconds / again.seconds,
    target: 10,
  };
}

/**
 * A large file item: our export against the plain pipeline that does the same network work —
 * download from the simulator (its 302 to the storage host followed) piped into `uploadStream` —
 * with the CPU each process spent.
 */
async function measureLargeFile(
  app: BenchApp,
  azurite: RunningAzurite,
  bigBytes: number,
  metrics: BenchResult["metrics"],
): Promise<BenchResult["ratios"][number]> {
  const bigSim = await startPortalSim({
    size: "tiny",
    seed: 6,
    overrides: { items: { fgdb: 1 }, bigFileBytes: bigBytes },
  });
  try {
    const bigItem = [...bigSim.model.items()][0];
    if (!bigItem) throw new Error("the simulator has no file item");
    const bigIdentity = await registerIdentity(app.host.baseUrl, bigSim, azurite, "bench-big");
    const cpuBefore = await cpuOf(app.host, azurite);
    const ours = await timedBackup(app.host.baseUrl, bigIdentity, { filter: { itemIds: [bigItem.id] } });
    const oursCpu = cpuSpent(cpuBefore, await cpuOf(app.host, azurite));

    const token = await tokenFor(bigSim);
    const plainCpuBefore = await cpuOf(app.host, azurite);
    const plainStarted = performance.now();
    const download = await getFollowingRedirect(
      `${bigSim.sharingUrl}/content/items/${bigItem.id}/data?token=${encodeURIComponent(token)}`,
    );
    await BlobServiceClient.fromConnectionString(azurite.connectionString)
      .getContainerClient("bench-big")
      .getBlockBlobClient("plain/plain.bin")
      .uploadStream(download, 8 * 1024 ** 2, 4);
    const plainSeconds = (performance.now() - plainStarted) / 1000;
    const plainCpu = cpuSpent(plainCpuBefore, await cpuOf(app.host, azurite));
    const mb = bigBytes / 1024 ** 2;
    Object.assign(metrics, {
      bigFileMb: mb.toFixed(0),
      bigFileStatus: String(ours.run.status),
      bigFileOursMbPerSecond: (mb / ours.seconds).toFixed(1),
      bigFilePlainPipelineMbPerSecond: (mb / plainSeconds).toFixed(1),
      // CPU seconds of app / Azurite / simulator and bench (the plain pipeline runs in the latter).
      bigFileCpuSecondsOurs: oursCpu.map((s) => s.toFixed(1)).join(" / "),
      bigFileCpuSecondsPlain: plainCpu.map((s) => s.toFixed(1)).join(" / "),
    });
    return {
      name: "large file: ours vs plain download → uploadStream (MB/s)",
      value: plainSeconds / ours.seconds,
      target: 0.8,
    };
  } finally {
    await bigSim.close();
  }
}

/** A GET over node:http that follows redirects (the storage host takes no token, so none is sent on). */
function getFollowingRedirect(url: string, redirectsLeft = 3): Promise<Readable> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (response) => {
        const location = response.headers.location;
        if (response.statusCode && response.statusCode >= 300 && response.statusCode < 400 && location) {
          response.resume();
          if (redirectsLeft === 0) return reject(new Error("too many redirects"));
          return resolve(getFollowingRedirect(new URL(location, url).toString(), redirectsLeft - 1));
        }
        if (response.statusCode !== 200) return reject(new Error(`GET ${url}: ${response.statusCode}`));
        resolve(response);
      })
      .on("error", reject);
  });
}
