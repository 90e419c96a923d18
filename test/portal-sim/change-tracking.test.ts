import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PortalSim, type SimItem, startPortalSim } from "./index.js";
import { errorOf, getJson, type Json, postForm, tokenFor } from "./test-helpers.js";

let sim: PortalSim;
let token: string;
let service: SimItem;

beforeAll(async () => {
  sim = await startPortalSim({ size: "tiny", seed: 8, requestUnitsPerMinute: 1e9 });
  token = await tokenFor(sim);
  const found = [...sim.model.items()].find(
    (i) => i.type === "Feature Service" && !i.typeKeywords.includes("View Service"),
  );
  if (!found) throw new Error("no service");
  service = found;
});
afterAll(async () => {
  await sim.close();
});

const layer0 = () => sim.model.pinService(sim.model.indexOf(service.id) as number)?.layers[0];
const extract = (params: Record<string, string | number>) =>
  postForm(`${service.url}/extractChanges`, { token, layers: "[0]", dataFormat: "json", ...params });
const gensOf = (root: Json) =>
  (
    root.changeTrackingInfo as {
      layerServerGens: Array<{ id: number; serverGen: number; minServerGen: number }>;
    }
  ).layerServerGens;

describe("change tracking (extractChanges)", () => {
  it("is refused on a service without the ChangeTracking capability", async () => {
    sim.model.setChangeTracking(sim.model.indexOf(service.id) as number, false);
    const root = await getJson(service.url ?? "", { token });
    expect(root.changeTrackingInfo).toBeUndefined();
    const answer = await extract({ layerServerGens: JSON.stringify([{ id: 0, serverGen: 1 }]) });
    expect(errorOf(answer).code).toBe(400);
  });

  it("reports generations and the inserts, updates and deletes after one, as rows or ids", async () => {
    sim.model.setChangeTracking(sim.model.indexOf(service.id) as number, true);
    const root = await getJson(service.url ?? "", { token });
    expect(String(root.capabilities)).toContain("ChangeTracking");
    expect(root.extractChangesCapabilities).toMatchObject({
      supportsReturnFeature: true,
      supportsServerGens: true,
    });
    const before = gensOf(root).find((g) => g.id === 0)?.serverGen as number;
    const layer = await getJson(`${service.url}/0`, { token });
    expect((layer.editingInfo as Json).dataLastEditDate).toEqual(expect.any(Number));

    const oids = [...(layer0()?.store.oids() ?? [])];
    sim.mutate.updateFeatures(service.id, 0, [oids[0] as number], { name: "changed" });
    sim.mutate.deleteFeatures(service.id, 0, [oids[1] as number]);
    const [added] = sim.mutate.addFeatures(service.id, 0, 1);
    // Added and removed within the window: not reported at all.
    const [transient] = sim.mutate.addFeatures(service.id, 0, 1);
    sim.mutate.deleteFeatures(service.id, 0, [transient as number]);

    const gens = JSON.stringify([{ id: 0, serverGen: before }]);
    const flags = { returnInserts: "true", returnUpdates: "true", returnDeletes: "true" };
    const ids = await extract({ layerServerGens: gens, returnIdsOnly: "true", ...flags });
    expect((ids.edits as Json[])[0]?.objectIds).toEqual({
      adds: [added],
      updates: [oids[0]],
      deletes: [oids[1]],
    });
    const rows = await extract({ layerServerGens: gens, ...flags });
    const features = (
      rows.edits as Array<{ features: { adds: Json[]; updates: Json[]; deleteIds: number[] } }>
    )[0]?.features;
    expect(features?.updates.map((f) => (f.attributes as Json).name)).toEqual(["changed"]);
    expect(features?.deleteIds).toEqual([oids[1]]);
    const after = (rows.layerServerGens as Array<{ id: number; serverGen: number }>)[0]?.serverGen as number;
    expect(after).toBeGreaterThan(before);
    const none = await extract({ layerServerGens: JSON.stringify([{ id: 0, serverGen: after }]), ...flags });
    expect((none.edits as Json[])[0]?.features).toEqual({ adds: [], updates: [], deleteIds: [] });
    expect(sim.stats.count("services/FeatureServer/extractChanges")).toBeGreaterThanOrEqual(3);
  });

  it("refuses a generation older than minServerGen", async () => {
    const store = layer0()?.store;
    if (!store) throw new Error("no layer");
    store.minServerGen = store.serverGen;
    const root = await getJson(service.url ?? "", { token });
    expect(gensOf(root).find((g) => g.id === 0)?.minServerGen).toBe(store.serverGen);
    const answer = await extract({
      layerServerGens: JSON.stringify([{ id: 0, serverGen: store.serverGen - 1 }]),
      returnInserts: "true",
    });
    expect(errorOf(answer).details.join(" ")).toMatch(/minServerGen/);
  });
});
