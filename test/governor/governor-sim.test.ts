import { randomUUID } from "node:crypto";
import type { TableClient } from "@azure/data-tables";
import { afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import {
  createOrgGovernor,
  type OrgRateGovernor,
  TableGovernorStore,
} from "../../src/core/arcgis/governor/index.js";
import {
  governorTable,
  loggingFetch,
  type MeteredSim,
  pageLayer,
  peakSpend,
  portalClient,
  recordingPacer,
  sampleUsage,
  startMeteredSim,
} from "./harness.js";

// The org meter's "minute", shrunk so that paced workloads run in seconds (see harness.ts).
// The governor and the simulator's meter share the real clock here: these tests assert what the
// meter counted in its windows (units, 429s, lockouts) and the order of events, never how long
// something took. Waits and rates on virtual time are in governor.test.ts.
const WINDOW_MS = 1_000;
const BUDGET = 80;
const SHARE = 0.5;
const COOL_OFF_MS = 1_500;
const PAGE = 100; // 1 + 100/50 = 3 units a page without geometry

let table: TableClient;
const sims: MeteredSim[] = [];

beforeAll(async () => {
  table = await governorTable(inject("azurite").connectionString);
});

afterEach(async () => {
  await Promise.all(sims.splice(0).map((m) => m.sim.close()));
});

async function sim(features: number, options: { kind?: "online" | "enterprise" } = {}): Promise<MeteredSim> {
  const metered = await startMeteredSim({
    features,
    budget: BUDGET,
    coolOffMs: COOL_OFF_MS,
    windowMs: WINDOW_MS,
    ...options,
  });
  sims.push(metered);
  return metered;
}

function governor(
  orgKey: string,
  extra: Partial<Parameters<typeof createOrgGovernor>[0]> = {},
): OrgRateGovernor {
  return createOrgGovernor({
    table,
    orgKey,
    budgetShare: SHARE,
    windowMs: WINDOW_MS,
    coolOffMs: COOL_OFF_MS,
    ...extra,
  });
}

describe("org rate governor against the simulator", () => {
  it("the unpaced workload trips the org's lockout", async () => {
    const metered = await sim(8_000);
    const client = portalClient(metered, { maxRetries: 0 });
    await expect(
      pageLayer(client, metered.layerUrl, { features: 8_000, pageSize: PAGE, concurrency: 8 }),
    ).rejects.toThrow(/429|Too many/);
    expect(metered.sim.requestUnits().lockouts).toBeGreaterThanOrEqual(1);
  });

  it("paces a workload of 3× the budget: no 429, our usage stays under the share", async () => {
    const metered = await sim(8_000);
    const pacer = governor(`org-${randomUUID()}`);
    const { fetch, log } = loggingFetch();
    const client = portalClient(metered, { pacer, fetch });
    const usage = sampleUsage(metered.sim);
    const read = await pageLayer(client, metered.layerUrl, {
      features: 8_000,
      pageSize: PAGE,
      concurrency: 8,
    });
    const { peak } = usage.stop();
    const units = log.spends.reduce((a, s) => a + s.units, 0);
    expect(read).toBe(8_000);
    expect(log.throttled).toBe(0);
    expect(client.stats.throttled).toBe(0);
    expect(metered.sim.requestUnits().lockouts).toBe(0);
    expect(units).toBeGreaterThanOrEqual(3 * BUDGET);
    expect(peak).toBeLessThanOrEqual(SHARE * BUDGET);
    expect(log.peak(WINDOW_MS)).toBeLessThanOrEqual(SHARE * BUDGET);
    const stats = pacer.stats();
    expect(stats).toMatchObject({ requestUnits: units, throttled: 0, requests: 80 });
    expect(stats.budgetWaitMs).toBeGreaterThan(0);
    expect(pacer.snapshot().mode).toBe("headers");
  });

  it("two instances on one table share one budget while other users keep working", async () => {
    const metered = await sim(2_000);
    const orgKey = `org-${randomUUID()}`;
    const a = governor(orgKey);
    const b = governor(orgKey);
    const logs = [a, b].map((_g) => loggingFetch());
    const clients = [a, b].map((pacer, i) =>
      portalClient(metered, { pacer, fetch: logs[i]?.fetch as typeof fetch }),
    );
    // Others use a quarter of the budget per window throughout.
    const others = metered.sim.otherUsersLoad({ unitsPerMinute: (0.25 * BUDGET * 60_000) / WINDOW_MS });
    const usage = sampleUsage(metered.sim);
    const reads = await Promise.all(
      clients.map((client) =>
        pageLayer(client, metered.layerUrl, { features: 2_000, pageSize: PAGE, concurrency: 6 }),
      ),
    );
    const { peak } = usage.stop();
    others.stop();
    expect(reads).toEqual([2_000, 2_000]);
    expect(others.results().throttled).toBe(0);
    expect(others.results().ok).toBeGreaterThan(0);
    expect(metered.sim.requestUnits().lockouts).toBe(0);
    expect(logs.map((l) => l.log.throttled)).toEqual([0, 0]);
    // Combined, our spend stays under the share; the org as a whole under its budget.
    const combined = [...(logs[0]?.log.spends ?? []), ...(logs[1]?.log.spends ?? [])].sort(
      (x, y) => x.t - y.t,
    );
    // Two instances meet only through the table, once per lease; on the 1 s test window a lease
    // of scheduling jitter is a few percent of the window (on the real 60 s window, nothing).
    expect(peakSpend(combined, WINDOW_MS)).toBeLessThanOrEqual(SHARE * BUDGET * 1.1);
    expect(peak).toBeLessThan(BUDGET);
    expect(a.stats().requests).toBeGreaterThan(5);
    expect(b.stats().requests).toBeGreaterThan(5);
  });

  it.each([
    {
      form: "HTTP 429 with Retry-After",
      fault: { action: "status", status: 429, retryAfter: 1 },
    },
    {
      form: "HTTP 200 error body, no Retry-After",
      fault: { action: "bodyError", status: 429 },
    },
  ] as const)("a 429 ($form) pauses every caller of the org in every instance", async ({ fault }) => {
    const metered = await sim(1_000);
    const orgKey = `org-${randomUUID()}`;
    const a = governor(orgKey, { budgetShare: 1 });
    const b = governor(orgKey, { budgetShare: 1 });
    const [ra, rb] = [recordingPacer(a), recordingPacer(b)];
    const la = loggingFetch();
    const lb = loggingFetch();
    const ca = portalClient(metered, { pacer: ra.pacer, fetch: la.fetch });
    const cb = portalClient(metered, { pacer: rb.pacer, fetch: lb.fetch });
    metered.sim.setFaults([{ match: "**/query", after: 8, times: 1, ...fault }]);
    let working = true;
    const sharing = (async () => {
      while (working) {
        await cb.json("portals/self");
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    const row = new TableGovernorStore(table, orgKey);
    const reads = await Promise.all([
      pageLayer(ca, metered.layerUrl, { features: 1_000, pageSize: PAGE, concurrency: 3 }),
      (async () => {
        // b starts metered work once the org's row holds a's lockout.
        while ((await row.read()).lockouts === 0) await new Promise((r) => setTimeout(r, 5));
        return pageLayer(cb, metered.layerUrl, { features: 1_000, pageSize: PAGE, concurrency: 3 });
      })(),
    ]);
    working = false;
    await sharing;
    expect(reads).toEqual([1_000, 1_000]);
    expect(la.log.throttledAt).toHaveLength(1);
    const pauseEnd = a.snapshot().pausedUntil;
    expect(b.snapshot().pausedUntil).toBe(pauseEnd);
    // The instance that met the 429 lets nothing go, Sharing calls included, until the pause
    // ends (what it had let go before may still leave); the other, which starts after the
    // lockout reached the row, no metered call.
    const throttleSeen = ra.log.releasedBeforeThrottle;
    expect(throttleSeen).toBeDefined();
    const aAfter = ra.log.released.slice(throttleSeen);
    expect(aAfter.length).toBeGreaterThan(0);
    expect(aAfter.filter((r) => r.t < pauseEnd)).toEqual([]);
    const bMetered = rb.log.released.filter((r) => r.url.includes("/rest/services/"));
    expect(bMetered.length).toBeGreaterThan(0);
    expect(bMetered.filter((r) => r.t < pauseEnd)).toEqual([]);
    // b's Sharing calls went on after the pause.
    expect(lb.log.sent.some((s) => s.t >= pauseEnd && s.url.includes("/sharing/"))).toBe(true);
    expect(a.stats().throttled + b.stats().throttled).toBe(1);
    expect(b.snapshot().shared.lockouts).toBe(1);
  });

  it("falls back to adaptive concurrency on Enterprise (no request-unit headers)", async () => {
    const metered = await sim(2_000, { kind: "enterprise" });
    // A short cool-down between decreases, so that the 503 below is not lost in one from latency.
    const pacer = governor(`org-${randomUUID()}`, { adaptive: { cooldownMs: 20 } });
    const { fetch, log } = loggingFetch();
    const client = portalClient(metered, { pacer, fetch });
    const read = await pageLayer(client, metered.layerUrl, {
      features: 2_000,
      pageSize: 50,
      concurrency: 12,
    });
    expect(read).toBe(2_000);
    expect(pacer.snapshot().mode).toBe("adaptive");
    // It grew from the conservative 2, within the ceiling (16), below the workload's 12 at first.
    expect(log.maxInFlight).toBeGreaterThan(2);
    expect(log.maxInFlight).toBeLessThanOrEqual(16);
    await new Promise((r) => setTimeout(r, 30));
    const before = pacer.snapshot().concurrency;
    metered.sim.setFaults([{ match: "**/query", action: "status", status: 503, times: 1 }]);
    await pageLayer(client, metered.layerUrl, { features: 100, pageSize: 50, concurrency: 1 });
    expect(pacer.snapshot().concurrency).toBeLessThan(before);
  });
});
