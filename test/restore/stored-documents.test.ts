import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  inventoryChunkName,
  itemVersionPrefix,
  manifestName,
  newRunId,
  restorePlanName,
  restoreReportName,
  VERSION_FILES,
} from "../../src/core/backup/layout.js";
import type { Manifest } from "../../src/core/backup/manifest.js";
import { newRunRecord, type RunRecord } from "../../src/core/backup/runs.js";
import { silentLogger } from "../../src/core/log.js";
import { newRestoreRecord, type RestorePlan } from "../../src/core/restore/model.js";
import { RestoreRunner } from "../../src/core/restore/restore-runner.js";
import { getRestoreServices } from "../../src/core/restore/restore-services.js";
import { getServices } from "../../src/core/services.js";
import { type AppHarness, startAppHarness } from "../support/app-harness.js";
import { identityFor, readBlob, readManifest, runRestore } from "./support.js";

// Stored documents that do not match their schema — a manifest, an item's item.json, a restore
// plan and report, an inventory line — fail their item or their run with
// ERR_STORED_DOCUMENT_INVALID naming the blob and the field, as the API shows it.

const INVALID = "ERR_STORED_DOCUMENT_INVALID";
let app: AppHarness;
let identity: { id: string; container: string };
let manifest: Manifest;

beforeAll(async () => {
  app = await startAppHarness({ sim: { size: "tiny", seed: 23 } });
  identity = await identityFor(app, app.sim);
  const started = await app.call("POST", `/api/identities/${identity.id}/backups`);
  expect(started.status, started.text).toBe(202);
  await app.host.waitForInstance(started.body.runId, { timeoutMs: 60_000 });
  manifest = await readManifest(app, identity, started.body.runId);
});

afterAll(async () => {
  await app?.close();
});

async function putBlob(relative: string, content: string | Buffer): Promise<void> {
  const blob = (await app.container(identity.container)).getBlockBlobClient(`${identity.id}/${relative}`);
  await blob.uploadData(Buffer.from(content));
}

/** Another run of the identity, recorded as `status`, whose manifest is `document`. */
async function runWithManifest(
  document: unknown,
  status: RunRecord["status"] = "completed",
): Promise<string> {
  const runId = newRunId("b");
  const { runs } = await getServices();
  await runs.create(
    newRunRecord({ runId, identityId: identity.id, name: "stored documents", trigger: "manual", status }),
  );
  if (document !== undefined) await putBlob(manifestName(runId), JSON.stringify(document));
  return runId;
}

const copyOf = (value: Manifest): Manifest => JSON.parse(JSON.stringify(value)) as Manifest;
const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

describe("documents that do not match their schema", () => {
  test("a damaged manifest: the restore is refused with the blob and the field", async () => {
    const damaged = copyOf(manifest) as unknown as { items: Array<{ files: Array<{ sha256: unknown }> }> };
    const item = damaged.items.findIndex((i) => i.files.length > 0);
    (damaged.items[item]?.files[0] as { sha256: unknown }).sha256 = 42;
    const runId = await runWithManifest(damaged);
    const response = await app.call("POST", `/api/identities/${identity.id}/restores`, {
      runId,
      target: { mode: "new" },
      dryRun: true,
    });
    expect(response.status, response.text).toBe(422);
    expect(response.body.error).toEqual({
      code: INVALID,
      message: `${manifestName(runId)}: items.${item}.files.0.sha256: expected a string, got a number`,
    });
  });

  test("an item.json of another schema (its hash intact): that item is skipped with the reason, the rest go on", async () => {
    const copy = copyOf(manifest);
    const map = copy.items.find((i) => i.type === "Web Map" && i.status !== "failed")!;
    const csv = copy.items.find((i) => i.type === "CSV" && i.status !== "failed")!;
    const itemFile = map.files.find((f) => f.path === VERSION_FILES.item)!;
    const original = JSON.parse((await readBlob(app, identity, itemFile.blob)).toString("utf8"));
    const older = Buffer.from(JSON.stringify({ ...original, title: 42 }));
    const blob = `${itemVersionPrefix(map.itemId, `${map.version}-older`)}${VERSION_FILES.item}`;
    await putBlob(blob, older);
    Object.assign(itemFile, { blob, size: older.length, sha256: sha256(older) });
    const runId = await runWithManifest(copy);
    const reason = { code: INVALID, message: `${blob}: title: expected a string, got a number` };

    const dryRun = await app.call("POST", `/api/identities/${identity.id}/restores`, {
      runId,
      itemIds: [map.itemId, csv.itemId],
      target: { mode: "new" },
      dryRun: true,
    });
    expect(dryRun.status, dryRun.text).toBe(200);
    const planned = (dryRun.body.plan as RestorePlan).items.find((i) => i.itemId === map.itemId);
    expect(planned).toMatchObject({ action: "skip", reason });

    const { report, record } = await runRestore(app, identity.id, {
      runId,
      itemIds: [map.itemId, csv.itemId],
      target: { mode: "new" },
    });
    expect(report.status, JSON.stringify(record.error)).toBe("completed-with-failures");
    expect(report.items.find((i) => i.itemId === map.itemId)).toMatchObject({
      status: "skipped",
      error: reason,
    });
    expect(report.items.find((i) => i.itemId === csv.itemId)?.status).toBe("restored");
  });

  test("a damaged plan fails its restore with the blob and the field; a damaged report is answered 422", async () => {
    const services = await getServices();
    const { store } = await getRestoreServices();
    const runner = () =>
      new RestoreRunner({
        identities: services.identities,
        store,
        portalFor: (i) => services.portalFor(i),
        openStore: (i) => services.openStore(i),
        log: silentLogger,
      });
    const csv = manifest.items.find((i) => i.type === "CSV" && i.status !== "failed")!;
    const record = newRestoreRecord({
      identityId: identity.id,
      runId: manifest.runId,
      target: { identityId: identity.id, mode: "new" },
      itemIds: [csv.itemId],
      itemsTotal: 1,
    });
    const { restoreId } = record;
    await store.create(record);
    const input = { restoreId, identityId: identity.id };
    await runner().plan(input);
    const plan = JSON.parse((await readBlob(app, identity, restorePlanName(restoreId))).toString("utf8"));
    await putBlob(restorePlanName(restoreId), JSON.stringify({ ...plan, batches: { 0: [] } }));
    const reason = `${restorePlanName(restoreId)}: batches: expected an array, got an object`;

    // Another process (a fresh runner) reads the plan from Blob.
    const later = runner();
    await expect(later.restoreBatch({ ...input, level: 0, batch: 0 })).rejects.toMatchObject({
      code: INVALID,
      message: reason,
    });
    expect(await later.failBatch({ ...input, level: 0, batch: 0, reason: "retries ran out" })).toMatchObject({
      restored: 0,
      failed: 0,
    });
    await later.finalize({ ...input, outcome: "completed" });

    const got = await app.call("GET", `/api/restores/${restoreId}`);
    expect(got.status, got.text).toBe(200);
    expect(got.body.status).toBe("failed");
    expect(got.body.error).toEqual({ code: INVALID, message: reason });
    expect(got.body.report.status).toBe("failed");

    await putBlob(restoreReportName(restoreId), JSON.stringify({ ...got.body.report, idMap: [] }));
    const damaged = await app.call("GET", `/api/restores/${restoreId}`);
    expect(damaged.status, damaged.text).toBe(422);
    expect(damaged.body.error).toEqual({
      code: INVALID,
      message: `${restoreReportName(restoreId)}: idMap: expected a record, got an array`,
    });
  });

  test("an inventory line of another schema fails its item only, and the manifest says why", async () => {
    const runId = await runWithManifest(undefined, "running");
    const chunk = (await readBlob(app, identity, inventoryChunkName(manifest.runId, 0))).toString("utf8");
    const lines = chunk.split("\n").filter((line) => line !== "");
    const damaged = { ...JSON.parse(lines[1] as string), modified: "yesterday" };
    lines[1] = JSON.stringify(damaged);
    await putBlob(inventoryChunkName(runId, 0), `${lines.join("\n")}\n`);

    const { runner } = await getServices();
    const counts = await runner.exportBatch({ runId, identityId: identity.id, chunkIndex: 0, batchIndex: 0 });
    expect(counts.failed).toBe(1);
    expect(counts.exported + counts.unchanged).toBe(Math.min(lines.length, 10) - 1);
    await runner.finalize({ runId, identityId: identity.id, outcome: "completed" });

    const response = await app.call("GET", `/api/backups/${runId}/manifest`);
    expect(response.status, response.text).toBe(200);
    expect(response.body.status).toBe("completed-with-failures");
    expect(response.body.failures).toEqual([
      {
        itemId: damaged.id,
        title: "",
        type: "",
        code: INVALID,
        message: `${inventoryChunkName(runId, 0)}: line 2: modified: expected a number, got a string`,
      },
    ]);
  });
});
