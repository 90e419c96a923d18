import os from "node:os";
import path from "node:path";
import { ConfigurationError } from "./errors.js";
import type { OutageSettings } from "./outage.js";

/**
 * Every app setting the code reads, in one place: the README documents them, the infra test
 * compares them with what the Bicep sets, and local.settings.example.json lists them.
 */
export interface SettingSpec {
  name: string;
  description: string;
  /** Used when the setting is absent. */
  defaultValue?: string;
  /** Azure deployments must set it (the Bicep does). */
  requiredInAzure: boolean;
}

export const SETTINGS: readonly SettingSpec[] = [
  {
    name: "AzureWebJobsStorage",
    description:
      "The app's own storage (Durable state, identities and run tables). A connection string locally; in Azure the identity-based form AzureWebJobsStorage__blobServiceUri/__queueServiceUri/__tableServiceUri with AzureWebJobsStorage__credential=managedidentity.",
    requiredInAzure: false,
  },
  {
    name: "AzureWebJobsStorage__tableServiceUri",
    description: "Table endpoint of the app's storage when it is reached with the managed identity.",
    requiredInAzure: true,
  },
  {
    name: "AzureWebJobsStorage__blobServiceUri",
    description: "Blob endpoint of the app's storage when it is reached with the managed identity.",
    requiredInAzure: true,
  },
  {
    name: "FUNCTIONS_WORKER_RUNTIME",
    description: "Always node.",
    defaultValue: "node",
    requiredInAzure: false,
  },
  {
    name: "IDENTITIES_TABLE",
    description: "Table that holds the identities (no secrets).",
    defaultValue: "identities",
    requiredInAzure: false,
  },
  {
    name: "RUNS_TABLE",
    description: "Table that holds backup and restore run records.",
    defaultValue: "runs",
    requiredInAzure: false,
  },
  {
    name: "ITEM_INDEX_TABLE",
    description:
      "Table that holds the index of backed-up items (search, item history), written when a run ends.",
    defaultValue: "itemindex",
    requiredInAzure: false,
  },
  {
    name: "SECRET_STORE",
    description:
      "Where secrets live: keyvault (production) or file (local development only; a 0600 JSON file).",
    defaultValue: "keyvault",
    requiredInAzure: false,
  },
  {
    name: "KEY_VAULT_URL",
    description: "https://<vault>.vault.azure.net, required when SECRET_STORE=keyvault.",
    requiredInAzure: true,
  },
  {
    name: "FILE_SECRET_STORE_PATH",
    description: "Path of the development secret file when SECRET_STORE=file.",
    defaultValue: ".local/secrets.json",
    requiredInAzure: false,
  },
  {
    name: "ALLOW_INSECURE_LOOPBACK",
    description:
      "true allows http:// portal and storage URLs on loopback (127.0.0.1, localhost) for local development against the simulator and Azurite. Never set in Azure.",
    defaultValue: "false",
    requiredInAzure: false,
  },
  {
    name: "CACHE_ROOT",
    description:
      "The folder every identity's cache folder must stay inside (after .. and symlinks are resolved); a relative cacheDirectory is taken relative to it, and the default is <CACHE_ROOT>/<identity id>.",
    defaultValue: path.join(os.tmpdir(), "arcgis-org-backup-cache"),
    requiredInAzure: false,
  },
  {
    name: "CACHE_MAX_BYTES",
    description:
      "Upper bound of bytes held in a cache folder at once; an export waits for room. A larger single file fails its item.",
    defaultValue: String(8 * 1024 ** 3),
    requiredInAzure: false,
  },
  {
    name: "PUBLIC_BASE_URL",
    description:
      "Public base URL of the app (https://<app>.azurewebsites.net), used to build the OAuth redirect URI; defaults to the URL of the incoming request.",
    requiredInAzure: false,
  },
  {
    name: "AZURE_CLIENT_ID",
    description: "Client id of a user-assigned managed identity; omit for the system-assigned one.",
    requiredInAzure: false,
  },
  {
    name: "REQUEST_UNITS_WINDOW_SECONDS",
    description:
      "The window over which ArcGIS Online meters an org's request units (a minute). Change it only to match a simulator in tests.",
    defaultValue: "60",
    requiredInAzure: false,
  },
  {
    name: "OUTAGE_PAUSE_SECONDS",
    description:
      "How long a batch that found the portal or the storage unreachable past its retries waits (a durable timer) before it runs again.",
    defaultValue: "60",
    requiredInAzure: false,
  },
  {
    name: "OUTAGE_MAX_SECONDS",
    description:
      "The longest outage a run waits out; the items of a batch still unreachable after it fail with ERR_OUTAGE.",
    defaultValue: "1800",
    requiredInAzure: false,
  },
  {
    name: "PORTAL_RETRY_BASE_DELAY_MS",
    description:
      "First backoff of a portal request's retries (full jitter, doubling up to 30 s, 5 retries). Lower it only for tests against a simulator.",
    defaultValue: "500",
    requiredInAzure: false,
  },
  {
    name: "LAYER_FULL_EXPORT_EVERY",
    description:
      "A hosted layer that tracks changes is stored as change sets between full exports; a full export is taken at least every this many versions of the layer (1: always full), so a restore never replays a long chain.",
    defaultValue: "7",
    requiredInAzure: false,
  },
  {
    name: "LOG_LEVEL",
    description: "Lowest level of the app's own log lines: info, warn or error.",
    defaultValue: "info",
    requiredInAzure: false,
  },
  {
    name: "APPLICATIONINSIGHTS_CONNECTION_STRING",
    description: "Application Insights connection, set by the deployment.",
    requiredInAzure: true,
  },
  {
    name: "CONSOLE_ALLOWED_ROLE",
    description:
      "The Microsoft Entra ID app role a signed-in person needs to use the console in Azure (src/core/console/access.ts).",
    defaultValue: "Console.Admin",
    requiredInAzure: false,
  },
];

export type SecretStoreKind = "keyvault" | "file";

export interface AppStorageConfig {
  /** Connection string (Azurite, or a key-based account). */
  connectionString?: string;
  /** Identity-based endpoints. */
  tableServiceUri?: string;
  blobServiceUri?: string;
}

export interface AppConfig {
  appStorage: AppStorageConfig;
  identitiesTable: string;
  runsTable: string;
  itemIndexTable: string;
  secretStore: SecretStoreKind;
  keyVaultUrl?: string;
  fileSecretStorePath: string;
  allowInsecureLoopback: boolean;
  cacheRoot: string;
  cacheMaxBytes: number;
  publicBaseUrl?: string;
  managedIdentityClientId?: string;
  logLevel: "info" | "warn" | "error";
  requestUnitsWindowMs: number;
  outage: OutageSettings;
  /** First backoff of portal retries (PortalClientOptions.baseDelayMs). */
  portalRetryBaseDelayMs: number;
  /** A hosted layer with change tracking is exported full at least every this many versions. */
  layerFullExportEvery: number;
}

type Env = Record<string, string | undefined>;

function setting(env: Env, name: string): string | undefined {
  const value = env[name]?.trim();
  if (value) return value;
  return SETTINGS.find((s) => s.name === name)?.defaultValue;
}

/** Reads and checks the app settings; a bad value names the setting. */
export function loadConfig(env: Env = process.env): AppConfig {
  const secretStore = setting(env, "SECRET_STORE");
  if (secretStore !== "keyvault" && secretStore !== "file") {
    throw new ConfigurationError("SECRET_STORE must be keyvault or file", "SECRET_STORE");
  }
  const keyVaultUrl = setting(env, "KEY_VAULT_URL");
  if (secretStore === "keyvault" && !keyVaultUrl) {
    throw new ConfigurationError("KEY_VAULT_URL is required when SECRET_STORE=keyvault", "KEY_VAULT_URL");
  }
  const cacheMaxBytes = Number(setting(env, "CACHE_MAX_BYTES"));
  if (!Number.isSafeInteger(cacheMaxBytes) || cacheMaxBytes < 1024 * 1024) {
    throw new ConfigurationError(
      "CACHE_MAX_BYTES must be a whole number of at least 1 MiB",
      "CACHE_MAX_BYTES",
    );
  }
  const logLevel = setting(env, "LOG_LEVEL");
  if (logLevel !== "info" && logLevel !== "warn" && logLevel !== "error") {
    throw new ConfigurationError("LOG_LEVEL must be info, warn or error", "LOG_LEVEL");
  }
  const windowSeconds = Number(setting(env, "REQUEST_UNITS_WINDOW_SECONDS"));
  if (!Number.isFinite(windowSeconds) || windowSeconds < 1 || windowSeconds > 3600) {
    throw new ConfigurationError(
      "REQUEST_UNITS_WINDOW_SECONDS must be a number of seconds from 1 to 3600",
      "REQUEST_UNITS_WINDOW_SECONDS",
    );
  }
  const outage: OutageSettings = {
    pauseMs: numberSetting(env, "OUTAGE_PAUSE_SECONDS", 1, 3600) * 1000,
    maxOutageMs: numberSetting(env, "OUTAGE_MAX_SECONDS", 0, 7 * 24 * 3600) * 1000,
  };
  const portalRetryBaseDelayMs = numberSetting(env, "PORTAL_RETRY_BASE_DELAY_MS", 1, 60_000);
  const layerFullExportEvery = numberSetting(env, "LAYER_FULL_EXPORT_EVERY", 1, 1000);
  if (!Number.isInteger(layerFullExportEvery)) {
    throw new ConfigurationError(
      "LAYER_FULL_EXPORT_EVERY must be a whole number from 1 to 1000",
      "LAYER_FULL_EXPORT_EVERY",
    );
  }
  const connectionString = env.AzureWebJobsStorage?.trim();
  const appStorage: AppStorageConfig = {};
  if (connectionString) {
    appStorage.connectionString =
      connectionString === "UseDevelopmentStorage=true"
        ? developmentStorageConnectionString()
        : connectionString;
  }
  const tableServiceUri = setting(env, "AzureWebJobsStorage__tableServiceUri");
  const blobServiceUri = setting(env, "AzureWebJobsStorage__blobServiceUri");
  if (tableServiceUri) appStorage.tableServiceUri = tableServiceUri;
  if (blobServiceUri) appStorage.blobServiceUri = blobServiceUri;
  if (!appStorage.connectionString && !appStorage.tableServiceUri) {
    throw new ConfigurationError(
      "Set AzureWebJobsStorage (connection string) or AzureWebJobsStorage__tableServiceUri",
      "AzureWebJobsStorage",
    );
  }
  const config: AppConfig = {
    appStorage,
    identitiesTable: setting(env, "IDENTITIES_TABLE")!,
    runsTable: setting(env, "RUNS_TABLE")!,
    itemIndexTable: setting(env, "ITEM_INDEX_TABLE")!,
    secretStore,
    fileSecretStorePath: setting(env, "FILE_SECRET_STORE_PATH")!,
    allowInsecureLoopback: setting(env, "ALLOW_INSECURE_LOOPBACK") === "true",
    cacheRoot: setting(env, "CACHE_ROOT")!,
    cacheMaxBytes,
    logLevel,
    requestUnitsWindowMs: windowSeconds * 1000,
    outage,
    portalRetryBaseDelayMs,
    layerFullExportEvery,
  };
  if (keyVaultUrl) config.keyVaultUrl = keyVaultUrl;
  const publicBaseUrl = setting(env, "PUBLIC_BASE_URL");
  if (publicBaseUrl) config.publicBaseUrl = publicBaseUrl.replace(/\/+$/, "");
  const clientId = setting(env, "AZURE_CLIENT_ID");
  if (clientId) config.managedIdentityClientId = clientId;
  return config;
}

/** A number setting within [min, max]; anything else names the setting. */
function numberSetting(env: Env, name: string, min: number, max: number): number {
  const value = Number(setting(env, name));
  if (!Number.isFinite(value) || value < min || value > max) {
    throw new ConfigurationError(`${name} must be a number from ${min} to ${max}`, name);
  }
  return value;
}

/** The emulator's well-known account on its default ports, as UseDevelopmentStorage=true means. */
export function developmentStorageConnectionString(): string {
  return [
    "DefaultEndpointsProtocol=http",
    "AccountName=devstoreaccount1",
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==",
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1",
    "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1",
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1",
  ].join(";");
}
