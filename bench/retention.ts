import { execFileSync } from "node:child_process";
import { mkdtemp } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { TableClient } from "@azure/data-tables";
import { BlobServiceClient, type ContainerClient } from "@azure/storage-blob";
import { readManifest } from "../src/core/backup/manifest.js";
import { RunStore } from "../src/core/backup/runs.js";
import { BlobBackupStore } from "../src/core/storage/blob-backup-store.js";
import { ITEM_KINDS, type PortalSim, startPortalSim } from "../test/portal-sim/index.js";
import { unit } from "../test/portal-sim/prng.js";
import { startAzurite } from "../tools/azurite.js";
import {
  api,
  REPO,
  registerIdentity,
  startApp,
  stopApp,
  timedBackup,
  UNPACED_BUDGET,
} from "./backup-support.js";
import type { BenchResult, BenchSection } from "./types.js";

/**
 * `npm run bench -- retention`: what deduplication and a retention policy save, in bytes.
 * - A second run after every item's `modified` changed and no file did: bytes uploaded, against
 *   the first run's.
 * - 30 daily runs of the 2,010-item org, 10% of the items changed each day (their `modified`; a JSON
 *   item's data edited too, a file item's file left as it was): item bytes stored with dedup
 *   (what the container holds) and without it (every file of every version stored by that version),
 *   and what a prune with keepDaily 7 / keepWeekly 4 would leave (its dry run). The runs are minutes
 *   apart in fact; their records are dated a day apart first, so the calendar rules see 30 days.
 * `--quick`: 10 runs of a 300-item org.
 */
const DAY_MS = 86_400_000;

export const benchRetention: BenchSection = async ({ quick }): Promise<BenchResult> => {
  execFileSync("npm", ["run", "build", "--silent"], { cwd: REPO, stdio: "inherit" });
  const workDir = await mkdtemp(path.join(os.tmpdir(), "bench-retention-"));
  const azurite = await startAzurite();
  const app = await startApp(azurite, workDir);
  const perKind = quick ? 20 : 134;
  const days = quick ? 10 : 30;
  const sim = await startPortalSim({
    size: "tiny",
    seed: 9,
    requestUnitsPerMinute: UNPACED_BUDGET,
    overrides: { items: Object.fromEntries(ITEM_KINDS.map((k) => [k, perKind])), publishers: 6, viewers: 4 },
  });
  const metrics: BenchResult["metrics"] = {};
  const ratios: BenchResult["ratios"] = [];
  const blobs = BlobServiceClient.fromConnectionString(azurite.connectionString);
  try {
    // Every item's modified changed, no file did.
    const touched = await registerIdentity(app.host.baseUrl, sim, azurite, "bench-touched");
    const first = await timedBackup(app.host.baseUrl, touched);
    for (let i = 0; i < sim.model.itemCount(); i++) sim.model.touch(i);
    const second = await timedBackup(app.host.baseUrl, touched);
    metrics.items = sim.model.itemCount();
    metrics.firstRunBytesUploaded = Number(first.run.bytes);
    metrics.allTouchedRunBytesUploaded = Number(second.run.bytes);
    metrics.allTouchedRunItemsExported = Number(second.run.itemsExported);
    ratios.push({
      name: "bytes uploaded, every item's modified changed / first run",
      value: Number(second.run.bytes) / Number(first.run.bytes),
    });

    // 30 daily runs with 10% of the items changed before each.
    const daily = await registerIdentity(app.host.baseUrl, sim, azurite, "bench-daily");
    const container = blobs.getContainerClient("bench-daily");
    const runIds: string[] = [];
    for (let day = 0; day < days; day++) {
      if (day > 0) changeTenPercent(sim, day);
      runIds.push(String((await timedBackup(app.host.baseUrl, daily)).run.runId));
    }
    const store = new BlobBackupStore(container, daily);
    const withDedup = await bytesUnder(container, `${daily}/items/`);
    const withoutDedup = await bytesWithoutDedup(store, runIds);
    Object.assign(metrics, {
      dailyRuns: days,
      itemBytesWithDedup: withDedup,
      itemBytesWithoutDedup: withoutDedup,
      runFolderBytes: await bytesUnder(container, `${daily}/runs/`),
    });
    ratios.push({ name: "item bytes stored, dedup / without dedup", value: withDedup / withoutDedup });

    await dateRunsDaysApart(azurite.connectionString, app.tableSuffix, daily, runIds);
    await api(app.host.baseUrl, "PATCH", `/api/identities/${daily}`, {
      retention: { keepDaily: 7, keepWeekly: 4 },
    });
    // The prune's own dry run: what it would delete. (Deleting it here measures the emulator:
    // Azurite took ~160 ms of CPU per blob delete with 24,000 blobs stored, ~6 deletes/s; prune
    // deletes are tested end to end in test/e2e/prune.test.ts.)
    const preview = await api(app.host.baseUrl, "POST", `/api/identities/${daily}/prune`, { dryRun: true });
    const previewRuns = preview.runs as { kept: number; trimmed: number; forgotten: number };
    const previewBlobs = preview.blobs as { deleted: number; bytes: number };
    const runFolderBytes = Number(metrics.runFolderBytes);
    const afterPrune = withDedup + runFolderBytes - previewBlobs.bytes;
    Object.assign(metrics, {
      runsKeptDaily7Weekly4: previewRuns.kept,
      runsForgotten: previewRuns.forgotten,
      blobsThePruneWouldDelete: previewBlobs.deleted,
      bytesThePruneWouldDelete: previewBlobs.bytes,
      bytesStoredAfterPrune: afterPrune,
    });
    ratios.push({
      name: "bytes stored (items and run folders), after prune (daily 7, weekly 4) / before",
      value: afterPrune / (withDedup + runFolderBytes),
    });
  } finally {
    await sim.close();
    await stopApp(app, azurite, workDir);
  }
  return { name: "retention", metrics, ratios };
};

/** A tenth of the items (the same on every run of the bench) get a new `modified`; a JSON item's data is edited as well. */
function changeTenPercent(sim: PortalSim, day: number): void {
  const count = sim.model.itemCount();
  for (let i = 0; i < count; i++) {
    if (unit(17, day, i) >= 0.1) continue;
    const data = sim.model.itemData(i);
    if (data.kind === "json") sim.model.setItemData(i, { kind: "json", text: `${data.text} ` });
    sim.model.touch(i);
  }
}

async function bytesUnder(container: ContainerClient, prefix: string): Promise<number> {
  let bytes = 0;
  for await (const blob of container.listBlobsFlat({ prefix })) bytes += blob.properties.contentLength ?? 0;
  return bytes;
}

/** Every version's files counted in full, as if no version reused a file of the one before. */
async function bytesWithoutDedup(store: BlobBackupStore, runIds: string[]): Promise<number> {
  const versions = new Map<string, number>();
  for (const runId of runIds) {
    for (const item of (await readManifest(store, runId))?.items ?? []) {
      if (!item.versionPath || versions.has(item.versionPath)) continue;
      // Files plus the completion marker, which the dedup run stores too (counted alike: ~1 KB).
      versions.set(
        item.versionPath,
        item.files.reduce((sum, file) => sum + file.size, 0),
      );
    }
  }
  let bytes = 0;
  for (const size of versions.values()) bytes += size;
  return bytes;
}

/** Dates the identity's runs a day apart, the newest today, so the calendar rules see 30 days. */
async function dateRunsDaysApart(
  connectionString: string,
  tableSuffix: string,
  identityId: string,
  runIds: string[],
) {
  const runs = new RunStore(
    TableClient.fromConnectionString(connectionString, `runs${tableSuffix}`, {
      allowInsecureConnection: true,
    }),
  );
  const now = Date.now();
  for (const [index, runId] of runIds.entries()) {
    const start = now - (runIds.length - 1 - index) * DAY_MS - 3_600_000;
    await runs.update(identityId, runId, (run) => {
      const took = Date.parse(run.endedAt ?? run.startedAt) - Date.parse(run.startedAt);
      run.startedAt = new Date(start).toISOString();
      run.endedAt = new Date(start + took).toISOString();
    });
  }
}
