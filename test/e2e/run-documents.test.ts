import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { newRunId } from "../../src/core/backup/layout.js";
import { newRunRecord, type RunRecord } from "../../src/core/backup/runs.js";
import { newRestoreId, type RestoreRecord } from "../../src/core/restore/model.js";
import { getRestoreServices } from "../../src/core/restore/restore-services.js";
import { getServices } from "../../src/core/services.js";
import { identityFor, readBlob, runRestore } from "../restore/support.js";
import { type AppHarness, startAppHarness } from "../support/app-harness.js";

// GET /api/backups/{runId}/manifest and GET /api/restores/{restoreId}/report: what is in Blob,
// byte for byte, or a JSON 404 that says why.

let app: AppHarness;
let identity: { id: string; container: string };
let runId: string;

beforeAll(async () => {
  app = await startAppHarness({ sim: { size: "tiny", seed: 11 } });
  identity = await identityFor(app, app.sim);
  const started = await app.call("POST", `/api/identities/${identity.id}/backups`);
  expect(started.status, started.text).toBe(202);
  runId = started.body.runId as string;
  await app.host.waitForInstance(runId, { timeoutMs: 60_000 });
});

afterAll(async () => {
  await app?.close();
});

async function expectSameAsBlob(route: string, blob: string) {
  const response = await app.call("GET", route);
  expect(response.status, response.text).toBe(200);
  expect(response.headers.get("content-type")).toMatch(/^application\/json/);
  const stored = await readBlob(app, identity, blob);
  expect(response.headers.get("content-length")).toBe(String(stored.length));
  expect(response.text).toBe(stored.toString("utf8"));
  return response.body;
}

async function expect404(route: string, code: string, message: RegExp) {
  const response = await app.call("GET", route);
  expect(response.status, route).toBe(404);
  expect(response.headers.get("content-type")).toMatch(/^application\/json/);
  expect(response.body.error.code).toBe(code);
  expect(response.body.error.message).toMatch(message);
}

/** A run record written as the backup writes it, for states a real run passes through too fast. */
async function backupRecord(status: RunRecord["status"]): Promise<string> {
  const { runs } = await getServices();
  const id = newRunId("b");
  await runs.create(
    newRunRecord({ runId: id, identityId: identity.id, name: "record only", trigger: "manual", status }),
  );
  return id;
}

describe("a backup run's manifest", () => {
  test("streams the manifest blob as it is stored", async () => {
    const manifest = await expectSameAsBlob(`/api/backups/${runId}/manifest`, `runs/${runId}/manifest.json`);
    expect(manifest.runId).toBe(runId);
    expect(manifest.items.length).toBe(app.sim.model.itemCount());
  });

  test("404 for an unknown run, a run still running and a run that ended without one", async () => {
    await expect404(`/api/backups/${newRunId("b")}/manifest`, "ERR_NOT_FOUND", /not found/);
    await expect404("/api/backups/not-a-run/manifest", "ERR_NOT_FOUND", /not found/);
    await expect404(`/api/backups/${newRestoreId()}/manifest`, "ERR_NOT_FOUND", /not found/);
    await expect404(
      `/api/backups/${await backupRecord("running")}/manifest`,
      "ERR_STILL_RUNNING",
      /still running: its manifest is written when it ends/,
    );
    await expect404(
      `/api/backups/${await backupRecord("failed")}/manifest`,
      "ERR_NOT_FOUND",
      /has no manifest \(it ended failed before writing one\)/,
    );
  });
});

describe("a restore's report", () => {
  test("streams the report blob as it is stored", async () => {
    const manifest = await (await app.call("GET", `/api/backups/${runId}/manifest`)).body;
    const csv = manifest.items.find((i: { type: string }) => i.type === "CSV");
    const { restoreId, record } = await runRestore(app, identity.id, {
      runId,
      itemIds: [csv.itemId],
      target: { mode: "new" },
    });
    const report = await expectSameAsBlob(`/api/restores/${restoreId}/report`, record.reportBlob as string);
    expect(report.restoreId).toBe(restoreId);
    expect(report.items.map((i: { itemId: string }) => i.itemId)).toEqual([csv.itemId]);
  });

  test("404 for an unknown restore and a restore still running", async () => {
    await expect404(`/api/restores/${newRestoreId()}/report`, "ERR_NOT_FOUND", /not found/);
    await expect404(`/api/restores/${runId}/report`, "ERR_NOT_FOUND", /not found/);
    const { store } = await getRestoreServices();
    const running: RestoreRecord = {
      restoreId: newRestoreId(),
      kind: "restore",
      identityId: identity.id,
      runId,
      target: { identityId: identity.id, mode: "new" },
      status: "running",
      startedAt: new Date().toISOString(),
      itemsTotal: 1,
      itemsRestored: 0,
      itemsFailed: 0,
      itemsSkipped: 0,
    };
    await store.create(running);
    await expect404(
      `/api/restores/${running.restoreId}/report`,
      "ERR_STILL_RUNNING",
      /still running: its report is written when it ends/,
    );
  });
});
