import { execFileSync } from "node:child_process";
import { mkdtemp } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { BlobServiceClient } from "@azure/storage-blob";
import { readManifest } from "../src/core/backup/manifest.js";
import { BlobBackupStore } from "../src/core/storage/blob-backup-store.js";
import { ITEM_KINDS, type PortalSim, startPortalSim } from "../test/portal-sim/index.js";
import { type RunningAzurite, startAzurite } from "../tools/azurite.js";
import {
  type BenchApp,
  cpuOf,
  cpuSpent,
  durableStateRows,
  peakRssMb,
  REPO,
  registerIdentity,
  rssMb,
  startApp,
  stopApp,
  timedBackup,
  UNPACED_BUDGET,
} from "./backup-support.js";
import type { BenchResult, BenchSection } from "./types.js";

/**
 * `npm run bench -- backup-large`: the `large` simulated org (100,000 items, a 1,000,000-feature
 * layer, a 2 GiB file) backed up through the built app on the local host, then backed up again
 * unchanged, with Azurite in memory. Two departures from the large shape, for this machine:
 * - files of at most 100 KB (its 500 KB would be ~12 GB more for the emulator to hold);
 * - no feature attachments: it gives about one per feature on half its layers and on the
 *   million-feature layer, ~77 KB each, some 250 GB in all. The 2,010-item `backup` section and
 *   the `feature-export` section measure attachments.
 * A 2,010-item org is backed up first by the same app, so that the app's CPU per item at 100,000
 * items is compared with a small run measured in the same run: what grows with the org size
 * where it should not shows there. Run by hand: it takes about 40 minutes on 2 cores.
 * `--quick` runs a tenth of the org (10,000 items, a 100,000-feature layer).
 */
const LATENCY_MS = 20;

export const benchBackupLarge: BenchSection = async ({ quick }): Promise<BenchResult> => {
  execFileSync("npm", ["run", "build", "--silent"], { cwd: REPO, stdio: "inherit" });
  const workDir = await mkdtemp(path.join(os.tmpdir(), "bench-backup-large-"));
  // In memory: on disk, Azurite saves its whole blob index every 5 s, and at a few hundred
  // thousand blobs that save took all of its time (measured: 2,800 items/min falling to 800,
  // the app idle); in memory its cost per blob stays flat.
  // Its blob index for ~600,000 blobs lives on its V8 heap: a ceiling above Node's default, so
  // that it does not spend itself in garbage collection near the limit.
  // Its sweep of unreferenced blob content, every 10 minutes by default, held it for minutes at a
  // time once it stored a few hundred thousand blobs (see startAzurite): once a day here.
  const azurite = await startAzurite({
    extentMemoryLimitMb: 16 * 1024,
    maxOldSpaceMb: 12 * 1024,
    extentGcIntervalMs: 24 * 3600_000,
  });
  const app = await startApp(azurite, workDir);
  const metrics: BenchResult["metrics"] = {};
  const ratios: BenchResult["ratios"] = [];
  const small = await startPortalSim({
    size: "tiny",
    seed: 5,
    latencyMs: LATENCY_MS,
    requestUnitsPerMinute: UNPACED_BUDGET,
    overrides: { items: Object.fromEntries(ITEM_KINDS.map((k) => [k, 134])), publishers: 6, viewers: 4 },
  });
  try {
    const smallRun = await backupAndMeasure(app, azurite, small, "bench-small");
    metrics.smallItems = smallRun.items;
    metrics.smallAppCpuMsPerItem = smallRun.appCpuMsPerItem.toFixed(1);
    await small.close();

    const large = await startPortalSim({
      size: "large",
      seed: 1,
      latencyMs: LATENCY_MS,
      requestUnitsPerMinute: UNPACED_BUDGET,
      overrides: { ...(quick ? tenthOfLarge() : {}), attachmentsPerFeature: 0, fileBytes: 100_000 },
    });
    try {
      const full = await backupAndMeasure(app, azurite, large, "bench-large");
      Object.assign(metrics, {
        items: full.items,
        status: full.status,
        wallSeconds: full.seconds.toFixed(0),
        itemsPerSecond: (full.items / full.seconds).toFixed(1),
        exported: full.exported,
        failed: full.failed,
        portalRequests: full.requests,
        appCpuMsPerItem: full.appCpuMsPerItem.toFixed(1),
        cpuMsPerItem: full.cpuMsPerItem.map((ms) => ms.toFixed(1)).join(" / "),
        manifestItems: full.manifestItems,
        appRssPeakDuringFull: `${full.rssPeak.mb.toFixed(0)} MB at ${full.rssPeak.at}`,
      });
      // The process's own high-water mark so far, which no poll can miss.
      metrics.appPeakRssAfterFullMb = (await peakRssMb(app.host.child.pid)).toFixed(0);
      const durable = await durableStateRows(azurite);
      metrics.durableInstances = durable.instances;
      metrics.durableHistoryRows = durable.historyRows;

      large.stats.reset();
      const unchangedProgress = progressLines(app, azurite);
      const again = await timedBackup(app.host.baseUrl, full.identityId, {}, unchangedProgress.onPoll);
      metrics.unchangedWallSeconds = again.seconds.toFixed(1);
      metrics.unchangedStartAnsweredSeconds = again.startSeconds.toFixed(1);
      metrics.unchangedPortalRequests = large.stats.count();
      metrics.unchangedItems = String(again.run.itemsUnchanged);
      const unchangedPeak = unchangedProgress.rssPeak();
      metrics.appRssPeakDuringUnchanged = `${unchangedPeak.mb.toFixed(0)} MB at ${unchangedPeak.at}`;
      metrics.appPeakRssMb = (await peakRssMb(app.host.child.pid)).toFixed(0);

      ratios.push(
        { name: "manifest items / org items", value: full.manifestItems / full.items, target: 1 },
        {
          name: "app CPU per item, large / 2,010-item run",
          value: full.appCpuMsPerItem / smallRun.appCpuMsPerItem,
          target: 1.2,
          higherIsBetter: false,
        },
        {
          name: "app peak RSS (MB) vs 300 MB",
          value: Number(metrics.appPeakRssMb) / 300,
          target: 1,
          higherIsBetter: false,
        },
        {
          name: "unchanged run speed-up (full / unchanged time)",
          value: full.seconds / again.seconds,
          target: 10,
        },
      );
    } finally {
      await large.close();
    }
  } finally {
    await small.close();
    await stopApp(app, azurite, workDir);
  }
  return { name: "backup-large", metrics, ratios };
};

/** A full backup of one simulated org, its CPU per item per process and its manifest's size. */
async function backupAndMeasure(app: BenchApp, azurite: RunningAzurite, sim: PortalSim, container: string) {
  const items = sim.model.itemCount();
  const identityId = await registerIdentity(app.host.baseUrl, sim, azurite, container);
  sim.stats.reset();
  const cpuBefore = await cpuOf(app.host, azurite);
  const progress = progressLines(app, azurite);
  const full = await timedBackup(app.host.baseUrl, identityId, {}, progress.onPoll);
  const cpuMsPerItem = cpuSpent(cpuBefore, await cpuOf(app.host, azurite)).map((s) => (s * 1000) / items);
  const store = new BlobBackupStore(
    BlobServiceClient.fromConnectionString(azurite.connectionString).getContainerClient(container),
    identityId,
  );
  const manifest = await readManifest(store, String(full.run.runId));
  return {
    identityId,
    items,
    seconds: full.seconds,
    status: String(full.run.status),
    exported: Number(full.run.itemsExported),
    failed: Number(full.run.itemsFailed),
    requests: sim.stats.count(),
    cpuMsPerItem,
    appCpuMsPerItem: cpuMsPerItem[0] ?? Number.NaN,
    manifestItems: manifest?.items.length ?? 0,
    rssPeak: progress.rssPeak(),
  };
}

/**
 * Follows a run: its app RSS peak with the phase it was reached in (so what holds it can be
 * found), and a line a minute, so an hour-long run shows it is alive and where time goes.
 */
function progressLines(app: BenchApp, azurite: RunningAzurite) {
  let lastLine = 0;
  let peak = { mb: 0, at: "" };
  const onPoll = async (status: Record<string, unknown>) => {
    const progress = (status.progress ?? {}) as Record<string, unknown>;
    const at = `${String(progress.phase ?? status.status)} ${String(progress.itemsDone ?? "")}`;
    const mb = await rssMb(app.host.child.pid);
    if (mb > peak.mb) peak = { mb, at };
    if (performance.now() - lastLine < 60_000) return;
    lastLine = performance.now();
    const [appCpu, azuriteCpu] = await cpuOf(app.host, azurite);
    process.stdout.write(
      `  ${new Date().toISOString()} ${at}/${String(progress.itemsTotal ?? "")} items, ${String(progress.itemsPerSecond ?? "")} items/s, app RSS ${mb.toFixed(0)} MB (peak ${peak.mb.toFixed(0)} MB at ${peak.at}), CPU s app ${appCpu?.toFixed(0)} Azurite ${azuriteCpu?.toFixed(0)}, Azurite RSS ${(await rssMb(azurite.pid)).toFixed(0)} MB\n`,
    );
  };
  return { onPoll, rssPeak: () => peak };
}

/** The large org's mix at a tenth of its counts, for a smoke run of this bench. */
function tenthOfLarge() {
  const counts: Record<string, number> = {
    webMap: 1_500,
    webApp: 600,
    dashboard: 300,
    storyMap: 400,
    featureService: 1_200,
    view: 300,
    mapService: 200,
    vectorTile: 100,
    pdf: 1_500,
    csv: 1_200,
    shapefile: 800,
    fgdb: 500,
    image: 1_000,
    code: 100,
    form: 300,
  };
  return { items: counts, bigLayerFeatures: 100_000, bigFileBytes: 200 * 1024 ** 2 };
}
