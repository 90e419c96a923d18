import { randomUUID } from "node:crypto";
import { beforeEach, describe, expect, inject, it, vi } from "vitest";
import {
  createOrgGovernor,
  MemoryGovernorStore,
  type OrgGovernorOptions,
  OrgRateGovernor,
  recordLockout,
  TableGovernorStore,
} from "../../src/core/arcgis/governor/index.js";
import { governorPolicy } from "../../src/core/arcgis/governor/org-state.js";
import { ManualClock } from "../../src/core/clock.js";
import { governorTable, peakSpend } from "./harness.js";

// Every governor here runs on virtual time: waits are measured, and windows counted, on the
// ManualClock, so a busy machine changes nothing they assert.

const QUERY = "https://services.example.com/org/arcgis/rest/services/Parcels/FeatureServer/0/query";
const SHARING = "https://org.example.com/sharing/rest/content/items/abc";

let clock: ManualClock;

beforeEach(() => {
  clock = new ManualClock(1_000_000);
});

/** A governor on the virtual clock, over an org state of its own unless given a store. */
function governorOn(options: Partial<OrgGovernorOptions> = {}): OrgRateGovernor {
  return new OrgRateGovernor({ store: new MemoryGovernorStore(), orgKey: "o", clock, ...options });
}

/** One request through the pacer with a made-up response; returns its wait in virtual ms. */
async function call(
  pacer: Pick<OrgRateGovernor, "beforeRequest" | "afterResponse">,
  url: string,
  response: { status?: number; headers?: Record<string, string>; throttled?: boolean } = {},
  params?: Record<string, unknown>,
): Promise<number> {
  const started = clock.now();
  await pacer.beforeRequest(url, params);
  const waited = clock.now() - started;
  pacer.afterResponse({
    url,
    params,
    status: response.status ?? 200,
    throttled: response.throttled ?? false,
    latencyMs: 1,
    headers: new Headers(response.headers ?? {}),
  });
  return waited;
}

/** Runs in-memory work to its end on the virtual clock. */
const settle = <T>(work: Promise<T>): Promise<T> => clock.advanceUntilSettled(work);

const meter = (usage: number, max: number, cost: number) => ({
  "x-esri-org-request-units-per-min": `usage=${usage};max=${max}`,
  "x-esri-query-request-units": String(cost),
});

describe("OrgRateGovernor", () => {
  it("learns the budget from headers and counts units; Sharing calls need no budget", async () => {
    const governor = governorOn({ windowMs: 300 });
    await settle(call(governor, QUERY, { headers: meter(5, 20, 5) }));
    expect(governor.snapshot()).toMatchObject({ mode: "headers", shared: { max: 0 } });
    // Our share is 10 units per 300 ms: four more queries of 5 must spread over windows…
    const started = clock.now();
    let done = 0;
    const queries = Promise.all(
      Array.from({ length: 4 }, () => call(governor, QUERY, { headers: meter(5, 20, 5) }).then(() => done++)),
    );
    // …while Sharing calls pass at once: no virtual time goes by for them.
    const sharingWaits: number[] = [];
    for (let i = 0; i < 5; i++) sharingWaits.push(await call(governor, SHARING));
    expect(sharingWaits).toEqual([0, 0, 0, 0, 0]);
    expect(done).toBeLessThan(4);
    await settle(queries);
    expect(clock.now() - started).toBeGreaterThanOrEqual(300);
    expect(governor.snapshot().shared.max).toBe(20);
    expect(governor.stats()).toMatchObject({ requestUnits: 25, throttled: 0, requests: 10 });
  });

  it("makes metered requests wait once the share is spent, and no longer than needed", async () => {
    const governor = governorOn({ windowMs: 250 });
    const started = clock.now();
    // 10 units per 250 ms; 8 requests of 5 units (the first two at once) need 3 more windows.
    await settle(
      (async () => {
        for (let i = 0; i < 8; i++) await call(governor, QUERY, { headers: meter(5, 20, 5) });
      })(),
    );
    const elapsed = clock.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(750);
    expect(elapsed).toBeLessThanOrEqual(1_000);
    expect(governor.stats().budgetWaitMs).toBeGreaterThan(600);
  });

  it("paces a workload of several budgets at its share's rate: under the share, not slower", async () => {
    const windowMs = 1_000;
    const governor = governorOn({ windowMs });
    const spends: { t: number; units: number }[] = [];
    const query = async () => {
      await governor.beforeRequest(QUERY);
      spends.push({ t: clock.now(), units: 5 });
      governor.afterResponse({
        url: QUERY,
        status: 200,
        throttled: false,
        latencyMs: 1,
        headers: new Headers(meter(0, 100, 5)),
      });
    };
    const started = clock.now();
    // 200 units, four at a time, with a share of 50 units per window: at least 3 windows after
    // the first share, and within 80% of units / (share × budget) = 4 windows.
    await settle(
      Promise.all(
        Array.from({ length: 4 }, async () => {
          for (let i = 0; i < 10; i++) await query();
        }),
      ),
    );
    const elapsed = clock.now() - started;
    expect(spends).toHaveLength(40);
    expect(peakSpend(spends, windowMs)).toBeLessThanOrEqual(50);
    expect(elapsed).toBeGreaterThanOrEqual(3 * windowMs);
    expect((4 * windowMs) / elapsed).toBeGreaterThan(0.8);
  });

  it("pauses every caller of the org after a 429, Sharing calls included, until the pause ends", async () => {
    const governor = governorOn({ windowMs: 1_000, coolOffMs: 400 });
    const lease = governorPolicy({ windowMs: 1_000 }).leaseMs;
    await settle(call(governor, QUERY, { headers: meter(1, 1_000, 1) }));
    await settle(call(governor, QUERY, { status: 429, throttled: true, headers: { "retry-after": "0.3" } }));
    const releasedAt = (url: string) =>
      call(governor, url, { headers: meter(1, 1_000, 1) }).then(() => clock.now());
    let pauseEnd = clock.now() + 300;
    for (const at of await settle(
      Promise.all([releasedAt(SHARING), releasedAt(QUERY), releasedAt(SHARING)]),
    )) {
      expect(at).toBeGreaterThanOrEqual(pauseEnd);
      expect(at).toBeLessThan(pauseEnd + lease);
    }
    // The body form (told by the client after classification), no Retry-After: the cool-off.
    governor.onThrottled(QUERY);
    pauseEnd = clock.now() + 400;
    for (const at of await settle(Promise.all([releasedAt(QUERY), releasedAt(SHARING)]))) {
      expect(at).toBeGreaterThanOrEqual(pauseEnd);
      expect(at).toBeLessThan(pauseEnd + lease);
    }
    expect(governor.stats().throttled).toBe(2);
  });

  it("falls back to adaptive concurrency without headers, starting at 2", async () => {
    const governor = governorOn({ windowMs: 1_000 });
    let inFlight = 0;
    let most = 0;
    const events: string[] = [];
    const one = async (latencyMs: number) => {
      await governor.beforeRequest(QUERY);
      events.push("start");
      inFlight++;
      most = Math.max(most, inFlight);
      await clock.sleep(latencyMs);
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
    await settle(Promise.all(Array.from({ length: 6 }, () => one(10))));
    // Two at first; the third starts only once a response came back fast.
    expect(events.slice(0, 3)).toEqual(["start", "start", "end"]);
    expect(most).toBeLessThanOrEqual(3);
    expect(governor.snapshot().mode).toBe("adaptive");
    await settle(Promise.all(Array.from({ length: 60 }, () => one(10))));
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
    const governor = governorOn({ windowMs });
    const spends: { t: number; units: number }[] = [];
    const query = async (params: Record<string, unknown>, cost: number) => {
      await governor.beforeRequest(QUERY, params);
      spends.push({ t: clock.now(), units: cost });
      governor.afterResponse({
        url: QUERY,
        params,
        status: 200,
        throttled: false,
        latencyMs: 1,
        headers: new Headers(meter(0, 100, cost)),
      });
    };
    // Our share is 50 units per window. Counts of 1 unit take up part of it, then pages of 1,000
    // features with geometry cost 41: the first of them, not priced yet, must not join the counts.
    const count = { where: "1=1", returnCountOnly: true };
    const page = { where: "OBJECTID >= 1 AND OBJECTID <= 1000", returnGeometry: true };
    await settle(
      Promise.all([...Array.from({ length: 20 }, () => query(count, 1)), query(page, 41), query(page, 41)]),
    );
    expect(spends).toHaveLength(22);
    expect(peakSpend(spends, windowMs)).toBeLessThanOrEqual(50);
  });

  it("hands back what a request reserved beyond its cost: a cheap one reserved high holds back no one", async () => {
    const store = new MemoryGovernorStore();
    const [a, b] = [governorOn({ store, windowMs: 1_000 }), governorOn({ store, windowMs: 1_000 })];
    const lease = governorPolicy({ windowMs: 1_000 }).leaseMs;
    const count = { where: "1=1", returnCountOnly: true };
    const cheap = { headers: meter(0, 100, 1) };
    for (const instance of [a, b]) {
      await settle(call(instance, QUERY, cheap, count));
      await settle(call(instance, QUERY, cheap, count));
    }
    // A query that does not say how many features it wants is reserved at our whole share (50
    // units per second) until the org prices it: here at 1 unit. Held, it would cost a window.
    await settle(call(a, QUERY, cheap, { where: "1=1" }));
    expect(await settle(call(a, QUERY, cheap, count))).toBeLessThanOrEqual(lease);
    expect(await settle(call(b, QUERY, cheap, count))).toBeLessThanOrEqual(lease);
  });

  it("counts per run with track() while pacing through the one governor", async () => {
    const governor = governorOn({ windowMs: 1_000 });
    const run = governor.track();
    await settle(call(run, QUERY, { headers: meter(1, 1_000, 4) }));
    await settle(call(governor, QUERY, { headers: meter(1, 1_000, 2) }));
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

  it("a 429 met by one instance pauses the callers of another, through the table", async () => {
    const table = await governorTable(inject("azurite").connectionString);
    const orgKey = `org-${randomUUID()}`;
    const [a, b] = [0, 1].map(() => createOrgGovernor({ table, orgKey, clock, windowMs: 1_000 })) as [
      OrgRateGovernor,
      OrgRateGovernor,
    ];
    await settle(call(a, QUERY, { headers: meter(1, 1_000, 1) }));
    await settle(call(a, QUERY, { status: 429, throttled: true, headers: { "retry-after": "1" } }));
    const pauseEnd = clock.now() + 1_000;
    const row = new TableGovernorStore(table, orgKey);
    // (timeouts here guard against a hang; they measure nothing)
    await vi.waitFor(async () => expect((await row.read()).pausedUntil).toBe(pauseEnd), { timeout: 10_000 });
    // b never met the 429: it learns of the pause from the row, and so do its Sharing calls.
    const released: string[] = [];
    const callers = [SHARING, QUERY].map((url) =>
      b.beforeRequest(url, { where: "1=1", returnCountOnly: true }).then(() => {
        released.push(url);
        return clock.now();
      }),
    );
    await vi.waitFor(() => expect(clock.pending().filter((at) => at >= pauseEnd)).toHaveLength(2), {
      timeout: 10_000,
    });
    await clock.advance(pauseEnd - 1 - clock.now());
    expect(released).toEqual([]);
    for (const at of await settle(Promise.all(callers))) expect(at).toBeGreaterThanOrEqual(pauseEnd);
    expect(released.sort()).toEqual([QUERY, SHARING].sort());
    expect(b.snapshot().shared.lockouts).toBe(1);
  });
});
