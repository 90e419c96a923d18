import { describe, expect, it } from "vitest";
import {
  addSpend,
  adjustSpend,
  aimdConcurrency,
  aimdStart,
  aimdUpdate,
  applyObservation,
  bucketShape,
  CostEstimator,
  costKey,
  DEFAULT_AIMD_POLICY,
  emptyOrgState,
  firstCostEstimate,
  governorPolicy,
  isMeteredUrl,
  leaseRound,
  msUntil,
  msUntilRoom,
  type OrgState,
  ourAllowance,
  parseOrgState,
  parseOrgUnits,
  parseQueryUnits,
  penalize,
  penaltyAt,
  pruneSpend,
  recordLockout,
  refill,
  serializeOrgState,
  spendBetween,
} from "../../src/core/arcgis/governor/index.js";

describe("headers", () => {
  it("parses the org meter header in its variants", () => {
    expect(parseOrgUnits("usage=120;max=10000")).toEqual({ usage: 120, max: 10_000 });
    expect(parseOrgUnits(" Max = 500 , USAGE = 7 ")).toEqual({ usage: 7, max: 500 });
    expect(parseOrgUnits("usage=1")).toBeUndefined();
    expect(parseOrgUnits("usage=x;max=3")).toBeUndefined();
    expect(parseOrgUnits("usage=1;max=0")).toBeUndefined();
    expect(parseOrgUnits(null)).toBeUndefined();
  });

  it("parses a query's cost", () => {
    expect(parseQueryUnits("5")).toBe(5);
    expect(parseQueryUnits(" 0 ")).toBe(0);
    expect(parseQueryUnits("")).toBeUndefined();
    expect(parseQueryUnits("-1")).toBeUndefined();
    expect(parseQueryUnits(undefined)).toBeUndefined();
  });

  it("meters ArcGIS Server URLs only", () => {
    expect(
      isMeteredUrl("https://services.arcgis.com/abc/arcgis/rest/services/Parcels/FeatureServer/0/query"),
    ).toBe(true);
    expect(isMeteredUrl("https://gis.example.com/server/rest/services/Hosted/X/FeatureServer")).toBe(true);
    expect(isMeteredUrl("https://org.maps.arcgis.com/sharing/rest/content/items/1")).toBe(false);
    expect(isMeteredUrl("https://org.maps.arcgis.com/sharing/rest/search?q=/rest/services/")).toBe(false);
    expect(costKey("HTTPS://Host.COM/a/FeatureServer/0/query?x=1")).toBe(
      "https://host.com/a/FeatureServer/:n/query",
    );
    // Every layer and service of a kind shares one price.
    expect(costKey("https://h/o/arcgis/rest/services/Parks/FeatureServer/3/12/attachments/7")).toBe(
      "https://h/o/arcgis/rest/services/*/FeatureServer/:n/:n/attachments/:n",
    );
  });
});

describe("token bucket", () => {
  it("refills at the rate up to the capacity and keeps a debt a debt", () => {
    expect(refill({ tokens: 0, at: 0 }, 1_000, 0.01, 5)).toEqual({ tokens: 5, at: 1_000 });
    expect(refill({ tokens: 0, at: 0 }, 100, 0.01, 5)).toEqual({ tokens: 1, at: 100 });
    expect(refill({ tokens: -3, at: 0 }, 100, 0.01, 5)).toEqual({ tokens: -2, at: 100 });
    // A clock behind the bucket's (another instance) neither refills nor moves it back.
    expect(refill({ tokens: 2, at: 500 }, 400, 0.01, 5)).toEqual({ tokens: 2, at: 500 });
    // A shrunk capacity caps what was saved.
    expect(refill({ tokens: 9, at: 0 }, 0, 0.01, 5).tokens).toBe(5);
  });

  it("tells how long until a need is covered", () => {
    expect(msUntil({ tokens: 1, at: 0 }, 1, 0.01, 5)).toBe(0);
    expect(msUntil({ tokens: 1, at: 0 }, 3, 0.01, 5)).toBe(200);
    // A need above the capacity waits for a full bucket only.
    expect(msUntil({ tokens: 1, at: 0 }, 50, 0.01, 5)).toBe(400);
    expect(msUntil({ tokens: 1, at: 0 }, 3, 0, 5)).toBe(Number.POSITIVE_INFINITY);
  });
});

describe("spend window", () => {
  it("adds, corrects, prunes and sums by slot", () => {
    let slots = addSpend([], 100, 50, 4);
    slots = addSpend(slots, 100, 80, 2);
    slots = addSpend(slots, 100, 250, 3);
    expect(slots).toEqual([
      [0, 6],
      [2, 3],
    ]);
    expect(adjustSpend(slots, 100, 10, -5)).toEqual([
      [0, 1],
      [2, 3],
    ]);
    expect(adjustSpend(slots, 100, 150, -5)).toBe(slots);
    expect(adjustSpend(slots, 100, 10, -50)[0]).toEqual([0, 0]);
    expect(spendBetween(slots, 100, 0, 1_000)).toBe(9);
    expect(spendBetween(slots, 100, 100, 1_000)).toBe(3);
    expect(spendBetween(slots, 100, 99, 1_000)).toBe(9);
    expect(pruneSpend(slots, 100, 100)).toEqual([[2, 3]]);
  });

  it("tells when the window has room again", () => {
    const slots = addSpend(addSpend([], 100, 0, 6), 100, 300, 3);
    // window 1000 ms, limit 10: at t=500 spend is 9.
    expect(msUntilRoom(slots, 100, 1_000, 500, 10, 1)).toBe(0);
    // Needs slot 0 (ends at 100) to leave the window: at 1100.
    expect(msUntilRoom(slots, 100, 1_000, 500, 10, 2)).toBe(600);
    expect(msUntilRoom(slots, 100, 1_000, 500, 10, 8)).toBe(900);
    expect(msUntilRoom(slots, 100, 1_000, 500, 10, 11)).toBe(Number.POSITIVE_INFINITY);
  });
});

describe("allowance", () => {
  const policy = governorPolicy({ windowMs: 60_000 });

  it("is our share while others leave room", () => {
    expect(ourAllowance({ max: 10_000, others: 0, penalty: 1 }, policy)).toBe(5_000);
    expect(ourAllowance({ max: 10_000, others: 3_500, penalty: 1 }, policy)).toBe(5_000);
  });

  it("shrinks as others' traffic rises, keeping the org under the headroom, down to a floor", () => {
    expect(ourAllowance({ max: 10_000, others: 5_000, penalty: 1 }, policy)).toBe(3_500);
    expect(ourAllowance({ max: 10_000, others: 8_000, penalty: 1 }, policy)).toBe(500);
    expect(ourAllowance({ max: 10_000, others: 9_900, penalty: 1 }, policy)).toBe(200);
  });

  it("is cut by a lockout penalty that recovers over time", () => {
    const hit = penalize({ factor: 1, at: 0 }, 1_000, policy);
    expect(hit).toEqual({ factor: 0.5, at: 1_000 });
    expect(penalize(hit, 1_000, policy).factor).toBe(0.25);
    expect(penaltyAt(hit, 1_000 + policy.penaltyRecoveryMs / 2, policy)).toBeCloseTo(0.75);
    expect(penaltyAt(hit, 1_000 + policy.penaltyRecoveryMs * 2, policy)).toBe(1);
    expect(ourAllowance({ max: 10_000, others: 0, penalty: 0.5 }, policy)).toBe(2_500);
  });

  it("shapes a bucket that cannot spend more than the allowance in a window", () => {
    const { ratePerMs, capacity } = bucketShape(5_000, policy);
    expect(capacity).toBe(500);
    expect(capacity + ratePerMs * policy.windowMs).toBeCloseTo(5_000);
  });
});

/** Drives leaseRound with a fake clock: a greedy instance (or several) spending every grant. */
function simulate(options: {
  instances: number;
  durationMs: number;
  cost: number;
  max: number;
  others?: (t: number) => number;
  policy: ReturnType<typeof governorPolicy>;
}) {
  const { policy } = options;
  let state: OrgState = emptyOrgState();
  // Spends in time order, with prefix sums for window queries.
  const times: number[] = [];
  const prefix: number[] = [0];
  const spend = (t: number, units: number) => {
    times.push(t);
    prefix.push((prefix.at(-1) ?? 0) + units);
  };
  const upTo = (t: number) => {
    let lo = 0;
    let hi = times.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((times[mid] ?? 0) <= t) lo = mid + 1;
      else hi = mid;
    }
    return prefix[lo] ?? 0;
  };
  const windowSum = (t: number) => upTo(t) - upTo(t - policy.windowMs);
  const clocks = Array.from({ length: options.instances }, (_, i) => ({ t: i * 7, balance: 0, from: 0 }));
  for (;;) {
    const inst = clocks.reduce((a, b) => (b.t < a.t ? b : a));
    if (inst.t >= options.durationMs) break;
    const t = inst.t;
    if (inst.balance >= options.cost) {
      inst.balance -= options.cost;
      spend(t, options.cost);
      inst.t += 1;
      continue;
    }
    const ours = windowSum(t);
    const { state: next, outcome } = leaseRound(
      state,
      {
        now: t,
        need: options.cost,
        want: options.cost * 10,
        returned: inst.balance,
        returnedFrom: inst.from,
        observation: { at: t, usage: ours + (options.others?.(t) ?? 0), max: options.max },
      },
      policy,
    );
    state = next;
    inst.balance = outcome.grant;
    inst.from = outcome.readyAt;
    inst.t = outcome.grant > 0 ? Math.max(t + 1, outcome.readyAt) : t + outcome.waitMs;
  }
  let worst = 0;
  for (const t of times) worst = Math.max(worst, windowSum(t));
  const total = prefix.at(-1) ?? 0;
  return { worst, total, state, windowSum };
}

describe("lease rounds", () => {
  const policy = governorPolicy({ windowMs: 60_000 });

  it("keeps a greedy spender under the allowance in every window, near the allowance's pace", () => {
    const { worst, total } = simulate({ instances: 1, durationMs: 300_000, cost: 7, max: 10_000, policy });
    expect(worst).toBeLessThanOrEqual(5_000);
    // 5 windows at 5,000 per window: at least 90% of that pace.
    expect(total).toBeGreaterThan(0.9 * 5 * 5_000);
  });

  it("shares one allowance between instances", () => {
    const { worst, total } = simulate({ instances: 3, durationMs: 180_000, cost: 5, max: 10_000, policy });
    expect(worst).toBeLessThanOrEqual(5_000);
    expect(total).toBeGreaterThan(0.85 * 3 * 5_000);
  });

  it("gives way when others' traffic rises", () => {
    const others = (t: number) => (t < 120_000 ? 0 : 6_000);
    const run = simulate({ instances: 2, durationMs: 300_000, cost: 4, max: 10_000, others, policy });
    // Once others use 6,000, ours settles at 8,500 - 6,000 = 2,500 per window.
    expect(run.windowSum(300_000)).toBeLessThanOrEqual(2_500 + 50);
    expect(run.windowSum(300_000)).toBeGreaterThan(2_000);
    expect(run.state.others).toBeGreaterThan(5_500);
  });

  it("grants nothing while paused and takes back what a lease left", () => {
    let state = applyObservation(emptyOrgState(), { at: 1, usage: 0, max: 1_000 }, policy);
    const first = leaseRound(state, { now: 10, need: 5, want: 5, returned: 0, returnedFrom: 0 }, policy);
    expect(first.outcome.grant).toBeGreaterThanOrEqual(5);
    state = first.state;
    expect(spendBetween(state.spend, policy.slotMs, 0, 100)).toBe(first.outcome.grant);
    const back = leaseRound(
      state,
      { now: 20, need: 0, want: 0, returned: first.outcome.grant - 2, returnedFrom: 10 },
      policy,
    );
    expect(spendBetween(back.state.spend, policy.slotMs, 0, 100)).toBe(2 + back.outcome.grant);
    const locked = recordLockout(back.state, 30, 60_030, policy);
    expect(locked.lockouts).toBe(1);
    expect(locked.penalty).toBe(0.5);
    const paused = leaseRound(locked, { now: 40, need: 1, want: 1, returned: 0, returnedFrom: 0 }, policy);
    expect(paused.outcome).toMatchObject({ grant: 0, waitMs: 59_990 });
    // The same lockout seen again (another caller or instance) costs nothing more.
    expect(recordLockout(locked, 50, 60_030, policy)).toBe(locked);
    expect(recordLockout(locked, 50, 61_000, policy)).toMatchObject({ lockouts: 1, pausedUntil: 61_000 });
  });

  it("books a refund in the slot its lease was granted in, not the current one", () => {
    let state = applyObservation(emptyOrgState(), { at: 1, usage: 0, max: 1_000 }, policy);
    const first = leaseRound(state, { now: 10, need: 40, want: 40, returned: 0, returnedFrom: 0 }, policy);
    state = first.state;
    const second = leaseRound(state, { now: 5_000, need: 5, want: 5, returned: 0, returnedFrom: 0 }, policy);
    // The first lease's request answered for 10 of its 40 units.
    const back = leaseRound(
      second.state,
      { now: 5_010, need: 0, want: 0, returned: 0, returnedFrom: 0, refunds: [{ from: 10, units: 30 }] },
      policy,
    );
    expect(spendBetween(back.state.spend, policy.slotMs, 0, 100)).toBe(first.outcome.grant - 30);
    expect(spendBetween(back.state.spend, policy.slotMs, 4_000, 6_000)).toBe(second.outcome.grant);
  });

  it("learns others' usage as the org's less ours", () => {
    let state = applyObservation(emptyOrgState(), { at: 1, usage: 0, max: 1_000 }, policy);
    state = { ...state, spend: addSpend([], policy.slotMs, 5_000, 100) };
    state = applyObservation(state, { at: 6_000, usage: 350, max: 1_000 }, policy);
    expect(state.others).toBe(250);
    // An older reading is ignored.
    expect(applyObservation(state, { at: 5_999, usage: 999, max: 1_000 }, policy)).toBe(state);
  });

  it("round-trips through its stored form", () => {
    const state = emptyOrgState();
    expect(parseOrgState(serializeOrgState(state))).toEqual(state);
    expect(parseOrgState("{bad")).toEqual(state);
    expect(parseOrgState(undefined)).toEqual(state);
  });
});

describe("adaptive concurrency", () => {
  const policy = DEFAULT_AIMD_POLICY;

  it("starts conservative and grows by about one per window of fast responses", () => {
    let state = aimdStart(policy);
    expect(aimdConcurrency(state)).toBe(2);
    // +1/limit per response: 2 → 3 after 2 responses, → 4 after 5 more (fractional on the way).
    for (let i = 0; i < 7; i++) state = aimdUpdate(state, { kind: "ok", latencyMs: 20 }, i, policy);
    expect(aimdConcurrency(state)).toBe(4);
    for (let i = 0; i < 500; i++) state = aimdUpdate(state, { kind: "ok", latencyMs: 20 }, i, policy);
    expect(aimdConcurrency(state)).toBe(policy.max);
  });

  it("halves on errors once per cool-down and backs off on a latency spike", () => {
    let state = { ...aimdStart(policy), limit: 8 };
    state = aimdUpdate(state, { kind: "ok", latencyMs: 20 }, 0, policy);
    state = aimdUpdate(state, { kind: "error" }, 10_000, policy);
    expect(state.limit).toBeCloseTo(4.06, 1);
    expect(aimdUpdate(state, { kind: "throttled" }, 10_100, policy)).toBe(state);
    state = aimdUpdate(state, { kind: "throttled" }, 11_100, policy);
    expect(aimdConcurrency(state)).toBe(2);
    const slow = aimdUpdate({ ...state, limit: 10 }, { kind: "ok", latencyMs: 2_000 }, 20_000, policy);
    expect(slow.limit).toBe(8);
    let floor = state;
    for (let i = 0; i < 10; i++) floor = aimdUpdate(floor, { kind: "error" }, 30_000 + i * 2_000, policy);
    expect(aimdConcurrency(floor)).toBe(policy.min);
  });
});

describe("cost estimator", () => {
  it("learns per URL, falls back to the overall mean and errs high", () => {
    const costs = new CostEstimator(2);
    expect(costs.estimate("a")).toBe(2);
    for (let i = 0; i < 20; i++) costs.observe("a", 5);
    expect(costs.estimate("a")).toBe(5);
    expect(costs.estimate("b")).toBe(5);
    costs.observe("c", 1);
    costs.observe("c", 9);
    expect(costs.estimate("c")).toBeGreaterThanOrEqual(3);
    // A kind never priced takes its first estimate, until the org prices it.
    expect(costs.estimate("d", 40)).toBe(40);
    costs.observe("d", 12);
    expect(costs.estimate("d", 40)).toBe(12);
  });
});

describe("cost keys by query shape", () => {
  it("tell a count from ids from pages of features of about a given size", () => {
    const url = "https://services.arcgis.com/org/arcgis/rest/services/Parks/FeatureServer/0/query";
    const key = "https://services.arcgis.com/org/arcgis/rest/services/*/FeatureServer/:n/query";
    expect(costKey(url, { returnCountOnly: true })).toBe(`${key}#count`);
    expect(costKey(url, { returnIdsOnly: "true" })).toBe(`${key}#ids`);
    expect(costKey(url, { where: "OBJECTID >= 1 AND OBJECTID <= 1000" })).toBe(`${key}#features-1024`);
    expect(costKey(url, { resultRecordCount: 2000, returnGeometry: false })).toBe(
      `${key}#features-2048-nogeometry`,
    );
    expect(costKey(url.replace("/query", ""), { f: "json" })).toBe(key.replace("/query", ""));
    expect(costKey(url, { outStatistics: '[{"statisticType":"count"}]' })).toBe(`${key}#statistics`);
  });

  it("price a kind never priced from what it asks: pages by size, geometry dearer, counts and ids cheap", () => {
    const url = "https://h/o/arcgis/rest/services/Parks/FeatureServer/0/query";
    const page = (records: number, returnGeometry: boolean) =>
      firstCostEstimate(url, { where: `OBJECTID >= 1 AND OBJECTID <= ${records}`, returnGeometry }) ?? 0;
    const count = firstCostEstimate(url, { where: "1=1", returnCountOnly: true }) ?? 0;
    const ids =
      firstCostEstimate(url, { where: "OBJECTID >= 1 AND OBJECTID <= 1000", returnIdsOnly: true }) ?? 0;
    expect(count).toBeGreaterThanOrEqual(1);
    expect(ids).toBeGreaterThanOrEqual(count);
    expect(page(1_000, false)).toBeGreaterThan(ids);
    expect(page(1_000, true)).toBeGreaterThan(page(1_000, false));
    expect(page(2_000, true)).toBeGreaterThan(page(1_000, true));
    // A page that does not say its size is taken as a large one.
    expect(firstCostEstimate(url, { where: "1=1" })).toBeGreaterThan(page(1_000, true));
    expect(firstCostEstimate(url, { outStatistics: "[]" })).toBeGreaterThan(count);
    // Nothing in other requests' parameters tells what they cost.
    expect(firstCostEstimate(url.replace("/query", ""), { f: "json" })).toBeUndefined();
    expect(firstCostEstimate(`${url.replace("/query", "")}/3/attachments/1`, {})).toBeUndefined();
  });
});
