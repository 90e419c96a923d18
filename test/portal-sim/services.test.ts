import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PortalSim, type SimItem, startPortalSim } from "./index.js";
import { errorOf, getJson, type Json, tokenFor } from "./test-helpers.js";

let sim: PortalSim;
let token: string;
let services: SimItem[];
let big: SimItem;

beforeAll(async () => {
  sim = await startPortalSim({ size: "small", seed: 3 });
  token = await tokenFor(sim);
  services = [...sim.model.items()].filter((i) => i.type === "Feature Service");
  const first = services.find((s) => !s.typeKeywords.includes("View Service"));
  if (!first) throw new Error("no service");
  big = first;
});
afterAll(async () => {
  await sim.close();
});

const q = (url: string, params: Record<string, string | number>) =>
  getJson(`${url}/query`, { token, ...params });

describe("feature service metadata", () => {
  it("service root and layer JSON carry the documented fields", async () => {
    const root = await getJson(big.url ?? "", { token });
    expect(root).toMatchObject({ serviceItemId: big.id, maxRecordCount: 1000 });
    for (const k of [
      "currentVersion",
      "capabilities",
      "spatialReference",
      "initialExtent",
      "fullExtent",
      "layers",
      "tables",
    ])
      expect(root).toHaveProperty(k);
    expect(big.url).toMatch(new RegExp(`/${sim.orgId}/arcgis/rest/services/[^/]+/FeatureServer$`));
    const layers = root.layers as Json[];
    expect(layers.length).toBeGreaterThan(0);
    const l0 = await getJson(`${big.url}/0`, { token });
    expect(l0).toMatchObject({
      id: 0,
      type: "Feature Layer",
      objectIdField: "OBJECTID",
      globalIdField: "GlobalID",
    });
    expect(typeof (l0.editingInfo as Json).lastEditDate).toBe("number");
    expect((l0.advancedQueryCapabilities as Json).supportsPagination).toBe(true);
    const fields = l0.fields as Json[];
    expect(fields.find((f) => f.name === "category")?.domain).toMatchObject({ type: "codedValue" });
    expect(fields.find((f) => f.name === "condition")?.domain).toMatchObject({ type: "range" });
    expect(l0.hasAttachments).toBe(true);
    expect(Array.isArray(l0.types)).toBe(true);
    expect(l0).toHaveProperty("drawingInfo.renderer");
    const tables = root.tables as Json[];
    expect(tables.length).toBe(1);
    const t = await getJson(`${big.url}/${tables[0]?.id}`, { token });
    expect(t.type).toBe("Table");
    expect((t.relationships as Json[])[0]).toMatchObject({
      role: "esriRelRoleDestination",
      keyField: "parent_guid",
    });
  });

  it("missing services and layers answer an error in the body", async () => {
    const base = big.url?.replace(/[^/]+\/FeatureServer$/, "") ?? "";
    expect(errorOf(await getJson(`${base}Nope_123/FeatureServer`, { token })).code).toBe(404);
    const missingLayer = await getJson(`${big.url}/77`, { token });
    expect(errorOf(missingLayer).code).toBeGreaterThanOrEqual(400);
  });

  it("some services lack pagination, vary maxRecordCount and carry Z/M geometry", async () => {
    let noPaging: SimItem | undefined;
    const counts = new Set<number>();
    let zSeen = false;
    for (const s of services.slice(0, 12)) {
      const l = await getJson(`${s.url}/0`, { token });
      counts.add(l.maxRecordCount as number);
      if (l.hasZ) zSeen = true;
      if (!(l.advancedQueryCapabilities as Json).supportsPagination) noPaging ??= s;
    }
    expect(counts.size).toBeGreaterThan(1);
    expect(zSeen).toBe(true);
    if (!noPaging) throw new Error("expected a service without pagination");
    const r = await q(`${noPaging.url}/0`, { where: "1=1", resultOffset: 0, resultRecordCount: 10 });
    expect(errorOf(r).code).toBe(400);
    const ok = await q(`${noPaging.url}/0`, { where: "1=1", outFields: "*" });
    expect(Array.isArray(ok.features)).toBe(true);
  });
});

describe("query", () => {
  it("pages with resultOffset, caps at maxRecordCount and flags exceededTransferLimit", async () => {
    const url = `${big.url}/0`;
    const count = (await q(url, { where: "1=1", returnCountOnly: "true" })).count as number;
    expect(count).toBe(2500);
    const p1 = await q(url, { where: "1=1", outFields: "*", resultOffset: 0, resultRecordCount: 5000 });
    expect((p1.features as Json[]).length).toBe(1000);
    expect(p1.exceededTransferLimit).toBe(true);
    expect(p1).toMatchObject({ objectIdFieldName: "OBJECTID", globalIdFieldName: "GlobalID" });
    const last = await q(url, {
      where: "1=1",
      outFields: "OBJECTID",
      resultOffset: 2000,
      resultRecordCount: 1000,
    });
    expect((last.features as Json[]).length).toBe(500);
    expect(last.exceededTransferLimit).toBeUndefined();
    const f0 = (p1.features as Json[])[0] as Json;
    const g = f0.geometry as Json;
    expect("x" in g || "paths" in g || "rings" in g).toBe(true);
    const truth = [...sim.model.features(big.id, 0)];
    expect(truth.length).toBe(2500);
    expect(f0.attributes).toEqual(truth[0]?.attributes);
  });

  it("where subset, objectIds, ids-only, outFields, returnGeometry and orderByFields", async () => {
    const url = `${big.url}/0`;
    const range = await q(url, {
      where: "OBJECTID >= 10 AND OBJECTID <= 19",
      outFields: "OBJECTID,name",
      returnGeometry: "false",
    });
    const feats = range.features as Json[];
    expect(feats.map((f) => (f.attributes as Json).OBJECTID)).toEqual([
      10, 11, 12, 13, 14, 15, 16, 17, 18, 19,
    ]);
    expect(Object.keys(feats[0]?.attributes as Json).sort()).toEqual(["OBJECTID", "name"]);
    expect(feats[0]?.geometry).toBeUndefined();
    const ids = await q(url, { where: "1=1", returnIdsOnly: "true" });
    expect(ids.objectIdFieldName).toBe("OBJECTID");
    expect((ids.objectIds as number[]).length).toBe(2500);
    const byIds = await q(url, { objectIds: "5,3,99999", outFields: "OBJECTID" });
    expect((byIds.features as Json[]).map((f) => (f.attributes as Json).OBJECTID)).toEqual([3, 5]);
    const cat = await q(url, { where: "category = 2 AND condition > 50", returnCountOnly: "true" });
    const expected = [...sim.model.features(big.id, 0)].filter(
      (f) => f.attributes.category === 2 && (f.attributes.condition as number) > 50,
    ).length;
    expect(cat.count).toBe(expected);
    const desc = await q(url, {
      where: "1=1",
      outFields: "OBJECTID",
      orderByFields: "OBJECTID DESC",
      resultRecordCount: 3,
    });
    expect((desc.features as Json[]).map((f) => (f.attributes as Json).OBJECTID)).toEqual([2500, 2499, 2498]);
    expect(errorOf(await q(url, { where: "nosuchfield = 1" })).code).toBe(400);
  });

  it("views expose the source's rows", async () => {
    const view = services.find((s) => s.typeKeywords.includes("View Service"));
    if (!view) throw new Error("no view");
    const root = await getJson(view.url ?? "", { token });
    expect(root.isView).toBe(true);
    const src = sim.model.relatedItems(view.id).find((r) => r.type === "Service2Service");
    expect(src?.destId).toBe(view.id);
    const srcItem = sim.model.item(src?.originId ?? "");
    const a = await q(`${view.url}/0`, { where: "1=1", returnCountOnly: "true" });
    const b = await q(`${srcItem?.url}/0`, { where: "1=1", returnCountOnly: "true" });
    expect(a.count).toBe(b.count);
  });

  it("anonymous access to a non-public service needs a token", async () => {
    const priv = services.find((s) => s.access !== "public");
    const r = await getJson(`${priv?.url}/0/query`, { where: "1=1" });
    expect(errorOf(r).code).toBe(499);
  });
});

describe("attachments", () => {
  it("lists, queries and downloads attachments (some features have none)", async () => {
    const url = `${big.url}/0`;
    const qa = await getJson(`${url}/queryAttachments`, { token, objectIds: "1,2,3,4,5,6,7,8,9,10" });
    const groups = qa.attachmentGroups as Json[];
    expect(groups.length).toBeGreaterThan(0);
    expect(groups.length).toBeLessThan(10);
    const g = groups[0] as Json;
    expect(g).toHaveProperty("parentGlobalId");
    const infos = g.attachmentInfos as Json[];
    for (const k of ["id", "contentType", "size", "name"]) expect(infos[0]).toHaveProperty(k);
    const oid = g.parentObjectId as number;
    const list = await getJson(`${url}/${oid}/attachments`, { token });
    expect((list.attachmentInfos as Json[]).map((a) => a.id)).toEqual(infos.map((a) => a.id));
    const truth = sim.model.attachments(big.id, 0, oid);
    const r = await fetch(`${url}/${oid}/attachments/${infos[0]?.id}?token=${token}`);
    const buf = Buffer.from(await r.arrayBuffer());
    expect(buf.length).toBe(truth[0]?.size);
    expect(errorOf(await getJson(`${url}/queryAttachments`, { token })).code).toBe(400);
  });
});

describe("mutations", () => {
  it("edits bump editingInfo.lastEditDate and show in queries", async () => {
    const url = `${big.url}/0`;
    const before = ((await getJson(url, { token })).editingInfo as Json).lastEditDate as number;
    const added = sim.mutate.addFeatures(big.id, 0, 3);
    expect(added).toEqual([2501, 2502, 2503]);
    sim.mutate.deleteFeatures(big.id, 0, [1]);
    sim.mutate.updateFeatures(big.id, 0, [2], { name: "Renamed" });
    const after = ((await getJson(url, { token })).editingInfo as Json).lastEditDate as number;
    expect(after).toBeGreaterThan(before);
    expect((await q(url, { where: "1=1", returnCountOnly: "true" })).count).toBe(2502);
    const two = await q(url, { objectIds: "2", outFields: "name" });
    expect(((two.features as Json[])[0]?.attributes ?? {}) as Json).toMatchObject({ name: "Renamed" });
    const item = sim.mutate.editItem(big.id, { title: "New title" });
    expect(item.modified).toBeGreaterThan(big.modified);
    expect((await getJson(`${sim.sharingUrl}/content/items/${big.id}`, { token })).title).toBe("New title");
  });
});
