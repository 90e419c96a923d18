import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PortalSim, startPortalSim } from "./index.js";
import { errorOf, getJson, type Json, tokenFor } from "./test-helpers.js";

let sim: PortalSim;
let token: string;

beforeAll(async () => {
  sim = await startPortalSim({ size: "tiny", seed: 4, overrides: { items: { pdf: 12_000, webMap: 5 } } });
  token = await tokenFor(sim);
});
afterAll(async () => {
  await sim.close();
});

describe("the 10,000-result search ceiling", () => {
  it("total is the full count; pages up to 10,000 work; start beyond 10,000 fails", async () => {
    const q = `orgid:${sim.orgId}`;
    const first = await getJson(`${sim.sharingUrl}/search`, { token, q, num: 100 });
    expect(first.total).toBe(12_005);
    expect(first.nextStart).toBe(101);
    const last = await getJson(`${sim.sharingUrl}/search`, { token, q, num: 100, start: 9901 });
    expect((last.results as Json[]).length).toBe(100);
    expect(last.nextStart).toBe(10_001);
    const beyond = await getJson(`${sim.sharingUrl}/search`, { token, q, num: 100, start: 10_001 });
    expect(errorOf(beyond).code).toBe(400);
    const capped = await getJson(`${sim.sharingUrl}/search`, { token, q, num: 100, start: 9951 });
    expect((capped.results as Json[]).length).toBe(50);
  });

  it("num is capped at 100 and splitting by created range reaches everything", async () => {
    const q = `orgid:${sim.orgId}`;
    expect((await getJson(`${sim.sharingUrl}/search`, { token, q, num: 500 })).num).toBe(100);
    const created = [...sim.model.items()].map((i) => i.created).sort((a, b) => a - b);
    const mid = created[6000] ?? 0;
    const a = await getJson(`${sim.sharingUrl}/search`, {
      token,
      q: `${q} AND created:[0 TO ${mid}]`,
      num: 1,
    });
    const b = await getJson(`${sim.sharingUrl}/search`, {
      token,
      q: `${q} AND created:{${mid} TO *]`,
      num: 1,
    });
    expect((a.total as number) + (b.total as number)).toBe(12_005);
    expect(a.total as number).toBeLessThanOrEqual(10_000);
    expect(b.total as number).toBeLessThanOrEqual(10_000);
  });

  it("searchCeiling 'empty' answers no results and nextStart -1", async () => {
    const s = await startPortalSim({
      size: "tiny",
      seed: 4,
      searchCeiling: "empty",
      overrides: { items: { csv: 10_050 } },
    });
    try {
      const t = await tokenFor(s);
      const q = `orgid:${s.orgId}`;
      const last = await getJson(`${s.sharingUrl}/search`, { token: t, q, num: 100, start: 9901 });
      expect(last.nextStart).toBe(-1);
      const beyond = await getJson(`${s.sharingUrl}/search`, { token: t, q, num: 100, start: 10_001 });
      expect(beyond).toMatchObject({ total: 10_050, nextStart: -1, results: [] });
    } finally {
      await s.close();
    }
  });
});
