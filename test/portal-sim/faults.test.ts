import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Faults } from "./faults.js";
import { type PortalSim, startPortalSim } from "./index.js";
import { getJson, type Json, tokenFor } from "./test-helpers.js";

let sim: PortalSim;
let token: string;
let layerUrl: string;

beforeAll(async () => {
  sim = await startPortalSim({ size: "tiny", seed: 5 });
  token = await tokenFor(sim);
  const fs = [...sim.model.items()].find((i) => i.type === "Feature Service");
  layerUrl = `${fs?.url}/0`;
});
afterAll(async () => {
  await sim.close();
});
beforeEach(() => sim.setFaults([]));

const query = () => fetch(`${layerUrl}/query?f=json&where=1%3D1&returnCountOnly=true&token=${token}`);

describe("fault injection", () => {
  it("an outage: a rule with forMs fires from its first firing for that long, then never", () => {
    let now = 1_000;
    const faults = new Faults(1, () => now);
    faults.set([{ match: "**/query", after: 1, forMs: 3_000, action: "status", status: 503 }]);
    const fires = () =>
      faults.evaluate("GET", "/x/FeatureServer/0/query", "services/FeatureServer/:layer/query");
    expect(fires()).toEqual([]);
    expect(fires()).toHaveLength(1);
    now += 2_999;
    expect(fires()).toHaveLength(1);
    now += 1;
    expect(fires()).toEqual([]);
    now += 60_000;
    expect(fires()).toEqual([]);
  });

  it("the 3rd query fails once with 503, by glob", async () => {
    sim.setFaults([{ match: "**/query", action: "status", status: 503, after: 2, times: 1 }]);
    const statuses: number[] = [];
    for (let k = 0; k < 5; k++) statuses.push((await query()).status);
    expect(statuses).toEqual([200, 200, 503, 200, 200]);
  });

  it("429 with and without Retry-After; every n-th; route-name matching", async () => {
    sim.setFaults([
      {
        match: "services/FeatureServer/:layer/query",
        action: "status",
        status: 429,
        retryAfter: 3,
        every: 2,
      },
    ]);
    const a = await query();
    const b = await query();
    expect(a.status).toBe(200);
    expect(b.status).toBe(429);
    expect(b.headers.get("retry-after")).toBe("3");
    sim.setFaults([{ match: /\/query$/, action: "status", status: 429 }]);
    const c = await query();
    expect(c.status).toBe(429);
    expect(c.headers.get("retry-after")).toBeNull();
  });

  it("error in an HTTP 200 body", async () => {
    sim.setFaults([{ match: "**/query", action: "bodyError", status: 500, times: 1 }]);
    const r = await query();
    expect(r.status).toBe(200);
    expect(((await r.json()) as Json).error).toMatchObject({ code: 500 });
  });

  it("connection reset and truncated body", async () => {
    sim.setFaults([{ match: "**/query", action: "reset", times: 1 }]);
    await expect(query()).rejects.toThrow();
    expect((await query()).status).toBe(200);
    const csv = [...sim.model.items()].find((i) => i.type === "CSV");
    sim.setFaults([{ match: "storage/blob", action: "truncate", times: 1 }]);
    const url = `${sim.sharingUrl}/content/items/${csv?.id}/data?token=${token}`;
    await expect(fetch(url).then((r) => r.arrayBuffer())).rejects.toThrow();
    const ok = Buffer.from(await (await fetch(url)).arrayBuffer());
    expect(ok.length).toBe(csv?.size);
  });

  it("latency and slow trickle", async () => {
    sim.setFaults([{ match: "**/community/self", action: "latency", latencyMs: 150, times: 1 }]);
    let t = Date.now();
    await getJson(`${sim.sharingUrl}/community/self`, { token });
    expect(Date.now() - t).toBeGreaterThanOrEqual(140);
    sim.setFaults([{ match: "**/portals/self", action: "trickle", latencyMs: 300 }]);
    t = Date.now();
    const self = await getJson(`${sim.sharingUrl}/portals/self`, { token });
    expect(self.id).toBe(sim.orgId);
    expect(Date.now() - t).toBeGreaterThanOrEqual(250);
  });

  it("probability is deterministic per seed", async () => {
    const run = async () => {
      const s = await startPortalSim({ size: "empty", seed: 99, urlKey: "probe" });
      s.setFaults([{ match: "**/portals/self", action: "status", status: 500, probability: 0.5 }]);
      const out: number[] = [];
      for (let k = 0; k < 12; k++) out.push((await fetch(`${s.sharingUrl}/portals/self?f=json`)).status);
      await s.close();
      return out;
    };
    const a = await run();
    expect(await run()).toEqual(a);
    expect(a).toContain(500);
    expect(a).toContain(200);
  });

  it("latencyMs applies to every request", async () => {
    const slow = await startPortalSim({ size: "empty", latencyMs: 80 });
    const t = Date.now();
    await getJson(`${slow.sharingUrl}/portals/self`);
    expect(Date.now() - t).toBeGreaterThanOrEqual(75);
    await slow.close();
  });
});
