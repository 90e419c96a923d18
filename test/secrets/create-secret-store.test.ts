import os from "node:os";
import path from "node:path";
import { DefaultAzureCredential } from "@azure/identity";
import { describe, expect, test } from "vitest";
import { loadConfig } from "../../src/core/config.js";
import { createSecretStore, defaultCredential } from "../../src/core/secrets/create-secret-store.js";
import { FileSecretStore } from "../../src/core/secrets/file-secret-store.js";
import { KeyVaultSecretStore } from "../../src/core/secrets/key-vault-secret-store.js";
import {
  assertSecretName,
  identitySecretName,
  identitySecretPrefix,
  isValidSecretName,
} from "../../src/core/secrets/secret-store.js";

const STORAGE = { AzureWebJobsStorage: "UseDevelopmentStorage=true" };

describe("createSecretStore", () => {
  test("SECRET_STORE=file gives the file store at FILE_SECRET_STORE_PATH", () => {
    const file = path.join(os.tmpdir(), "never-written", "secrets.json");
    const store = createSecretStore(
      loadConfig({ ...STORAGE, SECRET_STORE: "file", FILE_SECRET_STORE_PATH: file }),
    );
    expect(store).toBeInstanceOf(FileSecretStore);
    expect(store.kind).toBe("file");
    expect((store as FileSecretStore).filePath).toBe(file);
  });

  test("SECRET_STORE=keyvault gives the Key Vault store, without any request", () => {
    const store = createSecretStore(
      loadConfig({ ...STORAGE, KEY_VAULT_URL: "https://my-vault.vault.azure.net/" }),
    );
    expect(store).toBeInstanceOf(KeyVaultSecretStore);
    expect(store.kind).toBe("keyvault");
    expect((store as KeyVaultSecretStore).vaultUrl).toBe("https://my-vault.vault.azure.net");
  });

  test("a user-assigned identity id is used by the default credential", () => {
    expect(defaultCredential("11111111-2222-3333-4444-555555555555")).toBeInstanceOf(DefaultAzureCredential);
    const store = createSecretStore({
      secretStore: "keyvault",
      keyVaultUrl: "https://my-vault.vault.azure.net",
      fileSecretStorePath: "unused",
      managedIdentityClientId: "11111111-2222-3333-4444-555555555555",
    });
    expect(store).toBeInstanceOf(KeyVaultSecretStore);
  });

  test("keyvault without a URL, or with an http URL, is a configuration error", () => {
    expect(() => createSecretStore({ secretStore: "keyvault", fileSecretStorePath: "x" })).toThrow(
      expect.objectContaining({ code: "ERR_CONFIGURATION", field: "KEY_VAULT_URL" }),
    );
    expect(() =>
      createSecretStore({
        secretStore: "keyvault",
        keyVaultUrl: "http://vault.example",
        fileSecretStorePath: "x",
      }),
    ).toThrow(expect.objectContaining({ code: "ERR_CONFIGURATION" }));
  });
});

describe("secret names", () => {
  test("Key Vault's rule", () => {
    expect(isValidSecretName("a")).toBe(true);
    expect(isValidSecretName("A-z-09")).toBe(true);
    expect(isValidSecretName("x".repeat(127))).toBe(true);
    expect(isValidSecretName("x".repeat(128))).toBe(false);
    expect(isValidSecretName("")).toBe(false);
    expect(isValidSecretName("a_b")).toBe(false);
    expect(isValidSecretName("a.b")).toBe(false);
    expect(() => assertSecretName("a b")).toThrow(expect.objectContaining({ code: "ERR_VALIDATION" }));
  });

  test("identity secret names", () => {
    const id = "0f8fad5b-d9cb-469f-a165-70867728950e";
    expect(identitySecretName(id, "client-secret")).toBe(`idn-${id}-client-secret`);
    expect(identitySecretPrefix(id)).toBe(`idn-${id}-`);
    expect(isValidSecretName(identitySecretName(id, "refresh-token"))).toBe(true);
    expect(() => identitySecretName(id.toUpperCase(), "x")).toThrow(
      expect.objectContaining({ field: "identityId" }),
    );
    expect(() => identitySecretName(id, "Bad_Field")).toThrow(expect.objectContaining({ field: "field" }));
    expect(() => identitySecretName(id, "a--b")).toThrow(expect.objectContaining({ field: "field" }));
  });
});
