import type { TokenCredential } from "@azure/identity";
import { GOVERNOR_TABLE, type OrgRateGovernor, sharedOrgGovernor } from "./arcgis/governor/index.js";
import type { PortalClient, RequestPacer } from "./arcgis/portal-client.js";
import { BackupRunner } from "./backup/backup-runner.js";
import { BackupService } from "./backup/backup-service.js";
import type { BackupStore } from "./backup/backup-store.js";
import { createFeatureDataExporter } from "./backup/feature-export.js";
import { PruneService } from "./backup/prune-service.js";
import { PruneStore } from "./backup/prune-store.js";
import { RunStore } from "./backup/runs.js";
import { type AppConfig, loadConfig } from "./config.js";
import { ConfigurationError } from "./errors.js";
import type { StoredIdentity } from "./identities/identity.js";
import { IdentityService } from "./identities/identity-service.js";
import { OAuthSignIn } from "./identities/oauth-sign-in.js";
import { openPortalSession } from "./identities/portal-session.js";
import { TableIdentityStore } from "./identities/table-identity-store.js";
import { HistoryService } from "./item-index/history-service.js";
import { ItemIndex } from "./item-index/item-index.js";
import { atLevel, consoleLogger, type Logger } from "./log.js";
import { RestoreStore } from "./restore/restore-store.js";
import { createSecretStore, defaultCredential } from "./secrets/create-secret-store.js";
import type { SecretStore } from "./secrets/secret-store.js";
import { BlobBackupStore } from "./storage/blob-backup-store.js";
import { openBlobContainer } from "./storage/blob-container.js";
import { openAppTable } from "./tables/table-client.js";

/** Everything the triggers call into, built once per process from the app settings. */
export interface Services {
  config: AppConfig;
  log: Logger;
  credential: () => TokenCredential;
  secrets: SecretStore;
  identities: IdentityService;
  oauth: OAuthSignIn;
  runs: RunStore;
  backups: BackupService;
  prunes: PruneService;
  /** Search, item history and diffs, from the item index. */
  history: HistoryService;
  runner: BackupRunner;
  /**
   * The identity's backup store: its folder of its backup container (reached with the connection
   * string from the secret store, or the app's identity).
   */
  openStore(identity: StoredIdentity): Promise<BackupStore>;
  /** The org's request-unit governor, shared by every backup and restore of the org. */
  governorFor(identity: StoredIdentity): Promise<OrgRateGovernor>;
  /** A signed-in portal client for the identity (secrets read from the secret store). */
  portalFor(identity: StoredIdentity, options?: { pacer?: RequestPacer }): Promise<PortalClient>;
}

export interface ServiceOverrides {
  env?: Record<string, string | undefined>;
  secrets?: SecretStore;
  credential?: TokenCredential;
  log?: Logger;
}

let overrides: ServiceOverrides = {};
let services: Promise<Services> | undefined;

/** Tests (and the local host) may replace adapters before the first request. */
export function configureServices(next: ServiceOverrides): void {
  overrides = next;
  services = undefined;
}

export function getServices(): Promise<Services> {
  services ??= buildServices().catch((error: unknown) => {
    services = undefined;
    throw error;
  });
  return services;
}

async function buildServices(): Promise<Services> {
  const config = loadConfig(overrides.env ?? process.env);
  const log = overrides.log ?? atLevel(consoleLogger, config.logLevel);
  let credential: TokenCredential | undefined = overrides.credential;
  const lazyCredential = () => {
    credential ??= defaultCredential(config.managedIdentityClientId);
    return credential;
  };
  const secrets = overrides.secrets ?? createSecretStore(config, { credential: lazyCredential() });
  const identityTable = await openAppTable(config.appStorage, config.identitiesTable, lazyCredential);
  const identities = new IdentityService({
    store: new TableIdentityStore(identityTable),
    secrets,
    allowInsecureLoopback: config.allowInsecureLoopback,
    cacheRoot: config.cacheRoot,
    log,
  });
  const oauth = new OAuthSignIn(identities, identityTable, secrets);
  const portalFor = async (identity: StoredIdentity, options: { pacer?: RequestPacer } = {}) =>
    openPortalSession(identity, {
      secrets: await identities.secretsOf(identity),
      redirectUri: identity.auth.type === "oauth2-user" ? (identity.auth.redirectUri ?? "") : "",
      saveRefreshToken: async (token) => {
        await identities.saveRefreshToken(identity.id, token);
      },
      ...(options.pacer ? { pacer: options.pacer } : {}),
      client: { baseDelayMs: config.portalRetryBaseDelayMs },
    });
  const openContainer = async (identity: StoredIdentity) => {
    const { container, accountUrl } = identity.storage;
    if (accountUrl) {
      return openBlobContainer(
        { type: "azure-blob", container, accountUrl },
        { credential: lazyCredential(), allowInsecureLoopback: config.allowInsecureLoopback },
      );
    }
    const { connectionString } = await identities.secretsOf(identity);
    if (!connectionString)
      throw new ConfigurationError("The identity's storage connection string is missing", "storage");
    return openBlobContainer(
      { type: "azure-blob", container, connectionString },
      { allowInsecureLoopback: config.allowInsecureLoopback },
    );
  };
  const openStore = async (identity: StoredIdentity): Promise<BackupStore> =>
    new BlobBackupStore(await openContainer(identity), identity.id);
  const runsTable = await openAppTable(config.appStorage, config.runsTable, lazyCredential);
  const runs = new RunStore(runsTable);
  let prunes: PruneService | undefined;
  const backups = new BackupService({
    identities,
    runs,
    log,
    pruneHolds: async (identityId, pruneId, orchestrations) =>
      (await prunes?.holds(identityId, pruneId, orchestrations)) ?? false,
  });
  const restoreRecords = new RestoreStore(runsTable);
  prunes = new PruneService({
    identities,
    runs,
    prunes: new PruneStore(runsTable),
    backups,
    openStore,
    restoresInUse: async (identityId) =>
      new Set(
        (await restoreRecords.list(identityId)).filter((r) => r.status === "running").map((r) => r.runId),
      ),
    log,
  });
  const governorTable = await openAppTable(config.appStorage, GOVERNOR_TABLE, lazyCredential);
  const governorFor = async (identity: StoredIdentity) =>
    sharedOrgGovernor({
      table: governorTable,
      orgKey: identity.sharingUrl,
      budgetShare: identity.maxOrgBudgetShare,
      windowMs: config.requestUnitsWindowMs,
    });
  const itemIndex = new ItemIndex(
    await openAppTable(config.appStorage, config.itemIndexTable, lazyCredential),
  );
  const history = new HistoryService({
    identities,
    runs,
    index: itemIndex,
    openStore,
    cacheMaxBytes: config.cacheMaxBytes,
  });
  const runner = new BackupRunner({
    identities,
    runs,
    itemIndex,
    portalFor,
    openStore,
    serviceDataFor: (portal, runLog) =>
      createFeatureDataExporter(portal, { log: runLog, fullExportEvery: config.layerFullExportEvery }),
    governorFor,
    cacheMaxBytes: config.cacheMaxBytes,
    outage: config.outage,
    log,
  });
  return {
    config,
    log,
    credential: lazyCredential,
    secrets,
    identities,
    oauth,
    portalFor,
    openStore,
    runs,
    backups,
    prunes,
    history,
    runner,
    governorFor,
  };
}
