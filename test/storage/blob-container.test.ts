import { randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { AccessToken, TokenCredential } from "@azure/identity";
import { AnonymousCredential, StorageSharedKeyCredential } from "@azure/storage-blob";
import { afterEach, describe, expect, inject, test } from "vitest";
import {
  assertContainerName,
  containerNameProblem,
  openBlobContainer,
  parseBlobConnectionString,
} from "../../src/core/storage/blob-container.js";
import { checkStorage } from "../../src/core/storage/storage-check.js";
import { DEV_ACCOUNT_KEY, DEV_ACCOUNT_NAME } from "../../tools/azurite.js";

const { connectionString, blobEndpoint } = inject("azurite");

const servers: Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

/** A local HTTP server with a handler; returns its base URL and a request counter. */
async function localServer(handler: Parameters<typeof createServer>[1]) {
  const counter = { requests: 0 };
  const server = createServer((req, res) => {
    counter.requests++;
    handler?.(req, res);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, counter };
}

describe("openBlobContainer", () => {
  test("a connection string target gives a working ContainerClient on the emulator", async () => {
    const container = `open-${randomUUID().slice(0, 8)}`;
    const client = openBlobContainer(
      { type: "azure-blob", container, connectionString },
      { allowInsecureLoopback: true },
    );
    expect(client.accountName).toBe(DEV_ACCOUNT_NAME);
    expect(client.containerName).toBe(container);
    expect(client.credential).toBeInstanceOf(StorageSharedKeyCredential);
    await client.create();
    await client.getBlockBlobClient("a/b.txt").upload("hi", 2);
    const names: string[] = [];
    for await (const blob of client.listBlobsFlat()) names.push(blob.name);
    expect(names).toEqual(["a/b.txt"]);
  });

  test("an accountUrl target uses the given TokenCredential", () => {
    const credential: TokenCredential = {
      async getToken(): Promise<AccessToken> {
        return { token: "t", expiresOnTimestamp: Date.now() + 60_000 };
      },
    };
    const client = openBlobContainer(
      { type: "azure-blob", container: "backups", accountUrl: "https://myacct.blob.core.windows.net/" },
      { credential },
    );
    expect(client.url).toBe("https://myacct.blob.core.windows.net/backups");
    expect(client.accountName).toBe("myacct");
    expect(client.credential).toBe(credential);
  });

  test("refuses bad names, http off loopback, and accountUrl without a credential", () => {
    expect(() => openBlobContainer({ type: "azure-blob", container: "Bad", connectionString })).toThrow(
      expect.objectContaining({ code: "ERR_VALIDATION", field: "container" }),
    );
    expect(() => openBlobContainer({ type: "azure-blob", container: "backups", connectionString })).toThrow(
      expect.objectContaining({ code: "ERR_VALIDATION", field: "connectionString" }),
    );
    expect(() =>
      openBlobContainer({
        type: "azure-blob",
        container: "backups",
        accountUrl: "http://myacct.example.com",
      }),
    ).toThrow(expect.objectContaining({ code: "ERR_VALIDATION", field: "accountUrl" }));
    expect(() =>
      openBlobContainer({
        type: "azure-blob",
        container: "backups",
        accountUrl: "https://myacct.blob.core.windows.net",
      }),
    ).toThrow(expect.objectContaining({ code: "ERR_STORAGE_NO_CREDENTIAL" }));
  });

  test("retry options are on the client: a 503 is tried maxTries times, then reported", async () => {
    const { url, counter } = await localServer((_req, res) => {
      res.writeHead(503, { "x-ms-error-code": "ServerBusy" }).end();
    });
    const target = {
      type: "azure-blob" as const,
      container: "backups",
      connectionString: `AccountName=${DEV_ACCOUNT_NAME};AccountKey=${DEV_ACCOUNT_KEY};BlobEndpoint=${url}/${DEV_ACCOUNT_NAME}`,
    };
    const client = openBlobContainer(target, {
      allowInsecureLoopback: true,
      retryOptions: { maxTries: 3, retryDelayInMs: 10, maxRetryDelayInMs: 20 },
    });
    await expect(client.getBlockBlobClient("x").upload("x", 1)).rejects.toMatchObject({ statusCode: 503 });
    expect(counter.requests).toBe(3);

    counter.requests = 0;
    const result = await checkStorage(target, {
      allowInsecureLoopback: true,
      retryOptions: { retryDelayInMs: 10 },
    });
    expect(result).toMatchObject({ ok: false, error: { code: "ERR_STORAGE" } });
    expect(counter.requests).toBe(2); // CHECK_RETRY_OPTIONS.maxTries
  });

  test("tryTimeoutInMs reaches the service as its server-side timeout (seconds)", async () => {
    const urls: string[] = [];
    const { url } = await localServer((req, res) => {
      urls.push(req.url ?? "");
      res.writeHead(201, { "x-ms-request-id": "1" }).end();
    });
    const client = openBlobContainer(
      {
        type: "azure-blob",
        container: "backups",
        connectionString: `AccountName=${DEV_ACCOUNT_NAME};AccountKey=${DEV_ACCOUNT_KEY};BlobEndpoint=${url}/${DEV_ACCOUNT_NAME}`,
      },
      { allowInsecureLoopback: true, retryOptions: { tryTimeoutInMs: 7_000 } },
    );
    await client.getBlockBlobClient("x").upload("x", 1);
    expect(urls).toHaveLength(1);
    expect(new URL(urls[0]!, url).searchParams.get("timeout")).toBe("7");
  });

  test("a host that accepts but never answers is cut off by the check deadline", async () => {
    const { url } = await localServer(() => {
      /* never answers */
    });
    const result = await checkStorage(
      {
        type: "azure-blob",
        container: "backups",
        connectionString: `AccountName=${DEV_ACCOUNT_NAME};AccountKey=${DEV_ACCOUNT_KEY};BlobEndpoint=${url}/${DEV_ACCOUNT_NAME}`,
      },
      { allowInsecureLoopback: true, timeoutMs: 300 },
    );
    // Nothing else ends a request that gets no answer (the SDK only sends its try time-out to
    // the server): the deadline did.
    expect(result).toMatchObject({
      ok: false,
      error: { code: "ERR_STORAGE_UNREACHABLE", message: expect.stringContaining("did not answer in time") },
    });
  });
});

describe("parseBlobConnectionString", () => {
  test("account key form, default endpoint from AccountName/EndpointSuffix", () => {
    expect(
      parseBlobConnectionString(
        `DefaultEndpointsProtocol=https;AccountName=myacct;AccountKey=${DEV_ACCOUNT_KEY};EndpointSuffix=core.windows.net`,
      ),
    ).toEqual({
      account: "myacct",
      blobEndpoint: "https://myacct.blob.core.windows.net",
      accountKey: DEV_ACCOUNT_KEY,
    });
    expect(
      parseBlobConnectionString(
        `AccountName=myacct;AccountKey=${DEV_ACCOUNT_KEY};EndpointSuffix=core.chinacloudapi.cn`,
      ).blobEndpoint,
    ).toBe("https://myacct.blob.core.chinacloudapi.cn");
  });

  test("keys are case-insensitive; other services' endpoints are ignored", () => {
    const parsed = parseBlobConnectionString(
      `accountname=${DEV_ACCOUNT_NAME};accountkey=${DEV_ACCOUNT_KEY};blobendpoint=${blobEndpoint}/;QueueEndpoint=http://x`,
      { allowInsecureLoopback: true },
    );
    expect(parsed).toEqual({ account: DEV_ACCOUNT_NAME, blobEndpoint, accountKey: DEV_ACCOUNT_KEY });
  });

  test("SAS form; account from a path-style (emulator) or a host-style endpoint", () => {
    expect(
      parseBlobConnectionString(`BlobEndpoint=${blobEndpoint};SharedAccessSignature=?sv=2025-01-01&sig=abc`, {
        allowInsecureLoopback: true,
      }),
    ).toEqual({ account: DEV_ACCOUNT_NAME, blobEndpoint, sas: "sv=2025-01-01&sig=abc" });
    expect(
      parseBlobConnectionString(
        "BlobEndpoint=https://acct9.blob.core.windows.net;SharedAccessSignature=sv=1&sig=x",
      ).account,
    ).toBe("acct9");
  });

  test("UseDevelopmentStorage=true only with allowInsecureLoopback", () => {
    expect(() => parseBlobConnectionString("UseDevelopmentStorage=true")).toThrow(
      expect.objectContaining({ code: "ERR_STORAGE_CONNECTION_STRING" }),
    );
    expect(
      parseBlobConnectionString("UseDevelopmentStorage=true", { allowInsecureLoopback: true }),
    ).toMatchObject({
      account: DEV_ACCOUNT_NAME,
      blobEndpoint: `http://127.0.0.1:10000/${DEV_ACCOUNT_NAME}`,
    });
  });

  test("errors never quote the string", () => {
    const secret = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=";
    for (const bad of [`AccountName=x;AccountKey=${secret}`, `garbage ${secret}`, `AccountKey=${secret};x`]) {
      try {
        parseBlobConnectionString(bad);
        expect.unreachable();
      } catch (error) {
        expect((error as Error).message).not.toContain(secret);
      }
    }
  });

  test("SAS clients use anonymous credentials with the SAS in the URL", () => {
    const client = openBlobContainer(
      {
        type: "azure-blob",
        container: "backups",
        connectionString: "BlobEndpoint=https://acct9.blob.core.windows.net;SharedAccessSignature=sv=1&sig=x",
      },
      {},
    );
    expect(client.credential).toBeInstanceOf(AnonymousCredential);
    expect(client.url).toBe("https://acct9.blob.core.windows.net/backups?sv=1&sig=x");
  });
});

describe("container names", () => {
  test("Azure's rule", () => {
    for (const ok of ["abc", "a-b-c", "backups-2024", "x".repeat(63), "0ab"]) {
      expect(containerNameProblem(ok)).toBeUndefined();
    }
    for (const bad of ["ab", "x".repeat(64), "ABC", "a--b", "-ab", "ab-", "a_b", "a.b", "", undefined, 5]) {
      expect(containerNameProblem(bad)).toBeTypeOf("string");
    }
    expect(() => assertContainerName("a--b")).toThrow(expect.objectContaining({ field: "container" }));
  });
});
