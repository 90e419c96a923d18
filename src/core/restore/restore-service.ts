import { PortalError } from "../arcgis/portal-errors.js";
import type { BackupService } from "../backup/backup-service.js";
import { RUN_ID_PATTERN } from "../backup/layout.js";
import { ConflictError, NotFoundError, ValidationError } from "../errors.js";
import { isSystemicFailure } from "../failures.js";
import type { IdentityService } from "../identities/identity-service.js";
import type { Logger } from "../log.js";
import { type OrchestrationClient, type OrchestrationState, readOrchestration } from "../orchestrations.js";
import { parseInput } from "../validation.js";
import type { RestoreInput } from "./activity-inputs.js";
import {
  newRestoreRecord,
  RESTORE_ID_PATTERN,
  type RestorePlan,
  type RestoreRecord,
  type RestoreReport,
  restoreRequestSchema,
} from "./model.js";
import { failRestore } from "./restore-end.js";
import type { RestoreRunner } from "./restore-runner.js";
import type { RestoreStore } from "./restore-store.js";
import { scopeParts } from "./structure-model.js";
import { assertCanCreate } from "./target.js";

export const RESTORE_ORCHESTRATOR = "restoreOrchestrator";

/** The orchestration's input. */
export type RestoreRunInput = RestoreInput;

/** A restore as the API shows it: the record, live progress or the report. */
export type RestoreView = Omit<RestoreRecord, "report"> & {
  reportBlob?: string;
  report?: RestoreReport;
  progress?: unknown;
};

export type StartResult = { dryRun: true; plan: RestorePlan } | { dryRun: false; restore: RestoreRecord };

/**
 * Start a restore (or answer its plan: a dry run), follow it, read its report. Restores are not
 * serialised: several may run at once, also into the same org — each keeps its own progress rows,
 * and a "new" restore of the same items twice makes two copies, as asked.
 */
export class RestoreService {
  constructor(
    private readonly deps: {
      identities: IdentityService;
      backups: BackupService;
      store: RestoreStore;
      runner: RestoreRunner;
      log: Logger;
    },
  ) {}

  async start(identityId: string, body: unknown, orchestrations: OrchestrationClient): Promise<StartResult> {
    const input = parseInput(restoreRequestSchema, body);
    const identity = await this.deps.identities.get(identityId);
    const targetId = input.target.identityId ?? identity.id;
    const target = targetId === identity.id ? identity : await this.deps.identities.get(targetId);
    if (!RUN_ID_PATTERN.test(input.runId) || !input.runId.startsWith("b-")) {
      throw new NotFoundError(`Backup run ${input.runId} not found`);
    }
    const run = await this.deps.backups.current(input.runId, orchestrations);
    if (run && run.identityId !== identity.id) throw new NotFoundError(`Backup run ${input.runId} not found`);
    if (run?.status === "running") {
      throw new ConflictError(
        `Backup run ${input.runId} is still running; restore from it once it has ended`,
      );
    }
    const manifest = await this.deps.runner.manifest(identity.id, input.runId);
    if (input.itemIds) {
      const known = new Set(manifest.items.map((i) => i.itemId));
      const index = input.itemIds.findIndex((id) => !known.has(id));
      if (index >= 0) {
        throw new ValidationError(
          `itemIds: ${input.itemIds[index]} is not an item of run ${input.runId}`,
          "itemIds",
        );
      }
    }
    const parts = scopeParts(input.scope);
    if (input.users === "invite" && !parts.includes("groups")) {
      throw new ValidationError('users: "invite" needs a scope with groups ("groups" or "all")', "users");
    }
    const self = await this.deps.runner.targetSelf(target.id);
    assertCanCreate(self);
    if (input.target.owner) await this.checkOwner(target.id, input.target.owner, self.orgId);
    const request = {
      identityId: identity.id,
      runId: input.runId,
      ...(input.itemIds ? { itemIds: [...new Set(input.itemIds)] } : {}),
      target: {
        identityId: target.id,
        mode: input.target.mode,
        ...(input.target.owner ? { owner: input.target.owner } : {}),
        ...(input.target.folder ? { folder: input.target.folder } : {}),
        ...(input.target.rows ? { rows: input.target.rows } : {}),
      },
      // A restore of items alone keeps its record as it always was.
      ...(parts.length === 1 && parts[0] === "items" ? {} : { scope: parts }),
      ...(input.usernameMap ? { usernameMap: input.usernameMap } : {}),
      ...(input.users === "invite" ? { users: input.users } : {}),
    };
    if (input.dryRun) {
      const plan = await this.deps.runner.planFor({ restoreId: null, ...request }, manifest);
      return { dryRun: true, plan };
    }
    const record = newRestoreRecord({
      identityId: identity.id,
      runId: input.runId,
      target: request.target,
      ...(request.itemIds ? { itemIds: request.itemIds } : {}),
      ...(request.scope ? { scope: request.scope } : {}),
      ...(request.usernameMap ? { usernameMap: request.usernameMap } : {}),
      ...(request.users ? { users: request.users } : {}),
      itemsTotal: parts.includes("items") ? (request.itemIds?.length ?? manifest.items.length) : 0,
    });
    const { restoreId } = record;
    await this.deps.store.create(record);
    try {
      const orchestrationInput: RestoreRunInput = { restoreId, identityId: identity.id };
      await orchestrations.start(RESTORE_ORCHESTRATOR, restoreId, orchestrationInput);
    } catch (error) {
      await this.deps.store
        .update(identity.id, restoreId, (next) => {
          next.status = "failed";
          next.endedAt = new Date().toISOString();
          next.error = { code: "ERR_START", message: (error as Error).message };
        })
        .catch(() => {});
      throw error;
    }
    this.deps.log.info("Restore started", {
      restoreId,
      identityId: identity.id,
      targetIdentityId: target.id,
      runId: input.runId,
      mode: input.target.mode,
    });
    return { dryRun: false, restore: record };
  }

  /** Restores of the identity's backups, newest first; one whose orchestration has ended is shown ended. */
  async list(identityId: string, orchestrations: OrchestrationClient): Promise<RestoreRecord[]> {
    const identity = await this.deps.identities.get(identityId);
    const records = await this.deps.store.list(identity.id);
    return Promise.all(
      records.map(async (record) =>
        record.status === "running" ? (await this.settle(record, orchestrations)).record : record,
      ),
    );
  }

  /** The restore; live progress while it runs, its report once it has ended. */
  async get(restoreId: string, orchestrations: OrchestrationClient): Promise<RestoreView> {
    const found = RESTORE_ID_PATTERN.test(restoreId) ? await this.deps.store.get(restoreId) : undefined;
    if (!found) throw new NotFoundError(`Restore ${restoreId} not found`);
    const { record, state } = await this.settle(found, orchestrations);
    const { report: reportBlob, ...rest } = record;
    if (record.status === "running") {
      return { ...rest, ...(state?.customStatus ? { progress: state.customStatus } : {}) };
    }
    const report = reportBlob ? await this.deps.runner.readReport(record.identityId, reportBlob) : undefined;
    return { ...rest, ...(reportBlob ? { reportBlob } : {}), ...(report ? { report } : {}) };
  }

  /** The restore's record as it stands (see `settle`), or undefined when there is no such restore. */
  async current(restoreId: string, orchestrations: OrchestrationClient): Promise<RestoreRecord | undefined> {
    const found = RESTORE_ID_PATTERN.test(restoreId) ? await this.deps.store.get(restoreId) : undefined;
    return found && (await this.settle(found, orchestrations)).record;
  }

  /**
   * The restore as it really stands: a record still `running` whose orchestration has ended
   * (failed, terminated, crashed past its retries) is ended `failed` with the reason now, once.
   */
  private async settle(
    record: RestoreRecord,
    orchestrations: OrchestrationClient,
  ): Promise<{ record: RestoreRecord; state?: OrchestrationState }> {
    if (record.status !== "running") return { record };
    const reading = await readOrchestration(
      orchestrations,
      record.restoreId,
      record.startedAt,
      this.deps.log,
    );
    if (!reading?.end) return { record, ...(reading?.state ? { state: reading.state } : {}) };
    this.deps.log.warn("Restore ended by its orchestration", { restoreId: record.restoreId, ...reading.end });
    return { record: await failRestore(this.deps, record.identityId, record.restoreId, reading.end) };
  }

  private async checkOwner(targetId: string, owner: string, orgId: string | null): Promise<void> {
    const portal = await this.deps.runner.targetPortal(targetId);
    try {
      const user = await portal.json<{ username?: string; orgId?: string }>(
        `community/users/${encodeURIComponent(owner)}`,
        {},
        { method: "GET" },
      );
      if (!user.username)
        throw new ValidationError(`target.owner: no user ${owner} in the target org`, "target.owner");
      if (orgId && user.orgId && user.orgId !== orgId) {
        throw new ValidationError(`target.owner: ${owner} is not a member of the target org`, "target.owner");
      }
    } catch (error) {
      if (
        error instanceof PortalError &&
        !isSystemicFailure(error) &&
        [400, 403, 404].includes(error.arcgisCode ?? 0)
      ) {
        throw new ValidationError(`target.owner: no user ${owner} in the target org`, "target.owner");
      }
      throw error;
    }
  }
}
