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
import { indexRun, recordCapturedVersions } from "../../src/core/item-index/indexer.js";
import { ItemIndex } from "../../src/core/item-index/item-index.js";
import {
  type SearchRow,
  SnapshotChanges,
  type SnapshotPatch,
  snapshotRows,
  updateSnapshot,
} from "../../src/core/item-index/search-snapshot.js";
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
    await recordCapturedVersions(index, run, exported);
    await store.uploadJson(unchangedResultName(run.runId, 0), unchanged);
    if (withInventoryNotes && previous) {
      await store.uploadJson(inventoryChangesName(run.runId), {
        comparedWithRunId: previous.runId,
        listingChanged,
        gone,
        exportedAgain: [],
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
  // Most items at a new version: the deltas outgrow half the base.
  { changed: (i) => i % 10 !== 3, owner: (i) => (i === 7 ? "bob" : "alice"), gone: (i) => i >= 598 },
];

describe("taking runs into the item index", () => {
  test("from the inventory's notes gives the same index as comparing every item", async () => {
    const noted = await backUpAndIndex(SHAPES.slice(0, 2), true);
    const compared = await backUpAndIndex(SHAPES.slice(0, 2), false);
    expect(noted.rows).toEqual(compared.rows);
    expect(noted.rows).toHaveLength(ITEMS);
    const byId = new Map(noted.rows.map((row) => [row.itemId, row]));
    expect(byId.get(itemId(7))).toMatchObject({ owner: "bob", present: true });
    expect(byId.get(itemId(7))?.versions).toHaveLength(1);
    expect(byId.get(itemId(50))).toMatchObject({
      present: true,
      firstRunId: "run 0",
      lastSeenRunId: "run 1",
    });
    expect(byId.get(itemId(599))).toMatchObject({ present: false, lastSeenAt: new Date(T0).toISOString() });
    for (const result of [noted, compared]) {
      const versions = byId.get(itemId(50))?.versions ?? [];
      expect(versions).toHaveLength(2);
      const rows = await index.versions(result.identityId, itemId(50), versions);
      expect(rows.map((row) => row.firstSeenAt)).toEqual(
        [T0, T0 + DAY].map((t) => new Date(t).toISOString()),
      );
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
    expect(byId.get(itemId(100))?.versions).toHaveLength(3);
    expect(byId.get(itemId(3))).toMatchObject({ owner: "alice" });
    expect(byId.get(itemId(3))?.versions).toHaveLength(1);
    expect(three.rows).toEqual((await backUpAndIndex(SHAPES, false)).rows);
  });
});

describe("hosted data sent to export every run", () => {
  test("found at its version and listed as before it writes nothing; moved or at a version no run indexed, its row follows", async () => {
    const identityId = randomUUID();
    const store = new BlobBackupStore(container, identityId);
    const runs = [0, 1].map((r) =>
      newRunRecord({
        runId: newRunId("b", T0 + r * DAY),
        identityId,
        name: `run ${r}`,
        trigger: "schedule",
        status: "completed",
        startedAt: new Date(T0 + r * DAY).toISOString(),
        manifest: `${identityId}/runs/x/manifest.json`,
      }),
    );
    const [first, second] = runs as [RunRecord, RunRecord];
    const exported = [1, 2, 3].map((i) => resultOf(i, "v1-e1", "alice", "exported"));
    await store.uploadJson(batchResultName(first.runId, 0, 0), exported);
    await recordCapturedVersions(index, first, exported);
    await indexRun({ store, index, run: first, cacheDirectory, cacheSpace });
    // The export found the first two at the version captured before (one given to bob), the third
    // at a version a run that failed captured (its files are there; no index has it).
    await store.uploadJson(batchResultName(second.runId, 0, 0), [
      resultOf(1, "v1-e1", "alice", "unchanged"),
      resultOf(2, "v1-e1", "bob", "unchanged"),
      resultOf(3, "v1-e2", "alice", "unchanged"),
    ]);
    await store.uploadJson(inventoryChangesName(second.runId), {
      comparedWithRunId: first.runId,
      listingChanged: [],
      gone: [],
      exportedAgain: [
        [itemId(1), "v1-e1", true],
        [itemId(2), "v1-e1", false],
        [itemId(3), "v1-e1", true],
      ],
    } satisfies InventoryChanges);
    await indexRun({ store, index, run: second, cacheDirectory, cacheSpace });
    const head = await index.head(identityId);
    expect(head?.snapshot).toMatchObject({ baseItems: 3, deltaItems: 2 });
    const rows: SearchRow[] = [];
    for await (const row of snapshotRows(store, head?.snapshot ?? { deltas: [] })) rows.push(row);
    expect(rows.map((row) => [row.owner, row.versions])).toEqual([
      ["alice", ["v1-e1"]],
      ["bob", ["v1-e1"]],
      ["alice", ["v1-e1", "v1-e2"]],
    ]);
    const versions = await index.versions(identityId, itemId(3), ["v1-e1", "v1-e2"]);
    expect(versions.map((version) => version.firstRunId)).toEqual([first.runId, second.runId]);
  });
});

describe("the search snapshot", () => {
  const at = (day: number) => new Date(T0 + day * DAY).toISOString();
  const captured = (i: number, title: string, day: number): SnapshotPatch => ({
    kind: "captured",
    itemId: itemId(i),
    runId: `r${day}`,
    at: at(day),
    title,
    type: "PDF",
    owner: "alice",
    folderTitle: "",
    tags: ["parks"],
    version: `v${day}`,
  });
  const read = async (store: BlobBackupStore, deltas: string[]) => {
    const rows: SearchRow[] = [];
    for await (const found of snapshotRows(store, { deltas })) rows.push(found);
    return rows.map((found) => `${found.itemId.slice(-2)} ${found.title} ${found.versions.join(",")}`);
  };

  test("a run's patches go out in sorted files of a few lines, applied in id order and run order", async () => {
    const store = new BlobBackupStore(container, randomUUID());
    const cache = { cacheDirectory, cacheSpace };
    const first = new SnapshotChanges(store, "r1", cache, 3);
    for (const i of [9, 4, 7, 1, 8, 2, 6]) await first.add(captured(i, `first ${i}`, 1));
    await first.add({
      kind: "listed",
      itemId: itemId(4),
      runId: "r1",
      at: at(1),
      title: "first 4 renamed",
      owner: "bob",
      folderTitle: "",
    });
    const merged = await updateSnapshot({ store, state: undefined, runId: "r1", changes: first, cache });
    expect(merged.state).toMatchObject({ deltas: [], baseItems: 7, deltaItems: 0 });
    expect(merged.obsolete).toHaveLength(3);
    expect(await read(store, [])).toEqual([
      "01 first 1 v1",
      "02 first 2 v1",
      "04 first 4 renamed v1",
      "06 first 6 v1",
      "07 first 7 v1",
      "08 first 8 v1",
      "09 first 9 v1",
    ]);

    const second = new SnapshotChanges(store, "r2", cache, 3);
    await second.add(captured(5, "second 5", 2));
    await second.add(captured(7, "second 7", 2));
    await second.add({ kind: "gone", itemId: itemId(9), runId: "r1", at: at(1) });
    // An item the snapshot never had is not made up by a patch that is not a capture.
    await second.add({ kind: "gone", itemId: itemId(3), runId: "r1", at: at(1) });
    const added = await updateSnapshot({ store, state: merged.state, runId: "r2", changes: second, cache });
    expect(added.state).toMatchObject({ deltas: ["r2-0000", "r2-0001"], baseItems: 7, deltaItems: 4 });
    expect(await read(store, added.state.deltas)).toEqual([
      "01 first 1 v1",
      "02 first 2 v1",
      "04 first 4 renamed v1",
      "05 second 5 v2",
      "06 first 6 v1",
      "07 second 7 v1,v2",
      "08 first 8 v1",
      "09 first 9 v1",
    ]);
    const rows = new Map<string, SearchRow>();
    for await (const row of snapshotRows(store, added.state)) rows.set(row.itemId.slice(-2), row);
    expect(rows.get("04")).toMatchObject({ owner: "bob", search: `first 4 renamed parks ${itemId(4)}` });
    expect(rows.get("07")).toMatchObject({ firstRunId: "r1", lastSeenRunId: "r2", present: true });
    expect(rows.get("09")).toMatchObject({ present: false, lastSeenRunId: "r1" });
  });
});
