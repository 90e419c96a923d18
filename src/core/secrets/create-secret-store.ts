import { DefaultAzureCredential, type TokenCredential } from "@azure/identity";
import type { AppConfig } from "../config.js";
import { ConfigurationError } from "../errors.js";
import { FileSecretStore } from "./file-secret-store.js";
import { KeyVaultSecretStore, type KeyVaultSecretStoreOptions } from "./key-vault-secret-store.js";
import type { SecretStore } from "./secret-store.js";

export type SecretStoreConfig = Pick<
  AppConfig,
  "secretStore" | "keyVaultUrl" | "fileSecretStorePath" | "managedIdentityClientId"
>;

export interface CreateSecretStoreOptions extends KeyVaultSecretStoreOptions {
  /**
   * The credential for Key Vault. Default: `DefaultAzureCredential`, pinned to the user-assigned
   * managed identity `managedIdentityClientId` (AZURE_CLIENT_ID) when set.
   */
  credential?: TokenCredential;
}

/**
 * The secret store the settings ask for: Key Vault (SECRET_STORE=keyvault, KEY_VAULT_URL) or the
 * development file (SECRET_STORE=file, FILE_SECRET_STORE_PATH). Creating it makes no request.
 */
export function createSecretStore(
  config: SecretStoreConfig,
  options: CreateSecretStoreOptions = {},
): SecretStore {
  if (config.secretStore === "file") return new FileSecretStore(config.fileSecretStorePath);
  if (config.secretStore !== "keyvault") {
    throw new ConfigurationError("SECRET_STORE must be keyvault or file", "SECRET_STORE");
  }
  if (!config.keyVaultUrl) {
    throw new ConfigurationError("KEY_VAULT_URL is required when SECRET_STORE=keyvault", "KEY_VAULT_URL");
  }
  const { credential, ...storeOptions } = options;
  return new KeyVaultSecretStore(
    config.keyVaultUrl,
    credential ?? defaultCredential(config.managedIdentityClientId),
    storeOptions,
  );
}

/** The production credential: managed identity in Azure (a given client id when user-assigned). */
export function defaultCredential(managedIdentityClientId?: string): TokenCredential {
  return managedIdentityClientId
    ? new DefaultAzureCredential({ managedIdentityClientId })
    : new DefaultAzureCredential();
}
