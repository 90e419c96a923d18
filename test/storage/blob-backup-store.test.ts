import { randomBytes } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { text } from "node:stream/consumers";
import { BlobServiceClient, type ContainerClient } from "@azure/storage-blob";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { z } from "zod";
import { BlobBackupStore } from "../../src/core/storage/blob-backup-store.js";
import { openBlobContainer } from "../../src/core/storage/blob-container.js";
import { StoredDocumentError } from "../../src/core/stored-document.js";
import { DEV_ACCOUNT_KEY, DEV_ACCOUNT_NAME } from "../../tools/azurite.js";

// The Blob adapter of the BackupStore port, against the storage emulator: every name stays in
// the identity's folder, and JSON comes back only through a schema.

const IDENTITY = "00000000-0000-4000-8000-0000000000d5";
let container: ContainerClient;
let store: BlobBackupStore;

beforeAll(async () => {
  container = BlobServiceClient.fromConnectionString(inject("azurite").connectionString).getContainerClient(
    `store-${randomBytes(4).toString("hex")}`,
  );
  await container.create();
  store = new BlobBackupStore(container, IDENTITY);
});

afterAll(async () => {
  await container?.delete().catch(() => undefined);
});

const point = z.object({ x: z.number(), label: z.string() });

describe("BlobBackupStore", () => {
  test("JSON goes in under the identity's folder with its hash, and comes back validated", async () => {
    const stored = await store.uploadJson("docs/point.json", { x: 1, label: "a" });
    expect(stored.blob).toBe("docs/point.json");
    const properties = await container.getBlobClient(`${IDENTITY}/docs/point.json`).getProperties();
    expect(properties.contentType).toBe("application/json");
    expect(properties.metadata?.sha256).toBe(stored.sha256);
    expect(await store.readJson("docs/point.json", point)).toEqual({ x: 1, label: "a" });
    expect(await store.readJson("docs/none.json", point)).toBeUndefined();
  });

  test("a document that does not match its schema names the blob and the field, never the value", async () => {
    await store.uploadJson("docs/wrong.json", { x: "secret-ish", label: "a" });
    const error = await store.readJson("docs/wrong.json", point).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StoredDocumentError);
    expect(error).toMatchObject({
      code: "ERR_STORED_DOCUMENT_INVALID",
      status: 422,
      message: "docs/wrong.json: x: expected a number, got a string",
    });
    expect((error as Error).message).not.toContain("secret-ish");

    await store.uploadBuffer("docs/broken.json", Buffer.from('{"x": 1,'), "application/json");
    await expect(store.readJson("docs/broken.json", point)).rejects.toThrow(
      /^docs\/broken\.json: not valid JSON/,
    );
  });

  test("NDJSON lines are validated one by one; a bad line names its number", async () => {
    await store.uploadBuffer(
      "docs/points.ndjson",
      Buffer.from('{"x":1,"label":"a"}\n\n{"x":2,"label":"b"}\n'),
      "application/x-ndjson",
    );
    expect(await store.readNdjson("docs/points.ndjson", point)).toEqual([
      { x: 1, label: "a" },
      { x: 2, label: "b" },
    ]);
    await store.uploadBuffer("docs/bad.ndjson", Buffer.from('{"x":1,"label":"a"}\n{"x":2}\n'), "x");
    await expect(store.readNdjson("docs/bad.ndjson", point)).rejects.toThrow(
      "docs/bad.ndjson: line 2: label: expected a string, got nothing",
    );
    expect(await store.readNdjson("docs/none.ndjson", point)).toBeUndefined();
  });

  test("streams, sizes, listings, existence and deletes", async () => {
    await store.uploadBuffer("tree/a.txt", Buffer.from("hello"), "text/plain");
    await store.uploadBuffer("tree/sub/b.txt", Buffer.from("world!"), "text/plain");
    await store.uploadBuffer("treetop.txt", Buffer.from("-"), "text/plain");

    expect(await text(await store.openRead("tree/a.txt"))).toBe("hello");
    const opened = await store.openIfExists("tree/sub/b.txt");
    expect(opened?.size).toBe(6);
    expect(await text(opened!.body)).toBe("world!");
    expect(await store.openIfExists("tree/none.txt")).toBeUndefined();
    await expect(store.openRead("tree/none.txt")).rejects.toMatchObject({ statusCode: 404 });

    expect(await store.sizeOf("tree/a.txt")).toBe(5);
    expect(await store.sizeOf("tree/none.txt")).toBeUndefined();

    const names: string[] = [];
    for await (const name of store.list("tree/")) names.push(name);
    expect(names).toEqual(["tree/a.txt", "tree/sub/b.txt"]);

    expect(await store.exists("tree/a.txt")).toBe(true);
    await store.delete("tree/a.txt");
    expect(await store.exists("tree/a.txt")).toBe(false);
    await store.delete("tree/a.txt");
  });

  test("a listing goes on past its first page, in name order, each blob once with its size", async () => {
    const names = Array.from({ length: 1_234 }, (_, i) => `many/${String(i).padStart(5, "0")}.txt`);
    for (let at = 0; at < names.length; at += 100) {
      await Promise.all(
        names.slice(at, at + 100).map((name) => store.uploadBuffer(name, Buffer.from("abc"), "text/plain")),
      );
    }
    const listed: { name: string; size: number }[] = [];
    for await (const blob of store.listSized("many/")) listed.push(blob);
    expect(listed.map((blob) => blob.name)).toEqual(names);
    expect(listed.every((blob) => blob.size === 3)).toBe(true);
  });

  test("another identity's store sees none of it", async () => {
    const other = new BlobBackupStore(container, "00000000-0000-4000-8000-0000000000d6");
    expect(await other.readJson("docs/point.json", point)).toBeUndefined();
    const names: string[] = [];
    for await (const name of other.list("")) names.push(name);
    expect(names).toEqual([]);
  });

  test("a failure of a request to the store reads as ERR_STORAGE_*, in the app's own words", async () => {
    const name = `store-gone-${randomBytes(4).toString("hex")}`;
    const gone = new BlobBackupStore(
      BlobServiceClient.fromConnectionString(inject("azurite").connectionString).getContainerClient(name),
      IDENTITY,
    );
    const error = await gone.uploadJson("docs/point.json", { x: 1, label: "a" }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "ContainerNotFound", message: expect.stringMatching(/RequestId/) });
    expect(gone.storageErrorOf(error)).toMatchObject({
      code: "ERR_STORAGE_CONTAINER_NOT_FOUND",
      message: `Container "${name}" does not exist in storage account "${DEV_ACCOUNT_NAME}"`,
    });
    // Not this store's: another container's failure, or no request at all.
    expect(store.storageErrorOf(error)).toBeUndefined();
    expect(gone.storageErrorOf(new Error("boom"))).toBeUndefined();
  });
});

describe("BlobBackupStore reads cut short", () => {
  test("a body cut short is read on from the byte it reached: one more request, the document whole", async () => {
    const document = Buffer.from(JSON.stringify({ x: 7, label: "l".repeat(4_000) }));
    const ranges: string[] = [];
    const server = createServer((req, res) => {
      const range = String(req.headers["x-ms-range"] ?? "");
      ranges.push(range);
      const part = document.subarray(Number(/bytes=(\d+)-/.exec(range)?.[1] ?? 0));
      res.writeHead(range ? 206 : 200, {
        "content-length": String(part.length),
        etag: '"0x8DC0000000000001"',
      });
      // The first answer stops at half: the connection is cut.
      if (ranges.length === 1) res.write(part.subarray(0, part.length / 2), () => res.socket?.destroy());
      else res.end(part);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}/${DEV_ACCOUNT_NAME}`;
      const connectionString = `AccountName=${DEV_ACCOUNT_NAME};AccountKey=${DEV_ACCOUNT_KEY};BlobEndpoint=${endpoint}`;
      const cut = new BlobBackupStore(
        openBlobContainer(
          { type: "azure-blob", container: "cut", connectionString },
          { allowInsecureLoopback: true },
        ),
        IDENTITY,
      );
      expect(await cut.readJson("docs/point.json", point)).toEqual({ x: 7, label: "l".repeat(4_000) });
      expect(ranges).toEqual(["", `bytes=${document.length / 2}-${document.length - 1}`]);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
