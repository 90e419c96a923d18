import { mkdir } from "node:fs/promises";
import type { PortalClient } from "../arcgis/portal-client.js";
import { PortalTransientError } from "../arcgis/portal-errors.js";
import type { CacheSpace } from "../backup/cache.js";
import type { ExportedFile } from "../backup/export-item.js";
import { attributeOf, type FeatureJson } from "../backup/feature-layers.js";
import { layerIdSource, objectIdPages } from "../backup/feature-paging.js";
import { sortLines } from "../backup/feature-sort.js";
import { normalGuid } from "../backup/layer-changes.js";
import { type LayerFiles, type LineSource, layerRows, mergeByKey } from "../backup/layer-version-rows.js";
import { AppError } from "../errors.js";
import { writeOnce } from "./context.js";
import type { EditedRow } from "./model.js";

/**
 * Row-level restore of a hosted layer in place: the difference between the layer's rows now and
 * the version's, by GlobalID, and only that applied — rows added since deleted, rows deleted since
 * added back with their GlobalIDs, rows edited since updated back — in applyEdits batches with
 * `useGlobalIds`. Both sides are sorted by GlobalID through the cache folder (an external sort),
 * then merged, so memory holds a batch, never the layer. Running it again computes the difference
 * again: what an earlier attempt applied is no longer in it (idempotent on retry). The same merge
 * without writes is the dry run's preview.
 */

export interface TargetLayer {
  url: string;
  objectIdField: string;
  globalIdField: string;
  /** Fields the target stamps itself (editor tracking): never compared, never sent. */
  stampedFields: string[];
  hasAttachments: boolean;
}

export interface RowDiffInput {
  portal: PortalClient;
  files: LineSource;
  layer: LayerFiles;
  /** The object id field of the stored rows. */
  storedObjectIdField: string;
  target: TargetLayer;
  cache: { directory: string; space: CacheSpace };
  /** Rows per applyEdits call. */
  batchSize: number;
  dryRun: boolean;
}

export type RowChange = EditedRow["change"];

/** What the difference was (and, unless a dry run, what was applied). */
export interface RowDiff {
  layerId: number;
  adds: number;
  updates: number;
  deletes: number;
  /** The first rows edited after the version (EDITED_SINCE_LISTED of them), by GlobalID. */
  editedSince: Array<{ globalId: string; objectId: number | null; change: RowChange }>;
  /** Rows of the version whose attachments will be compared (rows kept or put back). */
  versionRows: number;
}

/** Rows edited after the version listed by name in a report; the counts say how many in all. */
export const EDITED_SINCE_LISTED = 25;

const STAMPED_DEFAULT = ["created_user", "created_date", "last_edited_user", "last_edited_date"];

function stampedFieldsOf(definition: { editFieldsInfo?: Record<string, unknown> | null }): string[] {
  const info = definition.editFieldsInfo;
  if (!info) return STAMPED_DEFAULT;
  return Object.values(info).filter((v): v is string => typeof v === "string");
}

interface Keyed {
  key: string;
  value: FeatureJson;
}

/** Computes the difference and, unless dry, applies it in batches. */
export async function restoreRowsInPlace(input: RowDiffInput): Promise<RowDiff> {
  await mkdir(input.cache.directory, { recursive: true });
  const diff: RowDiff = {
    layerId: input.layer.layerId,
    adds: 0,
    updates: 0,
    deletes: 0,
    editedSince: [],
    versionRows: 0,
  };
  const batch = new EditBatch(input);
  const stored = sortedByGlobalId(
    layerRows(input.files, input.layer, input.storedObjectIdField),
    input.target.globalIdField,
    input.cache,
  );
  const current = sortedByGlobalId(
    currentRows(input.portal, input.target),
    input.target.globalIdField,
    input.cache,
  );
  for await (const group of mergeByKey<FeatureJson>([stored, current])) {
    const was = group.bySource[0]?.[0];
    const now = group.bySource[1]?.[0];
    if (was) diff.versionRows++;
    const change = changeOf(was, now, input.target);
    if (!change) continue;
    listEdited(diff, String(group.key), now, change, input.target.objectIdField);
    if (change === "deleted-since") diff.adds++;
    else if (change === "added-since") diff.deletes++;
    else diff.updates++;
    if (!input.dryRun) await batch.push(change, was, now);
  }
  if (!input.dryRun) await batch.flush();
  return diff;
}

function listEdited(
  diff: RowDiff,
  globalId: string,
  now: FeatureJson | undefined,
  change: RowChange,
  objectIdField: string,
): void {
  if (diff.editedSince.length >= EDITED_SINCE_LISTED) return;
  const oid = now?.attributes?.[objectIdField];
  diff.editedSince.push({ globalId, objectId: typeof oid === "number" ? oid : null, change });
}

/** How a row differs: only in the version (deleted since), only now (added since), or edited since. */
function changeOf(
  was: FeatureJson | undefined,
  now: FeatureJson | undefined,
  target: TargetLayer,
): RowChange | undefined {
  if (was && !now) return "deleted-since";
  if (!was && now) return "added-since";
  if (!was || !now) return undefined;
  return canonical(comparable(was, target)) === canonical(comparable(now, target))
    ? undefined
    : "edited-since";
}

/** A row without what the target assigns (object id) or stamps (editor tracking). */
function comparable(feature: FeatureJson, target: TargetLayer): FeatureJson {
  const skip = new Set([target.objectIdField, ...target.stampedFields].map((f) => f.toUpperCase()));
  const attributes: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(feature.attributes ?? {})) {
    if (skip.has(key.toUpperCase())) continue;
    attributes[key] = key.toUpperCase() === target.globalIdField.toUpperCase() ? normalGuid(value) : value;
  }
  return { attributes, ...(feature.geometry !== undefined ? { geometry: feature.geometry ?? null } : {}) };
}

/** JSON with object keys sorted, so two rows compare by content, not by key order. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(",")}}`;
  }
  return JSON.stringify(value ?? null);
}

/** Feature lines (or features) sorted by their normalised GlobalID, through the cache folder. */
async function* sortedByGlobalId(
  rows: AsyncIterable<string | FeatureJson>,
  globalIdField: string,
  cache: { directory: string; space: CacheSpace },
): AsyncGenerator<Keyed> {
  async function* lines(): AsyncGenerator<string> {
    for await (const row of rows) yield typeof row === "string" ? row : JSON.stringify(row);
  }
  const keyOf = (line: string) => globalIdKey(JSON.parse(line) as FeatureJson, globalIdField);
  for await (const line of sortLines(lines(), keyOf, cache)) {
    const value = JSON.parse(line) as FeatureJson;
    yield { key: globalIdKey(value, globalIdField), value };
  }
}

/** A normalised GlobalID as the service writes it: `{UPPERCASE}`. */
function bracedGuid(globalId: string): string {
  return `{${globalId.toUpperCase()}}`;
}

/** Rows whose GlobalID is one of these (normalised) ones. */
export function globalIdsWhere(field: string, globalIds: readonly string[]): string {
  return `${field} IN (${globalIds.map((g) => `'${bracedGuid(g)}'`).join(",")})`;
}

function globalIdKey(feature: FeatureJson, field: string): string {
  const value = attributeOf(feature, field);
  if (typeof value !== "string" || value === "") {
    throw new AppError(`A row without a GlobalID (${field}) cannot be restored row by row`, {
      code: "ERR_ROW_WITHOUT_GLOBALID",
      status: 422,
    });
  }
  return normalGuid(value);
}

/** Every row of the target layer now, page by page in object id order. */
async function* currentRows(portal: PortalClient, target: TargetLayer): AsyncGenerator<FeatureJson> {
  const url = `${target.url}/query`;
  const source = layerIdSource(portal, target.url, target.objectIdField);
  const expected = await source.count("1=1");
  for await (const page of objectIdPages(source, expected, { pageSize: 500, window: 100_000 })) {
    let remaining = page;
    while (remaining.length > 0) {
      const response = await portal.json<{ features?: FeatureJson[]; exceededTransferLimit?: boolean }>(url, {
        objectIds: remaining.join(","),
        outFields: "*",
        returnGeometry: true,
      });
      const features = response.features ?? [];
      yield* features;
      const got = new Set(features.map((f) => f.attributes?.[target.objectIdField]));
      remaining =
        response.exceededTransferLimit && features.length > 0 ? remaining.filter((id) => !got.has(id)) : [];
    }
  }
}

/**
 * Edits gathered into applyEdits calls of `batchSize` rows (adds, updates and deletes each in
 * their own list), all by GlobalID. Updates and deletes by GlobalID may be sent twice without
 * harm; adds go once, and a lost answer is settled by looking for their GlobalIDs.
 */
class EditBatch {
  private adds: FeatureJson[] = [];
  private updates: FeatureJson[] = [];
  private deletes: string[] = [];

  constructor(private readonly input: RowDiffInput) {}

  async push(change: RowChange, was: FeatureJson | undefined, now: FeatureJson | undefined): Promise<void> {
    if (change === "deleted-since" && was) this.adds.push(this.outgoing(was));
    else if (change === "edited-since" && was) this.updates.push(this.outgoing(was));
    else if (change === "added-since" && now) {
      this.deletes.push(bracedGuid(globalIdKey(now, this.input.target.globalIdField)));
    }
    if (this.adds.length + this.updates.length + this.deletes.length >= this.input.batchSize)
      await this.flush();
  }

  /** A stored row as applyEdits takes it: no object id, no stamped fields, its GlobalID kept. */
  private outgoing(feature: FeatureJson): FeatureJson {
    const { target, storedObjectIdField } = this.input;
    const skip = new Set(
      [storedObjectIdField, target.objectIdField, ...target.stampedFields].map((f) => f.toUpperCase()),
    );
    const attributes: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(feature.attributes ?? {})) {
      if (!skip.has(key.toUpperCase())) attributes[key] = value;
    }
    return { attributes, ...(feature.geometry !== undefined ? { geometry: feature.geometry } : {}) };
  }

  async flush(): Promise<void> {
    const { adds, updates, deletes } = this;
    this.adds = [];
    this.updates = [];
    this.deletes = [];
    if (updates.length + deletes.length > 0) {
      const response = await this.input.portal.json<EditResponse>(`${this.input.target.url}/applyEdits`, {
        ...(updates.length > 0 ? { updates: JSON.stringify(updates) } : {}),
        ...(deletes.length > 0 ? { deletes: JSON.stringify(deletes) } : {}),
        useGlobalIds: true,
        rollbackOnFailure: true,
      });
      checkResults("updated", response.updateResults, updates.length, true);
      checkResults("deleted", response.deleteResults, deletes.length, true);
    }
    if (adds.length > 0) await this.sendAdds(adds);
  }

  private async sendAdds(adds: FeatureJson[]): Promise<void> {
    const { portal, target } = this.input;
    const globalIds = adds.map((f) => globalIdKey(f, target.globalIdField));
    const response = await writeOnce<EditResponse>(
      (options) =>
        portal.json<EditResponse>(
          `${target.url}/applyEdits`,
          { adds: JSON.stringify(adds), useGlobalIds: true, rollbackOnFailure: true },
          options,
        ),
      async () => {
        // The answer was lost: the GlobalIDs say whether the rows went in (all or none: rollback).
        const there = await countGlobalIds(portal, target, globalIds);
        if (there === globalIds.length) return { addResults: adds.map(() => ({ success: true })) };
        return there === 0 ? undefined : Promise.reject(lostAnswer(there, globalIds.length));
      },
    );
    checkResults("added", response.addResults, adds.length, false);
  }
}

interface EditResult {
  success?: boolean;
  error?: { code?: number; description?: string };
}

interface EditResponse {
  addResults?: EditResult[];
  updateResults?: EditResult[];
  deleteResults?: EditResult[];
}

/**
 * Every edit must have succeeded. An update or delete the target answers "missing" (1019) was
 * done by an earlier attempt whose answer was lost: the state wanted is there.
 */
function checkResults(
  verb: string,
  results: EditResult[] | undefined,
  sent: number,
  missingIsDone: boolean,
): void {
  const list = results ?? [];
  const failed = list.filter((r) => !r.success && !(missingIsDone && r.error?.code === 1019));
  if (list.length !== sent || failed.length > 0) {
    const reason = failed[0]?.error?.description ?? `${sent} sent, ${list.length} results`;
    throw new AppError(`${failed.length || sent} rows could not be ${verb} (${reason})`, {
      code: "ERR_ROWS_NOT_RESTORED",
      status: 502,
    });
  }
}

/** Half a batch went in under a lost answer: the activity runs again and computes what is left. */
function lostAnswer(there: number, sent: number): PortalTransientError {
  return new PortalTransientError(
    `A lost applyEdits answer left ${there} of ${sent} rows; the restore runs again`,
    {
      code: "ERR_PORTAL_UNAVAILABLE",
      status: 502,
    },
  );
}

async function countGlobalIds(
  portal: PortalClient,
  target: TargetLayer,
  globalIds: string[],
): Promise<number> {
  const response = await portal.json<{ count?: number }>(`${target.url}/query`, {
    where: globalIdsWhere(target.globalIdField, globalIds),
    returnCountOnly: true,
  });
  return response.count ?? 0;
}

/** The version's attachment files by their path in the version (for the attachments pass). */
export function attachmentFilesOf(files: readonly ExportedFile[]): Map<string, ExportedFile> {
  return new Map(files.filter((f) => f.kind === "attachment").map((f) => [f.path, f]));
}

/** The target layer's ids as row-level restore needs them; undefined when it has no GlobalIDs. */
export async function targetLayerOf(
  portal: PortalClient,
  layerUrl: string,
): Promise<TargetLayer | undefined> {
  const layer = await portal.json<{
    objectIdField?: string;
    globalIdField?: string;
    hasAttachments?: boolean;
    editFieldsInfo?: Record<string, unknown> | null;
  }>(layerUrl, {}, { method: "GET" });
  if (!layer.globalIdField) return undefined;
  return {
    url: layerUrl,
    objectIdField: layer.objectIdField ?? "OBJECTID",
    globalIdField: layer.globalIdField,
    stampedFields: stampedFieldsOf(layer),
    hasAttachments: layer.hasAttachments === true,
  };
}
