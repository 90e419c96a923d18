import { randomBytes } from "node:crypto";
import { BlobServiceClient } from "@azure/storage-blob";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { itemVersion, itemVersionPrefix, VERSION_FILES } from "../../src/core/backup/layout.js";
import type { ManifestItem } from "../../src/core/backup/manifest.js";
import { isRetryableFailure } from "../../src/core/failures.js";
import { BackupFiles } from "../../src/core/restore/backup-files.js";
import { readItemContent } from "../../src/core/restore/plan.js";
import { BlobBackupStore } from "../../src/core/storage/blob-backup-store.js";
import { openBlobContainer } from "../../src/core/storage/blob-container.js";
import { connectionStringFor, DEV_ACCOUNT_NAME } from "../../tools/azurite.js";
import { type FaultProxy, startFaultProxy } from "../support/fault-proxy.js";

// What the plan does when it cannot read an item's files: an item whose file is gone is skipped
// with the reason; an outage (every read cut short, past the store's re-reads) is thrown, so the
// plan step runs again instead of losing the item. Blob is read through the fault proxy.

const IDENTITY = "00000000-0000-4000-8000-0000000000e7";
const ITEM_ID = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
let proxy: FaultProxy;
let store: BlobBackupStore;
let manifestItem: ManifestItem;

beforeAll(async () => {
  const azurite = inject("azurite");
  const name = `plan-reads-${randomBytes(4).toString("hex")}`;
  await BlobServiceClient.fromConnectionString(azurite.connectionString).getContainerClient(name).create();
  proxy = await startFaultProxy({ target: new URL(azurite.blobEndpoint).origin, flavour: "blob", seed: 7 });
  const connectionString = connectionStringFor({
    blobEndpoint: `${proxy.origin}/${DEV_ACCOUNT_NAME}`,
    queueEndpoint: azurite.queueEndpoint,
    tableEndpoint: azurite.tableEndpoint,
  });
  store = new BlobBackupStore(
    openBlobContainer(
      { type: "azure-blob", container: name, connectionString },
      { allowInsecureLoopback: true },
    ),
    IDENTITY,
  );
  const item = {
    id: ITEM_ID,
    owner: "jsmith",
    created: 1_700_000_000_000,
    modified: 1_700_000_100_000,
    title: "Parks",
    type: "Web Map",
    typeKeywords: [],
    tags: [],
  };
  const version = itemVersion(item.modified, undefined);
  const prefix = itemVersionPrefix(ITEM_ID, version);
  const stored = await store.uploadJson(`${prefix}${VERSION_FILES.item}`, item);
  manifestItem = {
    itemId: ITEM_ID,
    title: item.title,
    type: item.type,
    owner: item.owner,
    folderId: null,
    folderTitle: null,
    access: "private",
    groups: [],
    status: "exported",
    version,
    versionPath: prefix,
    files: [{ ...stored, path: VERSION_FILES.item, kind: "item" }],
    bytes: stored.size,
    notes: [],
  };
});

afterAll(async () => {
  await proxy?.close();
});

describe("the plan's reads of an item", () => {
  test("every read cut short, past the re-reads, is thrown as an outage; once reads go through, the item is planned", async () => {
    proxy.setRules([{ methods: ["GET"], share: 1, fault: { type: "cut" } }]);
    proxy.reset();
    const error = await readItemContent(new BackupFiles(store), manifestItem).catch((e: unknown) => e);
    expect(isRetryableFailure(error), String(error)).toBe(true);
    // The first read and three re-reads from the byte each reached.
    expect(proxy.counts().injected.cut).toBe(4);

    proxy.setRules([]);
    const content = await readItemContent(new BackupFiles(store), manifestItem);
    expect(content.skip).toBeUndefined();
    expect(content.item?.title).toBe("Parks");
  });

  test("a file that is not there skips the item, with the reason", async () => {
    proxy.setRules([]);
    const missing = { ...manifestItem, files: [{ ...manifestItem.files[0]!, blob: "items/none/item.json" }] };
    const content = await readItemContent(new BackupFiles(store), missing);
    expect(content.skip).toMatchObject({ code: "ERR_BACKUP_INCOMPLETE" });
  });
});
