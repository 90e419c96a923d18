import type { PortalClient } from "../arcgis/portal-client.js";
import { PortalError } from "../arcgis/portal-errors.js";
import { errorMessage } from "../errors.js";
import { isSystemicFailure } from "../failures.js";
import type { ExportedFile, VersionMarker, VersionWriter } from "./export-item.js";
import { exportAttachments } from "./feature-attachments.js";
import {
  attributeOf,
  type FeatureJson,
  type LayerDefinition,
  layerLabel,
  listsCapability,
  objectIdFieldOf,
  type ServiceRoot,
} from "./feature-layers.js";
import { linesToCache } from "./feature-sort.js";
import {
  CHANGE_FILE_KIND,
  type ChangeLine,
  changeAttachmentsPath,
  changeRowsPath,
  type LayerNow,
  type LayerStorage,
  schemaFingerprint,
} from "./layer-changes-format.js";
import { attachmentsIndexPath, featuresPath } from "./layout.js";

/**
 * Rows changed since the previous version above which a change set is not worth it (a full export
 * is then taken): a change set is read as one extractChanges answer, so this also bounds memory.
 */
const MAX_CHANGED_ROWS = 50_000;
/** GlobalIDs looked up per query when an attachment change names only its parent's GlobalID. */
const GLOBAL_IDS_PER_QUERY = 50;

/** What a layer's capture adds to its version: counts, notes and how its rows are stored. */
export interface LayerCapture {
  counts: Record<string, number>;
  notes: string[];
  storage: LayerStorage;
}

/** What the service says now of one layer: its schema, last data edit and change-tracking generations. */
export function layerNow(root: ServiceRoot, layer: LayerDefinition): LayerNow {
  const info = layer.editingInfo;
  const edited = info?.dataLastEditDate ?? info?.lastEditDate;
  return {
    schema: schemaFingerprint(layer),
    dataLastEditDate: typeof edited === "number" && Number.isFinite(edited) ? edited : undefined,
    tracking: trackingOf(root, layer),
  };
}

/**
 * The layer's generations when the service can hand out its changes as full rows: the
 * ChangeTracking capability, extractChangesCapabilities allowing rows (and attachments, for a
 * layer that has them), and the layer in `changeTrackingInfo.layerServerGens`.
 */
function trackingOf(root: ServiceRoot, layer: LayerDefinition): LayerNow["tracking"] {
  const can = root.extractChangesCapabilities;
  if (!listsCapability(root.capabilities ?? "", "ChangeTracking") || !can) return undefined;
  if (
    can.supportsReturnFeature === false ||
    (layer.hasAttachments && can.supportsReturnAttachments !== true)
  ) {
    return undefined;
  }
  const gens = root.changeTrackingInfo?.layerServerGens?.find((g) => g.id === layer.id);
  if (typeof gens?.serverGen !== "number") return undefined;
  return {
    serverGen: gens.serverGen,
    minServerGen: typeof gens.minServerGen === "number" ? gens.minServerGen : 0,
  };
}

function ofLayer(file: ExportedFile, layerId: number): boolean {
  return Number(file.detail?.layerId) === layerId;
}

/** The files of a layer's rows in a version: its full export, index, change sets and attachments. */
function layerFilesIn(files: readonly ExportedFile[], layerId: number): ExportedFile[] {
  return files.filter(
    (f) =>
      f.path === featuresPath(layerId) ||
      f.path === attachmentsIndexPath(layerId) ||
      ((f.kind === CHANGE_FILE_KIND || f.kind === "attachment") && ofLayer(f, layerId)),
  );
}

const LAYER_COUNT_KEYS = ["features", "attachments", "attachmentBytes"];

function previousCounts(previous: VersionMarker, layerId: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const key of LAYER_COUNT_KEYS) {
    const value = previous.counts?.[`${key}:${layerId}`];
    if (value !== undefined) out[`${key}:${layerId}`] = value;
  }
  return out;
}

/** Nothing was edited since the previous version: its files and counts are this version's too. */
export function keepLayer(
  writer: VersionWriter,
  previous: VersionMarker,
  layer: LayerDefinition,
  storage: LayerStorage,
): LayerCapture {
  for (const file of layerFilesIn(previous.files, layer.id)) writer.reference(file);
  const { reason: _reason, ...kept } = storage;
  return { counts: previousCounts(previous, layer.id), notes: [], storage: kept };
}

interface ExtractedEdits {
  serverGen: number;
  adds: FeatureJson[];
  updates: FeatureJson[];
  deleteIds: Array<number | string>;
  attachmentAdds: AttachmentChange[];
  attachmentDeletes: Array<number | string>;
}

interface AttachmentChange {
  id?: number;
  parentObjectId?: number;
  parentGlobalId?: string | null;
}

interface ExtractAnswer {
  layerServerGens?: Array<{ id: number; serverGen?: number }>;
  edits?: Array<{
    id: number;
    objectIds?: { adds?: number[]; updates?: number[]; deletes?: number[] };
    features?: { adds?: FeatureJson[]; updates?: FeatureJson[]; deleteIds?: Array<number | string> };
    attachments?: {
      adds?: AttachmentChange[];
      updates?: AttachmentChange[];
      deleteIds?: Array<number | string>;
    };
  }>;
}

export interface ChangeSetInput {
  portal: PortalClient;
  writer: VersionWriter;
  serviceUrl: string;
  layer: LayerDefinition;
  previous: VersionMarker;
  previousStorage: LayerStorage;
  since: number;
  now: LayerNow;
}

/**
 * Captures a layer as a change set since the previous version's generation: the rows inserted,
 * updated and deleted (extractChanges), the attachments of rows whose attachments changed, and
 * the previous version's files of the layer named again. Undefined (with the reason) when a full
 * export has to be taken instead: too many changes, the service refused, an attachment change
 * that cannot be placed.
 */
export async function captureChangeSet(input: ChangeSetInput): Promise<LayerCapture | { fallback: string }> {
  const { layer, previous, previousStorage, since } = input;
  const extracted = await extractEdits(input);
  if ("fallback" in extracted) return extracted;
  const objectIdField = objectIdFieldOf(layer);
  const lines = new Map<number, ChangeLine>();
  const globalIds = new Map<string, number>();
  for (const feature of [...extracted.adds, ...extracted.updates]) {
    const oid = attributeOf(feature, objectIdField);
    if (typeof oid !== "number") return { fallback: `a changed row came without its ${objectIdField}` };
    lines.set(oid, { oid, op: "upsert", feature: feature as Record<string, unknown> });
    const gid = layer.globalIdField ? attributeOf(feature, layer.globalIdField) : undefined;
    if (typeof gid === "string") globalIds.set(normalGuid(gid), oid);
  }
  for (const id of extracted.deleteIds) {
    if (typeof id !== "number") return { fallback: "deletes came as GlobalIDs" };
    lines.set(id, { oid: id, op: "delete" });
  }
  const previousFiles = layerFilesIn(previous.files, layer.id);
  const previousAttachments = previousFiles.filter((file) => file.kind === "attachment");
  const covered = layer.hasAttachments
    ? await attachmentParents(input, extracted, globalIds, previousAttachments)
    : new Set<number>();
  if (typeof covered === "string") return { fallback: covered };
  for (const feature of extracted.adds) covered.add(attributeOf(feature, objectIdField) as number);
  for (const oid of covered) {
    const line = lines.get(oid);
    if (line) line.attachments = true;
    else lines.set(oid, { oid, op: "attachments", attachments: true });
  }
  const changeSet = previousStorage.changeSets + 1;
  for (const file of previousFiles) {
    if (file.kind === "attachment" && covered.has(Number(file.detail?.objectId))) continue;
    input.writer.reference(file);
  }
  await writeChangeRows(
    input,
    [...lines.values()].sort((a, b) => a.oid - b.oid),
    changeSet,
    extracted.serverGen,
  );
  const counts = await changeSetCounts(input, covered, changeSet, lines, previousAttachments);
  return {
    counts: counts.values,
    notes: counts.notes,
    storage: {
      layerId: layer.id,
      storage: "changes",
      baseVersion: previousStorage.baseVersion,
      changeSets: changeSet,
      serverGen: extracted.serverGen,
      fromServerGen: since,
      ...(input.now.dataLastEditDate !== undefined ? { dataLastEditDate: input.now.dataLastEditDate } : {}),
      schema: input.now.schema,
    },
  };
}

/**
 * extractChanges twice: ids only first (cheap; a change set past MAX_CHANGED_ROWS is not taken),
 * then the rows and attachment changes. A refusal of the service (not an outage) falls back.
 */
async function extractEdits(input: ChangeSetInput): Promise<ExtractedEdits | { fallback: string }> {
  const { layer } = input;
  const ask = (extra: Record<string, unknown>) =>
    input.portal.json<ExtractAnswer>(`${input.serviceUrl}/extractChanges`, {
      layers: JSON.stringify([layer.id]),
      layerServerGens: JSON.stringify([{ id: layer.id, serverGen: input.since }]),
      returnInserts: true,
      returnUpdates: true,
      returnDeletes: true,
      dataFormat: "json",
      ...extra,
    });
  try {
    const ids = (await ask({ returnIdsOnly: true })).edits?.find((e) => e.id === layer.id)?.objectIds;
    const changed = (ids?.adds?.length ?? 0) + (ids?.updates?.length ?? 0) + (ids?.deletes?.length ?? 0);
    if (changed > MAX_CHANGED_ROWS) return { fallback: `${changed} rows changed: a full export is cheaper` };
    const answer = await ask({
      returnIdsOnly: false,
      ...(layer.hasAttachments ? { returnAttachments: true, returnAttachmentsDataByUrl: true } : {}),
    });
    const serverGen = answer.layerServerGens?.find((g) => g.id === layer.id)?.serverGen;
    const edits = answer.edits?.find((e) => e.id === layer.id);
    if (typeof serverGen !== "number" || !edits)
      return { fallback: "extractChanges answered without the layer" };
    return {
      serverGen,
      adds: edits.features?.adds ?? [],
      updates: edits.features?.updates ?? [],
      deleteIds: edits.features?.deleteIds ?? [],
      attachmentAdds: [...(edits.attachments?.adds ?? []), ...(edits.attachments?.updates ?? [])],
      attachmentDeletes: edits.attachments?.deleteIds ?? [],
    };
  } catch (error) {
    if (isSystemicFailure(error) || !(error instanceof PortalError)) throw error;
    return { fallback: `extractChanges was refused (${errorMessage(error)})` };
  }
}

/**
 * The rows whose attachments this change set lists in full: parents of attachments added or
 * updated (by object id, or by GlobalID looked up), parents of attachments deleted (found in the
 * previous version's files) and deleted rows. A string says why it cannot be told.
 */
async function attachmentParents(
  input: ChangeSetInput,
  extracted: ExtractedEdits,
  globalIds: Map<string, number>,
  previousAttachments: readonly ExportedFile[],
): Promise<Set<number> | string> {
  const parents = new Set<number>();
  const unknown = new Set<string>();
  for (const change of extracted.attachmentAdds) {
    if (typeof change.parentObjectId === "number") parents.add(change.parentObjectId);
    else if (change.parentGlobalId) {
      const known = globalIds.get(normalGuid(change.parentGlobalId));
      if (known === undefined) unknown.add(normalGuid(change.parentGlobalId));
      else parents.add(known);
    } else return "an attachment change names no parent";
  }
  for (const [gid, oid] of await lookUpGlobalIds(input, [...unknown])) {
    parents.add(oid);
    unknown.delete(gid);
  }
  // A parent not found is gone since: its delete is in this change set, or it comes in the next.
  const previousParents = new Map<number, number>();
  for (const file of previousAttachments) {
    previousParents.set(Number(file.detail?.attachmentId), Number(file.detail?.objectId));
  }
  for (const id of extracted.attachmentDeletes) {
    if (typeof id !== "number") return "attachment deletes came as GlobalIDs";
    const parent = previousParents.get(id);
    // An attachment the previous version did not hold was added and removed since: nothing to do.
    if (parent !== undefined) parents.add(parent);
  }
  for (const id of extracted.deleteIds) if (typeof id === "number") parents.add(id);
  return parents;
}

async function lookUpGlobalIds(input: ChangeSetInput, wanted: string[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const field = input.layer.globalIdField;
  if (!field || wanted.length === 0) return out;
  const objectIdField = objectIdFieldOf(input.layer);
  for (let i = 0; i < wanted.length; i += GLOBAL_IDS_PER_QUERY) {
    const chunk = wanted.slice(i, i + GLOBAL_IDS_PER_QUERY);
    const response = await input.portal.json<{ features?: FeatureJson[] }>(
      `${input.serviceUrl}/${input.layer.id}/query`,
      {
        where: `${field} IN (${chunk.map((g) => `'{${g.toUpperCase()}}'`).join(",")})`,
        outFields: `${objectIdField},${field}`,
        returnGeometry: false,
      },
    );
    for (const feature of response.features ?? []) {
      const oid = attributeOf(feature, objectIdField);
      const gid = attributeOf(feature, field);
      if (typeof oid === "number" && typeof gid === "string") out.set(normalGuid(gid), oid);
    }
  }
  return out;
}

async function writeChangeRows(
  input: ChangeSetInput,
  lines: ChangeLine[],
  changeSet: number,
  serverGen: number,
): Promise<void> {
  await input.writer.captureFile(
    changeRowsPath(input.layer.id, changeSet),
    (directory, space) => linesToCache(lines, (line) => JSON.stringify(line), directory, space),
    CHANGE_FILE_KIND,
    {
      contentType: "application/x-ndjson",
      detail: { layerId: input.layer.id, changeSet, part: "rows", fromServerGen: input.since, serverGen },
    },
  );
}

/**
 * The layer's counts at this version: rows as the service counts them now, attachments as the
 * previous version's less those of the rows this change set lists again, plus what it lists.
 */
async function changeSetCounts(
  input: ChangeSetInput,
  covered: Set<number>,
  changeSet: number,
  lines: Map<number, ChangeLine>,
  previousAttachments: readonly ExportedFile[],
): Promise<{ values: Record<string, number>; notes: string[] }> {
  const { layer, previous } = input;
  const values: Record<string, number> = {};
  const notes: string[] = [];
  const counted = await input.portal.json<{ count?: number }>(`${input.serviceUrl}/${layer.id}/query`, {
    where: "1=1",
    returnCountOnly: true,
  });
  values[`features:${layer.id}`] = typeof counted.count === "number" ? counted.count : 0;
  if (!layer.hasAttachments) return { values, notes };
  let count = previous.counts?.[`attachments:${layer.id}`] ?? 0;
  let bytes = previous.counts?.[`attachmentBytes:${layer.id}`] ?? 0;
  for (const file of previousAttachments) {
    if (!covered.has(Number(file.detail?.objectId))) continue;
    count--;
    bytes -= file.size;
  }
  const present = [...covered].filter((oid) => lines.get(oid)?.op !== "delete").sort((a, b) => a - b);
  if (present.length > 0) {
    const listed = await exportAttachments({
      portal: input.portal,
      writer: input.writer,
      layerUrl: `${input.serviceUrl}/${layer.id}`,
      layer,
      label: layerLabel(layer),
      objectIdField: objectIdFieldOf(layer),
      ranges: [],
      objectIds: present,
      concurrency: 4,
      index: {
        path: changeAttachmentsPath(layer.id, changeSet),
        kind: CHANGE_FILE_KIND,
        detail: { layerId: layer.id, changeSet, part: "attachments" },
      },
    });
    notes.push(...listed.notes);
    count += listed.count;
    bytes += listed.bytes;
  }
  values[`attachments:${layer.id}`] = count;
  values[`attachmentBytes:${layer.id}`] = bytes;
  return { values, notes };
}

export function normalGuid(value: unknown): string {
  return String(value ?? "")
    .replace(/[{}]/g, "")
    .toLowerCase();
}
