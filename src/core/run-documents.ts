import type { BackupService } from "./backup/backup-service.js";
import type { BackupStore, OpenedBlob } from "./backup/backup-store.js";
import { manifestName, RUN_ID_PATTERN } from "./backup/layout.js";
import { NotFoundError } from "./errors.js";
import type { StoredIdentity } from "./identities/identity.js";
import type { IdentityService } from "./identities/identity-service.js";
import type { OrchestrationClient } from "./orchestrations.js";
import type { RestoreService } from "./restore/restore-service.js";
import { getRestoreServices } from "./restore/restore-services.js";
import { getServices } from "./services.js";

/** A document opened for streaming from Blob, with its size in bytes. */
export type DocumentStream = OpenedBlob;

/** A run's manifest or report is written when the run ends: asked for before, this code says so. */
export const STILL_RUNNING = "ERR_STILL_RUNNING";

/**
 * A backup run's manifest and a restore's report, streamed from the container of the identity
 * whose backup they describe, so a client needs no Blob access (and a large manifest is never
 * held in memory).
 */
export class RunDocuments {
  constructor(
    private readonly deps: {
      /** Records as they stand: a run whose orchestration ended unrecorded is ended first. */
      backups: Pick<BackupService, "current">;
      restores: Pick<RestoreService, "current">;
      identities: IdentityService;
      openStore(identity: StoredIdentity): Promise<BackupStore>;
    },
  ) {}

  async manifest(runId: string, orchestrations: OrchestrationClient): Promise<DocumentStream> {
    const isBackupRun = RUN_ID_PATTERN.test(runId) && runId.startsWith("b-");
    const run = isBackupRun ? await this.deps.backups.current(runId, orchestrations) : undefined;
    if (!run) throw new NotFoundError(`Backup run ${runId} not found`);
    if (run.status === "running") {
      throw new NotFoundError(
        `Backup run ${runId} is still running: its manifest is written when it ends`,
        STILL_RUNNING,
      );
    }
    const missing = `Backup run ${runId} has no manifest (it ended ${run.status} before writing one)`;
    return this.open(run.identityId, manifestName(runId), missing);
  }

  async report(restoreId: string, orchestrations: OrchestrationClient): Promise<DocumentStream> {
    const record = await this.deps.restores.current(restoreId, orchestrations);
    if (!record) throw new NotFoundError(`Restore ${restoreId} not found`);
    if (record.status === "running") {
      throw new NotFoundError(
        `Restore ${restoreId} is still running: its report is written when it ends`,
        STILL_RUNNING,
      );
    }
    const missing = `Restore ${restoreId} has no report (it ended ${record.status} before writing one)`;
    if (!record.report) throw new NotFoundError(missing);
    return this.open(record.identityId, record.report, missing);
  }

  private async open(identityId: string, relative: string, missing: string): Promise<DocumentStream> {
    const identity = await this.deps.identities.get(identityId);
    const document = await (await this.deps.openStore(identity)).openIfExists(relative);
    if (!document) throw new NotFoundError(missing);
    return document;
  }
}

/** Built on the app's services (cheap: it holds references only). */
export async function getRunDocuments(): Promise<RunDocuments> {
  const services = await getServices();
  const { restores } = await getRestoreServices();
  return new RunDocuments({
    backups: services.backups,
    restores,
    identities: services.identities,
    openStore: (identity) => services.openStore(identity),
  });
}
