import { mkdir, mkdtemp, realpath, stat, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { TableClient } from "@azure/data-tables";
import { beforeEach, describe, expect, inject, test } from "vitest";
import { type AppError, ValidationError } from "../../src/core/errors.js";
import { IdentityService } from "../../src/core/identities/identity-service.js";
import { TableIdentityStore } from "../../src/core/identities/table-identity-store.js";
import { createLogger, type LogProperties } from "../../src/core/log.js";
import { FileSecretStore } from "../../src/core/secrets/file-secret-store.js";
import type { SecretStore } from "../../src/core/secrets/secret-store.js";
import { checkStorage } from "../../src/core/storage/storage-check.js";
import { withDeadline } from "../../src/core/with-deadline.js";

const validInput = (dir: string) => ({
  name: "Contoso GIS",
  kind: "arcgis-online",
  portalUrl: "https://contoso.maps.arcgis.com",
  auth: { type: "builtin", username: "gisadmin", password: "s3cret-pa55" },
  storage: {
    type: "azure-blob",
    container: "gis-backups",
    connectionString:
      "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5a2V5a2V5;EndpointSuffix=core.windows.net",
  },
  cacheDirectory: path.join(dir, "caches", "contoso"),
  schedule: { cron: "0 0 2 * * *", enabled: true },
});

let tableName = "";
let dir = "";
let warnings: LogProperties[] = [];

function serviceWith(secrets: SecretStore, table = tableName, cacheRoot = path.join(dir, "caches")) {
  const client = TableClient.fromConnectionString(inject("azurite").connectionString, table, {
    allowInsecureConnection: true,
  });
  return {
    client,
    service: new IdentityService({
      store: new TableIdentityStore(client),
      secrets,
      allowInsecureLoopback: false,
      cacheRoot,
      log: createLogger((level, _message, properties) => {
        if (level === "warn") warnings.push(properties);
      }),
    }),
  };
}

beforeEach(async () => {
  tableName = `identities${Math.random().toString(36).slice(2, 10)}`;
  dir = await mkdtemp(path.join(os.tmpdir(), "identities-"));
  warnings = [];
  const client = TableClient.fromConnectionString(inject("azurite").connectionString, tableName, {
    allowInsecureConnection: true,
  });
  await client.createTable();
});

describe("identities", () => {
  test("are stored without secrets; secrets land in the secret store and come back for backups", async () => {
    const secrets = new FileSecretStore(path.join(dir, "secrets.json"));
    const { service, client } = serviceWith(secrets);
    const created = await service.create(validInput(dir));
    expect(created.sharingUrl).toBe("https://contoso.maps.arcgis.com/sharing/rest");
    expect((await stat(created.cacheDirectory)).isDirectory()).toBe(true);

    const row = await client.getEntity<{ document: string }>("identity", created.id);
    expect(row.document).not.toContain("s3cret-pa55");
    expect(row.document).not.toContain("a2V5a2V5a2V5");
    expect(await service.secretsOf(created)).toEqual({
      password: "s3cret-pa55",
      connectionString: validInput(dir).storage.connectionString,
    });
  });

  test("PATCH keeps an omitted secret, replaces a given one, and refuses a stale etag", async () => {
    const secrets = new FileSecretStore(path.join(dir, "secrets.json"));
    const { service } = serviceWith(secrets);
    const created = await service.create(validInput(dir));
    const renamed = await service.update(
      created.id,
      { name: "Renamed", auth: { type: "builtin", username: "other" } },
      created.etag,
    );
    expect(renamed.name).toBe("Renamed");
    expect((await service.secretsOf(renamed)).password).toBe("s3cret-pa55");

    await expect(service.update(created.id, { name: "Stale" }, created.etag)).rejects.toMatchObject({
      status: 412,
    });

    const switched = await service.update(
      created.id,
      { auth: { type: "oauth2-app", clientId: "app1", clientSecret: "app-secret" } },
      renamed.etag,
    );
    expect(await service.secretsOf(switched)).toEqual({
      clientSecret: "app-secret",
      connectionString: validInput(dir).storage.connectionString,
    });
    // The password is gone from the secret store once nothing points at it.
    expect(await secrets.list(`idn-${created.id}-password`)).toEqual([]);
  });

  test("changing the auth type without its secret is a 400 naming the field", async () => {
    const { service } = serviceWith(new FileSecretStore(path.join(dir, "secrets.json")));
    const created = await service.create(validInput(dir));
    await expect(
      service.update(created.id, { auth: { type: "oauth2-app", clientId: "x" } }, created.etag),
    ).rejects.toMatchObject({ status: 400, field: "auth.clientSecret" });
  });

  test.each([
    [{ name: "" }, "name"],
    [{ kind: "arcgis-cloud" }, "kind"],
    [{ portalUrl: "http://contoso.maps.arcgis.com" }, "portalUrl"],
    [{ portalUrl: "https://contoso.maps.arcgis.com/portal" }, "portalUrl"],
    [
      {
        storage: { type: "azure-blob", container: "Bad_Name", accountUrl: "https://a.blob.core.windows.net" },
      },
      "storage.container",
    ],
    [{ storage: { type: "azure-blob", container: "ok-name" } }, "storage.connectionString"],
    [{ schedule: { cron: "0 2 * * *" } }, "schedule.cron"],
    [{ auth: { type: "builtin", username: "u" } }, "auth.password"],
    [{ surprise: true }, "surprise"],
    [{ maxOrgBudgetShare: 1.5 }, "maxOrgBudgetShare"],
  ])("bad input %j is refused naming %s, and nothing is written", async (patch, field) => {
    const secrets = new FileSecretStore(path.join(dir, "secrets.json"));
    const { service } = serviceWith(secrets);
    const error = await service.create({ ...validInput(dir), ...patch }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).field).toBe(field);
    expect(await service.list()).toEqual([]);
    expect(await secrets.list()).toEqual([]);
  });

  test("an unwritable cache folder is refused", async () => {
    const { service } = serviceWith(new FileSecretStore(path.join(dir, "secrets.json")));
    // Tests run as root, so permissions cannot block us: a regular file in the path does.
    await mkdir(path.join(dir, "caches"));
    await writeFile(path.join(dir, "caches", "a-file"), "");
    await expect(
      service.create({ ...validInput(dir), cacheDirectory: path.join(dir, "caches", "a-file", "cache") }),
    ).rejects.toMatchObject({
      status: 400,
      field: "cacheDirectory",
      message: expect.stringContaining("ENOTDIR"),
    });
  });

  test("a failed row write leaves no secret behind", async () => {
    const secrets = new FileSecretStore(path.join(dir, "secrets.json"));
    // A table that does not exist makes the insert fail after the secrets were written.
    const { service } = serviceWith(secrets, "nosuchtable");
    await expect(service.create(validInput(dir))).rejects.toThrow();
    expect(await secrets.list()).toEqual([]);
  });

  test("a failed secret write leaves no row behind", async () => {
    const inner = new FileSecretStore(path.join(dir, "secrets.json"));
    let calls = 0;
    const failing: SecretStore = {
      kind: "file",
      get: (n) => inner.get(n),
      delete: (n) => inner.delete(n),
      list: (p) => inner.list(p),
      check: () => inner.check(),
      // The second secret of the identity fails to save.
      set: async (n, v, t) => {
        if (++calls === 2) throw new Error("vault unavailable");
        await inner.set(n, v, t);
      },
    };
    const { service } = serviceWith(failing);
    await expect(service.create(validInput(dir))).rejects.toThrow("vault unavailable");
    expect(await service.list()).toEqual([]);
    expect(await inner.list()).toEqual([]);
  });

  test("delete removes the row and every secret of the identity", async () => {
    const secrets = new FileSecretStore(path.join(dir, "secrets.json"));
    const { service } = serviceWith(secrets);
    const created = await service.create(validInput(dir));
    await service.delete(created.id);
    expect(await service.list()).toEqual([]);
    expect(await secrets.list()).toEqual([]);
    await expect(service.get(created.id)).rejects.toMatchObject({ status: 404 });
    expect(warnings).toEqual([]);
  });
});

describe("what a save is checked against", () => {
  const fileSecrets = () => new FileSecretStore(path.join(dir, "secrets.json"));

  test("a cache folder must stay inside CACHE_ROOT once .. and symlinks are resolved", async () => {
    const { service } = serviceWith(fileSecrets());
    const root = path.join(dir, "caches");
    await mkdir(root);
    await symlink("/etc", path.join(root, "etc-link"));
    for (const cacheDirectory of [
      "../../etc",
      "/etc",
      path.join(root, "..", "beside"),
      "etc-link/sub",
      ".",
    ]) {
      await expect(service.create({ ...validInput(dir), cacheDirectory })).rejects.toMatchObject({
        status: 400,
        field: "cacheDirectory",
        message: expect.stringContaining("inside CACHE_ROOT"),
      });
    }
    expect(await service.list()).toEqual([]);
    // A relative folder is taken relative to CACHE_ROOT and stored as its real path.
    const created = await service.create({ ...validInput(dir), cacheDirectory: "contoso/../fabrikam" });
    expect(created.cacheDirectory).toBe(path.join(await realpath(root), "fabrikam"));
    const byDefault = await service.create({ ...validInput(dir), cacheDirectory: undefined });
    expect(byDefault.cacheDirectory).toBe(path.join(await realpath(root), byDefault.id));
  });

  test("a folder the OS will not create is refused at once, not after a hang", async () => {
    // Node's recursive mkdir never settles on /proc/<x> (it retries ENOENT forever).
    const { service } = serviceWith(fileSecrets(), tableName, "/proc");
    const save = service.create({ ...validInput(dir), cacheDirectory: "/proc/nope" });
    await expect(
      withDeadline(save, 5_000, () => new Error("the save did not answer within 5 s")),
    ).rejects.toMatchObject({
      status: 400,
      field: "cacheDirectory",
      message: expect.stringContaining("ENOENT"),
    });
  });

  test("a malformed storage connection string is refused as the storage check refuses it, unechoed", async () => {
    const { service } = serviceWith(fileSecrets());
    const storage = validInput(dir).storage;
    for (const connectionString of [
      "hello",
      "AccountName=acct;AccountKey=not*base64-SECRETPART",
      "AccountName=acct;AccountKey=SECRETPART=x",
    ]) {
      const check = await checkStorage({ ...storage, connectionString });
      const error = await service
        .create({ ...validInput(dir), storage: { ...storage, connectionString } })
        .then(
          () => undefined,
          (e: AppError) => e,
        );
      expect(check).toMatchObject({ ok: false, error: { code: "ERR_STORAGE_CONNECTION_STRING" } });
      expect(error).toMatchObject({
        status: 400,
        code: "ERR_STORAGE_CONNECTION_STRING",
        field: "storage.connectionString",
      });
      expect(error?.message).not.toContain("SECRETPART");
      expect(error?.message).not.toContain("hello");
    }
    const created = await service.create(validInput(dir));
    await expect(
      service.update(created.id, { storage: { ...storage, connectionString: "hello" } }, undefined),
    ).rejects.toMatchObject({ status: 400, field: "storage.connectionString" });
    expect((await service.secretsOf(created)).connectionString).toBe(storage.connectionString);
  });

  test("portal and storage URLs may not point to link-local or cloud metadata addresses", async () => {
    const { service } = serviceWith(fileSecrets());
    const input = validInput(dir);
    const key = "a2V5a2V5a2V5";
    for (const host of ["169.254.169.254", "[fe80::1]", "metadata.google.internal.", "[fd00:ec2::254]"]) {
      await expect(service.create({ ...input, portalUrl: `https://${host}/` })).rejects.toMatchObject({
        status: 400,
        field: "portalUrl",
      });
      await expect(
        service.create({
          ...input,
          storage: { ...input.storage, connectionString: undefined, accountUrl: `https://${host}` },
        }),
      ).rejects.toMatchObject({ status: 400, field: "storage.accountUrl" });
      const connectionString = `AccountName=acct;AccountKey=${key};BlobEndpoint=https://${host}/acct`;
      await expect(
        service.create({ ...input, storage: { ...input.storage, connectionString } }),
      ).rejects.toMatchObject({ status: 400, field: "storage.connectionString" });
    }
    // Enterprise portals on private networks stay possible.
    const enterprise = await service.create({
      ...input,
      kind: "arcgis-enterprise",
      portalUrl: "https://10.0.0.5/portal",
    });
    expect(enterprise.sharingUrl).toBe("https://10.0.0.5/portal/sharing/rest");
  });
});
