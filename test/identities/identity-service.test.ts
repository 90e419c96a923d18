import { mkdtemp, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { TableClient } from "@azure/data-tables";
import { beforeEach, describe, expect, inject, test } from "vitest";
import { ValidationError } from "../../src/core/errors.js";
import { IdentityService } from "../../src/core/identities/identity-service.js";
import { TableIdentityStore } from "../../src/core/identities/table-identity-store.js";
import { createLogger, type LogProperties } from "../../src/core/log.js";
import { FileSecretStore } from "../../src/core/secrets/file-secret-store.js";
import type { SecretStore } from "../../src/core/secrets/secret-store.js";

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
  cacheDirectory: path.join(dir, "cache"),
  schedule: { cron: "0 0 2 * * *", enabled: true },
});

let tableName = "";
let dir = "";
let warnings: LogProperties[] = [];

function serviceWith(secrets: SecretStore, table = tableName) {
  const client = TableClient.fromConnectionString(inject("azurite").connectionString, table, {
    allowInsecureConnection: true,
  });
  return {
    client,
    service: new IdentityService({
      store: new TableIdentityStore(client),
      secrets,
      allowInsecureLoopback: false,
      cacheRoot: path.join(dir, "caches"),
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
    await writeFile(path.join(dir, "a-file"), "");
    await expect(
      service.create({ ...validInput(dir), cacheDirectory: path.join(dir, "a-file", "cache") }),
    ).rejects.toMatchObject({ status: 400, field: "cacheDirectory" });
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
