import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { Manifest } from "../../src/core/backup/manifest.js";
import { mapWithConcurrency } from "../../src/core/concurrency.js";
import { newRestoreRecord } from "../../src/core/restore/model.js";
import type { BatchOutcome } from "../../src/core/restore/restore-runner.js";
import { getRestoreServices } from "../../src/core/restore/restore-services.js";
import { type PortalSim, startPortalSim } from "../portal-sim/index.js";
import { type AppHarness, startAppHarness } from "../support/app-harness.js";
import { backupWithFeatures, identityFor, runRestore } from "./support.js";

let app: AppHarness;
let source: { id: string; container: string };
let manifest: Manifest;

beforeAll(async () => {
  app = await startAppHarness({
    sim: { size: "tiny", seed: 41 },
    env: { PORTAL_RETRY_BASE_DELAY_MS: "20", OUTAGE_PAUSE_SECONDS: "1", OUTAGE_MAX_SECONDS: "60" },
  });
  source = await identityFor(app, app.sim);
  manifest = await backupWithFeatures(app, source);
});

afterAll(async () => {
  await app?.close();
});

/** Requests an org received, sign-ins aside (those go through the token provider's own client). */
const portalRequests = (org: PortalSim) => org.stats.count() - org.stats.count("sharing/generateToken");

describe("restore batches", () => {
  test("run four at a time, each counts its own traffic: their sum is what the target received", {
    timeout: 120_000,
  }, async () => {
    const target = await startPortalSim({ size: "empty", seed: 42 });
    try {
      const targetIdentity = await identityFor(app, target);
      const { runner, store } = await getRestoreServices();
      const record = newRestoreRecord({
        identityId: source.id,
        runId: manifest.runId,
        target: { identityId: targetIdentity.id, mode: "new" },
        itemsTotal: manifest.items.length,
      });
      await store.create(record);
      const { restoreId } = record;
      const input = { restoreId, identityId: source.id };
      const summary = await runner.plan(input);
      const before = portalRequests(target);
      const outcomes: BatchOutcome[] = [];
      for (const [level, batches] of summary.batchesPerLevel.entries()) {
        const indexes = Array.from({ length: batches }, (_, batch) => batch);
        // As the orchestration runs them: four batches of a level at once, in one process.
        outcomes.push(
          ...(await mapWithConcurrency(indexes, 4, (batch) =>
            runner.restoreBatch({ ...input, level, batch }),
          )),
        );
      }
      expect(outcomes.length).toBeGreaterThan(4);
      expect(outcomes.filter((outcome) => outcome.paused)).toEqual([]);
      const sum = outcomes.reduce((total, outcome) => total + outcome.requests, 0);
      expect(sum).toBe(portalRequests(target) - before);
      // Folders too, although the batches of a process share what they know of them.
      expect(target.stats.count("sharing/content/users/:u/createFolder")).toBeGreaterThan(0);
      expect(outcomes.reduce((total, outcome) => total + outcome.restored, 0)).toBe(summary.planned);
    } finally {
      await target.close();
    }
  });

  test("an outage of the target pauses its batches instead of failing their items", {
    timeout: 120_000,
  }, async () => {
    const target = await startPortalSim({ size: "empty", seed: 43 });
    try {
      const targetIdentity = await identityFor(app, target);
      // Writes and feature service calls fail for two seconds; the plan's reads do not.
      target.setFaults([
        {
          match: /^(sharing\/content\/users\/[^/]+\/|services\/)/,
          action: "status",
          status: 503,
          forMs: 2_000,
        },
      ]);
      const { report, restoreId } = await runRestore(app, source.id, {
        runId: manifest.runId,
        target: { identityId: targetIdentity.id, mode: "new" },
      });
      expect(report.failures.map((failure) => failure.code)).toEqual(["ERR_NOT_RESTORABLE"]);
      const restored = report.items.filter((item) => item.status === "restored");
      expect(restored).toHaveLength(manifest.items.length - 1);
      // Each item once: the paused batches ran again from their items' progress rows.
      expect([...target.model.items()]).toHaveLength(restored.length);
      const status = await app.host.getStatus(restoreId, { showHistory: true });
      const events = (status?.historyEvents ?? []) as Array<{ EventType: string }>;
      expect(events.filter((event) => event.EventType === "TimerCreated").length).toBeGreaterThan(0);
    } finally {
      await target.close();
    }
  });
});
