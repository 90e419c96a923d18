import { createInterface } from "node:readline";
import { Readable } from "node:stream";
import type { BackupStore } from "../backup/backup-store.js";
import { type CacheSpace, streamToCache } from "../backup/cache.js";
import { parseStoredJson } from "../stored-document.js";
import { type SearchRow, type SnapshotState, searchRowSchema } from "./item-index.js";

/**
 * What a search reads (a table query per search would scan every row on the emulator, and page
 * through the table on Azure), in the identity's folder:
 * - `index/items.ndjson`, the base: every item the index knew when it was last merged, one line
 *   each, in item id order;
 * - `index/deltas/<runId>.ndjson`: the rows a run changed since, in item id order.
 * A run that changed a few items writes a delta of a few lines; once the deltas add up to a tenth
 * of the base (or there are many), the next run merges them all into a new base, streamed through
 * the cache folder — so a run's share of rewriting the base stays a small part of its end.
 */
const SEARCH_SNAPSHOT = "index/items.ndjson";
const DELTAS_PREFIX = "index/deltas/";
/** Deltas up to this many lines in all, or a tenth of the base if more, before a merge. */
const MIN_DELTA_ITEMS = 500;
const MAX_DELTAS = 20;

function deltaName(runId: string): string {
  return `${DELTAS_PREFIX}${runId}.ndjson`;
}

/**
 * Takes a run's changed rows into the snapshot, as a delta or merged into a new base. Answers the
 * new state for the head, and the delta blobs the new base made obsolete: delete them once the
 * head names the new state (until then they are still what a search reads).
 */
export async function updateSnapshot(options: {
  store: BackupStore;
  /** The head's state; undefined when there is no head yet (the base is written whole). */
  state: SnapshotState | undefined;
  runId: string;
  /** The lines of the rows that changed (new, updated, deleted), by item id (see snapshotLine). */
  changes: ReadonlyMap<string, string>;
  cacheDirectory: string;
  cacheSpace: CacheSpace;
}): Promise<{ state: SnapshotState; obsolete: string[] }> {
  const { store, state, runId, changes } = options;
  if (state && changes.size === 0) return { state, obsolete: [] };
  // A run indexed again (a retried finalize) replaces its own delta.
  const deltas = (state?.deltas ?? []).filter((delta) => delta !== runId);
  const deltaItems = (state?.deltaItems ?? 0) + changes.size;
  const baseItems = state?.baseItems;
  const small =
    baseItems !== undefined &&
    deltas.length < MAX_DELTAS &&
    deltaItems <= Math.max(MIN_DELTA_ITEMS, baseItems / 10);
  if (small) {
    await writeSorted(store, deltaName(runId), changes, options);
    return { state: { writtenBy: runId, deltas: [...deltas, runId], baseItems, deltaItems }, obsolete: [] };
  }
  const merged = await deltaLines(store, deltas);
  for (const [itemId, line] of changes) merged.set(itemId, line);
  const lines = await writeSorted(store, SEARCH_SNAPSHOT, merged, options, baseRows(store));
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

/** The snapshot's rows in item id order (base and deltas merged), each validated. */
export async function* snapshotRows(store: BackupStore, state: SnapshotState): AsyncGenerator<SearchRow> {
  const changes = new Map<string, SearchRow>();
  for (const runId of state.deltas) {
    for await (const row of rowsOf(store, deltaName(runId))) changes.set(row.itemId, row);
  }
  yield* mergeById(baseRows(store), changes, (row) => row);
}

/** A row as a line of the snapshot. */
export function snapshotLine(row: SearchRow): string {
  return `${JSON.stringify(row)}\n`;
}

function baseRows(store: BackupStore): AsyncGenerator<SearchRow> {
  return rowsOf(store, SEARCH_SNAPSHOT);
}

async function deltaLines(store: BackupStore, deltas: readonly string[]): Promise<Map<string, string>> {
  const lines = new Map<string, string>();
  for (const runId of deltas) {
    for await (const row of rowsOf(store, deltaName(runId))) lines.set(row.itemId, snapshotLine(row));
  }
  return lines;
}

/**
 * Writes `changes` (lines by item id) in item id order, merged into `base` when given (a changed
 * line replaces the base's), through the cache folder; answers the number of lines written.
 */
async function writeSorted(
  store: BackupStore,
  name: string,
  changes: ReadonlyMap<string, string>,
  cache: { cacheDirectory: string; cacheSpace: CacheSpace },
  base?: AsyncIterable<SearchRow>,
): Promise<number> {
  let count = 0;
  async function* lines(): AsyncGenerator<Buffer> {
    const merged = base
      ? mergeById(base, changes, snapshotLine)
      : (async function* () {
          for (const itemId of [...changes.keys()].sort()) yield changes.get(itemId) as string;
        })();
    for await (const line of merged) {
      count++;
      yield Buffer.from(line);
    }
  }
  const file = await streamToCache(Readable.from(lines()), cache.cacheDirectory, cache.cacheSpace);
  try {
    await store.uploadCached(name, file, "application/x-ndjson");
  } finally {
    await file.discard();
  }
  return count;
}

/** Rows in item id order with `changes` taking the place of (or joining) the base's. */
async function* mergeById<T>(
  base: AsyncIterable<SearchRow>,
  changes: ReadonlyMap<string, T>,
  fromBase: (row: SearchRow) => T,
): AsyncGenerator<T> {
  const pending = [...changes.keys()].sort();
  let next = 0;
  for await (const row of base) {
    while (next < pending.length && (pending[next] as string) < row.itemId) {
      yield changes.get(pending[next++] as string) as T;
    }
    if (pending[next] === row.itemId) yield changes.get(pending[next++] as string) as T;
    else yield fromBase(row);
  }
  while (next < pending.length) yield changes.get(pending[next++] as string) as T;
}

/** A snapshot file's rows, each validated; none when the file does not exist. */
async function* rowsOf(store: BackupStore, name: string): AsyncGenerator<SearchRow> {
  const opened = await store.openIfExists(name);
  if (!opened) return;
  let number = 0;
  for await (const text of createInterface({ input: opened.body, crlfDelay: Number.POSITIVE_INFINITY })) {
    number++;
    if (text.trim() === "") continue;
    yield parseStoredJson(searchRowSchema, text, `${name} line ${number}`);
  }
}
