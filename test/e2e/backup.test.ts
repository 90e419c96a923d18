import { createHash } from "node:crypto";
import { rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { Manifest } from "../../src/core/backup/manifest.js";
import { type AppHarness, startAppHarness } from "../support/app-harness.js";

let app: AppHarness;

beforeAll(async () => {
  app = await startAppHarness({ sim: { size: "tiny", seed: 7 } });
});

afterAll(async () => {
  await app?.close();
});

const sha256 = (data: Buffer | string) => createHash("sha256").update(data).digest("hex");

async function runBackup(identityId: string, body?: unknown) {
  const started = await app.call("POST", `/api/identities/${identityId}/backups`, body);
  expect(started.status).toBe(202);
  const runId = started.body.runId as string;
  await app.host.waitForInstance(runId, { timeoutMs: 60_000 });
  const run = await app.call("GET", `/api/backups/${runId}`);
  return run.body;
}

async function readManifest(identityId: string, container: string, runId: string): Promise<Manifest> {
  const client = (await app.container(container)).getBlobClient(`${identityId}/runs/${runId}/manifest.json`);
  return JSON.parse((await client.downloadToBuffer()).toString("utf8")) as Manifest;
}

describe("a full backup through the local host", () => {
  test("captures every item of the org, hash for hash, and a second run exports nothing", async () => {
    const created = await app.createIdentity();
    expect(created.status).toBe(201);
    const identityId = created.body.id as string;
    const container = created.body.storage.container as string;

    const run = await runBackup(identityId);
    expect(run.status, JSON.stringify(run)).toBe("completed");
    const manifest = await readManifest(identityId, container, run.runId);
    const expected = [...app.sim.model.items()];
    expect(manifest.totals.items).toBe(expected.length);
    expect(manifest.totals.failed).toBe(0);
    expect(manifest.totals.exported).toBe(expected.length);

    const byId = new Map(manifest.items.map((i) => [i.itemId, i]));
    for (const item of expected) {
      const entry = byId.get(item.id);
      expect(entry, `${item.type} ${item.id}`).toBeDefined();
      expect(entry?.status).toBe("exported");
      const data = app.sim.model.itemDataBuffer(item.id);
      const dataFile = entry?.files.find((f) => f.kind === "data");
      if (data && data.length > 0) {
        expect(dataFile?.sha256, `data of ${item.type} ${item.id}`).toBe(sha256(data));
      } else {
        expect(dataFile).toBeUndefined();
      }
      const metadata = app.sim.model.metadata(item.id);
      expect(entry?.files.find((f) => f.kind === "metadata")?.sha256).toBe(
        metadata ? sha256(metadata) : undefined,
      );
      for (const resource of app.sim.model.resources(item.id)) {
        const file = entry?.files.find((f) => f.kind === "resource" && f.originalName === resource.resource);
        expect(file?.sha256, `resource ${resource.resource}`).toBe(
          sha256(app.sim.model.resourceBuffer(item.id, resource.resource) as Buffer),
        );
        // No resource name climbs out of its item's folder.
        expect(file?.path.startsWith("resources/")).toBe(true);
        expect(file?.path.split("/")).not.toContain("..");
      }
      expect(entry?.access).toBe(item.access === "shared" ? "shared" : item.access);
      // Hosted feature layers: every feature of every layer, counted; views point at their source.
      const hosted = item.type === "Feature Service" && item.typeKeywords.includes("Hosted Service");
      if (hosted && !item.typeKeywords.includes("View Service")) {
        const layerKeys = Object.keys(entry?.counts ?? {}).filter((k) => k.startsWith("features:"));
        expect(layerKeys.length, `layers of ${item.id}`).toBeGreaterThan(0);
        for (const key of layerKeys) {
          const layerId = Number(key.split(":")[1]);
          expect(entry?.counts?.[key]).toBe([...app.sim.model.features(item.id, layerId)].length);
          expect(entry?.files.some((f) => f.path === `features/${layerId}.ndjson`)).toBe(true);
        }
      } else if (hosted) {
        expect(entry?.files.some((f) => f.kind === "features")).toBe(false);
        expect(entry?.notes.join(" ")).toMatch(/view/i);
      }
    }

    const listed = await app.call("GET", `/api/identities/${identityId}/backups`);
    expect(listed.body.runs[0]).toMatchObject({ runId: run.runId, status: "completed" });

    // Nothing changed: every item is unchanged and no item data is downloaded again.
    app.sim.stats.reset();
    const second = await runBackup(identityId);
    expect(second.status).toBe("completed");
    expect(second.itemsUnchanged).toBe(expected.length);
    expect(second.itemsExported).toBe(0);
    expect(app.sim.stats.count("sharing/content/items/:id/data")).toBe(0);

    // One item edited and one layer's features edited: only those two are exported again.
    const target = expected.find((i) => i.type === "Web Map") ?? expected[0]!;
    app.sim.mutate.editItem(target.id, { title: "Edited title" });
    const layerItem = expected.find(
      (i) =>
        i.type === "Feature Service" &&
        i.typeKeywords.includes("Hosted Service") &&
        !i.typeKeywords.includes("View Service"),
    )!;
    app.sim.mutate.addFeatures(layerItem.id, 0, 3);
    const third = await runBackup(identityId);
    expect(third.itemsExported).toBe(2);
    expect(third.itemsUnchanged).toBe(expected.length - 2);
    const thirdManifest = await readManifest(identityId, container, third.runId);
    const layerEntry = thirdManifest.items.find((i) => i.itemId === layerItem.id);
    expect(layerEntry?.status).toBe("exported");
    expect(layerEntry?.counts?.["features:0"]).toBe([...app.sim.model.features(layerItem.id, 0)].length);
  });

  test("one backup at a time per identity, and cancel ends the run as cancelled with a manifest", async () => {
    const created = await app.createIdentity();
    const identityId = created.body.id as string;
    app.sim.setFaults([{ match: "sharing/content/items/**", action: "latency", latencyMs: 200 }]);
    const first = await app.call("POST", `/api/identities/${identityId}/backups`, {});
    expect(first.status).toBe(202);
    const second = await app.call("POST", `/api/identities/${identityId}/backups`, {});
    expect(second.status).toBe(409);
    const cancel = await app.call("DELETE", `/api/backups/${first.body.runId}`);
    expect(cancel.status).toBe(202);
    await app.host.waitForInstance(first.body.runId, { timeoutMs: 60_000 });
    app.sim.setFaults([]);
    const run = await app.call("GET", `/api/backups/${first.body.runId}`);
    expect(run.body.status).toBe("cancelled");
    const manifest = await readManifest(identityId, created.body.storage.container, first.body.runId);
    expect(manifest.status).toBe("cancelled");
  });

  test("a cache folder that is not writable fails the run with a clear error", async () => {
    // Inside CACHE_ROOT (the harness sets it to <workDir>/cache), as every cache folder must be.
    const cacheDirectory = path.join(app.workDir, "cache", "doomed-cache");
    const created = await app.createIdentity({ extra: { cacheDirectory } });
    expect(created.status).toBe(201);
    // The folder is replaced by a file after the identity was saved.
    await rm(cacheDirectory, { recursive: true, force: true });
    await writeFile(cacheDirectory, "not a folder");
    const run = await runBackup(created.body.id);
    expect(run.status).toBe("failed");
    expect(run.error).toMatchObject({
      code: "ERR_CACHE_NOT_WRITABLE",
      message: expect.stringMatching(/cache folder .* is not writable/),
    });
  });

  test("bad requests", async () => {
    expect(
      (await app.call("POST", "/api/identities/00000000-0000-4000-8000-000000000000/backups", {})).status,
    ).toBe(404);
    const created = await app.createIdentity();
    const bad = await app.call("POST", `/api/identities/${created.body.id}/backups`, {
      filter: { itemIds: ["x"] },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error.field).toBe("filter.itemIds.0");
    expect((await app.call("GET", "/api/backups/b-0000000000000-zzzzzz")).status).toBe(404);
  });
});
