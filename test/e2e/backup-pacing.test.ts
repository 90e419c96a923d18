import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { peakSpend } from "../governor/harness.js";
import { type AppHarness, startAppHarness } from "../support/app-harness.js";

// The simulator meters request units over a 2 s window (ArcGIS Online: a minute) and the app's
// governor is told the same, so a run that needs several budgets' worth takes seconds.
const WINDOW_SECONDS = 2;
const BUDGET = 100;
const SHARE = 0.5;
const OTHERS_PER_WINDOW = BUDGET * 0.2;

let app: AppHarness;
// The app runs in this process: what the org charged each of its requests, as answered.
const ours: { t: number; units: number }[] = [];
const realFetch = globalThis.fetch;

beforeAll(async () => {
  globalThis.fetch = async (input, init) => {
    const response = await realFetch(input, init);
    const units = response.headers.get("x-esri-query-request-units");
    if (units !== null) ours.push({ t: Date.now(), units: Number(units) });
    return response;
  };
  app = await startAppHarness({
    sim: {
      size: "tiny",
      seed: 51,
      requestUnitsPerMinute: BUDGET,
      requestUnitsWindowMs: WINDOW_SECONDS * 1000,
      coolOffMs: WINDOW_SECONDS * 1000,
      // A page of 1,000 features with geometry costs about 41 units: the budget must hold one.
      overrides: {
        items: { featureService: 3, webMap: 2 },
        featuresPerLayer: 1500,
        attachmentsPerFeature: 0,
      },
    },
    env: { REQUEST_UNITS_WINDOW_SECONDS: String(WINDOW_SECONDS) },
  });
});

afterAll(async () => {
  await app?.close();
  globalThis.fetch = realFetch;
});

describe("a backup paced by the org's request-unit budget", () => {
  test("needs several budgets, yet meets no 429, stays under its share, and other users keep working", async () => {
    const created = await app.createIdentity({ extra: { maxOrgBudgetShare: SHARE } });
    expect(created.status).toBe(201);
    // "Other users of the org" spend units all along (the load is given per real minute).
    const others = app.sim.otherUsersLoad({ unitsPerMinute: OTHERS_PER_WINDOW * (60 / WINDOW_SECONDS) });
    let peakUsage = 0;
    const sampler = setInterval(() => {
      peakUsage = Math.max(peakUsage, app.sim.requestUnits().usage);
    }, 50);
    try {
      const started = await app.call("POST", `/api/identities/${created.body.id}/backups`, {});
      await app.host.waitForInstance(started.body.runId, { timeoutMs: 120_000 });
      const run = (await app.call("GET", `/api/backups/${started.body.runId}`)).body;
      expect(run.status, JSON.stringify(run)).toBe("completed");
      // Unpaced, this much would have gone out at once: several times the org's budget.
      expect(run.traffic.requestUnits).toBeGreaterThan(3 * BUDGET);
      expect(run.traffic.throttled).toBe(0);
      expect(run.traffic.budgetWaitMs).toBeGreaterThan(0);
      expect(app.sim.requestUnits().lockouts).toBe(0);
      // Our usage stayed under our share in every window, even for the first page of each kind
      // of query (priced from what it asks before the org says); the org's under its budget.
      expect(peakSpend(ours, WINDOW_SECONDS * 1000)).toBeLessThanOrEqual(SHARE * BUDGET);
      expect(peakUsage).toBeLessThanOrEqual(BUDGET);
      expect(others.results().throttled).toBe(0);
      expect(others.results().ok).toBeGreaterThan(0);
    } finally {
      clearInterval(sampler);
      others.stop();
    }
  }, 150_000);
});
