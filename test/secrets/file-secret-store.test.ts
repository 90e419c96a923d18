import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { AppError } from "../../src/core/errors.js";
import { FileSecretStore } from "../../src/core/secrets/file-secret-store.js";

let root: string;

beforeEach(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), "file-secret-store-"));
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("FileSecretStore", () => {
  test("creates the folder 0700 and the file 0600; set/get/overwrite/delete", async () => {
    const file = path.join(root, "nested", "dir", "secrets.json");
    const store = new FileSecretStore(file);
    expect(await store.get("missing")).toBeUndefined();
    await store.set("idn-a-client-secret", "value-1", { identity: "a" });
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await stat(path.dirname(file))).mode & 0o777).toBe(0o700);
    expect(await store.get("idn-a-client-secret")).toBe("value-1");
    await store.set("idn-a-client-secret", "value-2");
    expect(await store.get("idn-a-client-secret")).toBe("value-2");
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    await store.delete("idn-a-client-secret");
    await store.delete("idn-a-client-secret");
    expect(await store.get("idn-a-client-secret")).toBeUndefined();
    // No temp files left behind.
    expect(await readdir(path.dirname(file))).toEqual(["secrets.json"]);
  });

  test("survives a new instance (persisted on disk)", async () => {
    const file = path.join(root, "secrets.json");
    await new FileSecretStore(file).set("persisted", "kept");
    expect(await new FileSecretStore(file).get("persisted")).toBe("kept");
    expect(JSON.parse(await readFile(file, "utf8")).secrets.persisted.value).toBe("kept");
  });

  test("concurrent writes from several instances are all kept", async () => {
    const file = path.join(root, "secrets.json");
    const stores = [new FileSecretStore(file), new FileSecretStore(file), new FileSecretStore(file)];
    await Promise.all(
      Array.from({ length: 60 }, (_, i) => stores[i % stores.length]!.set(`name-${i}`, `value-${i}`)),
    );
    const fresh = new FileSecretStore(file);
    const names = await fresh.list("name-");
    expect(names).toHaveLength(60);
    for (let i = 0; i < 60; i++) expect(await fresh.get(`name-${i}`)).toBe(`value-${i}`);
    await Promise.all(Array.from({ length: 30 }, (_, i) => stores[i % 3]!.delete(`name-${i * 2}`)));
    expect(await fresh.list("name-")).toHaveLength(30);
  });

  test("list filters by prefix and never returns values", async () => {
    const store = new FileSecretStore(path.join(root, "s.json"));
    await store.set("idn-x-a", "1");
    await store.set("idn-x-b", "2");
    await store.set("other", "3");
    expect(await store.list("idn-x-")).toEqual(["idn-x-a", "idn-x-b"]);
    expect(await store.list()).toEqual(["idn-x-a", "idn-x-b", "other"]);
  });

  test("names that are Object.prototype keys are not secrets", async () => {
    const store = new FileSecretStore(path.join(root, "s.json"));
    expect(await store.get("constructor")).toBeUndefined();
    await store.set("constructor", "c");
    expect(await store.get("constructor")).toBe("c");
  });

  test("a corrupt file fails with ERR_SECRET_STORE_FILE without quoting its content", async () => {
    const file = path.join(root, "s.json");
    await writeFile(file, '{"secrets": {"a": {"value": "TOPSECRET"}', { mode: 0o600 });
    const store = new FileSecretStore(file);
    const error = (await store.get("a").catch((e: unknown) => e)) as AppError;
    expect(error).toBeInstanceOf(AppError);
    expect(error.code).toBe("ERR_SECRET_STORE_FILE");
    expect(error.message).not.toContain("TOPSECRET");
    await expect(store.check()).rejects.toMatchObject({ code: "ERR_SECRET_STORE_FILE" });
  });

  test("check() passes on a writable location and invalid names are refused", async () => {
    const store = new FileSecretStore(path.join(root, "new", "s.json"));
    await store.check();
    await expect(store.get("bad name")).rejects.toMatchObject({ code: "ERR_VALIDATION" });
  });
});
