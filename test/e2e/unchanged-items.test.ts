import type { ContainerClient } from "@azure/storage-blob";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { Manifest } from "../../src/core/backup/manifest.js";
import { type AppHarness, startAppHarness } from "../support/app-harness.js";

// An unchanged item is recorded from the previous run's results, read back a blob at a time by
// the places the inventory noted. A result that is no longer where the previous run said (its
// results blob rewritten) is not trusted: that item goes through the export (which finds its
// version complete), never recorded with another item's files.

let app: AppHarness;

beforeAll(async () => {
  app = await startAppHarness({ sim: { size: "tiny", seed: 29 } });
});

afterAll(async () => {
  await app?.close();
});

async function runBackup(identityId: string) {
  const started = await app.call("POST", `/api/identities/${identityId}/backups`, {});
  expect(started.status, started.text).toBe(202);
  await app.host.waitForInstance(started.body.runId as string, { timeoutMs: 60_000 });
  return started.body.runId as string;
}

async function manifestOf(container: ContainerClient, identityId: string, runId: string) {
  const blob = container.getBlobClient(`${identityId}/runs/${runId}/manifest.json`);
  return JSON.parse((await blob.downloadToBuffer()).toString("utf8")) as Manifest;
}

describe("items found unchanged", () => {
  test("carry the previous run's files, also those whose previous result moved", async () => {
    const created = await app.createIdentity();
    const identityId = created.body.id as string;
    const container = await app.container(created.body.storage.container as string);
    const first = await runBackup(identityId);
    // Swap the first two results of one of the first run's results blobs.
    const prefix = `${identityId}/runs/${first}/results/`;
    let name = "";
    for await (const blob of container.listBlobsFlat({ prefix })) {
      name = blob.name;
      break;
    }
    const client = container.getBlockBlobClient(name);
    const results = JSON.parse((await client.downloadToBuffer()).toString("utf8")) as Array<{
      itemId: string;
    }>;
    expect(results.length).toBeGreaterThan(1);
    const moved = [results[0]?.itemId, results[1]?.itemId];
    [results[0], results[1]] = [results[1] as { itemId: string }, results[0] as { itemId: string }];
    const text = JSON.stringify(results);
    await client.upload(text, Buffer.byteLength(text));

    const second = await runBackup(identityId);
    const before = await manifestOf(container, identityId, first);
    const after = await manifestOf(container, identityId, second);
    const byId = new Map(before.items.map((item) => [item.itemId, item]));
    for (const item of after.items) {
      const was = byId.get(item.itemId);
      expect(item.files, item.itemId).toEqual(was?.files);
      // A moved one went through the export, which found its version complete: unchanged too.
      if (moved.includes(item.itemId)) expect(item.version, item.itemId).toBe(was?.version);
    }
    const unchanged = after.items.filter((item) => item.status === "unchanged").length;
    expect(unchanged).toBeGreaterThan(0);
    expect(after.totals.bytes).toBe(0);
  });
});
