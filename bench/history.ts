import { execFileSync } from "node:child_process";
import { mkdtemp } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { TableClient } from "@azure/data-tables";
import { BlobServiceClient } from "@azure/storage-blob";
import { CacheSpace } from "../src/core/backup/cache.js";
import type { ItemResult } from "../src/core/backup/export-item.js";
import type { InventoryChanges } from "../src/core/backup/inventory.js";
import {
  batchResultName,
  inventoryChangesName,
  manifestName,
  newRunId,
  unchangedResultName,
} from "../src/core/backup/layout.js";
import { writeManifest } from "../src/core/backup/manifest.js";
import { newRunRecord, RunStore } from "../src/core/backup/runs.js";
import { indexRun, recordCapturedVersions } from "../src/core/item-index/indexer.js";
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
 * straight into Blob as a backup leaves them (the items exported in batch results, the others in
 * the inventory's unchanged results, and the inventory's note of what it compared with) and into
 * the runs table, each batch recording the versions it exported in the index as the app's batches
 * do (timed apart: the batches' share); each run's end is then done as the app does it: its
 * manifest written, then the run indexed, both timed. Two orgs of the same size: one where 1% of the items change a day (the
 * search and history answers are timed there), and one where 10% do (fewer runs). The first run
 * indexes every item and is reported on its own. The answers are timed through the app's API on
 * the local host, each the median of 9 calls after one that warms the search cache.
 */
const ITEMS_PER_BLOB = 200;
const DAY_MS = 86_400_000;
const CALLS = 9;

interface Churn {
  name: string;
  /** Share of the items at a new version in each run after the first. */
  rate: number;
  runs: number;
}

interface RunEnds {
  firstIndexSeconds: number;
  firstManifestSeconds: number;
  /** Sums over the runs after the first. */
  indexSeconds: number;
  manifestSeconds: number;
  /** The batches' share: writing the rows of the versions they exported. */
  batchSeconds: number;
}

export const benchHistory: BenchSection = async ({ quick }): Promise<BenchResult> => {
  execFileSync("npm", ["run", "build", "--silent"], { cwd: REPO, stdio: "inherit" });
  const items = quick ? 10_000 : 100_000;
  const churns: Churn[] = [
    { name: "daily1pct", rate: 0.01, runs: quick ? 10 : 30 },
    { name: "daily10pct", rate: 0.1, runs: quick ? 5 : 13 },
  ];
  const workDir = await mkdtemp(path.join(os.tmpdir(), "bench-history-"));
  const azurite = await startAzurite({ extentMemoryLimitMb: 12 * 1024, maxOldSpaceMb: 8 * 1024 });
  const app = await startApp(azurite, workDir);
  const sim = await startPortalSim({ size: "tiny", seed: 3 });
  const metrics: BenchResult["metrics"] = { items };
  const ratios: BenchResult["ratios"] = [];
  try {
    const table = (name: string) =>
      TableClient.fromConnectionString(azurite.connectionString, name, { allowInsecureConnection: true });
    await table("itemindex").createTable();
    const context = {
      runs: new RunStore(table(`runs${app.tableSuffix}`)),
      index: new ItemIndex(table("itemindex")),
      cacheDirectory: path.join(workDir, "cache"),
      cacheSpace: new CacheSpace(1024 ** 3),
    };
    for (const churn of churns) {
      const identityId = await registerIdentity(app.host.baseUrl, sim, azurite, `bench-${churn.name}`);
      const store = new BlobBackupStore(
        BlobServiceClient.fromConnectionString(azurite.connectionString).getContainerClient(
          `bench-${churn.name}`.toLowerCase(),
        ),
        identityId,
      );
      const ends = await backUpAndEnd({ ...context, store, identityId, items, churn });
      const steadyRuns = churn.runs - 1;
      Object.assign(metrics, {
        [`${churn.name}Runs`]: churn.runs,
        [`${churn.name}FirstRunIndexSeconds`]: ends.firstIndexSeconds.toFixed(2),
        [`${churn.name}FirstRunManifestSeconds`]: ends.firstManifestSeconds.toFixed(2),
        [`${churn.name}IndexSecondsPerRun`]: (ends.indexSeconds / steadyRuns).toFixed(2),
        [`${churn.name}ManifestSecondsPerRun`]: (ends.manifestSeconds / steadyRuns).toFixed(2),
        [`${churn.name}BatchVersionRowsSecondsPerRun`]: (ends.batchSeconds / steadyRuns).toFixed(2),
      });
      ratios.push({
        name: `${churn.name}: index time / manifest time of a run's end (runs after the first)`,
        value: ends.indexSeconds / ends.manifestSeconds,
        target: 0.1,
        higherIsBetter: false,
      });
      if (churn.rate === 0.01) {
        const searches = await timeAnswers(app.host.baseUrl, identityId, items, churn);
        for (const [name, ms] of Object.entries(searches)) {
          metrics[name] = ms.toFixed(0);
          ratios.push({ name: `${name} vs 500 ms`, value: ms / 500, target: 1, higherIsBetter: false });
        }
      }
    }
  } finally {
    await sim.close();
    await stopApp(app, azurite, workDir);
  }
  return { name: "history", metrics, ratios };
};

/** Writes the org's runs one after another; each run's end writes its manifest, then indexes it. */
async function backUpAndEnd(options: {
  store: BlobBackupStore;
  runs: RunStore;
  index: ItemIndex;
  identityId: string;
  items: number;
  churn: Churn;
  cacheDirectory: string;
  cacheSpace: CacheSpace;
}): Promise<RunEnds> {
  const { store, identityId, churn } = options;
  const ends: RunEnds = {
    firstIndexSeconds: 0,
    firstManifestSeconds: 0,
    indexSeconds: 0,
    manifestSeconds: 0,
    batchSeconds: 0,
  };
  const start = Date.now() - churn.runs * DAY_MS;
  let previousRunId: string | undefined;
  for (let r = 0; r < churn.runs; r++) {
    const startedAt = new Date(start + r * DAY_MS).toISOString();
    const run = newRunRecord({
      runId: newRunId("b", start + r * DAY_MS),
      identityId,
      name: "bench",
      trigger: "schedule",
      status: "completed",
      startedAt,
      endedAt: startedAt,
    });
    await options.runs.create(run);
    let batchSeconds = 0;
    await writeResults(store, run.runId, options.items, r, churn.rate, async (results) => {
      const started = performance.now();
      await recordCapturedVersions(options.index, run, results);
      batchSeconds += (performance.now() - started) / 1000;
    });
    if (previousRunId) {
      const note: InventoryChanges = {
        comparedWithRunId: previousRunId,
        listingChanged: [],
        gone: [],
        exportedAgain: [],
      };
      await store.uploadJson(inventoryChangesName(run.runId), note);
    }
    const cache = { cacheDirectory: options.cacheDirectory, cacheSpace: options.cacheSpace };
    const manifestStarted = performance.now();
    await writeManifest({ store, run, identityName: "bench", sharingUrl: "https://bench.invalid", ...cache });
    const manifestSeconds = (performance.now() - manifestStarted) / 1000;
    const ended = { ...run, manifest: `${identityId}/${manifestName(run.runId)}` };
    await options.runs.update(identityId, run.runId, (next) => {
      next.manifest = ended.manifest;
    });
    const indexStarted = performance.now();
    await indexRun({ store, index: options.index, run: ended, ...cache });
    const indexSeconds = (performance.now() - indexStarted) / 1000;
    if (r === 0)
      Object.assign(ends, { firstIndexSeconds: indexSeconds, firstManifestSeconds: manifestSeconds });
    else {
      ends.batchSeconds += batchSeconds;
      ends.indexSeconds += indexSeconds;
      ends.manifestSeconds += manifestSeconds;
    }
    previousRunId = run.runId;
    process.stdout.write(
      `  ${churn.name} run ${r + 1}/${churn.runs}: batches' version rows ${batchSeconds.toFixed(2)} s, manifest ${manifestSeconds.toFixed(2)} s, index ${indexSeconds.toFixed(2)} s\n`,
    );
  }
  return ends;
}

async function timeAnswers(baseUrl: string, identityId: string, items: number, churn: Churn) {
  const changedItem = itemId(firstChanged(churn.runs - 1, items, churn.rate));
  const timed = async (route: string) => {
    await api(baseUrl, "GET", route);
    const times: number[] = [];
    for (let i = 0; i < CALLS; i++) {
      const started = performance.now();
      await api(baseUrl, "GET", route);
      times.push(performance.now() - started);
    }
    return times.sort((a, b) => a - b)[Math.floor(CALLS / 2)] as number;
  };
  return {
    searchByTitleMs: await timed(`/api/identities/${identityId}/items?q=${encodeURIComponent("item 4242")}`),
    searchByTypeMs: await timed(`/api/identities/${identityId}/items?type=Web%20Map&top=100`),
    searchDeletedMs: await timed(`/api/identities/${identityId}/items?deleted=true`),
    historyMs: await timed(`/api/identities/${identityId}/items/${changedItem}/versions`),
  };
}

function itemId(i: number): string {
  return i.toString(16).padStart(32, "0");
}

/** Whether item i is at a new version in run r (run 0: all new). */
function changedIn(r: number, i: number, rate: number): boolean {
  return r === 0 || unit(41, r, i) < rate;
}

function firstChanged(r: number, items: number, rate: number): number {
  for (let i = 0; i < items; i++) if (changedIn(r, i, rate)) return i;
  return 0;
}

/** Item i's version as of run r: the run in which it last changed. */
function versionOf(r: number, i: number, rate: number): string {
  let last = 0;
  for (let k = r; k > 0; k--) {
    if (changedIn(k, i, rate)) {
      last = k;
      break;
    }
  }
  return `v${1_700_000_000_000 + last * DAY_MS}`;
}

const TYPES = ["Web Map", "Feature Service", "Dashboard", "PDF", "CSV"];

/** The run's results as a backup leaves them: exported items by batch, unchanged ones by the inventory. */
async function writeResults(
  store: BlobBackupStore,
  runId: string,
  items: number,
  r: number,
  rate: number,
  /** What a batch does once its results are written (record its versions in the index). */
  batchEnded: (results: ItemResult[]) => Promise<void>,
) {
  const exported: ItemResult[] = [];
  const unchanged: ItemResult[] = [];
  let blobs = 0;
  const flush = async (results: ItemResult[], name: (n: number) => string, all: boolean) => {
    while (results.length >= ITEMS_PER_BLOB || (all && results.length > 0)) {
      const blob = results.splice(0, ITEMS_PER_BLOB);
      await store.uploadJson(name(blobs++), blob);
      if (results === exported) await batchEnded(blob);
    }
  };
  for (let i = 0; i < items; i++) {
    const changed = changedIn(r, i, rate);
    (changed ? exported : unchanged).push(resultOf(i, versionOf(r, i, rate), changed));
    await flush(exported, (n) => batchResultName(runId, 0, n), false);
    await flush(unchanged, (n) => unchangedResultName(runId, n), false);
  }
  await flush(exported, (n) => batchResultName(runId, 0, n), true);
  await flush(unchanged, (n) => unchangedResultName(runId, n), true);
}

function resultOf(i: number, version: string, changed: boolean): ItemResult {
  const file = (name: string, kind: "item" | "data") => ({
    blob: `items/${itemId(i)}/${version}/${name}`,
    size: 1000 + (i % 500),
    sha256: (i * 31 + version.length).toString(16).padStart(64, "0"),
    contentType: "application/json",
    path: name,
    kind,
  });
  return {
    itemId: itemId(i),
    title: `Item ${i}`,
    type: TYPES[i % TYPES.length] as string,
    owner: `user${i % 50}`,
    folderId: null,
    folderTitle: null,
    access: "org",
    groups: [],
    tags: [`tag${i % 40}`],
    status: changed ? "exported" : "unchanged",
    version,
    files: [file("item.json", "item"), file("data.json", "data")],
    bytes: 0,
    notes: [],
  };
}
