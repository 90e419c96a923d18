import { Readable } from "node:stream";
import type { BackupStore } from "../backup/backup-store.js";
import { type CacheSpace, streamToCache } from "../backup/cache.js";
import { type Keyed, mergeByKey, splitLines } from "../backup/feature-sort.js";
import { parseStoredJson } from "../stored-document.js";
import { type SearchRow, type SnapshotState, searchRowSchema } from "./item-index.js";

/**
 * What a search reads (a table query per search would scan every row on the emulator, and page
 * through the table on Azure), in the identity's folder:
 * - `index/items.ndjson`, the base: every item the index knew when it was last merged, one line
 *   each, in item id order;
 * - `index/deltas/<runId>-<n>.ndjson`: the rows a run changed since, in item id order, in files of
 *   at most DELTA_ROWS lines (a run's changes are never all in memory: a first run changes every item).
 * A run that changed a few items writes a delta of a few lines; once the deltas add up to a tenth
 * of the base (or there are many), their rows are merged into a new base, streamed through the
 * cache folder — so a run's share of rewriting the base stays a small part of its end.
 */
const SEARCH_SNAPSHOT = "index/items.ndjson";
const DELTAS_PREFIX = "index/deltas/";
/** Rows of a delta file: what a run holds of its changes at once. */
const DELTA_ROWS = 5_000;
/** Deltas up to this many lines in all, or a tenth of the base if more, before a merge. */
const MIN_DELTA_ITEMS = 500;
const MAX_DELTAS = 40;

function deltaName(delta: string): string {
  return `${DELTAS_PREFIX}${delta}.ndjson`;
}

type Cache = { cacheDirectory: string; cacheSpace: CacheSpace };

/** A run's changed rows, written as sorted delta files of DELTA_ROWS as they come. */
export class SnapshotChanges {
  private rows = new Map<string, string>();
  /** The delta files written, oldest first. */
  readonly deltas: string[] = [];
  count = 0;

  constructor(
    private readonly store: BackupStore,
    private readonly runId: string,
    private readonly cache: Cache,
    private readonly rowsPerDelta = DELTA_ROWS,
  ) {}

  async add(row: SearchRow): Promise<void> {
    this.rows.set(row.itemId, snapshotLine(row));
    this.count++;
    if (this.rows.size >= this.rowsPerDelta) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.rows.size === 0) return;
    const delta = `${this.runId}-${String(this.deltas.length).padStart(4, "0")}`;
    const rows = this.rows;
    this.rows = new Map();
    await writeLines(this.store, deltaName(delta), sortedValues(rows), this.cache);
    this.deltas.push(delta);
  }

  ownsDelta(delta: string): boolean {
    return delta.startsWith(`${this.runId}-`);
  }
}

/**
 * Takes a run's changes into the snapshot: its deltas join the head's, or all are merged into a
 * new base. Answers the new state for the head, and the delta blobs a merge made obsolete: delete
 * them once the head names the new state (until then they are still what a search reads).
 */
export async function updateSnapshot(options: {
  store: BackupStore;
  /** The head's state; undefined when there is no head yet (the base is written whole). */
  state: SnapshotState | undefined;
  runId: string;
  changes: SnapshotChanges;
  cache: Cache;
}): Promise<{ state: SnapshotState; obsolete: string[] }> {
  const { store, state, runId, changes } = options;
  await changes.flush();
  if (state && changes.deltas.length === 0) return { state, obsolete: [] };
  // A run indexed again (a retried finalize) replaces its own deltas.
  const deltas = [...(state?.deltas ?? []).filter((delta) => !changes.ownsDelta(delta)), ...changes.deltas];
  const deltaItems = (state?.deltaItems ?? 0) + changes.count;
  const baseItems = state?.baseItems;
  const small =
    baseItems !== undefined &&
    deltas.length <= MAX_DELTAS &&
    deltaItems <= Math.max(MIN_DELTA_ITEMS, baseItems / 10);
  if (small) {
    return { state: { writtenBy: runId, deltas, baseItems, deltaItems }, obsolete: [] };
  }
  const merged = async function* () {
    for await (const row of snapshotRows(store, { deltas })) yield snapshotLine(row);
  };
  const lines = await writeLines(store, SEARCH_SNAPSHOT, merged(), options.cache);
  return {
    state: { writtenBy: runId, deltas: [], baseItems: lines, deltaItems: 0 },
    obsolete: deltas.map(deltaName),
  };
}

/** Deletes the snapshot and its deltas (a rebuild starts from none). */
export async function deleteSnapshot(store: BackupStore): Promise<void> {
  await store.delete(SEARCH_SNAPSHOT);
  for await (const name of store.list(DELTAS_PREFIX)) await store.delete(name);
}

/** Deletes delta blobs a merge made obsolete; one left behind is never read again. */
export async function deleteDeltas(store: BackupStore, names: readonly string[]): Promise<void> {
  for (const name of names) await store.delete(name).catch(() => undefined);
}

/**
 * The snapshot's rows in item id order, each validated: the base and the deltas merged as they
 * stream (a later delta's row of an item takes the place of the base's and earlier deltas').
 */
export async function* snapshotRows(
  store: BackupStore,
  state: Pick<SnapshotState, "deltas">,
): AsyncGenerator<SearchRow> {
  const files = [SEARCH_SNAPSHOT, ...state.deltas.map(deltaName)];
  const sources = files.map((name) => byItemId(rowsOf(store, name)));
  for await (const { bySource } of mergeByKey(sources)) {
    // The base first, then the deltas oldest first: the last file holding the item is newest.
    const newest = bySource.findLast((rows) => rows !== undefined);
    if (newest) yield newest[newest.length - 1] as SearchRow;
  }
}

async function* byItemId(rows: AsyncIterable<SearchRow>): AsyncGenerator<Keyed<SearchRow>> {
  for await (const row of rows) yield { key: row.itemId, value: row };
}

/** A row as a line of the snapshot. */
export function snapshotLine(row: SearchRow): string {
  return `${JSON.stringify(row)}\n`;
}

function* sortedValues(rows: ReadonlyMap<string, string>): Generator<string> {
  for (const itemId of [...rows.keys()].sort()) yield rows.get(itemId) as string;
}

/** Writes lines to a blob through the cache folder; answers how many. */
async function writeLines(
  store: BackupStore,
  name: string,
  lines: Iterable<string> | AsyncIterable<string>,
  cache: Cache,
): Promise<number> {
  let count = 0;
  async function* bytes(): AsyncGenerator<Buffer> {
    for await (const line of lines) {
      count++;
      yield Buffer.from(line);
    }
  }
  const file = await streamToCache(Readable.from(bytes()), cache.cacheDirectory, cache.cacheSpace);
  try {
    await store.uploadCached(name, file, "application/x-ndjson");
  } finally {
    await file.discard();
  }
  return count;
}

/**
 * A snapshot file's rows, each validated; none when the file does not exist. Read a chunk at a
 * time as rows are taken (readline's iterator would read ahead without bound: a merge of many
 * deltas took one row at a time from each while the others filled up whole).
 */
async function* rowsOf(store: BackupStore, name: string): AsyncGenerator<SearchRow> {
  const opened = await store.openIfExists(name);
  if (!opened) return;
  let number = 0;
  for await (const text of splitLines(opened.body as AsyncIterable<Buffer>)) {
    number++;
    yield parseStoredJson(searchRowSchema, text, `${name} row ${number}`);
  }
}
