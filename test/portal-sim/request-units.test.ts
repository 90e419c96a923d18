import { afterEach, describe, expect, it } from "vitest";
import { type PortalSim, startPortalSim } from "./index.js";
import { tokenFor } from "./test-helpers.js";

const sims: PortalSim[] = [];
afterEach(async () => {
  await Promise.all(sims.splice(0).map((s) => s.close()));
});

async function setup(opts: Parameters<typeof startPortalSim>[0]) {
  const sim = await startPortalSim({ size: "small", seed: 21, ...opts });
  sims.push(sim);
  const token = await tokenFor(sim);
  const fs = [...sim.model.items()].find(
    (i) => i.type === "Feature Service" && !i.typeKeywords.includes("View Service"),
  );
  return { sim, token, layer: `${fs?.url}/0` };
}

function units(r: Response): { usage: number; max: number; cost: number } {
  const h = r.headers.get("x-esri-org-request-units-per-min") ?? "";
  const m = /usage=(\d+);max=(\d+)/.exec(h);
  return {
    usage: Number(m?.[1]),
    max: Number(m?.[2]),
    cost: Number(r.headers.get("x-esri-query-request-units")),
  };
}

describe("request units", () => {
  it("feature-service responses carry usage/max and a weighted cost", async () => {
    const { sim, token, layer } = await setup({});
    const count = await fetch(`${layer}/query?f=json&where=1%3D1&returnCountOnly=true&token=${token}`);
    const ids = await fetch(`${layer}/query?f=json&where=1%3D1&returnIdsOnly=true&token=${token}`);
    const attrs = await fetch(
      `${layer}/query?f=json&where=1%3D1&outFields=*&returnGeometry=false&token=${token}`,
    );
    const page = await fetch(`${layer}/query?f=json&where=1%3D1&outFields=*&token=${token}`);
    const c = units(count);
    expect(c.max).toBe(10_000);
    expect(c.cost).toBeGreaterThan(0);
    expect(units(ids).cost).toBeLessThan(units(attrs).cost);
    expect(units(attrs).cost).toBeLessThan(units(page).cost);
    expect(units(page).usage).toBe(sim.requestUnits().usage);
    const portal = await fetch(`${sim.sharingUrl}/portals/self?f=json`);
    expect(portal.headers.get("x-esri-org-request-units-per-min")).toBeNull();
  });

  it("past the budget the whole org is locked out for coolOffMs; other orgs are not", async () => {
    const { sim, token, layer } = await setup({ requestUnitsPerMinute: 200, coolOffMs: 400 });
    const other = await setup({ seed: 22 });
    const statuses: number[] = [];
    let throttledBodies = 0;
    let retryAfter = 0;
    for (let k = 0; k < 12; k++) {
      const r = await fetch(`${layer}/query?f=json&where=1%3D1&outFields=*&token=${token}`);
      const body = (await r.json()) as { error?: { code: number } };
      if (r.status === 429 || body.error?.code === 429) {
        statuses.push(429);
        if (r.status === 200) throttledBodies++;
        if (r.headers.get("retry-after")) retryAfter++;
      } else statuses.push(r.status);
    }
    expect(statuses[0]).toBe(200);
    expect(statuses).toContain(429);
    const ru = sim.requestUnits();
    expect(ru.lockouts).toBe(1);
    expect(ru.lockedUntil).not.toBeNull();
    // every request of the org, sharing included, is refused while locked
    const sharing = await fetch(`${sim.sharingUrl}/community/self?f=json&token=${token}`);
    const sharingThrottled =
      sharing.status === 429 || ((await sharing.json()) as { error?: { code: number } }).error?.code === 429;
    expect(sharingThrottled).toBe(true);
    // both styles show up (deterministic by seed)
    expect(throttledBodies).toBeGreaterThan(0);
    expect(throttledBodies).toBeLessThan(statuses.filter((s) => s === 429).length + 1);
    expect(retryAfter).toBeGreaterThan(0);
    const o = await fetch(
      `${other.layer}/query?f=json&where=1%3D1&returnCountOnly=true&token=${other.token}`,
    );
    expect(o.status).toBe(200);
    await new Promise((r) => setTimeout(r, 450));
    const after = await fetch(`${sim.sharingUrl}/portals/self?f=json`);
    expect(after.status).toBe(200);
    expect(sim.requestUnits().lockedMs).toBe(400);
  });

  it("other users' load spends the same budget", async () => {
    const { sim, token, layer } = await setup({ requestUnitsPerMinute: 600, coolOffMs: 300 });
    const load = sim.otherUsersLoad({ unitsPerMinute: 60_000 });
    await new Promise((r) => setTimeout(r, 1200));
    const mine = await fetch(`${layer}/query?f=json&where=1%3D1&returnCountOnly=true&token=${token}`);
    load.stop();
    expect(load.results().ok).toBeGreaterThan(0);
    expect(load.results().throttled).toBeGreaterThan(0);
    expect(sim.requestUnits().lockouts).toBeGreaterThan(0);
    // the org stays over budget: our own cheap request is refused too
    const refused =
      mine.status === 429 || ((await mine.json()) as { error?: { code: number } }).error?.code === 429;
    expect(refused).toBe(true);
  });

  it("enterprise has no request-unit headers", async () => {
    const { token, layer } = await setup({ kind: "enterprise", size: "tiny" });
    expect(layer).toContain("/server/rest/services/Hosted/");
    const r = await fetch(`${layer}/query?f=json&where=1%3D1&returnCountOnly=true&token=${token}`);
    expect(r.status).toBe(200);
    expect(r.headers.get("x-esri-org-request-units-per-min")).toBeNull();
  });
});
