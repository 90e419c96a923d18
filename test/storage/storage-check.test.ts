import { randomBytes, randomUUID } from "node:crypto";
import { createServer } from "node:net";
import type { AccessToken, TokenCredential } from "@azure/identity";
import {
  AccountSASPermissions,
  BlobServiceClient,
  ContainerSASPermissions,
  generateAccountSASQueryParameters,
  generateBlobSASQueryParameters,
  StorageSharedKeyCredential,
} from "@azure/storage-blob";
import { beforeAll, describe, expect, inject, test } from "vitest";
import { BLOB_AGENTS } from "../../src/core/storage/blob-container.js";
import {
  checkStorage,
  PROBE_PREFIX,
  type StorageCheckResult,
  storageCheckHttpStatus,
} from "../../src/core/storage/storage-check.js";
import { DEV_ACCOUNT_KEY, DEV_ACCOUNT_NAME } from "../../tools/azurite.js";

const { connectionString, blobEndpoint } = inject("azurite");
const service = BlobServiceClient.fromConnectionString(connectionString);
const sharedKey = new StorageSharedKeyCredential(DEV_ACCOUNT_NAME, DEV_ACCOUNT_KEY);
const WRONG_KEY = randomBytes(64).toString("base64");
const loopback = { allowInsecureLoopback: true };

/** Every secret the tests hand to checkStorage; none may appear in any result. */
const secrets = new Set<string>([DEV_ACCOUNT_KEY, WRONG_KEY]);
const results: StorageCheckResult[] = [];

async function check(input: unknown, options: Parameters<typeof checkStorage>[1] = loopback) {
  const result = await checkStorage(input, options);
  results.push(result);
  return result;
}

function newContainerName(): string {
  return `check-${randomUUID().slice(0, 8)}`;
}

async function existingContainer(): Promise<string> {
  const name = newContainerName();
  await service.getContainerClient(name).create();
  return name;
}

async function probeBlobs(container: string): Promise<string[]> {
  const names: string[] = [];
  for await (const blob of service.getContainerClient(container).listBlobsFlat({ prefix: PROBE_PREFIX })) {
    names.push(blob.name);
  }
  return names;
}

function sasConnectionString(sas: string): string {
  secrets.add(sas);
  const sig = new URLSearchParams(sas).get("sig");
  if (sig) secrets.add(sig);
  return `BlobEndpoint=${blobEndpoint};SharedAccessSignature=${sas}`;
}

function accountSas(permissions: string): string {
  return generateAccountSASQueryParameters(
    {
      permissions: AccountSASPermissions.parse(permissions),
      resourceTypes: "sco",
      services: "b",
      expiresOn: new Date(Date.now() + 3_600_000),
    },
    sharedKey,
  ).toString();
}

function containerSas(container: string, permissions: string): string {
  return generateBlobSASQueryParameters(
    {
      containerName: container,
      permissions: ContainerSASPermissions.parse(permissions),
      expiresOn: new Date(Date.now() + 3_600_000),
    },
    sharedKey,
  ).toString();
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function expectFailure(result: StorageCheckResult, code: string) {
  expect(result.ok).toBe(false);
  if (result.ok) throw new Error("unreachable");
  expect(result.error.code).toBe(code);
  return result.error;
}

beforeAll(async () => {
  // Warm the emulator connection so timings below measure the check only.
  await service.getContainerClient("warmup").createIfNotExists();
});

describe("checkStorage against Azurite", () => {
  test("success: the probe is really written, then deleted", async () => {
    const container = await existingContainer();
    const result = await check({ type: "azure-blob", container, connectionString });
    expect(result).toEqual({ ok: true, account: DEV_ACCOUNT_NAME, container, containerCreated: false });
    expect(storageCheckHttpStatus(result)).toBe(200);
    // Gone afterwards; that it is really written shows in the write-but-not-delete SAS case below.
    expect(await probeBlobs(container)).toEqual([]);
  });

  test("createIfMissing creates the container", async () => {
    const container = newContainerName();
    const result = await check({ type: "azure-blob", container, connectionString, createIfMissing: true });
    expect(result).toEqual({ ok: true, account: DEV_ACCOUNT_NAME, container, containerCreated: true });
    expect(await service.getContainerClient(container).exists()).toBe(true);
    expect(await probeBlobs(container)).toEqual([]);
  });

  test("a missing container without createIfMissing → ERR_STORAGE_CONTAINER_NOT_FOUND", async () => {
    const container = newContainerName();
    const error = expectFailure(
      await check({ type: "azure-blob", container, connectionString }),
      "ERR_STORAGE_CONTAINER_NOT_FOUND",
    );
    expect(error.field).toBe("container");
    expect(error.message).toContain(container);
    expect(await service.getContainerClient(container).exists()).toBe(false);
  });

  test("a wrong account key → ERR_STORAGE_AUTH (403)", async () => {
    const container = await existingContainer();
    const wrong = connectionString.replace(DEV_ACCOUNT_KEY, WRONG_KEY);
    expect(wrong).not.toBe(connectionString);
    const result = await check({ type: "azure-blob", container, connectionString: wrong });
    const error = expectFailure(result, "ERR_STORAGE_AUTH");
    expect(error.message).toContain("403");
    expect(storageCheckHttpStatus(result)).toBe(200);
  });

  test("malformed connection strings → ERR_STORAGE_CONNECTION_STRING (400)", async () => {
    for (const bad of [
      "this is not a connection string",
      `AccountName=${DEV_ACCOUNT_NAME};AccountKey=not*base64!;BlobEndpoint=${blobEndpoint}`,
      `DefaultEndpointsProtocol=https;AccountName=${DEV_ACCOUNT_NAME}`,
      `AccountKey=${DEV_ACCOUNT_KEY}`,
      `AccountName=Bad_Name;AccountKey=${DEV_ACCOUNT_KEY}`,
      `AccountName=${DEV_ACCOUNT_NAME};AccountKey=${DEV_ACCOUNT_KEY};BlobEndpoint=not a url`,
      `BlobEndpoint=${blobEndpoint};SharedAccessSignature=sv=2020-01-01`,
    ]) {
      const result = await check({ type: "azure-blob", container: "backups", connectionString: bad });
      const error = expectFailure(result, "ERR_STORAGE_CONNECTION_STRING");
      expect(error.field).toBe("connectionString");
      expect(error.message).not.toContain(DEV_ACCOUNT_KEY);
      expect(storageCheckHttpStatus(result)).toBe(400);
    }
  });

  test("an unreachable endpoint (closed port) fails fast → ERR_STORAGE_UNREACHABLE", async () => {
    const port = await freePort();
    const closed = connectionString.replace(
      /BlobEndpoint=http:\/\/127\.0\.0\.1:\d+/,
      `BlobEndpoint=http://127.0.0.1:${port}`,
    );
    expect(closed).toContain(`:${port}/`);
    const result = await check({ type: "azure-blob", container: "backups", connectionString: closed });
    const error = expectFailure(result, "ERR_STORAGE_UNREACHABLE");
    // Fast: the refusal itself ends it, not the check's deadline.
    expect(error.message).toContain("ECONNREFUSED");
    expect(error.message).not.toContain("did not answer");
    expect(storageCheckHttpStatus(result)).toBe(200);
  });

  test("an unknown host fails fast → ERR_STORAGE_UNREACHABLE", async () => {
    const result = await check({
      type: "azure-blob",
      container: "backups",
      connectionString: `DefaultEndpointsProtocol=https;AccountName=nosuchacct;AccountKey=${DEV_ACCOUNT_KEY};EndpointSuffix=invalid`,
    });
    expectFailure(result, "ERR_STORAGE_UNREACHABLE");
  });

  test("a read-only account SAS → ERR_STORAGE_NO_WRITE", async () => {
    const container = await existingContainer();
    const result = await check({
      type: "azure-blob",
      container,
      connectionString: sasConnectionString(accountSas("rl")),
    });
    const error = expectFailure(result, "ERR_STORAGE_NO_WRITE");
    expect(error.message).toMatch(/read-only|write/);
    expect(await probeBlobs(container)).toEqual([]);
  });

  test("a read-only container SAS → ERR_STORAGE_NO_WRITE; a full one succeeds", async () => {
    const container = await existingContainer();
    expectFailure(
      await check({
        type: "azure-blob",
        container,
        connectionString: sasConnectionString(containerSas(container, "rl")),
      }),
      "ERR_STORAGE_NO_WRITE",
    );
    const ok = await check({
      type: "azure-blob",
      container,
      connectionString: sasConnectionString(containerSas(container, "racwdl")),
    });
    expect(ok).toEqual({ ok: true, account: DEV_ACCOUNT_NAME, container, containerCreated: false });
  });

  test("a SAS that may write but not delete → ERR_STORAGE_NO_DELETE (the probe was really written)", async () => {
    const container = await existingContainer();
    const result = await check({
      type: "azure-blob",
      container,
      connectionString: sasConnectionString(containerSas(container, "cw")),
    });
    expectFailure(result, "ERR_STORAGE_NO_DELETE");
    const left = await probeBlobs(container);
    expect(left).toHaveLength(1);
    expect(left[0]).toMatch(/^\.arcgis-org-backup-probe\/[0-9a-f-]{36}$/);
  });

  test("a SAS with a forged signature → ERR_STORAGE_AUTH", async () => {
    const container = await existingContainer();
    const sas = containerSas(container, "racwdl");
    const forged = sas.replace(/sig=[^&]+/, `sig=${encodeURIComponent(randomBytes(32).toString("base64"))}`);
    expectFailure(
      await check({ type: "azure-blob", container, connectionString: sasConnectionString(forged) }),
      "ERR_STORAGE_AUTH",
    );
  });

  test("invalid container names → ERR_VALIDATION on field container (400)", async () => {
    for (const container of ["ab", "Upper", "a--b", "-abc", "abc-", "a_bc", "x".repeat(64), "", 42]) {
      const result = await check({ type: "azure-blob", container, connectionString });
      const error = expectFailure(result, "ERR_VALIDATION");
      expect(error.field).toBe("container");
      expect(storageCheckHttpStatus(result)).toBe(400);
    }
    expect(
      (await check({ type: "azure-blob", container: "a-b-9", connectionString, createIfMissing: true })).ok,
    ).toBe(true);
    expect(
      (
        await check({
          type: "azure-blob",
          container: "x".repeat(63),
          connectionString,
          createIfMissing: true,
        })
      ).ok,
    ).toBe(true);
  });

  test("input shape and transport rules", async () => {
    expectFailure(await check(null), "ERR_VALIDATION");
    expectFailure(await check({ type: "s3", container: "backups", connectionString }), "ERR_VALIDATION");
    expectFailure(await check({ type: "azure-blob", container: "backups" }), "ERR_VALIDATION");
    expectFailure(
      await check({
        type: "azure-blob",
        container: "backups",
        connectionString,
        accountUrl: "https://a.blob.core.windows.net",
      }),
      "ERR_VALIDATION",
    );
    expectFailure(
      await check({ type: "azure-blob", container: "backups", connectionString, createIfMissing: "yes" }),
      "ERR_VALIDATION",
    );
    // http to the emulator needs allowInsecureLoopback.
    const insecure = expectFailure(
      await check({ type: "azure-blob", container: "backups", connectionString }, {}),
      "ERR_VALIDATION",
    );
    expect(insecure.message).toContain("https");
    // http to a non-loopback host is never allowed.
    expectFailure(
      await check({
        type: "azure-blob",
        container: "backups",
        connectionString: `DefaultEndpointsProtocol=http;AccountName=someacct;AccountKey=${DEV_ACCOUNT_KEY}`,
      }),
      "ERR_VALIDATION",
    );
  });

  test("accountUrl targets: no credential → ERR_STORAGE_NO_CREDENTIAL (500); a SAS in the URL is refused", async () => {
    const noCredential = await check({
      type: "azure-blob",
      container: "backups",
      accountUrl: "https://someacct.blob.core.windows.net",
    });
    expectFailure(noCredential, "ERR_STORAGE_NO_CREDENTIAL");
    expect(storageCheckHttpStatus(noCredential)).toBe(500);
    const sas = accountSas("rl");
    const withSas = expectFailure(
      await check({
        type: "azure-blob",
        container: "backups",
        accountUrl: `https://someacct.blob.core.windows.net/?${sas}`,
      }),
      "ERR_VALIDATION",
    );
    expect(withSas.field).toBe("accountUrl");
  });

  test("unknown fields, wrong types and metadata hosts → ERR_VALIDATION naming the field (400)", async () => {
    const base = { type: "azure-blob", container: "backups" };
    const keyString = (endpoint: string) =>
      `AccountName=${DEV_ACCOUNT_NAME};AccountKey=${DEV_ACCOUNT_KEY};BlobEndpoint=${endpoint}`;
    const cases: Array<[Record<string, unknown>, string, string]> = [
      [{ ...base, connectionString, extra: 1 }, "extra", "extra is not a known field"],
      [
        { ...base, connectionString, createIfMissing: "yes" },
        "createIfMissing",
        "expected a boolean, got a string",
      ],
      [{ ...base, connectionString: 42 }, "connectionString", "expected a string, got a number"],
      [{ ...base, accountUrl: "https://169.254.169.254" }, "accountUrl", "metadata"],
      [{ ...base, accountUrl: "https://metadata.google.internal." }, "accountUrl", "metadata"],
      [{ ...base, connectionString: keyString("https://[fe80::1]/acct") }, "connectionString", "link-local"],
      [
        { ...base, connectionString: keyString("http://[::ffff:169.254.169.254]/a") },
        "connectionString",
        "link-local",
      ],
    ];
    for (const [input, field, text] of cases) {
      const result = await check(input);
      const error = expectFailure(result, "ERR_VALIDATION");
      expect(error).toMatchObject({ field, message: expect.stringContaining(text) });
      expect(storageCheckHttpStatus(result)).toBe(400);
    }
  });

  test("traffic goes through the guarded agents (no link-local or metadata address, even after DNS)", async () => {
    const result = await check({
      type: "azure-blob",
      container: await existingContainer(),
      connectionString,
    });
    expect(result.ok).toBe(true);
    const azurite = new URL(blobEndpoint);
    expect(Object.keys(BLOB_AGENTS["http:"].freeSockets)).toContain(`${azurite.hostname}:${azurite.port}:`);
  });

  test("accountUrl with a token credential on an unreachable host → ERR_STORAGE_UNREACHABLE", async () => {
    const port = await freePort();
    const credential: TokenCredential = {
      async getToken(): Promise<AccessToken> {
        return { token: "fixed", expiresOnTimestamp: Date.now() + 3_600_000 };
      },
    };
    const result = await check(
      {
        type: "azure-blob",
        container: "backups",
        accountUrl: `https://localhost:${port}/${DEV_ACCOUNT_NAME}`,
      },
      { credential },
    );
    expectFailure(result, "ERR_STORAGE_UNREACHABLE");
  });

  test("no result ever contains the key, the SAS or its signature", () => {
    expect(results.length).toBeGreaterThan(20);
    const text = JSON.stringify(results);
    for (const secret of secrets) expect(text).not.toContain(secret);
    expect(text).not.toMatch(/AccountKey=[A-Za-z0-9+/]|SharedAccessSignature=[a-z]|sig=/);
  });
});
