import { setTimeout as sleep } from "node:timers/promises";
import type { PortalClient, RequestOptions } from "../arcgis/portal-client.js";
import { PortalError, PortalThrottledError } from "../arcgis/portal-errors.js";
import { calculateRetryDelay } from "../arcgis/retry-delay.js";
import type { CacheSpace } from "../backup/cache.js";
import type { ExportedFile } from "../backup/export-item.js";
import type { ManifestItem } from "../backup/manifest.js";
import type { PortalItem } from "../backup/portal-types.js";
import { classifyFailure } from "../failures.js";
import type { Logger } from "../log.js";
import type { BackupFiles } from "./backup-files.js";
import type { ItemProgress, PlanItem, RestorePlan } from "./model.js";
import type { RemapTable, UrlMapping } from "./references.js";
import type { RestoreStore } from "./restore-store.js";
import type { FolderResolver } from "./target.js";

export interface RestoreLimits {
  /** Features per applyEdits call. */
  featuresPerEdit: number;
  /** Attachments between two progress checkpoints. */
  attachmentsPerCheckpoint: number;
  /** Item files up to this size go in one addItem; larger ones as a multipart upload. */
  singleUploadMax: number;
  /** Part size of multipart uploads (all but the last; ≥ 5 MB on ArcGIS Online). */
  partSize: number;
  /** Items of one batch restored at once. */
  itemsInParallel: number;
  /** Attachments uploaded at once. */
  attachmentsInParallel: number;
}

export const DEFAULT_LIMITS: RestoreLimits = {
  featuresPerEdit: 250,
  attachmentsPerCheckpoint: 25,
  singleUploadMax: 16 * 1024 * 1024,
  partSize: 8 * 1024 * 1024,
  itemsInParallel: 4,
  attachmentsInParallel: 4,
};

/** What restoring one item needs: the plan, the backup, the target and the progress rows. */
export interface RestoreContext {
  restoreId: string;
  plan: RestorePlan;
  planItems: Map<string, PlanItem>;
  manifestItems: Map<string, ManifestItem>;
  /** Signed in to the target org. */
  portal: PortalClient;
  files: BackupFiles;
  progress: RestoreStore;
  folders: FolderResolver;
  limits: RestoreLimits;
  log: Logger;
  /** A cache folder for sorting a layer's rows (row-level restore in place). */
  cache?: { directory: string; space: CacheSpace };
}

/** One item being restored: its plan entry, its backup and its progress row. */
export interface ItemJob {
  ctx: RestoreContext;
  plan: PlanItem;
  manifest: ManifestItem;
  item: PortalItem;
  row: ItemProgress;
  /** Saves the row (after every step that created something). */
  save(): Promise<void>;
  file(path: string): ExportedFile | undefined;
  filesOfKind(kind: ExportedFile["kind"]): ExportedFile[];
}

export function errorCode(error: unknown): string {
  if (error instanceof PortalError) return error.code;
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === "string" ? code : "ERR_RESTORE";
}

/**
 * The remap table for an item: the new ids (and service URLs) of what it depends on, read from
 * their progress rows, the target ids of the groups it names, plus its own new id once it has one.
 */
export async function remapTableFor(
  ctx: RestoreContext,
  plan: PlanItem,
  self?: {
    oldId: string;
    newId: string;
    oldUrl?: string | null;
    newUrl?: string;
    layers?: Record<string, number>;
  },
): Promise<{ table: RemapTable; pending: string[] }> {
  const ids = new Map<string, string>();
  const urls: UrlMapping[] = [];
  const pending: string[] = [];
  for (const dep of plan.references.remapped) {
    const row = await ctx.progress.getItem(ctx.restoreId, dep);
    const depPlan = ctx.planItems.get(dep);
    if (!row?.newId || (row.status !== "done" && row.status !== "created")) {
      pending.push(dep);
      continue;
    }
    ids.set(dep, row.newId);
    if (depPlan?.sourceUrl && row.newUrl) {
      urls.push({
        from: depPlan.sourceUrl,
        to: row.newUrl,
        ...(row.layerIds ? { layers: toStrings(row.layerIds) } : {}),
      });
    }
  }
  // Group ids: the target group the structure step matched or created (same org: the same group).
  for (const group of plan.references.groups ?? []) {
    const target = ctx.plan.groupIds?.[group];
    if (target) ids.set(group, target);
  }
  if (self) {
    ids.set(self.oldId, self.newId);
    if (self.oldUrl && self.newUrl) {
      urls.push({
        from: self.oldUrl,
        to: self.newUrl,
        ...(self.layers ? { layers: toStrings(self.layers) } : {}),
      });
    }
  }
  return { table: { ids, urls }, pending };
}

function toStrings(layers: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(layers).map(([k, v]) => [String(k), v]));
}

export function note(row: ItemProgress, text: string): void {
  if (!row.notes.includes(text)) row.notes.push(text);
}

/** A write sent once per attempt: the portal client must not repeat it on its own. */
export const ONCE: RequestOptions = { maxRetries: 0 };

/**
 * A write that must not happen twice (addItem, createService, applyEdits adds, addAttachment,
 * addToDefinition). When it fails in a way that may have left it done — a lost response, a reset,
 * a 5xx — `recover` looks whether it happened (the item with its marker, the service by name, the
 * row count, the attachment) before it is sent again. Throttling (the write was refused) just waits.
 */
export async function writeOnce<T>(
  send: (options: RequestOptions) => Promise<T>,
  recover: () => Promise<T | undefined>,
  attempts = 4,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await send(ONCE);
    } catch (error) {
      const kind = classifyFailure(error);
      if ((kind !== "transient" && kind !== "throttled") || attempt >= attempts) throw error;
      // Throttled: the portal refused the write, so it did not happen; anything else may have.
      if (kind !== "throttled") {
        const done = await recover();
        if (done !== undefined) return done;
      }
      const retryAfterMs = error instanceof PortalThrottledError ? error.retryAfterMs : undefined;
      await sleep(
        calculateRetryDelay({
          attempt,
          baseDelayMs: 500,
          maxDelayMs: 15_000,
          ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
        }),
      );
    }
  }
}
