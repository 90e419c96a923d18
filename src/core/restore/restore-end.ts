import type { Logger } from "../log.js";
import type { RestoreRecord } from "./model.js";
import type { RestoreStore } from "./restore-store.js";

/** One `RestoreCompleted` line per restore. */
export function logRestoreCompleted(log: Logger, record: RestoreRecord): void {
  const endedAt = record.endedAt ?? new Date().toISOString();
  log.info("RestoreCompleted", {
    restoreId: record.restoreId,
    identityId: record.identityId,
    targetIdentityId: record.target.identityId,
    status: record.status,
    itemsTotal: record.itemsTotal,
    itemsRestored: record.itemsRestored,
    itemsFailed: record.itemsFailed,
    itemsSkipped: record.itemsSkipped,
    durationMs: Date.parse(endedAt) - Date.parse(record.startedAt),
  });
}

/**
 * Ends a restore that could not finish on its own as `failed` with the reason, through the runs
 * table alone (the backup storage or the target org may be what broke). A restore that has
 * already ended keeps its outcome; the one call that ends it logs the end.
 */
export async function failRestore(
  deps: { store: RestoreStore; log: Logger },
  identityId: string,
  restoreId: string,
  error: { code: string; message: string },
): Promise<RestoreRecord> {
  const { record, ended } = await deps.store.endAsFailed(identityId, restoreId, error);
  if (ended) logRestoreCompleted(deps.log, record);
  return record;
}
