import type { IdentityService } from "../identities/identity-service.js";
import type { Logger } from "../log.js";
import type { RunRecord, RunStore } from "./runs.js";

/** One `BackupRunCompleted` line per run: the monitoring contract (docs/deploy.md). */
export function logRunCompleted(log: Logger, run: RunRecord, identityName: string): void {
  const endedAt = run.endedAt ?? new Date().toISOString();
  log.event("BackupRunCompleted", {
    runId: run.runId,
    identityId: run.identityId,
    identityName,
    status: run.status,
    itemsTotal: run.itemsTotal,
    itemsExported: run.itemsExported,
    itemsUnchanged: run.itemsUnchanged,
    itemsFailed: run.itemsFailed,
    bytes: run.bytes,
    durationMs: Date.parse(endedAt) - Date.parse(run.startedAt),
  });
}

/**
 * Ends a run that could not finish on its own as `failed` with the reason, through the runs table
 * alone (no portal, no backup storage: either may be what broke), and releases its lock. A run
 * that has already ended keeps its outcome; the one call that ends it logs the end.
 */
export async function failRun(
  deps: { runs: RunStore; identities: IdentityService; log: Logger },
  identityId: string,
  runId: string,
  error: { code: string; message: string },
): Promise<RunRecord> {
  const { run, ended } = await deps.runs.endAsFailed(identityId, runId, error);
  if (ended) {
    const identityName = await deps.identities.get(identityId).then(
      (identity) => identity.name,
      () => "",
    );
    logRunCompleted(deps.log, run, identityName);
  }
  return run;
}
