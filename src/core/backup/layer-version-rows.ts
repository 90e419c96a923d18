import type { ExportedFile } from "./export-item.js";
import type { AttachmentRecord } from "./feature-attachments.js";
import { attributeOf, type FeatureJson } from "./feature-layers.js";
import { type Keyed, keyed, mergeByKey } from "./feature-sort.js";
import { CHANGE_FILE_KIND, type ChangeLine, changeLineSchema } from "./layer-changes-format.js";
import { attachmentsIndexPath, featuresPath } from "./layout.js";

/** The merge these rows are built with, for the restore's merges of stored and current rows. */
export { mergeByKey };

/** Reads a stored file's lines (the restore's BackupFiles checks each against the manifest). */
export interface LineSource {
  lines(file: ExportedFile): AsyncIterable<string>;
}

/** The files a layer's rows are built from, in the order they apply. */
export interface LayerFiles {
  layerId: number;
  /** The full export (this version's, or the base version's reused). */
  base: ExportedFile;
  attachmentsIndex: ExportedFile | undefined;
  changeSets: Array<{ rows: ExportedFile; attachments: ExportedFile | undefined }>;
}

function layerIdOf(file: ExportedFile): number | undefined {
  const id = Number(file.detail?.layerId);
  return Number.isInteger(id) ? id : undefined;
}

/** The layers of a version that hold rows (a full export of theirs is named by the version). */
export function layersOf(files: readonly ExportedFile[]): LayerFiles[] {
  const out: LayerFiles[] = [];
  for (const base of files) {
    if (base.kind !== "features") continue;
    const layerId = layerIdOf(base) ?? Number(/(\d+)\.ndjson$/.exec(base.path)?.[1]);
    if (!Number.isInteger(layerId) || base.path !== featuresPath(layerId)) continue;
    const ofLayer = files.filter((f) => f.kind === CHANGE_FILE_KIND && layerIdOf(f) === layerId);
    const changeSets = ofLayer
      .filter((f) => f.detail?.part === "rows")
      .sort((a, b) => Number(a.detail?.changeSet) - Number(b.detail?.changeSet))
      .map((rows) => ({
        rows,
        attachments: ofLayer.find(
          (f) => f.detail?.part === "attachments" && f.detail?.changeSet === rows.detail?.changeSet,
        ),
      }));
    out.push({
      layerId,
      base,
      attachmentsIndex: files.find((f) => f.path === attachmentsIndexPath(layerId)),
      changeSets,
    });
  }
  return out.sort((a, b) => a.layerId - b.layerId);
}

/**
 * Every row of a layer version in object id order, one feature JSON per line — the full export's
 * lines merged with its change sets: for each object id the latest change set that inserted,
 * updated or deleted the row decides, else the full export's line. One line per source is in
 * memory at a time, whatever the layer's size.
 */
export async function* layerRows(
  source: LineSource,
  layer: LayerFiles,
  objectIdField: string,
): AsyncGenerator<string> {
  const sources: Array<AsyncIterable<Keyed<string | ChangeLine>>> = [
    keyed(source.lines(layer.base), (line) => ({ key: objectIdOfLine(line, objectIdField), value: line })),
    ...layer.changeSets.map((set) => keyed(source.lines(set.rows), parseChange)),
  ];
  for await (const group of mergeByKey(sources)) {
    for (let i = sources.length - 1; i >= 0; i--) {
      const decisive = group.bySource[i]?.findLast((e) => typeof e === "string" || e.op !== "attachments");
      if (decisive === undefined) continue;
      if (typeof decisive === "string") yield decisive;
      else if (decisive.op === "upsert") yield JSON.stringify(decisive.feature ?? {});
      break;
    }
  }
}

/**
 * The attachment records of a layer version, by parent object id then attachment id: for each
 * parent, those of the latest change set that lists the parent's attachments (or deleted it),
 * else the full export's index.
 */
export async function* layerAttachments(
  source: LineSource,
  layer: LayerFiles,
): AsyncGenerator<AttachmentRecord> {
  if (!layer.attachmentsIndex) return;
  const sources: Array<AsyncIterable<Keyed<AttachmentRecord | ChangeLine>>> = [
    keyed(source.lines(layer.attachmentsIndex), parseAttachment),
  ];
  for (const set of layer.changeSets) {
    sources.push(keyed(source.lines(set.rows), parseChange));
    sources.push(set.attachments ? keyed(source.lines(set.attachments), parseAttachment) : empty());
  }
  for await (const group of mergeByKey(sources)) {
    let winner = 0;
    for (let set = layer.changeSets.length; set >= 1; set--) {
      const lines = (group.bySource[2 * set - 1] ?? []) as ChangeLine[];
      if (lines.some((l) => l.attachments === true || l.op === "delete")) {
        winner = 2 * set;
        break;
      }
    }
    const records = (group.bySource[winner] ?? []) as AttachmentRecord[];
    yield* [...records].sort((a, b) => a.id - b.id);
  }
}

async function* empty<T>(): AsyncGenerator<T> {}

function parseChange(line: string): Keyed<ChangeLine> {
  const change = changeLineSchema.parse(JSON.parse(line));
  return { key: change.oid, value: change };
}

function parseAttachment(line: string): Keyed<AttachmentRecord> {
  const record = JSON.parse(line) as AttachmentRecord;
  return { key: record.parentObjectId, value: record };
}

/**
 * The object id of a feature line: read from its text where it is a plain integer (the usual
 * case: no parse of the whole line), else from the parsed feature.
 */
function objectIdOfLine(line: string, field: string): number {
  const marker = `"${field}":`;
  const at = line.indexOf(marker);
  if (at >= 0) {
    const match = /^-?\d{1,16}(?=[,}])/.exec(line.slice(at + marker.length, at + marker.length + 20));
    if (match) return Number(match[0]);
  }
  const value = attributeOf(JSON.parse(line) as FeatureJson, field);
  if (typeof value !== "number") throw new Error(`A stored feature has no object id (${field})`);
  return value;
}
