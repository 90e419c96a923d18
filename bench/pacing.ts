import { randomUUID } from "node:crypto";
import { createOrgGovernor, GOVERNOR_TABLE } from "../src/core/arcgis/governor/index.js";
import { openAppTable } from "../src/core/tables/table-client.js";
import {
  loggingFetch,
  pageLayer,
  portalClient,
  sampleUsage,
  startMeteredSim,
} from "../test/governor/harness.js";
import { startAzurite } from "../tools/azurite.js";
import type { BenchSection } from "./types.js";

/**
 * Issue #10: a paced backup workload against the simulated org meter, next to the same
 * workload unpaced. The workload needs 4× the org's budget; the paced run should take close to
 * the floor `units / (share × budget)` windows, with no 429 and with other users untouched,
 * while the unpaced one trips the lockout. The meter's minute is shrunk (see harness.ts) so the
 * run takes seconds, not minutes; everything scales with it.
 */
export const benchPacing: BenchSection = async ({ quick }) => {
  const windowMs = quick ? 1_000 : 5_000;
  const budget = quick ? 90 : 300;
  const share = 0.5;
  const othersShare = 0.2;
  const pageSize = 100; // 3 units a page without geometry
  const features = Math.ceil((4 * budget) / 3) * pageSize;
  const concurrency = 8;
  const azurite = await startAzurite();
  try {
    const table = await openAppTable({ connectionString: azurite.connectionString }, GOVERNOR_TABLE, () => {
      throw new Error("a connection string needs no credential");
    });
    const run = async (paced: boolean) => {
      const metered = await startMeteredSim({ features, budget, coolOffMs: windowMs, windowMs });
      try {
        const governor = paced
          ? createOrgGovernor({
              table,
              orgKey: `bench-${randomUUID()}`,
              budgetShare: share,
              windowMs,
              coolOffMs: windowMs,
            })
          : undefined;
        const { fetch, log } = loggingFetch((url, ms) => governor?.onThrottled(url, ms));
        const client = portalClient(metered, {
          ...(governor ? { pacer: governor } : {}),
          fetch,
          maxRetries: 5,
        });
        const others = metered.sim.otherUsersLoad({
          unitsPerMinute: (othersShare * budget * 60_000) / windowMs,
        });
        const usage = sampleUsage(metered.sim);
        let failedPages = 0;
        const started = performance.now();
        const read = await pageLayer(client, metered.layerUrl, {
          features,
          pageSize,
          concurrency,
          onError: () => failedPages++,
        });
        const wallMs = performance.now() - started;
        const { peak } = usage.stop();
        others.stop();
        const meter = metered.sim.requestUnits();
        return {
          wallMs,
          read,
          failedPages,
          units: log.spends.reduce((sum, spend) => sum + spend.units, 0),
          throttled: log.throttled,
          ourPeak: log.peak(windowMs),
          orgPeak: peak,
          lockouts: meter.lockouts,
          lockedMs: meter.lockedMs,
          othersThrottled: others.results().throttled,
          budgetWaitMs: governor?.stats().budgetWaitMs ?? 0,
        };
      } finally {
        await metered.sim.close();
      }
    };
    const paced = await run(true);
    const unpaced = await run(false);
    const needed = Math.ceil(features / pageSize) * 3;
    const boundMs = (needed / (share * budget)) * windowMs;
    return {
      name: "pacing",
      metrics: {
        windowMs,
        budgetPerWindow: budget,
        share,
        othersShare,
        unitsNeeded: needed,
        boundMs: Math.round(boundMs),
        pacedWallMs: Math.round(paced.wallMs),
        pacedUnits: paced.units,
        pacedFeatures: `${paced.read}/${features}`,
        paced429s: paced.throttled,
        pacedLockouts: paced.lockouts,
        pacedOurPeakPerWindow: paced.ourPeak,
        pacedOrgPeakPerWindow: paced.orgPeak,
        pacedOthersThrottled: paced.othersThrottled,
        pacedBudgetWaitMsSummed: Math.round(paced.budgetWaitMs),
        unpacedWallMs: Math.round(unpaced.wallMs),
        unpacedFeatures: `${unpaced.read}/${features}`,
        unpacedFailedPages: unpaced.failedPages,
        unpaced429s: unpaced.throttled,
        unpacedLockouts: unpaced.lockouts,
        unpacedLockedMs: unpaced.lockedMs,
        unpacedOthersThrottled: unpaced.othersThrottled,
      },
      ratios: [
        {
          name: "paced: bound / wall time",
          value: boundMs / paced.wallMs,
          target: 0.8,
          higherIsBetter: true,
        },
        {
          name: "paced: our peak usage / (share × budget)",
          value: paced.ourPeak / (share * budget),
          target: 1,
          higherIsBetter: false,
        },
        { name: "unpaced: time locked / wall time", value: unpaced.lockedMs / unpaced.wallMs },
      ],
    };
  } finally {
    await azurite.stop();
  }
};
