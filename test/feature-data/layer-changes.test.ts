import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { exportItem, type ItemResult, type VersionMarker } from "../../src/core/backup/export-item.js";
import { createFeatureDataExporter } from "../../src/core/backup/feature-export.js";
import { layerAttachments, layerRows, layersOf } from "../../src/core/backup/layer-version-rows.js";
import { silentLogger } from "../../src/core/log.js";
import { BackupFiles } from "../../src/core/restore/backup-files.js";
import type { AttachmentRec } from "../portal-sim/features.js";
import { type PortalSim, type SimItem, startPortalSim } from "../portal-sim/index.js";
import { bufferSource } from "../portal-sim/prng.js";
import {
  type Backup,
  featureServices,
  openBackup,
  portalFor,
  readMarker,
  recordOf,
  serviceDef,
} from "./support.js";

let sim: PortalSim;
let services: SimItem[];
const backups: Backup[] = [];

async function backup(): Promise<Backup> {
  const b = await openBackup(inject("azurite").connectionString);
  backups.push(b);
  return b;
}

beforeAll(async () => {
  sim = await startPortalSim({
    seed: 12,
    overrides: {
      items: { featureService: 14 },
      featuresPerLayer: 200,
      bigLayerFeatures: 300,
      attachmentsPerFeature: 2,
    },
    requestUnitsPerMinute: 1e9,
  });
  services = featureServices(sim).filter((s) => serviceDef(sim, s).layers[0]?.hasAttachments);
  if (services.length < 5) throw new Error("unexpected sim shape");
});

afterAll(async () => {
  await Promise.all(backups.map((b) => b.dispose()));
  await sim?.close();
});

/** A backup "run" of one item: exported knowing its previous version, as the runner does. */
async function exportVersion(
  b: Backup,
  item: SimItem,
  previous: ItemResult | undefined,
  fullExportEvery = 7,
): Promise<{ result: ItemResult; marker: VersionMarker }> {
  const portal = portalFor(sim);
  const result = await exportItem(
    {
      runId: `b-layer-changes-${randomBytes(4).toString("hex")}`,
      portal,
      store: b.store,
      cacheDirectory: b.cacheDirectory,
      cacheSpace: b.cacheSpace,
      log: silentLogger,
      serviceData: createFeatureDataExporter(portal, { fullExportEvery }),
    },
    {
      ...recordOf(sim.model.item(item.id) ?? item),
      ...(previous?.version ? { previousVersion: previous.version } : {}),
    },
  );
  expect(result.error, JSON.stringify(result.error)).toBeUndefined();
  return { result, marker: await readMarker(b, item.id, result.version as string) };
}

const tracked = (item: SimItem, on = true) =>
  sim.model.setChangeTracking(sim.model.indexOf(item.id) as number, on);

/** A few edits of layer 0: two rows updated, one deleted, two added, an attachment added. */
function editSome(item: SimItem): void {
  const layer = serviceDef(sim, item).layers[0];
  if (!layer) throw new Error("no layer 0");
  const oids = [...layer.store.oids()];
  sim.mutate.updateFeatures(item.id, 0, [oids[3] as number, oids[10] as number], {
    name: "Edited in the field",
  });
  sim.mutate.deleteFeatures(item.id, 0, [oids[5] as number]);
  sim.mutate.addFeatures(item.id, 0, 2);
  const parent = oids[20] as number;
  const data = randomBytes(300);
  const added: AttachmentRec = {
    id: layer.store.nextAttachmentId++,
    globalId: sim.model.newGlobalId(),
    name: "added.jpg",
    contentType: "image/jpeg",
    size: data.length,
    keywords: "",
    source: bufferSource(data),
  };
  layer.store.setAttachments(parent, [...layer.store.attachments(parent), added]);
  layer.store.touch();
}

function storageOf(marker: VersionMarker, layerId = 0) {
  return marker.layerStorage?.find((l) => l.layerId === layerId);
}

/** A version's rows and attachments of layer 0, read as a whole. */
async function wholeLayer(b: Backup, marker: VersionMarker) {
  const files = new BackupFiles(b.store);
  const layer = layersOf(marker.files).find((l) => l.layerId === 0);
  if (!layer) throw new Error("no layer 0 in the version");
  const rows: unknown[] = [];
  for await (const line of layerRows(files, layer, "OBJECTID")) rows.push(JSON.parse(line));
  const attachments: Array<Record<string, unknown>> = [];
  for await (const record of layerAttachments(files, layer)) {
    const file = marker.files.find((f) => f.path === record.path);
    attachments.push({ ...record, sha256: file?.sha256 });
  }
  return { rows, attachments };
}

describe("change sets of layers that track changes", () => {
  test("a second backup after a few edits stores a change set; read whole it equals a full export", async () => {
    const item = services[0] as SimItem;
    tracked(item);
    const b = await backup();
    const first = await exportVersion(b, item, undefined);
    expect(storageOf(first.marker)).toMatchObject({
      storage: "full",
      changeSets: 0,
      baseVersion: first.result.version,
    });
    expect(storageOf(first.marker)?.serverGen).toEqual(expect.any(Number));

    editSome(item);
    sim.stats.reset();
    const second = await exportVersion(b, item, first.result);
    const storage = storageOf(second.marker);
    expect(storage).toMatchObject({ storage: "changes", changeSets: 1, baseVersion: first.result.version });
    expect(storage?.fromServerGen).toBe(storageOf(first.marker)?.serverGen);
    expect(second.result.layerStorage).toEqual(second.marker.layerStorage);
    expect(sim.stats.count("services/FeatureServer/extractChanges")).toBe(2);
    // Only the change set and the new attachment went up: a small fraction of the first version.
    expect(second.result.bytes).toBeLessThan(first.result.bytes / 10);
    const changeFiles = second.marker.files.filter((f) => f.kind === "feature-changes" && !f.reused);
    expect(changeFiles.map((f) => f.path).sort()).toEqual([
      "feature-changes/0/0001.attachments.ndjson",
      "feature-changes/0/0001.ndjson",
    ]);
    // The base's full export is named by the new version too (a prune keeps it with it).
    const base = second.marker.files.find((f) => f.path === "features/0.ndjson");
    expect(base?.reused).toBe(true);

    // The same state exported full, elsewhere: row by row and attachment by attachment the same.
    const elsewhere = await backup();
    const full = await exportVersion(elsewhere, item, undefined, 1);
    expect(storageOf(full.marker)?.storage).toBe("full");
    const rebuilt = await wholeLayer(b, second.marker);
    const reference = await wholeLayer(elsewhere, full.marker);
    expect(rebuilt.rows).toHaveLength(reference.rows.length);
    expect(rebuilt.rows).toEqual(reference.rows);
    expect(rebuilt.attachments).toEqual(reference.attachments);
    expect(second.result.counts).toEqual(full.result.counts);
    expect(second.result.counts?.["features:0"]).toBe(rebuilt.rows.length);
  });

  test("a third version chains a second change set and still reads whole", async () => {
    const item = services[1] as SimItem;
    tracked(item);
    const b = await backup();
    const first = await exportVersion(b, item, undefined);
    editSome(item);
    const second = await exportVersion(b, item, first.result);
    editSome(item);
    const third = await exportVersion(b, item, second.result);
    expect(storageOf(third.marker)).toMatchObject({
      storage: "changes",
      changeSets: 2,
      baseVersion: first.result.version,
    });
    const elsewhere = await backup();
    const full = await exportVersion(elsewhere, item, undefined, 1);
    expect((await wholeLayer(b, third.marker)).rows).toEqual((await wholeLayer(elsewhere, full.marker)).rows);
    // The older version still reads as it was.
    const before = await wholeLayer(b, second.marker);
    expect(before.rows).not.toEqual((await wholeLayer(b, third.marker)).rows);
  });

  test("falls back to a full export: tracking off, generation expired, schema changed, every N-th version", async () => {
    const [untracked, expired, reshaped, periodic] = services.slice(1, 5) as SimItem[];
    const b = await backup();

    tracked(untracked as SimItem, false);
    const u1 = await exportVersion(b, untracked as SimItem, undefined);
    editSome(untracked as SimItem);
    const u2 = await exportVersion(b, untracked as SimItem, u1.result);
    expect(storageOf(u2.marker)).toMatchObject({
      storage: "full",
      changeSets: 0,
      baseVersion: u2.result.version,
    });
    expect(storageOf(u2.marker)?.serverGen).toBeUndefined();

    tracked(expired as SimItem);
    const e1 = await exportVersion(b, expired as SimItem, undefined);
    editSome(expired as SimItem);
    const store = serviceDef(sim, expired as SimItem).layers[0]?.store;
    if (store) store.minServerGen = store.serverGen;
    const e2 = await exportVersion(b, expired as SimItem, e1.result);
    expect(storageOf(e2.marker)?.storage).toBe("full");
    expect(storageOf(e2.marker)?.reason).toMatch(/minServerGen/);

    tracked(reshaped as SimItem);
    const r1 = await exportVersion(b, reshaped as SimItem, undefined);
    const layer = serviceDef(sim, reshaped as SimItem).layers[0];
    if (!layer) throw new Error("no layer");
    layer.fields = [
      ...layer.fields,
      { ...(layer.fields.at(-1) as (typeof layer.fields)[number]), name: "added_field" },
    ];
    editSome(reshaped as SimItem);
    const r2 = await exportVersion(b, reshaped as SimItem, r1.result);
    expect(storageOf(r2.marker)).toMatchObject({ storage: "full", reason: "the layer's schema changed" });

    tracked(periodic as SimItem);
    const kinds: string[] = [];
    let previous: ItemResult | undefined;
    for (let i = 0; i < 5; i++) {
      if (previous) editSome(periodic as SimItem);
      const next = await exportVersion(b, periodic as SimItem, previous, 3);
      kinds.push(storageOf(next.marker)?.storage ?? "none");
      previous = next.result;
    }
    expect(kinds).toEqual(["full", "changes", "changes", "full", "changes"]);
  });

  test("a layer not edited since the previous version keeps its files, whatever changed elsewhere", async () => {
    const item = services[0] as SimItem;
    const b = await backup();
    const first = await exportVersion(b, item, undefined);
    sim.mutate.editItem(item.id, { title: "Renamed service" });
    sim.stats.reset();
    const second = await exportVersion(b, item, first.result);
    expect(second.result.version).not.toBe(first.result.version);
    expect(sim.stats.count("services/FeatureServer/:layer/query")).toBe(0);
    expect(storageOf(second.marker)).toMatchObject({ storage: "full", baseVersion: first.result.version });
    expect(second.result.counts).toEqual(first.result.counts);
  });
});
