import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { BlobServiceClient, type ContainerClient } from "@azure/storage-blob";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { CacheSpace, startCaching } from "../../src/core/backup/cache.js";
import { exportItem } from "../../src/core/backup/export-item.js";
import { itemVersionPrefix } from "../../src/core/backup/layout.js";
import { silentLogger } from "../../src/core/log.js";
import { BlobBackupStore } from "../../src/core/storage/blob-backup-store.js";
import { portalFor, recordOf } from "../feature-data/support.js";
import { type PortalSim, startPortalSim } from "../portal-sim/index.js";

const MiB = 1024 * 1024;
const IDENTITY = "00000000-0000-4000-8000-0000000000c7";
const service = BlobServiceClient.fromConnectionString(inject("azurite").connectionString);
let container: ContainerClient;
let store: BlobBackupStore;

beforeAll(async () => {
  container = service.getContainerClient(`overlap-${randomBytes(4).toString("hex")}`);
  await container.create();
  store = new BlobBackupStore(container, IDENTITY);
});

afterAll(async () => {
  await container?.delete().catch(() => undefined);
});

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

/** The blob holds exactly `data`, with its content type, and its sha256 in the metadata. */
async function expectLanded(blobName: string, data: Buffer, contentType: string) {
  const blob = container.getBlockBlobClient(blobName);
  expect((await blob.downloadToBuffer()).equals(data)).toBe(true);
  const properties = await blob.getProperties();
  expect(properties.contentType).toBe(contentType);
  expect(properties.metadata).toEqual({ sha256: sha256(data) });
  return { blob, properties };
}

/**
 * A download at a network's pace, in 256 KiB chunks: it may wait at `holdAt` until `hold`
 * resolves, then fail with `error` from `failAt` on. `sent` counts the bytes handed out.
 */
function download(
  data: Buffer,
  options: { holdAt?: number; hold?: Promise<void>; failAt?: number; error?: Error } = {},
) {
  const progress = { sent: 0 };
  async function* chunks() {
    for (let offset = 0; offset < data.length; offset += MiB / 4) {
      if (offset === options.holdAt) await options.hold;
      if (options.failAt !== undefined && offset >= options.failAt) throw options.error;
      await new Promise((resolve) => setImmediate(resolve));
      const chunk = data.subarray(offset, offset + MiB / 4);
      progress.sent += chunk.length;
      yield chunk;
    }
  }
  return { stream: Readable.from(chunks(), { objectMode: false }), progress };
}

/** A fresh cache folder and its space; `expectGivenBack` checks that nothing of either is left in use. */
async function freshCache(limitBytes: number) {
  const dir = await mkdtemp(path.join(os.tmpdir(), "overlap-cache-"));
  const space = new CacheSpace(limitBytes);
  return {
    dir,
    space,
    async expectGivenBack() {
      expect(await readdir(dir)).toEqual([]);
      expect(space.usedBytes).toBe(0);
    },
  };
}

async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`Timed out waiting for ${what}`);
}

async function uncommittedBlocks(blob: string): Promise<string[]> {
  const list = await container
    .getBlockBlobClient(store.blobName(blob))
    .getBlockList("uncommitted")
    .catch(() => undefined);
  return (list?.uncommittedBlocks ?? []).map((block) => block.name);
}

describe("uploading a file while it downloads into the cache", () => {
  test("a multi-block file is staged as it arrives, lands byte-identical, and appears only at commit", async () => {
    const { dir, space, expectGivenBack } = await freshCache(64 * MiB);
    const data = randomBytes(28 * MiB + 12_345);
    let release = () => {};
    const hold = new Promise<void>((resolve) => {
      release = resolve;
    });
    const source = download(data, { holdAt: 20 * MiB, hold });
    const file = startCaching(source.stream, dir, space);
    try {
      const upload = store.uploadWhileCaching("items/a/data/big.zip", file, "application/zip");
      // The download is held at 20 MiB: blocks are already on their way, the blob not there yet.
      await until(async () => (await uncommittedBlocks("items/a/data/big.zip")).length >= 2, "staged blocks");
      expect(file.complete).toBe(false);
      expect(await store.exists("items/a/data/big.zip")).toBe(false);
      expect(space.usedBytes).toBeLessThanOrEqual(space.limitBytes);
      release();
      const stored = await upload;

      expect(stored).toEqual({
        blob: "items/a/data/big.zip",
        size: data.length,
        sha256: sha256(data),
        contentType: "application/zip",
      });
      const { blob, properties } = await expectLanded(
        store.blobName("items/a/data/big.zip"),
        data,
        "application/zip",
      );
      expect(properties.contentLength).toBe(data.length);
      const blocks = await blob.getBlockList("committed");
      // 4 MiB blocks, the last one the rest.
      expect(blocks.committedBlocks?.map((block) => block.size)).toEqual([
        ...Array.from({ length: 7 }, () => 4 * MiB),
        12_345,
      ]);
    } finally {
      await file.discard();
    }
    await expectGivenBack();
  });

  test("a file of one block or less goes up in one request once complete", async () => {
    const { dir, space, expectGivenBack } = await freshCache(64 * MiB);
    const data = randomBytes(3 * MiB);
    const file = startCaching(download(data).stream, dir, space);
    try {
      const stored = await store.uploadWhileCaching("items/b/metadata.xml", file, "application/xml");
      expect(stored.sha256).toBe(sha256(data));
      await expectLanded(store.blobName("items/b/metadata.xml"), data, "application/xml");
    } finally {
      await file.discard();
    }
    await expectGivenBack();
  });

  test("a download that fails mid-stream leaves no blob and no cache file, and gives its space back", async () => {
    const { dir, space, expectGivenBack } = await freshCache(64 * MiB);
    const data = randomBytes(30 * MiB);
    const cut = Object.assign(new Error("socket hang up"), { code: "ECONNRESET" });
    let release = () => {};
    const hold = new Promise<void>((resolve) => {
      release = resolve;
    });
    const file = startCaching(
      download(data, { holdAt: 20 * MiB, hold, failAt: 20 * MiB, error: cut }).stream,
      dir,
      space,
    );
    try {
      const upload = store.uploadWhileCaching("items/c/data/cut.bin", file, "application/octet-stream");
      // Blocks are staged before the download breaks.
      await until(async () => (await uncommittedBlocks("items/c/data/cut.bin")).length >= 2, "staged blocks");
      release();
      await expect(upload).rejects.toBe(cut);
      await expect(file.done).rejects.toBe(cut);
    } finally {
      await file.discard();
    }
    expect(await store.exists("items/c/data/cut.bin")).toBe(false);
    await expectGivenBack();
  });

  test("an upload that fails stops the download at once and removes the cache file", async () => {
    const { dir, space, expectGivenBack } = await freshCache(256 * MiB);
    const missing = new BlobBackupStore(
      service.getContainerClient(`missing-${randomBytes(4).toString("hex")}`),
      IDENTITY,
    );
    const source = download(randomBytes(200 * MiB));
    const file = startCaching(source.stream, dir, space);
    try {
      await expect(
        missing.uploadWhileCaching("items/d/data/x.bin", file, "application/octet-stream"),
      ).rejects.toMatchObject({ statusCode: 404 });
      await expect(file.done).rejects.toMatchObject({ statusCode: 404 });
    } finally {
      await file.discard();
    }
    expect(source.stream.destroyed).toBe(true);
    // The first block is staged once 8 MiB are on disk; the download stops soon after it failed.
    expect(source.progress.sent).toBeLessThan(64 * MiB);
    await expectGivenBack();
  });

  test("a retried attempt stages fresh blocks: the failed attempt's blocks are never committed", async () => {
    const { dir, space, expectGivenBack } = await freshCache(64 * MiB);
    const data = randomBytes(26 * MiB);
    const name = "items/e/data/retry.bin";
    let release = () => {};
    const hold = new Promise<void>((resolve) => {
      release = resolve;
    });
    const cut = Object.assign(new Error("premature close"), { code: "ERR_STREAM_PREMATURE_CLOSE" });
    const first = startCaching(
      download(data, { holdAt: 20 * MiB, hold, failAt: 20 * MiB, error: cut }).stream,
      dir,
      space,
    );
    let firstBlocks: string[] = [];
    try {
      const upload = store.uploadWhileCaching(name, first, "application/octet-stream");
      await until(async () => {
        firstBlocks = await uncommittedBlocks(name);
        return firstBlocks.length >= 2;
      }, "staged blocks");
      release();
      await expect(upload).rejects.toBe(cut);
    } finally {
      await first.discard();
    }

    const second = startCaching(download(data).stream, dir, space);
    try {
      await store.uploadWhileCaching(name, second, "application/octet-stream");
    } finally {
      await second.discard();
    }
    const blob = container.getBlockBlobClient(store.blobName(name));
    expect((await blob.downloadToBuffer()).equals(data)).toBe(true);
    const committed =
      (await blob.getBlockList("committed")).committedBlocks?.map((block) => block.name) ?? [];
    // 26 MiB in 4 MiB blocks.
    expect(committed).toHaveLength(7);
    expect(committed.filter((id) => firstBlocks.includes(id))).toEqual([]);
    await expectGivenBack();
  });
});

describe("exporting a large file item", () => {
  let sim: PortalSim;

  beforeAll(async () => {
    sim = await startPortalSim({
      size: "tiny",
      seed: 7,
      overrides: { items: { fgdb: 1 }, bigFileBytes: 24 * MiB + 1000 },
    });
  });

  afterAll(async () => {
    await sim?.close();
  });

  test("a download cut halfway restarts the file; it lands byte-identical with its sha256 and content type", async () => {
    const item = [...sim.model.items()][0]!;
    const expected = sim.model.itemDataBuffer(item.id)!;
    expect(expected.length).toBe(24 * MiB + 1000);
    // The first download of the file breaks at half, after blocks of it were staged.
    sim.setFaults([{ match: "storage/blob", action: "truncate", times: 1 }]);
    sim.stats.reset();
    const cache = await freshCache(256 * MiB);
    try {
      const result = await exportItem(
        {
          runId: "b-upload-while-caching",
          portal: portalFor(sim),
          store,
          cacheDirectory: cache.dir,
          cacheSpace: cache.space,
          log: silentLogger,
        },
        recordOf(item),
      );
      expect(result.status).toBe("exported");
      // Fetched twice: the cut download, then the whole file.
      expect(sim.stats.byRoute()["storage/blob"]).toBe(2);
      const data = result.files.find((file) => file.kind === "data")!;
      expect(data).toMatchObject({ size: expected.length, sha256: sha256(expected) });
      const { properties } = await expectLanded(
        store.blobName(`${itemVersionPrefix(item.id, result.version!)}${data.path}`),
        expected,
        data.contentType,
      );
      expect(properties.contentType).not.toBe("");
      await cache.expectGivenBack();
    } finally {
      sim.setFaults([]);
      await rm(cache.dir, { recursive: true, force: true });
    }
  });
});
