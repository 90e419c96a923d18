import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { Manifest } from "../../src/core/backup/manifest.js";
import type { FaultRule } from "../portal-sim/faults.js";
import { type AppHarness, startAppHarness } from "../support/app-harness.js";

// An outage longer than a request's retries (here about half a second of backoff) pauses the
// batches that meet it; they run again after OUTAGE_PAUSE_SECONDS, for at most OUTAGE_MAX_SECONDS.

let app: AppHarness;

beforeAll(async () => {
  app = await startAppHarness({
    sim: { size: "tiny", seed: 13, tokenTtlSeconds: 3600 },
    env: { PORTAL_RETRY_BASE_DELAY_MS: "20", OUTAGE_PAUSE_SECONDS: "1", OUTAGE_MAX_SECONDS: "8" },
  });
});

afterAll(async () => {
  await app?.close();
});

/** Every request of the export (item files, services) fails with 503; the inventory's do not. */
function exportOutage(extra: Partial<FaultRule> = {}): FaultRule[] {
  return [{ match: /^(sharing\/content\/items|services)\//, action: "status", status: 503, ...extra }];
}

async function backup(): Promise<{ run: Record<string, unknown>; manifest: Manifest; runId: string }> {
  const created = await app.createIdentity();
  const identityId = created.body.id as string;
  const started = await app.call("POST", `/api/identities/${identityId}/backups`, {});
  expect(started.status).toBe(202);
  const runId = started.body.runId as string;
  await app.host.waitForInstance(runId, { timeoutMs: 90_000 });
  const run = (await app.call("GET", `/api/backups/${runId}`)).body;
  const manifest = (await app.call("GET", `/api/backups/${runId}/manifest`)).body as Manifest;
  return { run, manifest, runId };
}

/** Durable timers the run's first chunk waited on: one per pause. */
async function pausesOf(runId: string): Promise<number> {
  const chunk = await app.host.getStatus(`${runId}-chunk-0`, { showHistory: true });
  const events = (chunk?.historyEvents ?? []) as Array<{ EventType: string }>;
  return events.filter((event) => event.EventType === "TimerCreated").length;
}

describe("a portal outage during a backup", () => {
  test("a short one pauses the batches instead of failing their items: every item ends exported", {
    timeout: 120_000,
  }, async () => {
    app.sim.setFaults(exportOutage({ forMs: 2_000 }));
    try {
      const { run, manifest, runId } = await backup();
      expect(run.status, JSON.stringify(manifest.failures)).toBe("completed");
      expect(manifest.failures).toEqual([]);
      expect(manifest.totals.failed).toBe(0);
      // Exported by this run, not "unchanged": what a paused attempt finished was carried over.
      expect(manifest.totals.exported).toBe([...app.sim.model.items()].length);
      expect(await pausesOf(runId)).toBeGreaterThan(0);
    } finally {
      app.sim.setFaults([]);
    }
  });

  test("one that outlasts OUTAGE_MAX_SECONDS fails the items it kept from, with ERR_OUTAGE", {
    timeout: 120_000,
  }, async () => {
    app.sim.setFaults(exportOutage());
    try {
      const { run, manifest, runId } = await backup();
      expect(run.status).toBe("completed-with-failures");
      expect(manifest.totals.failed).toBe(manifest.totals.items);
      expect(new Set(manifest.failures.map((failure) => failure.code))).toEqual(new Set(["ERR_OUTAGE"]));
      expect(manifest.failures[0]?.message).toContain("stayed unreachable");
      expect(await pausesOf(runId)).toBeGreaterThan(0);
    } finally {
      app.sim.setFaults([]);
    }
  });
});
