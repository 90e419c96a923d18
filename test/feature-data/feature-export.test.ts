import { createHash, randomBytes } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, inject, test } from "vitest";
import { DEFAULT_MAX_RETRIES } from "../../src/core/arcgis/portal-client.js";
import { PortalTransientError } from "../../src/core/arcgis/portal-errors.js";
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
  readBytes,
  readMarker,
  readNdjson,
  recordingFetch,
  runExport,
  serviceDef,
} from "./support.js";

type FeatureLine = { attributes: Record<string, unknown>; geometry?: Record<string, unknown> };

let sim: PortalSim;
let services: SimItem[];
/** Layer 0 of 2,500 features (maxRecordCount 1,000) with attachments, plus a related table. */
let big: SimItem;
/** No pagination support; Z and M on every layer. */
let noPaging: SimItem;
let small: SimItem;
const attachments = new Map<number, AttachmentRec[]>();
const backups: Backup[] = [];

async function backup(): Promise<Backup> {
  const b = await openBackup(inject("azurite").connectionString);
  backups.push(b);
  return b;
}

function attachment(id: number, name: string, contentType: string, bytes: Buffer): AttachmentRec {
  return {
    id,
    globalId: `0000${id}-aaaa-4bbb-8ccc-${String(id).padStart(12, "0")}`,
    name,
    contentType,
    size: bytes.length,
    keywords: "",
    source: bufferSource(bytes),
  };
}

beforeAll(async () => {
  sim = await startPortalSim({
    seed: 3,
    overrides: {
      items: { featureService: 8 },
      featuresPerLayer: 300,
      bigLayerFeatures: 2_500,
      attachmentsPerFeature: 0,
    },
    requestUnitsPerMinute: 1e9,
  });
  services = featureServices(sim);
  [big, noPaging, , small] = services as [SimItem, SimItem, SimItem, SimItem];
  const def = serviceDef(sim, big);
  const layer = def.layers[0];
  if (!layer?.hasAttachments || layer.store.count() !== 2_500) throw new Error("unexpected sim shape");
  // Small, empty, large and awkwardly named attachments spread over the pages.
  let id = 1;
  const plan: Array<[number, AttachmentRec[]]> = [
    [1, [attachment(id++, "photo 1.jpg", "image/jpeg", randomBytes(1_500))]],
    [
      2,
      [
        attachment(id++, "empty.txt", "text/plain", Buffer.alloc(0)),
        attachment(id++, "../../escape?.pdf", "application/pdf", randomBytes(700)),
      ],
    ],
    [999, [attachment(id++, "big scan.tif", "image/tiff", randomBytes(4 * 1024 * 1024 + 17))]],
    [1_000, [attachment(id++, "notes/été.bin", "application/octet-stream", randomBytes(33))]],
    [1_001, [attachment(id++, "zero.jpg", "image/jpeg", Buffer.alloc(0))]],
    [2_500, [attachment(id++, "last.png", "image/png", randomBytes(2_048))]],
  ];
  for (const [oid, list] of plan) {
    layer.store.setAttachments(oid, list);
    attachments.set(oid, list);
  }
});

afterEach(() => sim.setFaults([]));

afterAll(async () => {
  await Promise.all(backups.map((b) => b.dispose()));
  await sim?.close();
});

describe("feature data export", () => {
  test("captures every feature of a layer past maxRecordCount, its related table and its attachments", async () => {
    const b = await backup();
    const portal = portalFor(sim);
    const result = await runExport(b, portal, createFeatureDataExporter(portal), big);
    expect(result.error).toBeUndefined();
    expect(result.status).toBe("exported");
    const version = result.version as string;
    const def = serviceDef(sim, big);
    const table = def.tables[0];
    if (!table) throw new Error("no table");

    const layer0 = await readNdjson<FeatureLine>(b, big.id, version, "features/0.ndjson");
    expect(objectIdsOf(layer0)).toEqual(Array.from({ length: 2_500 }, (_, i) => i + 1));
    expect(layer0).toEqual([...sim.model.features(big.id, 0)]);
    const rows = await readNdjson<FeatureLine>(b, big.id, version, `features/${table.id}.ndjson`);
    expect(rows).toEqual([...sim.model.features(big.id, table.id)]);
    expect(rows[0]).not.toHaveProperty("geometry");
    for (const layer of def.layers.slice(1)) {
      const lines = await readNdjson<FeatureLine>(b, big.id, version, `features/${layer.id}.ndjson`);
      expect(lines).toEqual([...sim.model.features(big.id, layer.id)]);
    }

    const expected = [...attachments.entries()].flatMap(([oid, list]) =>
      list.map((a) => ({ oid, a, gid: featureGlobalId(oid) })),
    );
    const index = await readNdjson<AttachmentRecord>(b, big.id, version, "attachments/0/index.ndjson");
    expect(index.map((r) => [r.parentObjectId, r.id])).toEqual(expected.map((e) => [e.oid, e.a.id]));
    for (const [n, record] of index.entries()) {
      const { oid, a, gid } = expected[n] as (typeof expected)[number];
      expect(record).toEqual({
        parentObjectId: oid,
        parentGlobalId: gid,
        id: a.id,
        name: a.name,
        contentType: a.contentType,
        size: a.size,
        globalId: a.globalId,
        path: `attachments/0/${oid}/${a.id}`,
      });
      const bytes = await readBytes(b, big.id, version, record.path);
      expect(bytes.length).toBe(a.size);
      const original = Buffer.alloc(a.size);
      a.source.read(0, original);
      expect(sha256(bytes)).toBe(sha256(original));
    }
    expect(index.filter((r) => r.size === 0)).toHaveLength(2);

    const marker = await readMarker(b, big.id, version);
    expect(marker.counts).toMatchObject({
      "features:0": 2_500,
      [`features:${table.id}`]: table.store.count(),
      "attachments:0": expected.length,
    });
    const attachmentFiles = marker.files.filter((f) => f.kind === "attachment");
    expect(attachmentFiles.map((f) => f.path).sort()).toEqual(index.map((r) => r.path).sort());
    expect(attachmentFiles.find((f) => f.detail?.attachmentId === 2)).toMatchObject({ size: 0 });
    expect(marker.files.filter((f) => f.kind === "features")).toHaveLength(
      def.layers.length + def.tables.length,
    );
    expect(marker.files.filter((f) => f.kind === "attachments-index").map((f) => f.path)).toEqual([
      "attachments/0/index.ndjson",
    ]);
    const featuresFile = marker.files.find((f) => f.path === "features/0.ndjson");
    expect(featuresFile?.contentType).toBe("application/x-ndjson");
  });

  test("pages a service without pagination support by object id ranges, with Z and M", async () => {
    const def = serviceDef(sim, noPaging);
    expect(def.layers.every((l) => !l.supportsPagination && l.hasZ && l.hasM)).toBe(true);
    // Small pages on one layer so the object id paging shows.
    const paged = def.layers[1];
    if (!paged) throw new Error("no layer 1");
    paged.maxRecordCount = 40;
    const seen: Array<{ url: string; params: URLSearchParams }> = [];
    const b = await backup();
    const portal = portalFor(sim, recordingFetch(seen));
    const result = await runExport(b, portal, createFeatureDataExporter(portal), noPaging);
    expect(result.error).toBeUndefined();
    const version = result.version as string;
    for (const layer of def.layers) {
      const lines = await readNdjson<FeatureLine>(b, noPaging.id, version, `features/${layer.id}.ndjson`);
      expect(lines).toEqual([...sim.model.features(noPaging.id, layer.id)]);
      expect(result.counts?.[`features:${layer.id}`]).toBe(layer.store.count());
      for (const line of lines.slice(0, 5)) expect(hasZm(line.geometry)).toBe(true);
    }
    const queries = seen.filter((r) => r.url.endsWith("/query"));
    expect(queries.some((r) => r.params.has("resultOffset") || r.params.has("resultRecordCount"))).toBe(
      false,
    );
    const pages = queries.filter(
      (r) =>
        r.params.get("outFields") === "*" &&
        !r.params.has("returnIdsOnly") &&
        !r.params.has("returnCountOnly"),
    );
    for (const page of pages) {
      expect(page.params.get("returnZ")).toBe("true");
      expect(page.params.get("returnM")).toBe("true");
      expect(page.params.get("outFields")).toBe("*");
    }
    const layer1Pages = pages.filter((r) => r.url.endsWith(`/${paged.id}/query`));
    expect(layer1Pages.length).toBe(Math.ceil(paged.store.count() / 40));
    for (const page of layer1Pages) {
      const [, lo, hi] = /OBJECTID >= (\d+) AND OBJECTID <= (\d+)/.exec(page.params.get("where") ?? "") ?? [];
      expect(Number(hi) - Number(lo)).toBeLessThan(40);
    }
  });

  test("500s, resets and truncated bodies mid-paging are retried without duplicates or gaps", async () => {
    const b = await backup();
    const portal = portalFor(sim);
    const match = `**/${serviceDef(sim, big).name}/FeatureServer/0/query`;
    sim.setFaults([
      { match, after: 3, times: 1, action: "status", status: 500 },
      { match, after: 6, times: 1, action: "reset" },
      { match, after: 9, times: 1, action: "bodyError", status: 503 },
      { match, after: 12, times: 1, action: "truncate" },
      { match, after: 15, times: 1, action: "status", status: 502 },
    ]);
    const exporter = createFeatureDataExporter(portal, { maxPageSize: 150, pageConcurrency: 3 });
    const result = await runExport(b, portal, exporter, big);
    expect(result.error).toBeUndefined();
    expect(portal.stats.retries).toBeGreaterThanOrEqual(5);
    await expectAllFeatures(b, result.version as string);
  });

  test("a page during an outage costs 1 + the client's retries in requests, then the item gives way to its batch", async () => {
    const b = await backup();
    const portal = portalFor(sim);
    // The layer's count and its object ids go through; every query after them fails.
    sim.setFaults([
      {
        match: `**/${serviceDef(sim, small).name}/FeatureServer/0/query`,
        after: 2,
        action: "status",
        status: 503,
      },
    ]);
    sim.stats.reset();
    const failure = await runExport(
      b,
      portal,
      createFeatureDataExporter(portal, { pageConcurrency: 1 }),
      small,
    ).then(
      () => undefined,
      (error: unknown) => error,
    );
    // Thrown, not recorded as the item's failure: the batch pauses and runs the item again later.
    expect(failure).toBeInstanceOf(PortalTransientError);
    expect(sim.stats.count("services/FeatureServer/:layer/query")).toBe(2 + 1 + DEFAULT_MAX_RETRIES);
  });

  test("pages past the client's error sniffing (over 1 MB, streamed) are retried whole when cut", async () => {
    const def = serviceDef(sim, big);
    const layer = def.layers[0];
    if (!layer) throw new Error("no layer");
    const before = layer.maxRecordCount;
    layer.maxRecordCount = 2_500;
    try {
      const b = await backup();
      const portal = portalFor(sim);
      const match = `**/${def.name}/FeatureServer/0/query`;
      sim.setFaults([
        { match, method: "GET", times: 1, action: "truncate" },
        { match, method: "GET", after: 1, times: 1, action: "reset" },
      ]);
      const exporter = createFeatureDataExporter(portal, { maxPageSize: 2_500 });
      const result = await runExport(b, portal, exporter, big);
      expect(result.error).toBeUndefined();
      expect(portal.stats.retries).toBeGreaterThanOrEqual(2);
      await expectAllFeatures(b, result.version as string);
    } finally {
      layer.maxRecordCount = before;
    }
  });

  test.each([
    ["more", 3],
    ["fewer", -3],
  ])(
    "a layer that counts %s features than it holds fails with ERR_FEATURE_COUNT_MISMATCH",
    async (_, delta) => {
      const def = serviceDef(sim, small);
      const layer = def.layers[0];
      if (!layer) throw new Error("no layer");
      const actual = layer.store.count();
      const lying: typeof fetch = async (input, init) => {
        const response = await fetch(input, init);
        const body = typeof init?.body === "string" ? init.body : "";
        if (
          !String(input).includes(`/${def.name}/FeatureServer/0/query`) ||
          !body.includes("returnCountOnly=true")
        ) {
          return response;
        }
        const json = (await response.json()) as { count: number };
        return Response.json({ count: json.count + delta });
      };
      const b = await backup();
      const portal = portalFor(sim, lying);
      const result = await runExport(b, portal, createFeatureDataExporter(portal), small);
      expect(result.status).toBe("failed");
      expect(result.error?.code).toBe("ERR_FEATURE_COUNT_MISMATCH");
      expect(result.error?.message).toContain(`Layer 0 "${layer.name}"`);
      expect(result.error?.message).toContain(
        `counts ${actual + delta} features but ${actual} were captured`,
      );
      const blobs: string[] = [];
      for await (const name of b.store.list(`items/${small.id}/`)) blobs.push(name);
      expect(blobs.some((n) => n.endsWith("_complete.json"))).toBe(false);
      expect(blobs.some((n) => n.includes("/features/0.ndjson"))).toBe(false);
    },
  );
});

async function expectAllFeatures(b: Backup, version: string): Promise<void> {
  const lines = await readNdjson<FeatureLine>(b, big.id, version, "features/0.ndjson");
  const ids = objectIdsOf(lines);
  expect(new Set(ids).size).toBe(ids.length);
  expect(ids).toEqual(Array.from({ length: 2_500 }, (_, i) => i + 1));
  expect(lines).toEqual([...sim.model.features(big.id, 0)]);
}

function featureGlobalId(oid: number): string {
  const feature = sim.model.layer(sim.model.indexOf(big.id) as number, 0)?.store.get(oid);
  return String(feature?.attributes.GlobalID);
}

function hasZm(geometry: Record<string, unknown> | undefined): boolean {
  if (!geometry) return false;
  if ("x" in geometry) return typeof geometry.z === "number" && typeof geometry.m === "number";
  const parts = (geometry.rings ?? geometry.paths) as number[][][] | undefined;
  return !!parts && parts.every((part) => part.every((point) => point.length === 4));
}

function sha256(buffer: Buffer): string {
  return createHash("sha256").update(buffer).digest("hex");
}
