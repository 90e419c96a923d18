import { randomUUID } from "node:crypto";
import { describe, expect, inject, it } from "vitest";
import {
  MemoryGovernorStore,
  OrgRateGovernor,
  recordLockout,
  TableGovernorStore,
} from "../../src/core/arcgis/governor/index.js";
import { governorPolicy } from "../../src/core/arcgis/governor/org-state.js";
import { governorTable, peakSpend } from "./harness.js";

const QUERY = "https://services.example.com/org/arcgis/rest/services/Parcels/FeatureServer/0/query";
const SHARING = "https://org.example.com/sharing/rest/content/items/abc";

function headers(values: Record<string, string>): Headers {
  return new Headers(values);
}

/** One request through the pacer with a made-up response. */
async function call(
  pacer: Pick<OrgRateGovernor, "beforeRequest" | "afterResponse">,
  url: string,
  response: { status?: number; headers?: Record<string, string>; throttled?: boolean } = {},
  params?: Record<string, unknown>,
): Promise<number> {
  const started = Date.now();
  await pacer.beforeRequest(url, params);
  const waited = Date.now() - started;
  pacer.afterResponse({
    url,
    params,
    status: response.status ?? 200,
    throttled: response.throttled ?? false,
    latencyMs: 1,
    headers: headers(response.headers ?? {}),
  });
  return waited;
}

const meter = (usage: number, max: number, cost: number) => ({
  "x-esri-org-request-units-per-min": `usage=${usage};max=${max}`,
  "x-esri-query-request-units": String(cost),
});

describe("OrgRateGovernor", () => {
  it("learns the budget from headers and counts units; Sharing calls need no budget", async () => {
    const governor = new OrgRateGovernor({ store: new MemoryGovernorStore(), orgKey: "o", windowMs: 300 });
    await call(governor, QUERY, { headers: meter(5, 20, 5) });
    expect(governor.snapshot()).toMatchObject({ mode: "headers", shared: { max: 0 } });
    // Our share is 10 units per 300 ms: four more queries of 5 must spread over about 0.5 s…
    let done = 0;
    const queries = Array.from({ length: 4 }, () =>
      call(governor, QUERY, { headers: meter(5, 20, 5) }).then(() => done++),
    );
    // …while Sharing calls pass at once.
    const started = Date.now();
    for (let i = 0; i < 5; i++) await call(governor, SHARING);
    expect(Date.now() - started).toBeLessThan(50);
    expect(done).toBeLessThan(4);
    await Promise.all(queries);
    expect(governor.snapshot().shared.max).toBe(20);
    expect(governor.stats()).toMatchObject({ requestUnits: 25, throttled: 0, requests: 10 });
  });

  it("makes metered requests wait once the share is spent", async () => {
    const governor = new OrgRateGovernor({ store: new MemoryGovernorStore(), orgKey: "o", windowMs: 250 });
    const started = Date.now();
    // 10 units per 250 ms; 8 requests of 5 units (the first two at once) need at least 3 windows.
    for (let i = 0; i < 8; i++) await call(governor, QUERY, { headers: meter(5, 20, 5) });
    expect(Date.now() - started).toBeGreaterThan(700);
    expect(governor.stats().budgetWaitMs).toBeGreaterThan(600);
  });

  it("pauses every caller of the org after a 429, Sharing calls included", async () => {
    const governor = new OrgRateGovernor({
      store: new MemoryGovernorStore(),
      orgKey: "o",
      windowMs: 1_000,
      coolOffMs: 400,
    });
    await call(governor, QUERY, { headers: meter(1, 1_000, 1) });
    await call(governor, QUERY, { status: 429, throttled: true, headers: { "retry-after": "0.3" } });
    expect(await call(governor, SHARING)).toBeGreaterThan(250);
    // The body form (told by the client after classification), no Retry-After: the cool-off.
    governor.onThrottled(QUERY);
    expect(await call(governor, QUERY, { headers: meter(1, 1_000, 1) })).toBeGreaterThan(350);
    expect(governor.stats().throttled).toBe(2);
  });

  it("falls back to adaptive concurrency without headers, starting at 2", async () => {
    const governor = new OrgRateGovernor({ store: new MemoryGovernorStore(), orgKey: "o", windowMs: 1_000 });
    let inFlight = 0;
    let most = 0;
    const events: string[] = [];
    const one = async (latencyMs: number) => {
      await governor.beforeRequest(QUERY);
      events.push("start");
      inFlight++;
      most = Math.max(most, inFlight);
      await new Promise((r) => setTimeout(r, latencyMs));
      inFlight--;
      events.push("end");
      governor.afterResponse({
        url: QUERY,
        status: 200,
        throttled: false,
        latencyMs,
        headers: new Headers(),
      });
    };
    await Promise.all(Array.from({ length: 6 }, () => one(10)));
    // Two at first; the third starts only once a response came back fast.
    expect(events.slice(0, 3)).toEqual(["start", "start", "end"]);
    expect(most).toBeLessThanOrEqual(3);
    expect(governor.snapshot().mode).toBe("adaptive");
    await Promise.all(Array.from({ length: 60 }, () => one(10)));
    const grown = governor.snapshot().concurrency;
    expect(grown).toBeGreaterThan(4);
    governor.afterResponse({
      url: QUERY,
      status: 503,
      throttled: false,
      latencyMs: 10,
      headers: new Headers(),
    });
    expect(governor.snapshot().concurrency).toBeLessThanOrEqual(Math.ceil(grown / 2));
  });

  it("prices a kind of query never priced from what it asks: its first page keeps us under the share", async () => {
    const windowMs = 600;
    const governor = new OrgRateGovernor({ store: new MemoryGovernorStore(), orgKey: "o", windowMs });
    const spends: { t: number; units: number }[] = [];
    const query = async (params: Record<string, unknown>, cost: number) => {
      await governor.beforeRequest(QUERY, params);
      spends.push({ t: Date.now(), units: cost });
      governor.afterResponse({
        url: QUERY,
        params,
        status: 200,
        throttled: false,
        latencyMs: 1,
        headers: headers(meter(0, 100, cost)),
      });
    };
    // Our share is 50 units per window. Counts of 1 unit take up part of it, then pages of 1,000
    // features with geometry cost 41: the first of them, not priced yet, must not join the counts.
    const count = { where: "1=1", returnCountOnly: true };
    const page = { where: "OBJECTID >= 1 AND OBJECTID <= 1000", returnGeometry: true };
    await Promise.all([
      ...Array.from({ length: 20 }, () => query(count, 1)),
      query(page, 41),
      query(page, 41),
    ]);
    expect(spends).toHaveLength(22);
    expect(peakSpend(spends, windowMs)).toBeLessThanOrEqual(50);
  });

  it("hands back what a request reserved beyond its cost: a cheap one reserved high holds back no one", async () => {
    const store = new MemoryGovernorStore();
    const [a, b] = [0, 1].map(() => new OrgRateGovernor({ store, orgKey: "o", windowMs: 1_000 })) as [
      OrgRateGovernor,
      OrgRateGovernor,
    ];
    const count = { where: "1=1", returnCountOnly: true };
    const cheap = { headers: meter(0, 100, 1) };
    for (const instance of [a, b]) {
      await call(instance, QUERY, cheap, count);
      await call(instance, QUERY, cheap, count);
    }
    // A query that does not say how many features it wants is reserved at our whole share (50
    // units per second) until the org prices it: here at 1 unit.
    await call(a, QUERY, cheap, { where: "1=1" });
    expect(await call(a, QUERY, cheap, count)).toBeLessThan(100);
    expect(await call(b, QUERY, cheap, count)).toBeLessThan(100);
  });

  it("counts per run with track() while pacing through the one governor", async () => {
    const governor = new OrgRateGovernor({ store: new MemoryGovernorStore(), orgKey: "o", windowMs: 1_000 });
    const run = governor.track();
    await call(run, QUERY, { headers: meter(1, 1_000, 4) });
    await call(governor, QUERY, { headers: meter(1, 1_000, 2) });
    expect(run.stats()).toMatchObject({ requestUnits: 4, requests: 1 });
    expect(governor.stats()).toMatchObject({ requestUnits: 6, requests: 2 });
  });
});

describe("TableGovernorStore", () => {
  it("serialises concurrent updates from several instances with ETags", async () => {
    const table = await governorTable(inject("azurite").connectionString);
    const orgKey = `https://org-${randomUUID()}.maps.arcgis.com/sharing/rest`;
    const stores = [0, 1, 2].map(() => new TableGovernorStore(table, orgKey));
    const policy = governorPolicy();
    await Promise.all(
      stores.map(async (store, i) => {
        for (let k = 0; k < 8; k++) {
          await store.update((state) => ({
            // Each update is a new lockout (pausedUntil in the past), so lockouts counts updates.
            state: { ...recordLockout(state, 1_000 * (i * 10 + k + 1), 0, policy), pausedUntil: 0 },
            result: undefined,
          }));
        }
      }),
    );
    expect((await stores[0]?.read())?.lockouts).toBe(24);
    // Another key is another row.
    expect((await new TableGovernorStore(table, `${orgKey}/other`).read()).lockouts).toBe(0);
  });
});
