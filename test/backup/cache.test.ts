import { mkdir, mkdtemp, readdir, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { describe, expect, test } from "vitest";
import { assertCacheWritable, CacheSpace, streamToCache } from "../../src/core/backup/cache.js";

describe("the cache folder", () => {
  test("a download is hashed on its way to disk and gone after discard", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "cache-"));
    const space = new CacheSpace(1024 * 1024);
    const file = await streamToCache(
      Readable.from([Buffer.from("hello "), Buffer.from("world")]),
      dir,
      space,
    );
    expect(file.size).toBe(11);
    expect(file.sha256).toBe("b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");
    expect(space.usedBytes).toBe(11);
    await file.discard();
    expect(space.usedBytes).toBe(0);
    expect(await readdir(dir)).toEqual([]);
  });

  test("never holds more than its limit: a writer waits until room is freed", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "cache-"));
    const space = new CacheSpace(1000);
    const first = await streamToCache(Readable.from([Buffer.alloc(800)]), dir, space);
    let secondDone = false;
    const second = streamToCache(Readable.from([Buffer.alloc(400)]), dir, space).then((f) => {
      secondDone = true;
      return f;
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(secondDone).toBe(false);
    expect(space.usedBytes).toBeLessThanOrEqual(1000);
    await first.discard();
    const file = await second;
    expect(file.size).toBe(400);
    await file.discard();
  });

  test("a file larger than the whole cache fails with a clear error instead of waiting forever", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "cache-"));
    const space = new CacheSpace(1024 * 1024);
    const chunks = Array.from({ length: 12 }, () => Buffer.alloc(256 * 1024));
    await expect(streamToCache(Readable.from(chunks), dir, space)).rejects.toMatchObject({
      code: "ERR_FILE_LARGER_THAN_CACHE",
      field: "CACHE_MAX_BYTES",
    });
    expect(await readdir(dir)).toEqual([]);
    expect(space.usedBytes).toBe(0);
  });

  test("a failed download leaves nothing behind", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "cache-"));
    const space = new CacheSpace(1024 * 1024);
    const failing = new Readable({
      read() {
        this.push(Buffer.alloc(100));
        this.destroy(new Error("connection reset"));
      },
    });
    await expect(streamToCache(failing, dir, space)).rejects.toThrow("connection reset");
    expect(await readdir(dir)).toEqual([]);
    expect(space.usedBytes).toBe(0);
  });

  test("cleaning up touches only what the cache made: files of others in the folder stay", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "cache-"));
    const foreign = ["notes.txt", "old.part", ".write-probe-x", "sub"];
    for (const name of foreign.slice(0, 3)) await writeFile(path.join(dir, name), "theirs");
    await mkdir(path.join(dir, "sub"));
    const space = new CacheSpace(1024 * 1024);
    await assertCacheWritable(dir);
    await (await streamToCache(Readable.from([Buffer.from("ours")]), dir, space)).discard();
    const failing = new Readable({
      read() {
        this.destroy(new Error("connection reset"));
      },
    });
    await expect(streamToCache(failing, dir, space)).rejects.toThrow("connection reset");
    expect((await readdir(dir)).sort()).toEqual([...foreign].sort());
  });

  test("a folder that cannot be written is a clear error naming cacheDirectory", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "cache-"));
    await writeFile(path.join(dir, "file"), "");
    await expect(assertCacheWritable(path.join(dir, "file", "sub"))).rejects.toMatchObject({
      code: "ERR_CACHE_NOT_WRITABLE",
      field: "cacheDirectory",
    });
  });
});
