import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { BACKUP_ORCHESTRATOR } from "../../src/core/backup/backup-service.js";
import { newRunId } from "../../src/core/backup/layout.js";
import type { Manifest } from "../../src/core/backup/manifest.js";
import { newRunRecord } from "../../src/core/backup/runs.js";
import { getServices } from "../../src/core/services.js";
import { poll } from "../local-host/helpers.js";
import { type AppHarness, startAppHarness } from "../support/app-harness.js";

// However an orchestration ends — its run fails, it is terminated, it crashes before it can
// record anything, or it is cancelled with batches in flight — its run record ends too, with
// counts that add up, and nothing of the run goes on afterwards.

let app: AppHarness;

beforeAll(async () => {
  // 45 items: one chunk of five batches, which run side by side.
  const items = { webMap: 12, webApp: 10, pdf: 10, csv: 10, featureService: 3 };
  app = await startAppHarness({ sim: { size: "tiny", seed: 23, overrides: { items } } });
});

afterEach(() => {
  app.sim.setFaults([]);
});

afterAll(async () => {
  await app?.close();
});

/** Longer than any bounded wait below: work that waits for it was not stopped. */
const STALL_MS = 60_000;
const DATA_ROUTE = "sharing/content/items/:id/data";

/** The item data request after the first `after` ones answers only after a minute. */
function stallOneDataRequest(after: number): void {
  app.sim.stats.reset();
  app.sim.setFaults([
    { match: "sharing/content/items/*/data", action: "latency", latencyMs: STALL_MS, after, times: 1 },
  ]);
}

async function stalledRequestInFlight(after: number): Promise<void> {
  await poll(() => app.sim.stats.count(DATA_ROUTE) > after || undefined);
}

async function newIdentity(): Promise<{ id: string; container: string }> {
  const created = await app.createIdentity();
  expect(created.status, created.text).toBe(201);
  return { id: created.body.id, container: created.body.storage.container };
}

async function startBackup(identityId: string): Promise<string> {
  const started = await app.call("POST", `/api/identities/${identityId}/backups`, {});
  expect(started.status, started.text).toBe(202);
  return started.body.runId;
}

// biome-ignore lint/suspicious/noExplicitAny: API answers are free-form JSON in tests
async function getJson(route: string): Promise<any> {
  const response = await app.call("GET", route);
  expect(response.status, response.text).toBe(200);
  return response.body;
}

const getRun = (runId: string) => getJson(`/api/backups/${runId}`);

/** The backup run (or restore) at `route` once it is no longer running. */
// biome-ignore lint/suspicious/noExplicitAny: API answers are free-form JSON in tests
async function endOf(route: string): Promise<any> {
  return poll(
    async () => {
      const run = await getJson(route);
      return run.status === "running" ? undefined : run;
    },
    { timeoutMs: 20_000, intervalMs: 100 },
  );
}

const ended = (runId: string) => endOf(`/api/backups/${runId}`);

async function readManifest(identity: { id: string; container: string }, runId: string): Promise<Manifest> {
  const blob = (await app.container(identity.container)).getBlobClient(
    `${identity.id}/runs/${runId}/manifest.json`,
  );
  return JSON.parse((await blob.downloadToBuffer()).toString("utf8")) as Manifest;
}

/** `<itemId>/<version>` of every item version whose completion marker is in the container. */
async function completedVersions(identity: { id: string; container: string }): Promise<string[]> {
  const versions: string[] = [];
  const container = await app.container(identity.container);
  for await (const blob of container.listBlobsFlat({ prefix: `${identity.id}/items/` })) {
    const [, , itemId, version, file] = blob.name.split("/");
    if (file === "_complete.json") versions.push(`${itemId}/${version}`);
  }
  return versions.sort();
}

async function terminate(instanceId: string, reason: string): Promise<void> {
  const url = `${app.host.baseUrl}/runtime/webhooks/durabletask/instances/${instanceId}/terminate`;
  const response = await fetch(`${url}?reason=${encodeURIComponent(reason)}`, { method: "POST" });
  expect(response.status).toBe(202);
}

async function chunkEnded(runId: string): Promise<true> {
  return poll(
    async () => (await app.host.getStatus(`${runId}-chunk-0`))?.runtimeStatus === "Completed" || undefined,
    { timeoutMs: 20_000, intervalMs: 100 },
  );
}

describe("a run ends whenever its orchestration ends", () => {
  test("cancelled with batches in flight: they stop at once, counts add up, nothing is exported after", async () => {
    const identity = await newIdentity();
    stallOneDataRequest(20);
    const runId = await startBackup(identity.id);

    // Progress moves as batches end, before the run's one chunk has.
    const early = await poll(async () => {
      const progress = (await getRun(runId)).progress;
      return progress?.itemsDone > 0 ? progress : undefined;
    });
    expect(early.chunksDone).toBe(0);
    expect(early.itemsPerSecond).toBeGreaterThan(0);

    await stalledRequestInFlight(20);
    const shown = (await getRun(runId)).progress;
    const cancel = await app.call("DELETE", `/api/backups/${runId}`);
    expect(cancel.status, cancel.text).toBe(202);
    expect((await getRun(runId)).progress?.cancelRequested).toBe(true);

    // Ends long before the stalled download would have: it was aborted.
    const run = await ended(runId);
    expect(run.status).toBe("cancelled");
    const manifest = await readManifest(identity, runId);
    expect(manifest.status).toBe("cancelled");
    expect(manifest.totals.items).toBeLessThan(app.sim.model.itemCount());
    expect(run).toMatchObject({
      itemsExported: manifest.totals.exported,
      itemsUnchanged: manifest.totals.unchanged,
      itemsFailed: manifest.totals.failed,
      bytes: manifest.totals.bytes,
      traffic: manifest.traffic,
    });
    expect(manifest.totals.failed).toBe(0);
    // Never less than the progress shown before the cancel.
    expect(manifest.totals.exported + manifest.totals.unchanged).toBeGreaterThanOrEqual(shown.itemsDone);
    expect(run.traffic.requests).toBeGreaterThanOrEqual(shown.requests);

    // Nothing of the run was still going when it ended: its chunk was over, and every completed
    // item version in the container is one the manifest lists as exported.
    expect((await app.host.getStatus(`${runId}-chunk-0`))?.runtimeStatus).toBe("Completed");
    const exported = manifest.items
      .filter((i) => i.status === "exported")
      .map((i) => `${i.itemId}/${i.version}`);
    expect(await completedVersions(identity)).toEqual(exported.sort());
    expect((await app.call("DELETE", `/api/backups/${runId}`)).status).toBe(409);
  });

  test("terminated: the run ends failed with the reason, and its batches in flight stop", async () => {
    const identity = await newIdentity();
    stallOneDataRequest(5);
    const runId = await startBackup(identity.id);
    await stalledRequestInFlight(5);

    await terminate(runId, "stopped by the operator");
    const run = await ended(runId);
    expect(run).toMatchObject({
      status: "failed",
      error: {
        code: "ERR_ORCHESTRATION_TERMINATED",
        message: expect.stringContaining("stopped by the operator"),
      },
    });
    // The chunk's batches read the ended record and abort the stalled download.
    await chunkEnded(runId);
    const listed = await app.call("GET", `/api/identities/${identity.id}/backups`);
    expect(listed.body.runs[0]).toMatchObject({ runId, status: "failed" });
    expect((await app.call("DELETE", `/api/backups/${runId}`)).status).toBe(409);
  });

  test("failed: an identity deleted mid-run ends its run failed with the reason", async () => {
    const identity = await newIdentity();
    const runId = await startBackup(identity.id);
    expect((await app.call("DELETE", `/api/identities/${identity.id}`)).status).toBe(204);

    // The manifest cannot reach the identity's storage now (the inventory may have got further or not).
    const run = await ended(runId);
    expect(run).toMatchObject({
      status: "failed",
      error: { code: expect.stringMatching(/^ERR_/), message: expect.stringMatching(/\S/) },
    });
    expect((await app.host.waitForInstance(runId)).runtimeStatus).toBe("Completed");
  });

  test("crashed before recording anything: the run is ended failed once, and the next backup starts", async () => {
    const identity = await newIdentity();
    const { runs } = await getServices();
    const runId = newRunId("b");
    await runs.create(newRunRecord({ runId, identityId: identity.id, name: "crashes", trigger: "manual" }));
    expect(await runs.acquireLock(identity.id, runId)).toBeUndefined();
    // Input the orchestrator refuses: it throws before its first step, and Durable marks it Failed.
    await app.host.startOrchestration(BACKUP_ORCHESTRATOR, { runId }, runId);
    expect((await app.host.waitForInstance(runId)).runtimeStatus).toBe("Failed");

    const run = await getRun(runId);
    expect(run).toMatchObject({
      status: "failed",
      error: { code: "ERR_ORCHESTRATION_FAILED", message: expect.stringContaining("invalid input") },
    });
    expect(await getRun(runId)).toEqual(run);
    expect((await app.call("DELETE", `/api/backups/${runId}`)).status).toBe(409);

    const next = await startBackup(identity.id);
    expect((await ended(next)).status).toBe("completed");
  });

  test("a terminated restore ends failed with the reason", async () => {
    const identity = await newIdentity();
    const runId = await startBackup(identity.id);
    expect((await ended(runId)).status).toBe("completed");
    const map = [...app.sim.model.items()].find((i) => i.type === "Web Map")!;
    app.sim.stats.reset();
    app.sim.setFaults([{ match: "**/addItem", action: "latency", latencyMs: 5_000, times: 1 }]);
    const started = await app.call("POST", `/api/identities/${identity.id}/restores`, {
      runId,
      itemIds: [map.id],
      target: { mode: "new" },
    });
    expect(started.status, started.text).toBe(202);
    const restoreId = started.body.restoreId as string;
    await poll(() => app.sim.stats.count(/addItem$/) > 0 || undefined);

    await terminate(restoreId, "stopped by the operator");
    const restore = await endOf(`/api/restores/${restoreId}`);
    expect(restore).toMatchObject({
      status: "failed",
      error: {
        code: "ERR_ORCHESTRATION_TERMINATED",
        message: expect.stringContaining("stopped by the operator"),
      },
    });
    const listed = await app.call("GET", `/api/identities/${identity.id}/restores`);
    expect(listed.body.restores[0]).toMatchObject({ restoreId, status: "failed" });
  });
});
