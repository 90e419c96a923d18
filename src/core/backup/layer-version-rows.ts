import type { ExportedFile } from "./export-item.js";
import type { AttachmentRecord } from "./feature-attachments.js";
import { compareKeys, type SortKey } from "./feature-sort.js";
import { CHANGE_FILE_KIND, type ChangeLine, changeLineSchema } from "./layer-changes-format.js";
import { attachmentsIndexPath, featuresPath } from "./layout.js";

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
      const entries = group.bySource[i] ?? [];
      const decisive = [...entries].reverse().find((e) => typeof e === "string" || e.op !== "attachments");
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

interface Keyed<T> {
  key: SortKey;
  value: T;
}

async function* keyed<T>(
  lines: AsyncIterable<string>,
  parse: (line: string) => Keyed<T>,
): AsyncGenerator<Keyed<T>> {
  for await (const line of lines) yield parse(line);
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
 * Merges sources sorted by key into groups of one key, each with what every source holds for it
 * (a source may hold several entries of one key). One entry per source is read ahead.
 */
export async function* mergeByKey<T>(
  sources: ReadonlyArray<AsyncIterable<Keyed<T>>>,
): AsyncGenerator<{ key: SortKey; bySource: Array<T[] | undefined> }> {
  const iterators = sources.map((s) => s[Symbol.asyncIterator]());
  const heads: Array<Keyed<T> | undefined> = [];
  try {
    for (const it of iterators) heads.push(await advance(it, undefined));
    for (;;) {
      let key: SortKey | undefined;
      for (const head of heads)
        if (head && (key === undefined || compareKeys(head.key, key) < 0)) key = head.key;
      if (key === undefined) return;
      const bySource: Array<T[] | undefined> = [];
      for (let i = 0; i < heads.length; i++) {
        while (heads[i] && compareKeys((heads[i] as Keyed<T>).key, key) === 0) {
          const entries = bySource[i] ?? [];
          entries.push((heads[i] as Keyed<T>).value);
          bySource[i] = entries;
          heads[i] = await advance(iterators[i] as AsyncIterator<Keyed<T>>, key);
        }
      }
      yield { key, bySource };
    }
  } finally {
    await Promise.all(iterators.map((it) => it.return?.(undefined)));
  }
}

/** The next entry; a source that goes backwards is a damaged file, never silently merged. */
async function advance<T>(
  iterator: AsyncIterator<Keyed<T>>,
  after: SortKey | undefined,
): Promise<Keyed<T> | undefined> {
  const next = await iterator.next();
  if (next.done) return undefined;
  if (after !== undefined && compareKeys(next.value.key, after) < 0) {
    throw new Error(`A stored layer file is out of order: ${String(next.value.key)} after ${String(after)}`);
  }
  return next.value;
}

/**
 * The object id of a feature line: read from its text where it is a plain integer (the usual
 * case: no parse of the whole line), else from the parsed feature.
 */
export function objectIdOfLine(line: string, field: string): number {
  const marker = `"${field}":`;
  const at = line.indexOf(marker);
  if (at >= 0) {
    const match = /^-?\d{1,16}(?=[,}])/.exec(line.slice(at + marker.length, at + marker.length + 20));
    if (match) return Number(match[0]);
  }
  const attributes = (JSON.parse(line) as { attributes?: Record<string, unknown> }).attributes ?? {};
  const upper = field.toUpperCase();
  const key = Object.keys(attributes).find((k) => k.toUpperCase() === upper);
  const value = key === undefined ? undefined : attributes[key];
  if (typeof value !== "number") throw new Error(`A stored feature has no object id (${field})`);
  return value;
}
