import { getServices, type Services } from "../services.js";
import { openAppTable } from "../tables/table-client.js";
import { RestoreRunner } from "./restore-runner.js";
import { RestoreService } from "./restore-service.js";
import { RestoreStore } from "./restore-store.js";

export interface RestoreServices {
  restores: RestoreService;
  runner: RestoreRunner;
  store: RestoreStore;
}

let built: { base: Services; restore: Promise<RestoreServices> } | undefined;

/**
 * The restore's use cases, built once per process on top of the app's services (and built again
 * when those are, e.g. after `configureServices` in tests). Restore state lives in the runs table.
 */
export async function getRestoreServices(): Promise<RestoreServices> {
  const base = await getServices();
  if (built?.base !== base) {
    const restore = build(base);
    built = { base, restore };
    restore.catch(() => {
      if (built?.restore === restore) built = undefined;
    });
  }
  return built.restore;
}

async function build(base: Services): Promise<RestoreServices> {
  const table = await openAppTable(base.config.appStorage, base.config.runsTable, base.credential);
  const store = new RestoreStore(table);
  const runner = new RestoreRunner({
    identities: base.identities,
    store,
    portalFor: (identity) => base.portalFor(identity),
    openStore: (identity) => base.openStore(identity),
    governorFor: (identity) => base.governorFor(identity),
    outage: base.config.outage,
    cacheMaxBytes: base.config.cacheMaxBytes,
    log: base.log,
  });
  const restores = new RestoreService({
    identities: base.identities,
    backups: base.backups,
    store,
    runner,
    log: base.log,
  });
  return { restores, runner, store };
}
