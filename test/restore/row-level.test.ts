import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { ExportedFile } from "../../src/core/backup/export-item.js";
import { layerRows, layersOf } from "../../src/core/backup/layer-version-rows.js";
import type { Manifest, ManifestItem } from "../../src/core/backup/manifest.js";
import type { RestorePlan } from "../../src/core/restore/model.js";
import type { SimItem } from "../portal-sim/index.js";
import { type AppHarness, startAppHarness } from "../support/app-harness.js";
import { backupWithFeatures, comparable, identityFor, readBlob, runRestore } from "./support.js";

let app: AppHarness;
let source: { id: string; container: string };

beforeAll(async () => {
  app = await startAppHarness({ sim: { size: "tiny", seed: 43 } });
  source = await identityFor(app, app.sim);
});

afterAll(async () => {
  await app?.close();
});

type Row = { attributes: Record<string, unknown>; geometry?: unknown };

function hostedLayers(): SimItem[] {
  return [...app.sim.model.items()].filter(
    (i) => i.type === "Feature Service" && !i.typeKeywords.includes("View Service"),
  );
}

function layerOf(item: SimItem, layerId = 0) {
  const def = app.sim.model.pinService(app.sim.model.indexOf(item.id) as number);
  const layer = def?.layers.find((l) => l.id === layerId);
  if (!layer) throw new Error(`no layer ${layerId} in ${item.id}`);
  return layer;
}

/** The layer's rows in the sim now, by GlobalID, without what the target stamps. */
function rowsNow(item: SimItem): Row[] {
  return [...app.sim.model.features(item.id, 0)].map((f) => comparable(f as Row)).sort(byGlobalId);
}

function byGlobalId(a: Row, b: Row): number {
  return String(a.attributes.GlobalID).localeCompare(String(b.attributes.GlobalID));
}

/** A version's rows read whole (full export and change sets), as the restore reads them. */
async function rowsOfVersion(entry: ManifestItem): Promise<Row[]> {
  const layer = layersOf(entry.files).find((l) => l.layerId === 0);
  if (!layer) throw new Error("no layer 0");
  const files = {
    async *lines(file: ExportedFile) {
      const text = (await readBlob(app, source, file.blob)).toString("utf8");
      for (const line of text.split("\n")) if (line.trim()) yield line;
    },
  };
  const rows: Row[] = [];
  for await (const line of layerRows(files, layer, "OBJECTID")) {
    const { OBJECTID: _oid, ...attributes } = (JSON.parse(line) as Row).attributes;
    rows.push(comparable({ ...(JSON.parse(line) as Row), attributes }));
  }
  return rows.sort(byGlobalId);
}

function withoutObjectIds(rows: Row[]): Row[] {
  return rows.map((r) => {
    const { OBJECTID: _oid, ...attributes } = r.attributes;
    return { ...r, attributes };
  });
}

function entryOf(manifest: Manifest, itemId: string): ManifestItem {
  const entry = manifest.items.find((i) => i.itemId === itemId);
  if (!entry) throw new Error(`no ${itemId} in the manifest`);
  return entry;
}

describe("row-level restore in place", () => {
  test("puts a change-set version back by writing only the rows edited since; dry run first; a retry writes nothing", async () => {
    const service = hostedLayers().find((s) => layerOf(s).hasAttachments && layerOf(s).store.count() > 10);
    if (!service) throw new Error("no layer with attachments");
    app.sim.model.setChangeTracking(app.sim.model.indexOf(service.id) as number, true);
    const store = layerOf(service).store;
    await backupWithFeatures(app, source);
    const oids = [...store.oids()];
    app.sim.mutate.updateFeatures(service.id, 0, [oids[1] as number], { name: "Between the backups" });
    app.sim.mutate.addFeatures(service.id, 0, 1);
    const second = await backupWithFeatures(app, source);
    const entry = entryOf(second, service.id);
    expect(entry.layerStorage?.find((l) => l.layerId === 0)?.storage).toBe("changes");
    const version = await rowsOfVersion(entry);
    expect(withoutObjectIds(rowsNow(service))).toEqual(version);

    // After the version: two rows edited, one deleted, two added, an attachment removed.
    const after = [...store.oids()];
    app.sim.mutate.updateFeatures(service.id, 0, [after[2] as number, after[4] as number], { name: "Later" });
    const lostWithRow = store.attachments(after[6] as number).length;
    app.sim.mutate.deleteFeatures(service.id, 0, [after[6] as number]);
    app.sim.mutate.addFeatures(service.id, 0, 2);
    const withAttachments = after.find(
      (oid) => oid !== after[6] && store.attachments(oid).length > 0,
    ) as number;
    store.setAttachments(withAttachments, store.attachments(withAttachments).slice(1));
    store.touch();
    const url = app.sim.model.item(service.id)?.url;

    store.resetEditCounts();
    const dry = await app.call("POST", `/api/identities/${source.id}/restores`, {
      runId: second.runId,
      itemIds: [service.id],
      target: { mode: "overwrite" },
      dryRun: true,
    });
    expect(dry.status, dry.text).toBe(200);
    const planned = (dry.body.plan as RestorePlan).items[0];
    const preview = planned?.rowPreview?.find((p) => p.layerId === 0);
    // The attachment removed, and those of the deleted row, come back.
    expect(preview).toMatchObject({
      mode: "diff",
      adds: 1,
      updates: 2,
      deletes: 2,
      attachmentsAdded: 1 + lostWithRow,
    });
    expect(preview?.editedSince.map((e) => e.change).sort()).toEqual([
      "added-since",
      "added-since",
      "deleted-since",
      "edited-since",
      "edited-since",
    ]);
    expect(store.editCounts).toEqual({
      rowInserts: 0,
      rowUpdates: 0,
      rowDeletes: 0,
      attachmentAdds: 0,
      attachmentDeletes: 0,
    });

    app.sim.stats.reset();
    const { report } = await runRestore(app, source.id, {
      runId: second.runId,
      itemIds: [service.id],
      target: { mode: "overwrite" },
    });
    expect(report.failures, JSON.stringify(report.failures)).toEqual([]);
    expect(report.idMap).toEqual({ [service.id]: service.id });
    expect(app.sim.model.item(service.id)?.url).toBe(url);
    expect(withoutObjectIds(rowsNow(service))).toEqual(version);
    expect(store.editCounts).toMatchObject({
      rowInserts: 1,
      rowUpdates: 2,
      rowDeletes: 2,
      attachmentAdds: 1 + lostWithRow,
    });
    expect(app.sim.stats.count("services/FeatureServer/:layer/applyEdits")).toBe(2);
    const item = report.items[0];
    expect(item?.counts).toMatchObject({ "rowsAdded:0": 1, "rowsUpdated:0": 2, "rowsDeleted:0": 2 });
    expect(item?.editedSince).toHaveLength(5);

    // Run again (a retried restore): nothing differs any more, nothing is written.
    store.resetEditCounts();
    const again = await runRestore(app, source.id, {
      runId: second.runId,
      itemIds: [service.id],
      target: { mode: "overwrite" },
    });
    expect(again.report.failures).toEqual([]);
    expect(store.editCounts).toEqual({
      rowInserts: 0,
      rowUpdates: 0,
      rowDeletes: 0,
      attachmentAdds: 0,
      attachmentDeletes: 0,
    });
    expect(withoutObjectIds(rowsNow(service))).toEqual(version);
  });

  test("a layer without GlobalIDs is emptied and refilled (replace), as before", async () => {
    const service = hostedLayers()
      .filter((s) => layerOf(s).store.count() > 5)
      .at(-1);
    if (!service) throw new Error("no layer with rows");
    const layer = layerOf(service);
    layer.fields = layer.fields.filter((f) => f.type !== "esriFieldTypeGlobalID");
    layer.globalIdField = "";
    // Attachments go back by their parent's GlobalID: a layer without GlobalIDs has none here.
    layer.hasAttachments = false;
    const manifest = await backupWithFeatures(app, source);
    const expected = entryOf(manifest, service.id).counts?.["features:0"];
    app.sim.mutate.deleteFeatures(service.id, 0, [[...layer.store.oids()][0] as number]);
    layer.store.resetEditCounts();
    const { report } = await runRestore(app, source.id, {
      runId: manifest.runId,
      itemIds: [service.id],
      target: { mode: "overwrite" },
    });
    expect(report.failures, JSON.stringify(report.failures)).toEqual([]);
    expect(layer.store.count()).toBe(expected);
    // Every row went out and came back in.
    expect(layer.store.editCounts.rowDeletes).toBe((expected ?? 0) - 1);
    expect(layer.store.editCounts.rowInserts).toBe(expected);
  });
});
