import { randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { TableClient } from "@azure/data-tables";
import { BlobServiceClient, type ContainerClient } from "@azure/storage-blob";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { CacheSpace } from "../../src/core/backup/cache.js";
import type { ItemResult } from "../../src/core/backup/export-item.js";
import type { InventoryChanges } from "../../src/core/backup/inventory.js";
import {
  batchResultName,
  inventoryChangesName,
  newRunId,
  unchangedResultName,
} from "../../src/core/backup/layout.js";
import { newRunRecord, type RunRecord } from "../../src/core/backup/runs.js";
import { indexRun } from "../../src/core/item-index/indexer.js";
import { ItemIndex, type SearchRow } from "../../src/core/item-index/item-index.js";
import { SnapshotChanges, snapshotRows, updateSnapshot } from "../../src/core/item-index/search-snapshot.js";
import { BlobBackupStore } from "../../src/core/storage/blob-backup-store.js";

// A run is taken into the item index from what its inventory noted (the batches' exports, items
// renamed or moved, items gone) when it compared the org with the index's head run, and by
// comparing every result otherwise: both give the same index. The search snapshot grows by small
// deltas, merged into its base once they add up.

const ITEMS = 600;
const DAY = 86_400_000;
const T0 = Date.UTC(2026, 0, 1);
let container: ContainerClient;
let table: TableClient;
let index: ItemIndex;
let cacheDirectory: string;
const cacheSpace = new CacheSpace(1024 ** 3);

beforeAll(async () => {
  const { connectionString } = inject("azurite");
  const suffix = randomBytes(4).toString("hex");
  container = BlobServiceClient.fromConnectionString(connectionString).getContainerClient(`index-${suffix}`);
  await container.create();
  table = TableClient.fromConnectionString(connectionString, `itemindex${suffix}`, {
    allowInsecureConnection: true,
  });
  await table.createTable();
  index = new ItemIndex(table);
  cacheDirectory = await mkdtemp(path.join(os.tmpdir(), "index-test-"));
});

afterAll(async () => {
  await container?.delete().catch(() => undefined);
  await table?.deleteTable().catch(() => undefined);
  if (cacheDirectory) await rm(cacheDirectory, { recursive: true, force: true });
});

const itemId = (i: number) => i.toString(16).padStart(32, "0");

/** One org's history: which items each run exported at a new version, who owns them, which are gone. */
interface RunShape {
  changed: (i: number) => boolean;
  owner: (i: number) => string;
  gone: (i: number) => boolean;
}

function resultOf(i: number, version: string, owner: string, status: ItemResult["status"]): ItemResult {
  return {
    itemId: itemId(i),
    title: `Item ${i}`,
    type: i % 2 ? "Web Map" : "PDF",
    owner,
    folderId: null,
    folderTitle: null,
    access: "org",
    groups: [],
    tags: [`tag${i % 7}`],
    status,
    version,
    files: [
      {
        blob: `items/${itemId(i)}/${version}/item.json`,
        size: 100,
        sha256: "0".repeat(64),
        contentType: "application/json",
        path: "item.json",
        kind: "item",
      },
    ],
    bytes: 0,
    notes: [],
  };
}

/** Writes runs as a backup leaves them (with or without the inventory's note) and indexes each. */
async function backUpAndIndex(shapes: RunShape[], withInventoryNotes: boolean) {
  const identityId = randomUUID();
  const store = new BlobBackupStore(container, identityId);
  const versions = new Map<number, string>();
  const owners = new Map<number, string>();
  let previous: RunRecord | undefined;
  const runIds: string[] = [];
  for (const [r, shape] of shapes.entries()) {
    const startedAt = T0 + r * DAY;
    const run = newRunRecord({
      runId: newRunId("b", startedAt),
      identityId,
      name: `run ${r}`,
      trigger: "schedule",
      status: "completed",
      startedAt: new Date(startedAt).toISOString(),
      manifest: `${identityId}/runs/x/manifest.json`,
    });
    runIds.push(run.runId);
    const exported: ItemResult[] = [];
    const unchanged: ItemResult[] = [];
    const listingChanged: InventoryChanges["listingChanged"] = [];
    const gone: string[] = [];
    for (let i = 0; i < ITEMS; i++) {
      if (shape.gone(i)) {
        if (versions.delete(i)) gone.push(itemId(i));
        continue;
      }
      const owner = shape.owner(i);
      if (!versions.has(i) || shape.changed(i)) {
        versions.set(i, `v${startedAt + i}`);
        exported.push(resultOf(i, versions.get(i) as string, owner, "exported"));
      } else {
        if (owners.get(i) !== owner)
          listingChanged.push({ itemId: itemId(i), title: `Item ${i}`, owner, folderTitle: null });
        unchanged.push(resultOf(i, versions.get(i) as string, owner, "unchanged"));
      }
      owners.set(i, owner);
    }
    await store.uploadJson(batchResultName(run.runId, 0, 0), exported);
    await store.uploadJson(unchangedResultName(run.runId, 0), unchanged);
    if (withInventoryNotes && previous) {
      await store.uploadJson(inventoryChangesName(run.runId), {
        comparedWithRunId: previous.runId,
        listingChanged,
        gone,
      } satisfies InventoryChanges);
    }
    await indexRun({ store, index, run, cacheDirectory, cacheSpace });
    previous = run;
  }
  const head = await index.head(identityId);
  if (!head) throw new Error("no head after indexing");
  const rows: SearchRow[] = [];
  // Run ids named by their place in the history, to compare two identities' indexes.
  const named = (runId: string) => `run ${runIds.indexOf(runId)}`;
  for await (const row of snapshotRows(store, head.snapshot)) {
    rows.push({ ...row, firstRunId: named(row.firstRunId), lastSeenRunId: named(row.lastSeenRunId) });
  }
  const deltaBlobs: string[] = [];
  for await (const name of store.list("index/deltas/")) deltaBlobs.push(name);
  return { identityId, head, rows, deltaBlobs };
}

const everyone = () => "alice";
const none = () => false;
const SHAPES: RunShape[] = [
  { changed: none, owner: everyone, gone: none },
  // A few new versions, one item given to another owner without a new version, one deleted.
  { changed: (i) => i % 50 === 0, owner: (i) => (i === 7 ? "bob" : "alice"), gone: (i) => i === 599 },
  // Most items at a new version: the deltas outgrow a tenth of the base.
  { changed: (i) => i % 10 !== 3, owner: (i) => (i === 7 ? "bob" : "alice"), gone: (i) => i >= 598 },
];

describe("taking runs into the item index", () => {
  test("from the inventory's notes gives the same index as comparing every item", async () => {
    const noted = await backUpAndIndex(SHAPES.slice(0, 2), true);
    const compared = await backUpAndIndex(SHAPES.slice(0, 2), false);
    expect(noted.rows).toEqual(compared.rows);
    expect(noted.rows).toHaveLength(ITEMS);
    const byId = new Map(noted.rows.map((row) => [row.itemId, row]));
    expect(byId.get(itemId(7))).toMatchObject({ owner: "bob", versionCount: 1, present: true });
    expect(byId.get(itemId(50))).toMatchObject({ versionCount: 2, present: true });
    expect(byId.get(itemId(599))).toMatchObject({ present: false, lastSeenAt: new Date(T0).toISOString() });
    for (const result of [noted, compared]) {
      const item = await index.item(result.identityId, itemId(50));
      expect(JSON.parse(item?.versions ?? "[]")).toHaveLength(2);
    }
  });

  test("a run that changed a few items adds a delta; once deltas add up they merge into the base", async () => {
    const two = await backUpAndIndex(SHAPES.slice(0, 2), true);
    expect(two.head.snapshot).toMatchObject({ baseItems: ITEMS, deltaItems: 14 });
    expect(two.deltaBlobs).toHaveLength(1);

    const three = await backUpAndIndex(SHAPES, true);
    expect(three.head.snapshot).toMatchObject({ deltas: [], baseItems: ITEMS, deltaItems: 0 });
    expect(three.deltaBlobs).toHaveLength(0);
    const byId = new Map(three.rows.map((row) => [row.itemId, row]));
    expect(byId.get(itemId(598))).toMatchObject({ present: false });
    expect(byId.get(itemId(100))).toMatchObject({ versionCount: 3 });
    expect(byId.get(itemId(3))).toMatchObject({ versionCount: 1, owner: "alice" });
    expect(three.rows).toEqual((await backUpAndIndex(SHAPES, false)).rows);
  });
});

describe("the search snapshot", () => {
  const row = (i: number, title: string): SearchRow => ({
    itemId: itemId(i),
    title,
    type: "PDF",
    owner: "alice",
    folderTitle: "",
    tags: "[]",
    search: title.toLowerCase(),
    firstRunId: "r1",
    firstSeenAt: new Date(T0).toISOString(),
    present: true,
    lastSeenRunId: "r1",
    lastSeenAt: new Date(T0).toISOString(),
    lastVersion: "v1",
    versionCount: 1,
  });
  const read = async (store: BlobBackupStore, deltas: string[]) => {
    const rows: SearchRow[] = [];
    for await (const found of snapshotRows(store, { deltas })) rows.push(found);
    return rows.map((found) => `${found.itemId.slice(-2)} ${found.title}`);
  };

  test("a run's changes go out in sorted files of a few rows, merged in id order, the later row winning", async () => {
    const store = new BlobBackupStore(container, randomUUID());
    const cache = { cacheDirectory, cacheSpace };
    const first = new SnapshotChanges(store, "r1", cache, 3);
    for (const i of [9, 4, 7, 1, 8, 2, 6]) await first.add(row(i, `first ${i}`));
    await first.add(row(4, "first 4 again"));
    const merged = await updateSnapshot({ store, state: undefined, runId: "r1", changes: first, cache });
    expect(merged.state).toMatchObject({ deltas: [], baseItems: 7, deltaItems: 0 });
    expect(merged.obsolete).toHaveLength(3);
    expect(await read(store, [])).toEqual([
      "01 first 1",
      "02 first 2",
      "04 first 4 again",
      "06 first 6",
      "07 first 7",
      "08 first 8",
      "09 first 9",
    ]);

    const second = new SnapshotChanges(store, "r2", cache, 3);
    await second.add(row(5, "second 5"));
    await second.add(row(7, "second 7"));
    const added = await updateSnapshot({ store, state: merged.state, runId: "r2", changes: second, cache });
    expect(added.state).toMatchObject({ deltas: ["r2-0000"], baseItems: 7, deltaItems: 2 });
    expect(await read(store, added.state.deltas)).toEqual([
      "01 first 1",
      "02 first 2",
      "04 first 4 again",
      "05 second 5",
      "06 first 6",
      "07 second 7",
      "08 first 8",
      "09 first 9",
    ]);
  });
});
