import { createServer } from "node:net";
import type { AccessToken, TokenCredential } from "@azure/identity";
import { SecretClient } from "@azure/keyvault-secrets";
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "vitest";
import { AppError } from "../../src/core/errors.js";
import { classifyFailure } from "../../src/core/failures.js";
import {
  KeyVaultSecretStore,
  type KeyVaultSecretStoreOptions,
} from "../../src/core/secrets/key-vault-secret-store.js";
import { identitySecretName } from "../../src/core/secrets/secret-store.js";
import { type FakeKeyVault, startFakeKeyVault } from "../support/key-vault-server.js";
import { testTls } from "../support/tls.js";

const ID = "0f8fad5b-d9cb-469f-a165-70867728950e";
const SECRET = "s3cr3t-VALUE-7f2c9a1e";

let vault: FakeKeyVault;
let ca: string;

function storeOptions(extra: KeyVaultSecretStoreOptions = {}): KeyVaultSecretStoreOptions {
  return {
    pollIntervalMs: 10,
    deleteWaitMs: 1_000,
    recoverWaitMs: 1_000,
    ...extra,
    clientOptions: {
      disableChallengeResourceVerification: true,
      tlsOptions: { ca },
      retryOptions: { maxRetries: 0 },
      ...extra.clientOptions,
    },
  };
}

function newStore(extra?: KeyVaultSecretStoreOptions, credential: TokenCredential = vault.credential()) {
  return new KeyVaultSecretStore(vault.url, credential, storeOptions(extra));
}

async function rejection(promise: Promise<unknown>): Promise<AppError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(AppError);
  return error as AppError;
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

beforeAll(async () => {
  ca = (await testTls()).ca;
  vault = await startFakeKeyVault({ pageSize: 2 });
});

afterAll(async () => {
  await vault?.stop();
});

beforeEach(() => {
  vault.forbidden = false;
  vault.unavailable = false;
  vault.forbiddenReason = "ForbiddenByRbac";
});

describe("KeyVaultSecretStore over HTTPS with the real SecretClient", () => {
  test("set, get, overwrite, delete, get after delete; values never in a URL", async () => {
    const store = newStore();
    const name = identitySecretName(ID, "client-secret");
    expect(await store.get(name)).toBeUndefined();
    await store.set(name, SECRET, { identity: ID });
    expect(await store.get(name)).toBe(SECRET);
    await store.set(name, `${SECRET}-2`);
    expect(await store.get(name)).toBe(`${SECRET}-2`);
    await store.delete(name);
    expect(await store.get(name)).toBeUndefined();
    expect(vault.deletedNames()).toContain(name);
    // Idempotent: deleting again (and deleting what never existed) succeeds.
    await store.delete(name);
    await store.delete("never-existed");

    expect(vault.requests.some((r) => r.authorized)).toBe(true);
    expect(vault.requests.every((r) => r.status !== 400)).toBe(true);
    for (const request of vault.requests) {
      expect(request.url).not.toContain(SECRET);
      expect(decodeURIComponent(request.url)).not.toContain(SECRET);
    }
  });

  test("re-setting a soft-deleted name recovers it and sets the new value", async () => {
    const store = newStore();
    const name = identitySecretName(ID, "refresh-token");
    await store.set(name, "first");
    await store.delete(name);
    expect(vault.deletedNames()).toContain(name);
    await store.set(name, "second");
    expect(await store.get(name)).toBe("second");
    expect(vault.deletedNames()).not.toContain(name);
    expect(
      vault.requests.some((r) => r.method === "POST" && r.url.includes(`/deletedsecrets/${name}/recover`)),
    ).toBe(true);
  });

  test("list pages through nextLink and filters by prefix", async () => {
    const store = newStore();
    const other = "1a2b3c4d-0000-4000-8000-000000000001";
    const fields = ["client-id-x", "client-secret", "refresh-token"];
    for (const field of fields) await store.set(identitySecretName(other, field), `v-${field}`);
    await store.set("unrelated-secret", "x");
    const names = await store.list(`idn-${other}-`);
    expect(names).toEqual(fields.map((f) => identitySecretName(other, f)).sort());
    expect(await store.list()).toContain("unrelated-secret");
    // pageSize 2 forces more than one page.
    expect(vault.requests.filter((r) => r.url.includes("skiptoken")).length).toBeGreaterThan(0);
  });

  test("the fake is the real Key Vault contract: raw SecretClient flow incl. purge 204", async () => {
    const client = new SecretClient(vault.url, vault.credential(), {
      disableChallengeResourceVerification: true,
      tlsOptions: { ca },
    });
    const set = await client.setSecret("raw-flow", "v1", { tags: { a: "b" } });
    expect(set.properties.name).toBe("raw-flow");
    expect(set.properties.version).toMatch(/^[0-9a-f]{32}$/);
    expect((await client.getSecret("raw-flow")).value).toBe("v1");
    const poller = await client.beginDeleteSecret("raw-flow", { intervalInMs: 10 });
    await poller.pollUntilDone();
    const deleted = await client.getDeletedSecret("raw-flow");
    expect(deleted.properties.recoveryId).toContain("/deletedsecrets/raw-flow");
    await expect(client.setSecret("raw-flow", "v2")).rejects.toMatchObject({ statusCode: 409 });
    await client.purgeDeletedSecret("raw-flow");
    expect(vault.deletedNames()).not.toContain("raw-flow");
    await client.setSecret("raw-flow", "v3");
    expect((await client.getSecret("raw-flow")).value).toBe("v3");
    expect(vault.requests.some((r) => r.method === "DELETE" && r.status === 204)).toBe(true);
  });

  test("check() succeeds against a reachable, permitted vault", async () => {
    await newStore().check();
  });

  test("403 becomes ERR_SECRET_STORE_FORBIDDEN naming the missing role, on every operation", async () => {
    const store = newStore();
    vault.forbidden = true;
    for (const call of [
      () => store.get("some-name"),
      () => store.set("some-name", SECRET),
      () => store.delete("some-name"),
      () => store.list(),
      () => store.check(),
    ]) {
      const error = await rejection(call());
      expect(error.code).toBe("ERR_SECRET_STORE_FORBIDDEN");
      expect(error.status).toBe(500);
      expect(error.message).toContain("Key Vault Secrets Officer");
      expect(error.message).not.toContain(SECRET);
      expect(String(error.cause)).not.toContain(SECRET);
      expect(JSON.stringify(error)).not.toContain(SECRET);
    }
  });

  test("a vault that answers 503 is a transient failure, one that refuses the role a permanent one", async () => {
    vault.unavailable = true;
    const down = await rejection(newStore().get("some-name"));
    expect(down.code).toBe("ERR_SECRET_STORE");
    expect(down.message).toContain("status 503");
    expect(classifyFailure(down)).toBe("transient");
    vault.unavailable = false;
    vault.forbidden = true;
    expect(classifyFailure(await rejection(newStore().get("some-name")))).toBe("permanent");
  });

  test("a 403 from the vault's firewall says so instead of blaming the role", async () => {
    vault.forbidden = true;
    vault.forbiddenReason = "ForbiddenByFirewall";
    const error = await rejection(newStore().check());
    expect(error.code).toBe("ERR_SECRET_STORE_FORBIDDEN");
    expect(error.message).toContain("firewall");
  });

  test("an unreachable vault fails fast with ERR_SECRET_STORE_UNREACHABLE", async () => {
    const port = await freePort();
    const store = new KeyVaultSecretStore(`https://localhost:${port}`, vault.credential(), storeOptions());
    const error = await rejection(store.check());
    expect(error.code).toBe("ERR_SECRET_STORE_UNREACHABLE");
    expect(error.status).toBe(503);
    expect(error.message).toContain(`localhost:${port}`);
    // Fast: the refusal itself ends it, not the operation's time-out.
    expect(error.message).not.toContain("did not answer");
  });

  test("with the default bounded retries an unreachable vault is cut off by the operation time-out", async () => {
    const port = await freePort();
    const store = new KeyVaultSecretStore(`https://localhost:${port}`, vault.credential(), {
      operationTimeoutMs: 800,
      clientOptions: { disableChallengeResourceVerification: true, tlsOptions: { ca } },
    });
    const error = await rejection(store.set("x-name", SECRET));
    expect(error.code).toBe("ERR_SECRET_STORE_UNREACHABLE");
    expect(error.message).not.toContain(SECRET);
    // The retries' delays alone (0.5 + 1 + 2 s) outlast it: the operation's time-out ended it.
    expect(error.message).toContain("did not answer within 800 ms");
  });

  test("an untrusted TLS certificate is refused (unreachable), not ignored", async () => {
    const store = new KeyVaultSecretStore(vault.url, vault.credential(), {
      clientOptions: { disableChallengeResourceVerification: true, retryOptions: { maxRetries: 0 } },
    });
    const error = await rejection(store.get("any-name"));
    expect(error.code).toBe("ERR_SECRET_STORE_UNREACHABLE");
  });

  test("a credential that cannot get a token becomes ERR_SECRET_STORE_AUTH", async () => {
    const failing: TokenCredential = {
      async getToken(): Promise<AccessToken> {
        const error = new Error("ManagedIdentityCredential: no managed identity endpoint found");
        error.name = "CredentialUnavailableError";
        throw error;
      },
    };
    const error = await rejection(newStore({}, failing).get("any-name"));
    expect(error.code).toBe("ERR_SECRET_STORE_AUTH");
  });

  test("invalid names are refused before any request", async () => {
    const store = newStore();
    const before = vault.requests.length;
    for (const bad of ["", "has_underscore", "a/b", "x".repeat(128), "spaces here"]) {
      const error = await rejection(store.get(bad));
      expect(error.code).toBe("ERR_VALIDATION");
    }
    expect(vault.requests.length).toBe(before);
  });

  test("the vault URL must be https", () => {
    expect(() => new KeyVaultSecretStore("http://localhost:1", vault.credential())).toThrow(/https/);
    expect(() => new KeyVaultSecretStore("not a url", vault.credential())).toThrow(AppError);
  });
});
