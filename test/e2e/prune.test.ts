import { createHash } from "node:crypto";
import type { ContainerClient } from "@azure/storage-blob";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { Manifest } from "../../src/core/backup/manifest.js";
import { type AppHarness, startAppHarness } from "../support/app-harness.js";

// Retention end to end: files stored once per item (a new version reuses an unchanged file's
// blob), a prune that forgets runs, keeps a deleted item's last version, deletes only what no kept
// run names, and never runs beside a backup.

let app: AppHarness;

beforeAll(async () => {
  app = await startAppHarness({ sim: { size: "tiny", seed: 11 } });
});

afterAll(async () => {
  await app?.close();
});

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

async function startBackup(identityId: string) {
  const started = await app.call("POST", `/api/identities/${identityId}/backups`, {});
  expect(started.status, started.text).toBe(202);
  return started.body.runId as string;
}

async function runBackup(identityId: string) {
  const runId = await startBackup(identityId);
  await app.host.waitForInstance(runId, { timeoutMs: 60_000 });
  const run = await app.call("GET", `/api/backups/${runId}`);
  expect(run.body.status, run.text).toBe("completed");
  return runId;
}

async function manifestOf(container: ContainerClient, identityId: string, runId: string): Promise<Manifest> {
  const blob = container.getBlobClient(`${identityId}/runs/${runId}/manifest.json`);
  return JSON.parse((await blob.downloadToBuffer()).toString("utf8")) as Manifest;
}

/** Every blob a manifest names exists with the size and SHA-256 it records. */
async function expectRestorable(container: ContainerClient, identityId: string, manifest: Manifest) {
  for (const item of manifest.items) {
    for (const file of item.files) {
      const content = await container.getBlobClient(`${identityId}/${file.blob}`).downloadToBuffer();
      expect(content.length, file.blob).toBe(file.size);
      expect(sha256(content), file.blob).toBe(file.sha256);
    }
  }
}

async function blobNames(container: ContainerClient, prefix: string): Promise<string[]> {
  const names: string[] = [];
  for await (const blob of container.listBlobsFlat({ prefix })) names.push(blob.name);
  return names;
}

async function waitForPrune(pruneId: string) {
  for (let i = 0; i < 600; i++) {
    const prune = await app.call("GET", `/api/prunes/${pruneId}`);
    expect(prune.status, prune.text).toBe(200);
    if (prune.body.status !== "running") return prune.body;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`prune ${pruneId} did not end`);
}

function fileItemWithData() {
  const item = [...app.sim.model.items()].find(
    (candidate) => candidate.type === "PDF" && (app.sim.model.itemDataBuffer(candidate.id)?.length ?? 0) > 0,
  );
  if (!item) throw new Error("the org has no file item");
  return item;
}

describe("each file stored once per item", () => {
  test("a new version whose data did not change names the blob stored before and uploads nothing for it", async () => {
    const created = await app.createIdentity();
    const identityId = created.body.id as string;
    const container = await app.container(created.body.storage.container as string);
    const first = await runBackup(identityId);
    const item = fileItemWithData();
    app.sim.model.touch(app.sim.model.indexOf(item.id) as number);
    const second = await runBackup(identityId);

    const before = (await manifestOf(container, identityId, first)).items.find((i) => i.itemId === item.id);
    const after = (await manifestOf(container, identityId, second)).items.find((i) => i.itemId === item.id);
    expect(after?.status).toBe("exported");
    expect(after?.version).not.toBe(before?.version);
    const oldData = before?.files.find((f) => f.kind === "data");
    const newData = after?.files.find((f) => f.kind === "data");
    expect(newData).toMatchObject({ reused: true, blob: oldData?.blob, sha256: oldData?.sha256 });
    // Nothing of the data under the new version's folder; the item JSON (changed) is there.
    const newFolder = `${identityId}/${after?.versionPath}`;
    const stored = await blobNames(container, newFolder);
    expect(stored.some((name) => name.startsWith(`${newFolder}data/`))).toBe(false);
    expect(stored).toContain(`${newFolder}item.json`);
    // The run counts only what it uploaded.
    const run = (await app.call("GET", `/api/backups/${second}`)).body;
    expect(after?.bytes).toBe(after?.files.filter((f) => !f.reused).reduce((sum, f) => sum + f.size, 0));
    expect(run.bytes, JSON.stringify(run)).toBe(after?.bytes);
    await expectRestorable(container, identityId, await manifestOf(container, identityId, second));
  });
});

describe("prune", () => {
  test("forgets runs the policy does not keep, keeps a deleted item's last version, and every kept run still restores", async () => {
    const created = await app.createIdentity({ extra: { retention: { keepLast: 1 } } });
    expect(created.status, created.text).toBe(201);
    const identityId = created.body.id as string;
    const container = await app.container(created.body.storage.container as string);
    const items = [...app.sim.model.items()];
    const deleted = items.find((i) => i.type === "Dashboard") ?? (items[0] as (typeof items)[number]);
    const changed = fileItemWithData();

    const oldest = await runBackup(identityId);
    const middle = await runBackup(identityId);
    app.sim.model.deleteIndex(app.sim.model.indexOf(deleted.id) as number);
    app.sim.model.touch(app.sim.model.indexOf(changed.id) as number);
    const newest = await runBackup(identityId);
    const oldVersion = (await manifestOf(container, identityId, middle)).items.find(
      (i) => i.itemId === changed.id,
    );

    const preview = await app.call("POST", `/api/identities/${identityId}/prune`, { dryRun: true });
    expect(preview.status, preview.text).toBe(200);
    expect(preview.body.runs).toMatchObject({ kept: 1, trimmed: 1, forgotten: 1 });
    expect(preview.body.blobs.deleted).toBeGreaterThan(0);
    expect(preview.body.blobs.bytes).toBeGreaterThan(0);
    // A dry run changes nothing.
    expect((await app.call("GET", `/api/backups/${oldest}`)).status).toBe(200);

    const started = await app.call("POST", `/api/identities/${identityId}/prune`, {});
    expect(started.status, started.text).toBe(202);
    expect(started.headers.get("location")).toBe(`/api/prunes/${started.body.pruneId}`);
    const prune = await waitForPrune(started.body.pruneId as string);
    expect(prune.status, JSON.stringify(prune)).toBe("completed");
    expect(prune.counts).toMatchObject({ runsKept: 1, runsTrimmed: 1, runsForgotten: 1 });
    expect(prune.counts.blobsDeleted).toBe(preview.body.blobs.deleted);
    expect(prune.report.runs.map((r: { runId: string; action: string }) => [r.runId, r.action])).toEqual([
      [newest, "keep"],
      [middle, "trim"],
      [oldest, "forget"],
    ]);

    // The oldest run is gone, record and folder.
    expect((await app.call("GET", `/api/backups/${oldest}`)).status).toBe(404);
    expect(await blobNames(container, `${identityId}/runs/${oldest}/`)).toEqual([]);
    // The middle run now holds only the deleted item, and says until when.
    const trimmed = await manifestOf(container, identityId, middle);
    expect(trimmed.items.map((i) => i.itemId)).toEqual([deleted.id]);
    const listed = (await app.call("GET", `/api/identities/${identityId}/backups`)).body.runs as Array<{
      runId: string;
      retention: { keep: boolean; reasons: string[] };
    }>;
    expect(listed.find((r) => r.runId === middle)?.retention.reasons[0]).toMatch(
      /^holds 1 deleted item\(s\) until /,
    );
    // The changed item's old version is gone except for the files its new version reuses (the
    // data, metadata and thumbnail did not change; the item JSON and the marker did).
    const newVersion = (await manifestOf(container, identityId, newest)).items.find(
      (i) => i.itemId === changed.id,
    );
    const reused = (newVersion?.files ?? []).filter((f) => f.reused).map((f) => `${identityId}/${f.blob}`);
    expect(reused.length).toBeGreaterThan(0);
    expect(await blobNames(container, `${identityId}/${oldVersion?.versionPath}`)).toEqual(reused.sort());
    // Every kept run restores: each blob its manifest names is there with its hash.
    await expectRestorable(container, identityId, await manifestOf(container, identityId, newest));
    await expectRestorable(container, identityId, trimmed);
    const restore = await app.call("POST", `/api/identities/${identityId}/restores`, {
      runId: middle,
      itemIds: [deleted.id],
      target: { mode: "new" },
      dryRun: true,
    });
    expect(restore.status, restore.text).toBe(200);

    // Pruning again finds nothing more to delete.
    const again = await app.call("POST", `/api/identities/${identityId}/prune`, { dryRun: true });
    expect(again.body.blobs.deleted).toBe(0);
    expect(again.body.runs).toMatchObject({ kept: 2, trimmed: 0, forgotten: 0 });
  });

  test("a prune and a backup of one identity never run at the same time", async () => {
    const created = await app.createIdentity({ extra: { retention: { keepLast: 1 } } });
    const identityId = created.body.id as string;
    await runBackup(identityId);

    const backup = await startBackup(identityId);
    const refused = await app.call("POST", `/api/identities/${identityId}/prune`, {});
    expect(refused.status, refused.text).toBe(409);
    expect(refused.body.error.code).toBe("ERR_BACKUP_RUNNING");
    await app.host.waitForInstance(backup, { timeoutMs: 60_000 });

    const prune = await app.call("POST", `/api/identities/${identityId}/prune`, {});
    expect(prune.status, prune.text).toBe(202);
    const blocked = await app.call("POST", `/api/identities/${identityId}/backups`, {});
    expect(blocked.status, blocked.text).toBe(409);
    expect(blocked.body.error.code).toBe("ERR_PRUNE_RUNNING");
    expect((await waitForPrune(prune.body.pruneId as string)).status).toBe("completed");
    // Once the prune has ended, backups start again.
    await runBackup(identityId);
  });

  test("an identity without a policy has nothing to prune", async () => {
    const created = await app.createIdentity();
    const response = await app.call("POST", `/api/identities/${created.body.id}/prune`, { dryRun: true });
    expect(response.status, response.text).toBe(409);
    expect(response.body.error.code).toBe("ERR_NO_RETENTION_POLICY");
  });
});
