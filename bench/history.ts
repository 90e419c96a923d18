import { execFileSync } from "node:child_process";
import { mkdtemp } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { TableClient } from "@azure/data-tables";
import { BlobServiceClient } from "@azure/storage-blob";
import { CacheSpace } from "../src/core/backup/cache.js";
import type { ItemResult } from "../src/core/backup/export-item.js";
import { batchResultName, newRunId } from "../src/core/backup/layout.js";
import { runResults } from "../src/core/backup/manifest.js";
import { newRunRecord, RunStore } from "../src/core/backup/runs.js";
import { indexRun } from "../src/core/item-index/indexer.js";
import { ItemIndex } from "../src/core/item-index/item-index.js";
import { BlobBackupStore } from "../src/core/storage/blob-backup-store.js";
import { startPortalSim } from "../test/portal-sim/index.js";
import { unit } from "../test/portal-sim/prng.js";
import { startAzurite } from "../tools/azurite.js";
import { api, REPO, registerIdentity, startApp, stopApp } from "./backup-support.js";
import type { BenchResult, BenchSection } from "./types.js";

/**
 * `npm run bench -- history`: search and item history answered by the app at 100,000 items × 30
 * runs (`--quick`: 10,000 × 10), and what indexing adds to a run's end. The runs are written
 * straight into Blob (their results, as a backup leaves them) and the runs table, 10% of the
 * items at a new version in each; each is then indexed as a run's end does, timed against reading
 * its results the way the manifest writer does (twice: totals, then items). The answers are timed
 * through the app's API on the local host, each the median of 9 calls after one that warms the
 * search cache.
 */
const ITEMS_PER_BLOB = 200;
const DAY_MS = 86_400_000;
const CALLS = 9;

export const benchHistory: BenchSection = async ({ quick }): Promise<BenchResult> => {
  execFileSync("npm", ["run", "build", "--silent"], { cwd: REPO, stdio: "inherit" });
  const items = quick ? 10_000 : 100_000;
  const runCount = quick ? 10 : 30;
  const workDir = await mkdtemp(path.join(os.tmpdir(), "bench-history-"));
  const azurite = await startAzurite({ extentMemoryLimitMb: 8 * 1024 });
  const app = await startApp(azurite, workDir);
  const sim = await startPortalSim({ size: "tiny", seed: 3 });
  const metrics: BenchResult["metrics"] = {};
  const ratios: BenchResult["ratios"] = [];
  try {
    const identityId = await registerIdentity(app.host.baseUrl, sim, azurite, "bench-history");
    const store = new BlobBackupStore(
      BlobServiceClient.fromConnectionString(azurite.connectionString).getContainerClient("bench-history"),
      identityId,
    );
    const table = (name: string) =>
      TableClient.fromConnectionString(azurite.connectionString, name, { allowInsecureConnection: true });
    const runs = new RunStore(table(`runs${app.tableSuffix}`));
    const index = new ItemIndex(table("itemindex"));
    await table("itemindex").createTable();
    const cacheSpace = new CacheSpace(1024 ** 3);
    let indexSeconds = 0;
    let readSeconds = 0;
    const start = Date.now() - runCount * DAY_MS;
    for (let r = 0; r < runCount; r++) {
      const startedAt = new Date(start + r * DAY_MS).toISOString();
      const run = newRunRecord({
        runId: newRunId("b", start + r * DAY_MS),
        identityId,
        name: "bench",
        trigger: "schedule",
        status: "completed",
        startedAt,
        endedAt: startedAt,
        manifest: `${identityId}/runs/x/manifest.json`,
      });
      await runs.create(run);
      await writeResults(store, run.runId, items, r);
      const readStarted = performance.now();
      for (let pass = 0; pass < 2; pass++) await readResults(store, run.runId);
      readSeconds += (performance.now() - readStarted) / 1000;
      const indexStarted = performance.now();
      await indexRun({ store, index, run, cacheDirectory: path.join(workDir, "cache"), cacheSpace });
      indexSeconds += (performance.now() - indexStarted) / 1000;
      process.stdout.write(`  run ${r + 1}/${runCount} indexed\n`);
    }
    const changedItem = itemId(firstChanged(runCount - 1, items));
    const timed = async (route: string) => {
      await api(app.host.baseUrl, "GET", route);
      const times: number[] = [];
      for (let i = 0; i < CALLS; i++) {
        const started = performance.now();
        await api(app.host.baseUrl, "GET", route);
        times.push(performance.now() - started);
      }
      return times.sort((a, b) => a - b)[Math.floor(CALLS / 2)] as number;
    };
    const searches = {
      searchByTitleMs: await timed(
        `/api/identities/${identityId}/items?q=${encodeURIComponent("item 4242")}`,
      ),
      searchByTypeMs: await timed(`/api/identities/${identityId}/items?type=Web%20Map&top=100`),
      searchDeletedMs: await timed(`/api/identities/${identityId}/items?deleted=true`),
      historyMs: await timed(`/api/identities/${identityId}/items/${changedItem}/versions`),
    };
    Object.assign(metrics, {
      items,
      runs: runCount,
      indexSecondsPerRun: (indexSeconds / runCount).toFixed(2),
      resultsReadTwiceSecondsPerRun: (readSeconds / runCount).toFixed(2),
      ...Object.fromEntries(Object.entries(searches).map(([k, v]) => [k, v.toFixed(0)])),
    });
    for (const [name, ms] of Object.entries(searches)) {
      ratios.push({ name: `${name} vs 500 ms`, value: ms / 500, target: 1, higherIsBetter: false });
    }
    ratios.push({
      name: "index time per run / reading its results twice (the manifest writer's passes)",
      value: indexSeconds / readSeconds,
    });
  } finally {
    await sim.close();
    await stopApp(app, azurite, workDir);
  }
  return { name: "history", metrics, ratios };
};

function itemId(i: number): string {
  return i.toString(16).padStart(32, "0");
}

/** Whether item i is at a new version in run r (10% of the items per run, run 0 all new). */
function changedIn(r: number, i: number): boolean {
  return r === 0 || unit(41, r, i) < 0.1;
}

function firstChanged(r: number, items: number): number {
  for (let i = 0; i < items; i++) if (changedIn(r, i)) return i;
  return 0;
}

/** Item i's version as of run r: the run in which it last changed. */
function versionOf(r: number, i: number): string {
  let last = 0;
  for (let k = r; k > 0; k--) {
    if (changedIn(k, i)) {
      last = k;
      break;
    }
  }
  return `v${1_700_000_000_000 + last * DAY_MS}`;
}

const TYPES = ["Web Map", "Feature Service", "Dashboard", "PDF", "CSV"];

async function writeResults(store: BlobBackupStore, runId: string, items: number, r: number) {
  for (let blob = 0; blob * ITEMS_PER_BLOB < items; blob++) {
    const results: ItemResult[] = [];
    for (let i = blob * ITEMS_PER_BLOB; i < Math.min(items, (blob + 1) * ITEMS_PER_BLOB); i++) {
      const version = versionOf(r, i);
      const file = (name: string, kind: "item" | "data") => ({
        blob: `items/${itemId(i)}/${version}/${name}`,
        size: 1000 + (i % 500),
        sha256: (i * 31 + version.length).toString(16).padStart(64, "0"),
        contentType: "application/json",
        path: name,
        kind,
      });
      results.push({
        itemId: itemId(i),
        title: `Item ${i}`,
        type: TYPES[i % TYPES.length] as string,
        owner: `user${i % 50}`,
        folderId: null,
        folderTitle: null,
        access: "org",
        groups: [],
        status: changedIn(r, i) ? "exported" : "unchanged",
        version,
        files: [file("item.json", "item"), file("data.json", "data")],
        bytes: 0,
        notes: [],
      });
    }
    await store.uploadJson(batchResultName(runId, 0, blob), results);
  }
}

async function readResults(store: BlobBackupStore, runId: string) {
  let count = 0;
  for await (const _result of runResults(store, runId)) count++;
  return count;
}
