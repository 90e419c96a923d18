import { z } from "zod";
import type { OrgRateGovernor } from "../arcgis/governor/index.js";
import type { PortalClient, PortalClientStats } from "../arcgis/portal-client.js";
import { PortalNotFoundError } from "../arcgis/portal-errors.js";
import type { BackupStore } from "../backup/backup-store.js";
import { type CacheSpace, cacheSpaceFor } from "../backup/cache.js";
import { restorePlanName, restoreReportName } from "../backup/layout.js";
import { type Manifest, type ManifestItem, readManifest } from "../backup/manifest.js";
import type { PortalItem } from "../backup/portal-types.js";
import { mapWithConcurrency } from "../concurrency.js";
import { NotFoundError } from "../errors.js";
import { isRetryableFailure } from "../failures.js";
import type { StoredIdentity } from "../identities/identity.js";
import type { IdentityService } from "../identities/identity-service.js";
import type { Logger } from "../log.js";
import { DEFAULT_OUTAGE_SETTINGS, type OutagePause, type OutageSettings, outagePause } from "../outage.js";
import { StoredDocumentError } from "../stored-document.js";
import type {
  RestoreBatchInput as BatchInput,
  RestoreFailBatchInput,
  RestoreFinalizeInput,
  RestoreInput,
  RestoreRecordFailureInput,
} from "./activity-inputs.js";
import { BackupFiles } from "./backup-files.js";
import { DEFAULT_LIMITS, type RestoreContext, type RestoreLimits } from "./context.js";
import { relinkItem, restoreItem } from "./item-restore.js";
import {
  type ItemProgress,
  type PlanItem,
  RESTORE_REPORT_SCHEMA_VERSION,
  type RestoreMode,
  type RestorePlan,
  type RestoreRecord,
  type RestoreReport,
  type RestoreStatus,
  type RowMode,
  restorePlanSchema,
  restoreReportSchema,
} from "./model.js";
import { buildPlan } from "./plan.js";
import { failRestore, logRestoreCompleted } from "./restore-end.js";
import type { RestoreStore } from "./restore-store.js";
import { previewRows } from "./row-preview.js";
import { hasStructure, type ScopePart, type StructureOutcome, type UsersMode } from "./structure-model.js";
import { restoreStructure } from "./structure-restore.js";
import {
  FolderResolver,
  readTargetGroups,
  readTargetSelf,
  readTargetUsers,
  type TargetSelf,
} from "./target.js";

export interface RestoreRunnerDependencies {
  identities: IdentityService;
  store: RestoreStore;
  portalFor(identity: StoredIdentity): Promise<PortalClient>;
  /** The backup store of the identity whose backup is restored. */
  openStore(identity: StoredIdentity): Promise<BackupStore>;
  /** The target org's shared rate governor: restore writes spend its request units too. */
  governorFor?(identity: StoredIdentity): Promise<OrgRateGovernor>;
  log: Logger;
  limits?: Partial<RestoreLimits>;
  /** How a batch that meets an outage pauses (default DEFAULT_OUTAGE_SETTINGS). */
  outage?: OutageSettings;
  /** The cache folders' budget (row-level restore sorts rows there; default 1 GiB). */
  cacheMaxBytes?: number;
}

export type { RestoreBatchInput as BatchInput, RestoreInput } from "./activity-inputs.js";

export interface BatchCounts {
  restored: number;
  failed: number;
  requests: number;
  retries: number;
  throttled: number;
}

/**
 * A batch's result. A paused batch (an outage) reports only its traffic: its items are counted
 * by the attempt that finishes the batch, from their progress rows.
 */
export interface BatchOutcome extends BatchCounts {
  paused?: OutagePause;
}

/** What the orchestration learns from the plan: batches per level, and how many items. */
export interface PlanSummary {
  batchesPerLevel: number[];
  items: number;
  planned: number;
  skipped: number;
}

interface SourceSession {
  identity: StoredIdentity;
  store: BackupStore;
  files: BackupFiles;
  openedAt: number;
}

interface TargetSession {
  identity: StoredIdentity;
  portal: PortalClient;
  governor: OrgRateGovernor | undefined;
  self: TargetSelf;
  folders: FolderResolver;
  openedAt: number;
}

const SESSION_TTL_MS = 10 * 60_000;
const CACHED_PLANS = 4;

/** The plan's inputs that a dry run and the plan activity share. */
export interface PlanRequest {
  restoreId: string | null;
  identityId: string;
  runId: string;
  itemIds?: string[];
  target: { identityId: string; owner?: string; folder?: string; mode: RestoreMode; rows?: RowMode };
  /** The scope's parts (default: items alone). */
  scope?: ScopePart[];
  usernameMap?: Record<string, string>;
  /** `invite`: the structure step invites or adds the users the target lacks. */
  users?: UsersMode;
}

/**
 * What the restore activities do. Sessions (signed-in target client, source container) are
 * cached per process for a few minutes, like the backup runner's; plans and manifests too, so a
 * batch activity reads neither again.
 */
export class RestoreRunner {
  private readonly sources = new Map<string, Promise<SourceSession>>();
  private readonly targets = new Map<string, Promise<TargetSession>>();
  private readonly plans = new Map<string, Promise<RestorePlan>>();
  private readonly manifests = new Map<string, Promise<Map<string, ManifestItem>>>();
  readonly limits: RestoreLimits;
  private readonly outage: OutageSettings;

  constructor(private readonly deps: RestoreRunnerDependencies) {
    this.limits = { ...DEFAULT_LIMITS, ...deps.limits };
    this.outage = deps.outage ?? DEFAULT_OUTAGE_SETTINGS;
  }

  /** The run's manifest, or 404. */
  async manifest(identityId: string, runId: string): Promise<Manifest> {
    const source = await this.source(identityId);
    const manifest = await readManifest(source.store, runId);
    if (!manifest) throw new NotFoundError(`Backup run ${runId} not found (no manifest)`);
    return manifest;
  }

  async targetSelf(identityId: string): Promise<TargetSelf> {
    return (await this.target(identityId)).self;
  }

  async targetPortal(identityId: string): Promise<PortalClient> {
    return (await this.target(identityId)).portal;
  }

  /** Builds a plan (a dry run answers it; the plan activity stores it). */
  async planFor(request: PlanRequest, manifest?: Manifest): Promise<RestorePlan> {
    const source = await this.source(request.identityId);
    const target = await this.target(request.target.identityId);
    const run = manifest ?? (await this.manifest(request.identityId, request.runId));
    const sameOrg =
      request.target.identityId === request.identityId ||
      (run.portal.orgId !== null &&
        run.portal.orgId === target.self.orgId &&
        (run.portal.isPortal !== true ||
          normalize(run.portal.sharingUrl) === normalize(target.identity.sharingUrl)));
    const parts = request.scope ?? ["items"];
    // Before the items (and before the target's groups are read): the groups it creates are
    // those the items are shared into. A dry run writes nothing.
    const structure = hasStructure(parts)
      ? await restoreStructure({
          portal: target.portal,
          store: source.store,
          runId: run.runId,
          self: target.self,
          sameOrg,
          parts,
          ...(request.usernameMap ? { usernameMap: request.usernameMap } : {}),
          ...(request.users ? { users: request.users } : {}),
          apply: request.restoreId !== null,
          log: this.deps.log,
        })
      : undefined;
    const [sourceGroups, sourceFolders, users, groups] = await Promise.all([
      source.store.readNdjson(run.org.groups, orgRecordSchema),
      source.store.readNdjson(run.org.folders, orgRecordSchema),
      readTargetUsers(target.portal, target.self),
      readTargetGroups(target.portal, target.self.orgId),
    ]);
    const known = new Map<string, Promise<PortalItem | undefined>>();
    const plan = await buildPlan({
      restoreId: request.restoreId,
      identityId: request.identityId,
      manifest: run,
      ...(parts.includes("items") ? (request.itemIds ? { itemIds: request.itemIds } : {}) : { itemIds: [] }),
      files: source.files,
      sourceGroups: new Map((sourceGroups ?? []).map((g) => [g.id, { id: g.id, title: g.title }])),
      sourceFolders: new Map((sourceFolders ?? []).map((f) => [f.id, f.title])),
      target: {
        identityId: request.target.identityId,
        self: target.self,
        orgId: target.self.orgId,
        sameOrg,
        mode: request.target.mode,
        ...(request.target.owner ? { owner: request.target.owner } : {}),
        ...(request.target.folder ? { folder: request.target.folder } : {}),
        ...(request.target.rows ? { rows: request.target.rows } : {}),
        users,
        groups,
        ...(request.usernameMap ? { usernameMap: request.usernameMap } : {}),
        assignCategories: parts.includes("categories"),
      },
      existing: (itemId) => {
        let pending = known.get(itemId);
        if (!pending) {
          pending = target.portal
            .json<PortalItem>(`content/items/${itemId}`, {}, { method: "GET" })
            .catch((error: unknown) => {
              if (error instanceof PortalNotFoundError) return undefined;
              throw error;
            });
          known.set(itemId, pending);
        }
        return pending;
      },
    });
    if (structure) withStructure(plan, structure);
    if (request.restoreId === null && request.target.mode === "overwrite") {
      // Paced by the target org's governor, like the restore's own reads.
      const portal = target.governor ? target.portal.fork({ pacer: target.governor.track() }) : target.portal;
      await this.previewRowsOf(plan, run, source, portal, request.target.rows ?? "diff", known);
    }
    return plan;
  }

  /** A dry run of an overwrite: each hosted layer's row-level difference, nothing written. */
  private async previewRowsOf(
    plan: RestorePlan,
    manifest: Manifest,
    source: SourceSession,
    portal: PortalClient,
    rows: RowMode,
    known: Map<string, Promise<PortalItem | undefined>>,
  ): Promise<void> {
    const items = new Map(manifest.items.map((i) => [i.itemId, i]));
    for (const item of plan.items) {
      if (item.action !== "overwrite" || item.kind !== "feature-service") continue;
      const existing = await known.get(item.itemId);
      const manifestItem = items.get(item.itemId);
      if (!existing?.url || !manifestItem) continue;
      item.rowPreview = await previewRows({
        portal,
        files: source.files,
        manifestItem,
        serviceUrl: String(existing.url),
        cache: this.cacheOf(source.identity),
        rows,
      });
    }
  }

  /** Activity: the plan, built once and stored with the restore (a re-run reads it back). */
  async plan(input: RestoreInput): Promise<PlanSummary> {
    const record = await this.record(input);
    const source = await this.source(input.identityId);
    const name = restorePlanName(input.restoreId);
    let plan = await source.store.readJson(name, restorePlanSchema);
    if (!plan) {
      plan = await this.planFor({
        restoreId: input.restoreId,
        identityId: input.identityId,
        runId: record.runId,
        ...(record.itemIds ? { itemIds: record.itemIds } : {}),
        target: record.target,
        ...(record.scope ? { scope: record.scope } : {}),
        ...(record.usernameMap ? { usernameMap: record.usernameMap } : {}),
        ...(record.users ? { users: record.users } : {}),
      });
      await source.store.uploadJson(name, plan);
    }
    this.plans.set(input.restoreId, Promise.resolve(plan));
    await this.deps.store.update(input.identityId, input.restoreId, (next) => {
      next.plan = name;
      next.itemsTotal = plan.totals.items;
      next.itemsSkipped = plan.totals.skip;
    });
    return {
      batchesPerLevel: plan.batches.map((level) => level.length),
      items: plan.totals.items,
      planned: plan.totals.create + plan.totals.overwrite,
      skipped: plan.totals.skip,
    };
  }

  /**
   * Activity: one batch of a level, its items a few at a time, through a portal client of its own
   * (its counts are its traffic alone). An outage past the clients' retries pauses the batch.
   */
  async restoreBatch(input: BatchInput): Promise<BatchOutcome> {
    let portal: PortalClient | undefined;
    try {
      const ctx = await this.context(input);
      portal = ctx.portal;
      const ids = ctx.plan.batches[input.level]?.[input.batch] ?? [];
      const rows = await mapWithConcurrency(ids, this.limits.itemsInParallel, (id) =>
        restoreItem(ctx, ctx.planItems.get(id) as PlanItem),
      );
      return countRows(rows, ctx.portal.stats);
    } catch (error) {
      // An outage past the clients' retries: the orchestration runs the batch again later, from
      // the items' progress rows. Anything else fails the activity (retried by Durable Functions).
      if (!isRetryableFailure(error)) throw error;
      const paused = outagePause(error, this.outage);
      this.deps.log.warn("Restore batch paused: the target portal or the storage is unreachable", {
        ...input,
        reason: paused.reason,
      });
      return { ...countRows([], portal?.stats), paused };
    }
  }

  /**
   * Activity: a batch whose retries ran out, or whose outage outlasted the maximum (`code`
   * ERR_OUTAGE); its unfinished items are recorded as failed. With a
   * plan that cannot be read there is nothing to record: the report says why the restore failed.
   */
  async failBatch(input: RestoreFailBatchInput): Promise<BatchCounts> {
    const ctx = await this.context(input).catch((error: unknown) => {
      if (error instanceof StoredDocumentError) return undefined;
      throw error;
    });
    if (!ctx) return countRows([]);
    const ids = ctx.plan.batches[input.level]?.[input.batch] ?? [];
    const rows: ItemProgress[] = [];
    for (const id of ids) {
      const row = (await this.deps.store.getItem(input.restoreId, id)) ?? {
        itemId: id,
        status: "creating",
        action: ctx.planItems.get(id)?.action ?? "create",
        steps: {},
        notes: [],
        updatedAt: new Date().toISOString(),
      };
      if (row.status !== "done" && row.status !== "failed") {
        row.status = "failed";
        row.error = { code: input.code ?? "ERR_BATCH_RETRIES_EXHAUSTED", message: input.reason };
        if (row.newId) row.notes.push(`The item ${row.newId} was created but is incomplete`);
        await this.deps.store.putItem(input.restoreId, row);
      }
      rows.push(row);
    }
    return countRows(rows, ctx.portal.stats);
  }

  /** Activity: references and relationships that had to wait for items created later. */
  async relink(input: RestoreInput): Promise<number> {
    const ctx = await this.context(input);
    const waiting: ItemProgress[] = [];
    for await (const row of this.deps.store.items(input.restoreId)) {
      if (
        row.status === "done" &&
        ((row.pendingRefs?.length ?? 0) > 0 || (row.pendingRelationships?.length ?? 0) > 0)
      ) {
        waiting.push(row);
      }
    }
    await mapWithConcurrency(waiting, this.limits.itemsInParallel, (row) => relinkItem(ctx, row));
    return waiting.length;
  }

  /** Activity: the report (old → new ids, URL remaps, failures, references left as they were). */
  async finalize(input: RestoreFinalizeInput) {
    const record = await this.record(input);
    const source = await this.source(input.identityId);
    const { plan, error: planError } = await readPlanForReport(source.store, input.restoreId);
    const error = input.error ?? planError;
    const rows = new Map<string, ItemProgress>();
    for await (const row of this.deps.store.items(input.restoreId)) rows.set(row.itemId, row);
    const endedAt = new Date().toISOString();
    const report = buildReport(record, plan, rows, planError ? "failed" : input.outcome, endedAt);
    const name = restoreReportName(input.restoreId);
    await source.store.uploadJson(name, report);
    const updated = await this.deps.store.update(input.identityId, input.restoreId, (next) => {
      next.status = report.status;
      next.endedAt = endedAt;
      next.report = name;
      if (plan) next.itemsTotal = report.totals.items;
      next.itemsRestored = report.totals.restored;
      next.itemsFailed = report.totals.failed;
      next.itemsSkipped = report.totals.skipped;
      if (error) next.error = error;
    });
    this.plans.delete(input.restoreId);
    logRestoreCompleted(this.deps.log, updated);
    return updated;
  }

  /**
   * Activity: ends the restore as `failed` with the reason through the runs table alone — the last
   * resort of an orchestration that could not finish it (its report failed past its retries).
   */
  async recordFailure(input: RestoreRecordFailureInput) {
    return failRestore(this.deps, input.identityId, input.restoreId, input.error);
  }

  async readReport(identityId: string, name: string): Promise<RestoreReport | undefined> {
    return (await this.source(identityId)).store.readJson(name, restoreReportSchema);
  }

  private async record(input: RestoreInput): Promise<RestoreRecord> {
    const record = await this.deps.store.get(input.restoreId);
    if (!record) throw new NotFoundError(`Restore ${input.restoreId} not found`);
    return record;
  }

  private async context(input: RestoreInput): Promise<RestoreContext> {
    const record = await this.record(input);
    const source = await this.source(input.identityId);
    const target = await this.target(record.target.identityId);
    let plan = this.plans.get(input.restoreId);
    if (!plan) {
      plan = source.store.readJson(restorePlanName(input.restoreId), restorePlanSchema).then((p) => {
        if (!p) throw new NotFoundError(`The plan of restore ${input.restoreId} is missing`);
        return p;
      });
      plan.catch(() => this.plans.delete(input.restoreId));
      this.plans.set(input.restoreId, plan);
      while (this.plans.size > CACHED_PLANS) this.plans.delete(this.plans.keys().next().value as string);
    }
    const key = `${input.identityId}/${record.runId}`;
    let manifestItems = this.manifests.get(key);
    if (!manifestItems) {
      manifestItems = this.manifest(input.identityId, record.runId).then(
        (m) => new Map(m.items.map((i) => [i.itemId, i])),
      );
      manifestItems.catch(() => this.manifests.delete(key));
      this.manifests.set(key, manifestItems);
      while (this.manifests.size > 2) this.manifests.delete(this.manifests.keys().next().value as string);
    }
    const resolved = await plan;
    return {
      restoreId: input.restoreId,
      plan: resolved,
      planItems: new Map(resolved.items.map((i) => [i.itemId, i])),
      manifestItems: await manifestItems,
      // A client of the activity's own (paced by the target org's governor): its counts are the
      // activity's traffic alone, whatever runs beside it in the process.
      portal: target.governor ? target.portal.fork({ pacer: target.governor.track() }) : target.portal.fork(),
      files: source.files,
      progress: this.deps.store,
      folders: target.folders,
      limits: this.limits,
      log: this.deps.log.child({ restoreId: input.restoreId }),
      cache: this.cacheOf(source.identity),
    };
  }

  /** The source identity's cache folder, where row-level restore sorts rows. */
  private cacheOf(identity: StoredIdentity): { directory: string; space: CacheSpace } {
    const directory = identity.cacheDirectory;
    return { directory, space: cacheSpaceFor(directory, this.deps.cacheMaxBytes ?? 1024 ** 3) };
  }

  private source(identityId: string): Promise<SourceSession> {
    return cached(this.sources, identityId, async () => {
      const identity = await this.deps.identities.get(identityId);
      const store = await this.deps.openStore(identity);
      return { identity, store, files: new BackupFiles(store), openedAt: Date.now() };
    });
  }

  private target(identityId: string): Promise<TargetSession> {
    return cached(this.targets, identityId, async () => {
      const identity = await this.deps.identities.get(identityId);
      const portal = await this.deps.portalFor(identity);
      const self = await readTargetSelf(portal);
      const governor = await this.deps.governorFor?.(identity);
      return { identity, portal, governor, self, folders: new FolderResolver(), openedAt: Date.now() };
    });
  }
}

function cached<T extends { openedAt: number }>(
  map: Map<string, Promise<T>>,
  key: string,
  open: () => Promise<T>,
): Promise<T> {
  const hit = map.get(key);
  if (hit) {
    return hit.then((session) => {
      if (Date.now() - session.openedAt < SESSION_TTL_MS) return session;
      map.delete(key);
      return cached(map, key, open);
    });
  }
  const opening = open().catch((error: unknown) => {
    map.delete(key);
    throw error;
  });
  map.set(key, opening);
  return opening;
}

/** A group or folder of the backed-up org, as the inventory recorded it (other fields ignored). */
const orgRecordSchema = z.object({ id: z.string(), title: z.string() });

/**
 * The plan, for the report. One that does not match its schema fails the restore with its
 * reason (the report then has no items) instead of failing the report too.
 */
async function readPlanForReport(
  store: BackupStore,
  restoreId: string,
): Promise<{ plan?: RestorePlan; error?: { code: string; message: string } }> {
  try {
    const plan = await store.readJson(restorePlanName(restoreId), restorePlanSchema);
    return plan ? { plan } : {};
  } catch (error) {
    if (!(error instanceof StoredDocumentError)) throw error;
    return { error: { code: error.code, message: error.message } };
  }
}

function normalize(url: string): string {
  return url
    .replace(/^https?:\/\//i, "")
    .replace(/\/+$/, "")
    .toLowerCase();
}

/** Items by their rows, and the traffic of the activity's own portal client. */
function countRows(rows: ItemProgress[], traffic?: PortalClientStats): BatchCounts {
  return {
    restored: rows.filter((r) => r.status === "done").length,
    failed: rows.filter((r) => r.status === "failed").length,
    requests: traffic?.requests ?? 0,
    retries: traffic?.retries ?? 0,
    throttled: traffic?.throttled ?? 0,
  };
}

/** The report from the plan and the progress rows. */
export function buildReport(
  record: RestoreRecord,
  plan: RestorePlan | undefined,
  rows: Map<string, ItemProgress>,
  outcome: "completed" | "failed",
  endedAt: string,
): RestoreReport {
  const items: RestoreReport["items"] = [];
  const failures: RestoreReport["failures"] = [];
  const idMap: Record<string, string> = {};
  const urlMap: Record<string, string> = {};
  const unchangedReferences: RestoreReport["unchangedReferences"] = [];
  const notSharedWith: RestoreReport["notSharedWith"] = [];
  for (const planned of plan?.items ?? []) {
    const row = rows.get(planned.itemId);
    let status: RestoreReport["items"][number]["status"];
    let error = row?.error;
    if (planned.action === "skip") {
      status = "skipped";
      error = planned.reason;
    } else if (row?.status === "done") status = "restored";
    else if (row?.status === "failed") status = "failed";
    else {
      status = "failed";
      error = { code: "ERR_NOT_RESTORED", message: "The restore ended before this item was restored" };
    }
    const newId = row?.newId ?? null;
    items.push({
      itemId: planned.itemId,
      title: planned.title,
      type: planned.type,
      action: planned.action,
      status,
      newId,
      ...(row?.newUrl ? { newUrl: row.newUrl } : {}),
      ...(row?.owner ? { owner: row.owner } : {}),
      notes: row?.notes ?? [],
      ...(error ? { error } : {}),
      ...(row?.counts ? { counts: row.counts } : {}),
      ...(row?.editedSince?.length ? { editedSince: row.editedSince } : {}),
    });
    if (status === "restored" && row?.newId) {
      idMap[planned.itemId] = row.newId;
      if (planned.sourceUrl && row.newUrl) {
        urlMap[planned.sourceUrl] = row.newUrl;
        for (const [oldLayer, newLayer] of Object.entries(row.layerIds ?? {})) {
          urlMap[`${planned.sourceUrl}/${oldLayer}`] = `${row.newUrl}/${newLayer}`;
        }
      }
    }
    if (status !== "restored") {
      failures.push({
        itemId: planned.itemId,
        title: planned.title,
        type: planned.type,
        code: error?.code ?? "ERR_RESTORE",
        message: error?.message ?? "",
      });
    }
    if (status === "restored") {
      for (const ref of planned.references.unchanged) {
        unchangedReferences.push({
          itemId: planned.itemId,
          reference: ref.id,
          reason: UNCHANGED_REASONS[ref.reason],
        });
      }
      for (const url of planned.references.unchangedUrls) {
        unchangedReferences.push({
          itemId: planned.itemId,
          reference: url,
          reason: "service URL kept as is (not a hosted service restored now)",
        });
      }
      for (const dep of planned.references.remapped) {
        if (rows.get(dep)?.status !== "done") {
          unchangedReferences.push({ itemId: planned.itemId, reference: dep, reason: "its restore failed" });
        }
      }
      if (row?.sharing?.notSharedWith.length) {
        notSharedWith.push({ itemId: planned.itemId, groups: row.sharing.notSharedWith });
      }
    }
  }
  const restored = items.filter((i) => i.status === "restored").length;
  const failed = items.filter((i) => i.status === "failed").length;
  const skipped = items.filter((i) => i.status === "skipped").length;
  let status: RestoreStatus = outcome === "failed" ? "failed" : "completed";
  const structureFailed = (plan?.structure?.totals.failed ?? 0) > 0;
  if (status === "completed" && (failed > 0 || skipped > 0 || structureFailed))
    status = "completed-with-failures";
  return {
    schemaVersion: RESTORE_REPORT_SCHEMA_VERSION,
    restoreId: record.restoreId,
    runId: record.runId,
    identityId: record.identityId,
    targetIdentityId: record.target.identityId,
    mode: record.target.mode,
    status,
    startedAt: record.startedAt,
    endedAt,
    totals: { items: items.length, restored, failed, skipped },
    idMap,
    urlMap,
    items,
    failures,
    unchangedReferences,
    missingGroups: plan?.missingGroups ?? [],
    notSharedWith,
    ...(plan?.structure ? { structure: plan.structure } : {}),
  };
}

const UNCHANGED_REASONS: Record<PlanItem["references"]["unchanged"][number]["reason"], string> = {
  "not-restored": "in the backup, not restored now",
  "not-in-backup": "not in the backup",
  "group-not-in-target": "a group the target has no group for",
};

/**
 * The structure step's outcome in the plan. The groups it matched or created are where the group
 * ids inside items point (even before a search of the target lists a new group). A dry run has
 * not created the groups it plans to create: items are not reported as missing them (they will be
 * shared into them), nor their references to them as left unchanged.
 */
function withStructure(plan: RestorePlan, structure: StructureOutcome): void {
  plan.structure = structure;
  const targets = new Map<string, string | null>();
  for (const group of structure.groups) {
    if (group.targetId) targets.set(group.sourceId.toLowerCase(), group.targetId);
    else if (!structure.applied && group.action === "create") targets.set(group.sourceId.toLowerCase(), null);
  }
  for (const item of plan.items) {
    const moved = item.references.unchanged.filter(
      (ref) => ref.reason === "group-not-in-target" && targets.has(ref.id),
    );
    if (moved.length === 0) continue;
    item.references.unchanged = item.references.unchanged.filter((ref) => !moved.includes(ref));
    item.references.groups = [...(item.references.groups ?? []), ...moved.map((ref) => ref.id)];
    for (const ref of moved) {
      const targetId = targets.get(ref.id);
      if (targetId) plan.groupIds = { ...plan.groupIds, [ref.id]: targetId };
    }
  }
  if (structure.applied) return;
  const planned = new Set(structure.groups.filter((g) => g.action === "create").map((g) => g.sourceId));
  const titles = new Set(structure.groups.filter((g) => planned.has(g.sourceId)).map((g) => g.title));
  plan.missingGroups = plan.missingGroups.filter((g) => !planned.has(g.id));
  for (const item of plan.items) item.missingGroups = item.missingGroups.filter((t) => !titles.has(t));
}
