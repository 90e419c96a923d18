import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import type { AttachmentRecord } from "../../src/core/backup/feature-export.js";
import { createFeatureDataExporter } from "../../src/core/backup/feature-export.js";
import type { AttachmentRec } from "../portal-sim/features.js";
import { type PortalSim, type SimItem, startPortalSim } from "../portal-sim/index.js";
import { bufferSource } from "../portal-sim/prng.js";
import {
  type Backup,
  featureServices,
  objectIdsOf,
  openBackup,
  portalFor,
  readNdjson,
  readText,
  recordingFetch,
  runExport,
  serviceDef,
} from "./support.js";

type FeatureLine = { attributes: Record<string, unknown>; geometry?: unknown };

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
    seed: 5,
    overrides: {
      items: { featureService: 6 },
      featuresPerLayer: 300,
      bigLayerFeatures: 3_000,
      attachmentsPerFeature: 0,
    },
    requestUnitsPerMinute: 1e9,
  });
  services = featureServices(sim);
});

afterAll(async () => {
  await Promise.all(backups.map((b) => b.dispose()));
  await sim?.close();
});

describe("feature data versions", () => {
  test("an edited layer makes a new version; an untouched service is skipped", async () => {
    const [edited, untouched] = [services[2], services[3]] as [SimItem, SimItem];
    const b = await backup();
    const portal = portalFor(sim);
    const exporter = createFeatureDataExporter(portal);
    const first = await Promise.all([edited, untouched].map((s) => runExport(b, portal, exporter, s)));
    expect(first.map((r) => r.status)).toEqual(["exported", "exported"]);
    const def = serviceDef(sim, edited);
    const lastEdit = Math.max(...[...def.layers, ...def.tables].map((l) => l.store.lastEditDate));
    expect(first[0]?.version).toBe(`v${edited.modified}-e${lastEdit}`);

    const second = await Promise.all([edited, untouched].map((s) => runExport(b, portal, exporter, s)));
    expect(second.map((r) => r.status)).toEqual(["unchanged", "unchanged"]);
    expect(second.map((r) => r.version)).toEqual(first.map((r) => r.version));
    expect(second[0]?.counts).toEqual(first[0]?.counts);

    const layerId = def.layers.at(-1)?.id ?? 0;
    const target = objectIdsOf([...sim.model.features(edited.id, layerId)].slice(3, 4))[0] as number;
    sim.mutate.updateFeatures(edited.id, layerId, [target], { name: "Renamed in the field" });
    const third = await Promise.all([edited, untouched].map((s) => runExport(b, portal, exporter, s)));
    expect(third.map((r) => r.status)).toEqual(["exported", "unchanged"]);
    expect(third[0]?.version).not.toBe(first[0]?.version);
    expect(third[1]?.version).toBe(first[1]?.version);
    const lines = await readNdjson<FeatureLine>(
      b,
      edited.id,
      third[0]?.version as string,
      `features/${layerId}.ndjson`,
    );
    expect(lines.find((l) => l.attributes.OBJECTID === target)?.attributes.name).toBe("Renamed in the field");
    // The earlier version is still there, untouched.
    const before = await readNdjson<FeatureLine>(
      b,
      edited.id,
      first[0]?.version as string,
      `features/${layerId}.ndjson`,
    );
    expect(before.find((l) => l.attributes.OBJECTID === target)?.attributes.name).not.toBe(
      "Renamed in the field",
    );
  });

  test("a version this run completed in an earlier attempt counts as exported, by a later run unchanged", async () => {
    const service = services[4] as SimItem;
    const b = await backup();
    const portal = portalFor(sim);
    const exporter = createFeatureDataExporter(portal);
    const first = await runExport(b, portal, exporter, service, "b-retried-batch");
    expect(first.status).toBe("exported");
    sim.stats.reset();
    // The batch runs again (its first attempt paused or crashed before its results were written).
    expect(await runExport(b, portal, exporter, service, "b-retried-batch")).toEqual(first);
    expect(sim.stats.count("services/FeatureServer/:layer/query")).toBe(0);
    const later = await runExport(b, portal, exporter, service);
    expect({ status: later.status, version: later.version, bytes: later.bytes }).toEqual({
      status: "unchanged",
      version: first.version,
      bytes: 0,
    });
  });

  test("sparse object ids, capped id lists and short pages: narrow windows still get every row once", async () => {
    const big = services[0] as SimItem;
    const def = serviceDef(sim, big);
    const layer = def.layers[0];
    if (layer?.store.count() !== 3_000) throw new Error("unexpected sim shape");
    for (const oid of [1, 299, 300, 1_500, 2_200, 2_201, 3_000]) {
      layer.store.setAttachments(oid, [
        attachmentOf(oid * 10, `f${oid}.bin`, randomBytes(oid % 7 === 0 ? 0 : 64)),
        attachmentOf(oid * 10 + 1, `g${oid}.bin`, randomBytes(3)),
      ]);
    }
    sim.mutate.deleteFeatures(big.id, 0, range(300, 2_200));
    const added = sim.mutate.addFeatures(big.id, 0, 7);
    const expected = objectIdsOf([...sim.model.features(big.id, 0)]);
    expect(expected).toHaveLength(3_000 - 1_901 + 7);

    // A server that caps id lists at 250 and sends at most 60 rows a page whatever it was asked.
    const seen: Array<{ url: string; params: URLSearchParams }> = [];
    const recording = recordingFetch(seen);
    const capped: typeof fetch = async (input, init) => {
      const response = await recording(input, init);
      const body = typeof init?.body === "string" ? new URLSearchParams(init.body) : new URLSearchParams();
      if (!String(input).includes(`/${def.name}/FeatureServer/0/query`)) return response;
      const json = (await response.json()) as Record<string, unknown>;
      if (body.get("returnIdsOnly") === "true") {
        const ids = json.objectIds as number[];
        if (ids.length > 250)
          return Response.json({ ...json, objectIds: ids.slice(0, 250), exceededTransferLimit: true });
      } else if (Array.isArray(json.features) && json.features.length > 60) {
        return Response.json({ ...json, features: json.features.slice(0, 60), exceededTransferLimit: true });
      }
      return Response.json(json);
    };
    const b = await backup();
    const portal = portalFor(sim, capped);
    const exporter = createFeatureDataExporter(portal, { idWindow: 400, maxPageSize: 150 });
    const result = await runExport(b, portal, exporter, big);
    expect(result.error).toBeUndefined();
    const lines = await readNdjson<FeatureLine>(b, big.id, result.version as string, "features/0.ndjson");
    expect(objectIdsOf(lines)).toEqual(expected);
    expect(lines).toEqual([...sim.model.features(big.id, 0)]);
    expect(objectIdsOf(lines).slice(-7)).toEqual(added);
    expect(result.counts?.["features:0"]).toBe(expected.length);
    const idCalls = seen.filter(
      (r) => r.url.endsWith("/0/query") && r.params.get("returnIdsOnly") === "true",
    );
    expect(idCalls.length).toBeGreaterThan(3);
    expect(idCalls.every((r) => r.params.get("where") !== "1=1")).toBe(true);

    // Attachments of the surviving features only, each once, in object id order.
    const index = await readNdjson<AttachmentRecord>(
      b,
      big.id,
      result.version as string,
      "attachments/0/index.ndjson",
    );
    const want = expected.flatMap((oid) =>
      sim.model.attachments(big.id, 0, oid).map((a) => [oid, a.id, a.size]),
    );
    expect(index.map((r) => [r.parentObjectId, r.id, r.size])).toEqual(want);
    expect(want).toHaveLength(8);
    expect(result.counts?.["attachments:0"]).toBe(want.length);
  }, 60_000);

  test("rows deleted while a layer is captured fail it with the reason, never silently", async () => {
    const item = services[1] as SimItem;
    const def = serviceDef(sim, item);
    const layer = def.layers[0];
    if (!layer) throw new Error("no layer");
    const oids = objectIdsOf([...sim.model.features(item.id, 0)]);
    let deleted = false;
    const deleting: typeof fetch = async (input, init) => {
      const url = String(input);
      if (!deleted && url.includes(`/${def.name}/FeatureServer/0/query?`) && url.includes("outFields=")) {
        deleted = true;
        sim.mutate.deleteFeatures(item.id, 0, [oids.at(-1) as number]);
      }
      return fetch(input, init);
    };
    const b = await backup();
    const portal = portalFor(sim, deleting);
    const result = await runExport(b, portal, createFeatureDataExporter(portal, { maxPageSize: 20 }), item);
    expect(deleted).toBe(true);
    expect(result.status).toBe("failed");
    expect(result.error?.code).toBe("ERR_FEATURE_COUNT_MISMATCH");
    expect(result.error?.message).toContain(
      `the service counts ${oids.length} features but ${oids.length - 1} were captured; it counts ${oids.length - 1} now; the layer was edited during the capture`,
    );
  });

  test("a layer that refuses queries is noted and skipped; the others are captured", async () => {
    const item = services[5] as SimItem;
    const def = serviceDef(sim, item);
    const capabilities = def.capabilities;
    def.capabilities = "Create,Update,Delete,Editing";
    sim.setFaults([{ match: `**/${def.name}/FeatureServer/0/query`, action: "bodyError", status: 400 }]);
    try {
      const b = await backup();
      const portal = portalFor(sim);
      const result = await runExport(b, portal, createFeatureDataExporter(portal), item);
      expect(result.status).toBe("exported");
      expect(
        result.notes.some((n) => n.startsWith(`Layer 0 "${def.layers[0]?.name}" does not support queries`)),
      ).toBe(true);
      expect(result.counts?.["features:0"]).toBeUndefined();
      expect(result.files.some((f) => f.path === "features/0.ndjson")).toBe(false);
      for (const layer of [...def.layers.slice(1), ...def.tables]) {
        expect(result.counts?.[`features:${layer.id}`]).toBe(layer.store.count());
      }
    } finally {
      def.capabilities = capabilities;
      sim.setFaults([]);
    }
  });

  test("attachments are listed per feature where queryAttachments is refused", async () => {
    const item = services.find((s) => serviceDef(sim, s).layers[0]?.hasAttachments && s !== services[0]);
    if (!item) throw new Error("no second service with attachments");
    const layer = serviceDef(sim, item).layers[0];
    if (!layer) throw new Error("no layer");
    const oids = objectIdsOf([...sim.model.features(item.id, 0)]);
    const first = oids[0] as number;
    layer.store.setAttachments(first, [
      attachmentOf(900_000, "photo.jpg", randomBytes(1_000)),
      attachmentOf(900_001, "blank.txt", Buffer.alloc(0)),
    ]);
    layer.store.setAttachments(oids[1] as number, [attachmentOf(900_002, "a/b\\c:d.bin", randomBytes(10))]);
    layer.store.setAttachments(oids.at(-1) as number, [attachmentOf(900_003, "last.bin", randomBytes(5))]);
    sim.setFaults([{ match: "**/queryAttachments", action: "bodyError", status: 400 }]);
    try {
      const b = await backup();
      const portal = portalFor(sim);
      const result = await runExport(b, portal, createFeatureDataExporter(portal), item);
      expect(result.error).toBeUndefined();
      expect(result.notes.some((n) => n.includes("queryAttachments failed"))).toBe(true);
      const version = result.version as string;
      const index = await readNdjson<AttachmentRecord>(b, item.id, version, "attachments/0/index.ndjson");
      const want = oids.flatMap((oid) =>
        sim.model.attachments(item.id, 0, oid).map((a) => [oid, a.id, a.size, a.name]),
      );
      expect(index.map((r) => [r.parentObjectId, r.id, r.size, r.name])).toEqual(want);
      expect(index.find((r) => r.id === 900_001)?.parentGlobalId).toBeTruthy();
      expect(await readText(b, item.id, version, `attachments/0/${first}/900001`)).toBe("");
      expect(
        result.files.some(
          (f) => f.path === `attachments/0/${oids[1]}/900002` && f.originalName === "a/b\\c:d.bin",
        ),
      ).toBe(true);
    } finally {
      sim.setFaults([]);
    }
  });
});

function attachmentOf(id: number, name: string, bytes: Buffer): AttachmentRec {
  return {
    id,
    globalId: `9a9a9a9a-0000-4000-8000-${String(id).padStart(12, "0")}`,
    name,
    contentType: "application/octet-stream",
    size: bytes.length,
    keywords: "",
    source: bufferSource(bytes),
  };
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}
