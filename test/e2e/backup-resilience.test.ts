import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { Manifest } from "../../src/core/backup/manifest.js";
import { type AppHarness, startAppHarness } from "../support/app-harness.js";

let app: AppHarness;

beforeAll(async () => {
  app = await startAppHarness({ sim: { size: "tiny", seed: 11, tokenTtlSeconds: 3600 } });
});

afterAll(async () => {
  await app?.close();
});

async function backupAndManifest(identityId: string, container: string) {
  const started = await app.call("POST", `/api/identities/${identityId}/backups`, {});
  expect(started.status).toBe(202);
  await app.host.waitForInstance(started.body.runId, { timeoutMs: 90_000 });
  const run = (await app.call("GET", `/api/backups/${started.body.runId}`)).body;
  const blob = (await app.container(container)).getBlobClient(
    `${identityId}/runs/${run.runId}/manifest.json`,
  );
  const manifest = JSON.parse((await blob.downloadToBuffer()).toString("utf8")) as Manifest;
  return { run, manifest };
}

describe("backups survive what real portals do", () => {
  test("429s (HTTP status or a 200 error body), 5xx, resets and truncated bodies are retried; nothing is lost", {
    timeout: 120_000,
  }, async () => {
    const created = await app.createIdentity();
    app.sim.setFaults([
      { match: "sharing/content/items/*", action: "status", status: 429, retryAfter: 1, every: 5 },
      { match: "sharing/content/items/*/data", action: "bodyError", status: 429, retryAfter: 1, every: 4 },
      { match: "sharing/content/items/*/resources", action: "status", status: 503, every: 3 },
      { match: "sharing/content/items/*/info/**", action: "reset", every: 6 },
      { match: "sharing/content/users/**", action: "truncate", times: 2 },
      { match: "storage/**", action: "status", status: 500, every: 4 },
    ]);
    try {
      const { run, manifest } = await backupAndManifest(created.body.id, created.body.storage.container);
      expect(run.status, JSON.stringify(manifest.failures)).toBe("completed");
      expect(manifest.totals.items).toBe([...app.sim.model.items()].length);
      expect(run.traffic.retries).toBeGreaterThan(0);
    } finally {
      app.sim.setFaults([]);
    }
  });

  test("a token that expires mid-run is refreshed and the run completes", async () => {
    const created = await app.createIdentity();
    // Every token expires after the inventory's first calls.
    app.sim.setFaults([]);
    app.sim.stats.reset();
    const started = await app.call("POST", `/api/identities/${created.body.id}/backups`, {});
    // Every token the org issued dies three times during the run.
    let expired = 0;
    const expiry = setInterval(() => {
      if (expired++ < 3) app.sim.expireTokens();
    }, 300);
    try {
      await app.host.waitForInstance(started.body.runId, { timeoutMs: 90_000 });
    } finally {
      clearInterval(expiry);
    }
    const run = (await app.call("GET", `/api/backups/${started.body.runId}`)).body;
    expect(run.status).toBe("completed");
    expect(run.itemsFailed).toBe(0);
    expect(app.sim.stats.count("sharing/generateToken")).toBeGreaterThan(1);
  });

  test("an item that keeps failing is recorded with its reason and the run goes on", async () => {
    const created = await app.createIdentity();
    const victim = [...app.sim.model.items()].find((i) => i.type === "Web Map")!;
    app.sim.setFaults([{ match: `**/content/items/${victim.id}/data`, action: "status", status: 403 }]);
    try {
      const { run, manifest } = await backupAndManifest(created.body.id, created.body.storage.container);
      expect(run.status).toBe("completed-with-failures");
      expect(manifest.failures).toEqual([
        expect.objectContaining({ itemId: victim.id, code: "ERR_PORTAL_FORBIDDEN" }),
      ]);
      expect(manifest.totals.exported).toBe(manifest.totals.items - 1);
    } finally {
      app.sim.setFaults([]);
    }
  });
});
