import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { BlobServiceClient, type ContainerClient } from "@azure/storage-blob";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { batchInputSchema } from "../../src/core/backup/activity-inputs.js";
import { readInventoryChunk } from "../../src/core/backup/inventory.js";
import {
  inventoryChunkName,
  manifestName,
  restorePlanName,
  restoreReportName,
} from "../../src/core/backup/layout.js";
import { type Manifest, readManifest } from "../../src/core/backup/manifest.js";
import { restorePlanSchema, restoreReportSchema } from "../../src/core/restore/model.js";
import { BlobBackupStore } from "../../src/core/storage/blob-backup-store.js";
import { StoredDocumentError } from "../../src/core/stored-document.js";
import { parseOrchestrationInput } from "../../src/functions/shared/activity-input.js";

// Stored documents are read back through their schemas: an older document of a known version
// still reads, anything else fails with ERR_STORED_DOCUMENT_INVALID naming the blob and field.

const IDENTITY = "00000000-0000-4000-8000-0000000000a1";
const FIXTURE = new URL("./fixtures/manifest-v1.json", import.meta.url);
let container: ContainerClient;
let store: BlobBackupStore;
let fixture: string;

beforeAll(async () => {
  container = BlobServiceClient.fromConnectionString(inject("azurite").connectionString).getContainerClient(
    `documents-${randomBytes(4).toString("hex")}`,
  );
  await container.create();
  store = new BlobBackupStore(container, IDENTITY);
  fixture = await readFile(FIXTURE, "utf8");
});

afterAll(async () => {
  await container?.delete().catch(() => undefined);
});

async function storeManifest(runId: string, manifest: unknown): Promise<void> {
  await store.uploadBuffer(manifestName(runId), Buffer.from(JSON.stringify(manifest)), "application/json");
}

describe("the manifest", () => {
  test("a manifest of schema version 1, as committed, reads back whole", async () => {
    const expected = JSON.parse(fixture) as Manifest;
    await store.uploadBuffer(manifestName(expected.runId), Buffer.from(fixture), "application/json");
    const manifest = await readManifest(store, expected.runId);
    expect(manifest).toEqual(expected);
    expect(manifest?.items.map((i) => i.status)).toEqual(["exported", "unchanged", "failed"]);
  });

  test("a damaged item names the blob, the item and the field", async () => {
    const manifest = JSON.parse(fixture);
    manifest.items[1].files[3].sha256 = 42;
    await storeManifest("b-0000000000001-damage", manifest);
    const error = await readManifest(store, "b-0000000000001-damage").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StoredDocumentError);
    expect(error).toMatchObject({
      code: "ERR_STORED_DOCUMENT_INVALID",
      message:
        "runs/b-0000000000001-damage/manifest.json: items.1.files.3.sha256: expected a string, got a number",
    });
  });

  test("a manifest of a version this app does not know says which version it is", async () => {
    await storeManifest("b-0000000000002-future", { ...JSON.parse(fixture), schemaVersion: 2 });
    await expect(readManifest(store, "b-0000000000002-future")).rejects.toThrow(
      "runs/b-0000000000002-future/manifest.json: schemaVersion: schema version 2 is not one this app reads (1)",
    );
  });

  test("no manifest is no error", async () => {
    expect(await readManifest(store, "b-0000000000003-absent")).toBeUndefined();
  });
});

describe("restore documents", () => {
  test("a report written before it carried a schema version reads as version 1", async () => {
    const report = {
      restoreId: "r-0000000000001-report",
      runId: "b-0000000000001-damage",
      identityId: IDENTITY,
      targetIdentityId: IDENTITY,
      mode: "new",
      status: "completed",
      startedAt: "2026-11-20T10:00:00.000Z",
      endedAt: "2026-11-20T10:01:00.000Z",
      totals: { items: 0, restored: 0, failed: 0, skipped: 0 },
      idMap: {},
      urlMap: {},
      items: [],
      failures: [],
      unchangedReferences: [],
      missingGroups: [],
      notSharedWith: [],
    };
    const name = restoreReportName(report.restoreId);
    await store.uploadJson(name, report);
    expect(await store.readJson(name, restoreReportSchema)).toEqual({ schemaVersion: 1, ...report });
  });

  test("a plan whose levels are not lists names the field", async () => {
    const name = restorePlanName("r-0000000000002-planxx");
    const plan = {
      schemaVersion: 1,
      restoreId: "r-0000000000002-planxx",
      runId: "b-0000000000001-damage",
      identityId: IDENTITY,
      source: { sharingUrl: "https://contoso.maps.arcgis.com/sharing/rest", orgId: null },
      target: { identityId: IDENTITY, orgId: null, username: "admin", sameOrg: true, mode: "new" },
      levels: [],
      batches: [],
      items: [],
      missingGroups: [],
      warnings: [],
      totals: { items: 0, create: 0, overwrite: 0, skip: 0 },
    };
    await store.uploadJson(name, plan);
    expect(await store.readJson(name, restorePlanSchema)).toEqual(plan);
    await store.uploadJson(name, { ...plan, levels: "all at once" });
    await expect(store.readJson(name, restorePlanSchema)).rejects.toThrow(
      `${name}: levels: expected an array, got a string`,
    );
  });
});

describe("inventory chunks", () => {
  test("a line that is not a record fails its own item only, named by chunk and line", async () => {
    const record = {
      id: "4f2a1c9e8b7d6a5f4e3d2c1b0a9f8e7d",
      title: "Parks map",
      type: "Web Map",
      typeKeywords: [],
      owner: "jsmith",
      folderId: null,
      folderTitle: null,
      modified: 1_700_000_000_000,
      size: 10,
      url: null,
      access: "org",
      groups: [],
    };
    const damaged = { ...record, id: "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b", title: 42 };
    const runId = "b-0000000000004-chunks";
    const name = inventoryChunkName(runId, 0);
    const lines = [record, damaged, { title: "no id" }].map((line) => JSON.stringify(line));
    await store.uploadBuffer(name, Buffer.from(`${lines.join("\n")}\n`), "application/x-ndjson");
    const entries = await readInventoryChunk(store, runId, 0);
    expect(entries).toEqual([
      record,
      {
        id: damaged.id,
        error: {
          code: "ERR_STORED_DOCUMENT_INVALID",
          message: `${name}: line 2: title: expected a string, got a number`,
        },
      },
      {
        id: `${name}#3`,
        error: {
          code: "ERR_STORED_DOCUMENT_INVALID",
          message: `${name}: line 3: id: expected a string, got nothing`,
        },
      },
    ]);
  });
});

describe("orchestration inputs", () => {
  test("an activity's input from the history is validated before use", () => {
    const input = { runId: "b-8204249871234-k3j9a0", identityId: IDENTITY, chunkIndex: 0, batchIndex: 2 };
    expect(parseOrchestrationInput(batchInputSchema, input, "backupExportBatch")).toEqual(input);
    expect(() =>
      parseOrchestrationInput(batchInputSchema, { ...input, batchIndex: "2" }, "backupExportBatch"),
    ).toThrow(
      expect.objectContaining({
        code: "ERR_ORCHESTRATION_INPUT_INVALID",
        message: "backupExportBatch: invalid input: batchIndex: expected a number, got a string",
      }),
    );
  });
});
