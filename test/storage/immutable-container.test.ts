import { randomBytes } from "node:crypto";
import { BlobServiceClient } from "@azure/storage-blob";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import type { PrunePlan } from "../../src/core/backup/prune.js";
import { referencedBlobs, sweepItems } from "../../src/core/backup/prune.js";
import { BlobBackupStore } from "../../src/core/storage/blob-backup-store.js";
import { openBlobContainer } from "../../src/core/storage/blob-container.js";
import { checkStorage } from "../../src/core/storage/storage-check.js";
import { connectionStringFor, DEV_ACCOUNT_NAME } from "../../tools/azurite.js";
import { type FaultProxy, startFaultProxy } from "../support/fault-proxy.js";

// A backup container under version-level immutability (WORM): Blob refuses every delete with 409
// BlobImmutableDueToPolicy. Azurite has no immutability policies, so the fault proxy answers the
// deletes as Azure does. A prune counts such blobs as kept by policy; the storage check passes.

const IDENTITY = "00000000-0000-4000-8000-0000000000f1";
let proxy: FaultProxy;
let container: string;
let connectionString: string;

beforeAll(async () => {
  const azurite = inject("azurite");
  container = `worm-${randomBytes(4).toString("hex")}`;
  await BlobServiceClient.fromConnectionString(azurite.connectionString)
    .getContainerClient(container)
    .create();
  proxy = await startFaultProxy({ target: new URL(azurite.blobEndpoint).origin, flavour: "blob", seed: 3 });
  proxy.setRules([
    {
      methods: ["DELETE"],
      share: 1,
      fault: { type: "status", status: 409, code: "BlobImmutableDueToPolicy" },
    },
  ]);
  connectionString = connectionStringFor({
    blobEndpoint: `${proxy.origin}/${DEV_ACCOUNT_NAME}`,
    queueEndpoint: azurite.queueEndpoint,
    tableEndpoint: azurite.tableEndpoint,
  });
});

afterAll(async () => {
  await proxy?.close();
});

describe("an immutable backup container", () => {
  test("a prune's sweep reports the blobs it may not delete as kept by policy, and deletes nothing", async () => {
    const store = new BlobBackupStore(
      openBlobContainer({ type: "azure-blob", container, connectionString }, { allowInsecureLoopback: true }),
      IDENTITY,
    );
    await store.uploadJson("items/0a1b2c3d4e5f60718293a4b5c6d7e8f9/v1/item.json", { id: "x" });
    await store.uploadJson("items/0a1b2c3d4e5f60718293a4b5c6d7e8f9/v1/_complete.json", { id: "x" });
    const plan: PrunePlan = {
      schemaVersion: 1,
      kind: "arcgis-org-backup/prune-plan",
      pruneId: null,
      identityId: IDENTITY,
      createdAt: new Date().toISOString(),
      keepDeletedDays: 365,
      runs: [],
    };
    const counts = await sweepItems(store, await referencedBlobs(store, plan), false);
    expect(counts).toMatchObject({ blobsDeleted: 0, bytesDeleted: 0, blobsKeptByPolicy: 2 });
    expect(counts.keptByPolicySample).toHaveLength(2);
    expect(await store.exists("items/0a1b2c3d4e5f60718293a4b5c6d7e8f9/v1/item.json")).toBe(true);
    expect(await store.delete("items/0a1b2c3d4e5f60718293a4b5c6d7e8f9/v1/item.json")).toBe("kept-by-policy");
  });

  test("the storage check passes: the probe blob stays, and the answer says why", async () => {
    const result = await checkStorage(
      { type: "azure-blob", container, connectionString },
      { allowInsecureLoopback: true },
    );
    expect(result).toMatchObject({ ok: true, container, immutable: true });
  });
});
