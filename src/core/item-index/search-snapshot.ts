import { Readable } from "node:stream";
import { z } from "zod";
import type { BackupStore } from "../backup/backup-store.js";
import { type CacheSpace, streamToCache } from "../backup/cache.js";
import { type Keyed, mergeByKey, splitLines } from "../backup/feature-sort.js";
import { parseStoredJson } from "../stored-document.js";
import type { SnapshotState } from "./item-index.js";

/**
 * What a search reads (a table query per search would scan every row on the emulator, and page
 * through the table on Azure), in the identity's folder:
 * - `index/items.ndjson`, the base: every item the index knew when it was last merged, one line
 *   each, in item id order;
 * - `index/deltas/<runId>-<n>.ndjson`: the rows a run changed since, in item id order, in files of
 *   at most DELTA_ROWS lines (a run's changes are never all in memory: a first run changes every item).
 * A delta holds patches, not rows: what a run learnt of an item (a version captured, a new title,
 * owner or folder, gone from the org), applied to the item's row as the snapshot is read. So a run
 * writes what it changed without reading what the index knew. A run that changed a few items writes
 * a delta of a few lines; once the deltas add up to half the base (or there are many), they
 * are applied into a new base, streamed through the cache folder — so a run's share of rewriting
 * the base stays a small part of its end.
 */
const SEARCH_SNAPSHOT = "index/items.ndjson";
const DELTAS_PREFIX = "index/deltas/";
/** Rows of a delta file: what a run holds of its changes at once. */
const DELTA_ROWS = 5_000;
/**
 * Deltas up to this many lines in all, or half the base if more, before a merge: a search reads
 * at most half as many lines again, and a run's share of rewriting the base stays small (at 1% of
 * the items changed a run, the base is rewritten every MAX_DELTAS runs).
 */
const MIN_DELTA_ITEMS = 500;
const MAX_DELTAS = 40;

/** An item as the search finds it: one line of the base. */
export const searchRowSchema = z.object({
  itemId: z.string(),
  title: z.string(),
  type: z.string(),
  owner: z.string(),
  folderTitle: z.string(),
  tags: z.array(z.string()),
  /** What `q` matches: title, tags and item id, in lower case. */
  search: z.string(),
  firstRunId: z.string(),
  firstSeenAt: z.string(),
  /** In the org as of the head's run; if not, lastSeen* is the last run that had it. */
  present: z.boolean(),
  lastSeenRunId: z.string(),
  lastSeenAt: z.string(),
  /** Every version captured, oldest first. */
  versions: z.array(z.string()).min(1),
});
export type SearchRow = z.infer<typeof searchRowSchema>;

const seen = { itemId: z.string(), runId: z.string(), at: z.string() };
const listing = { title: z.string(), owner: z.string(), folderTitle: z.string() };

/** One line of a delta: what a run (`runId`, started `at`) learnt of an item. */
export const snapshotPatchSchema = z.discriminatedUnion("kind", [
  /** A version of the item captured, with the listing the run saw. */
  z.object({
    kind: z.literal("captured"),
    ...seen,
    ...listing,
    type: z.string(),
    tags: z.array(z.string()),
    version: z.string(),
  }),
  /** The item listed under another title, owner or folder, its version unchanged. */
  z.object({ kind: z.literal("listed"), ...seen, ...listing }),
  /** The item is no longer in the org: `runId` is the last run that had it. */
  z.object({ kind: z.literal("gone"), ...seen }),
]);
export type SnapshotPatch = z.infer<typeof snapshotPatchSchema>;

/** The item's row after a patch (undefined: an item the snapshot never had, listed or gone). */
export function applyPatch(row: SearchRow | undefined, patch: SnapshotPatch): SearchRow | undefined {
  const seenBy = { lastSeenRunId: patch.runId, lastSeenAt: patch.at };
  if (patch.kind === "captured") {
    const { title, owner, folderTitle, type, tags } = patch;
    const fields = { title, owner, folderTitle, type, tags, search: searchText(title, tags, patch.itemId) };
    if (!row) {
      const first = { firstRunId: patch.runId, firstSeenAt: patch.at };
      return {
        itemId: patch.itemId,
        ...fields,
        ...first,
        present: true,
        ...seenBy,
        versions: [patch.version],
      };
    }
    const newest = patch.version >= (row.versions[row.versions.length - 1] as string);
    const versions = row.versions.includes(patch.version)
      ? row.versions
      : [...row.versions, patch.version].sort();
    return { ...row, ...(newest ? fields : {}), present: true, ...seenBy, versions };
  }
  if (!row) return undefined;
  if (patch.kind === "gone") return { ...row, present: false, ...seenBy };
  const { title, owner, folderTitle } = patch;
  return { ...row, title, owner, folderTitle, search: searchText(title, row.tags, row.itemId), ...seenBy };
}

/** What `q` matches: title, tags and item id. */
function searchText(title: string, tags: readonly string[], itemId: string): string {
  return [title, ...tags, itemId].join(" ").toLowerCase();
}

function deltaName(delta: string): string {
  return `${DELTAS_PREFIX}${delta}.ndjson`;
}

type Cache = { cacheDirectory: string; cacheSpace: CacheSpace };

/** A run's patches, written as delta files of DELTA_ROWS sorted by item id as they come. */
export class SnapshotChanges {
  /** Each item's patches in the order made. */
  private rows = new Map<string, string[]>();
  private lines = 0;
  /** The delta files written, oldest first. */
  readonly deltas: string[] = [];
  count = 0;

  constructor(
    private readonly store: BackupStore,
    private readonly runId: string,
    private readonly cache: Cache,
    private readonly rowsPerDelta = DELTA_ROWS,
  ) {}

  async add(patch: SnapshotPatch): Promise<void> {
    const line = snapshotLine(patch);
    const lines = this.rows.get(patch.itemId);
    if (lines) lines.push(line);
    else this.rows.set(patch.itemId, [line]);
    this.count++;
    if (++this.lines >= this.rowsPerDelta) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.rows.size === 0) return;
    const delta = `${this.runId}-${String(this.deltas.length).padStart(4, "0")}`;
    const rows = this.rows;
    this.rows = new Map();
    this.lines = 0;
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
  const small =
    state !== undefined &&
    deltas.length <= MAX_DELTAS &&
    deltaItems <= Math.max(MIN_DELTA_ITEMS, state.baseItems / 2);
  if (small) {
    return { state: { writtenBy: runId, deltas, baseItems: state.baseItems, deltaItems }, obsolete: [] };
  }
  // Without a head, the index starts anew: a base left by an earlier index is not read.
  const merged = async function* () {
    for await (const row of snapshotRows(store, { deltas }, { withBase: state !== undefined })) {
      yield snapshotLine(row);
    }
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
 * The snapshot's items in id order, each line validated: the base and the deltas merged as they
 * stream, each item's base row taking its patches in the order the runs made them.
 */
export async function* snapshotRows(
  store: BackupStore,
  state: Pick<SnapshotState, "deltas">,
  options: { withBase: boolean } = { withBase: true },
): AsyncGenerator<SearchRow> {
  const base = options.withBase ? linesOf(store, SEARCH_SNAPSHOT, searchRowSchema) : emptyLines<SearchRow>();
  const sources = [
    byItemId(base),
    ...state.deltas.map((delta) => byItemId(linesOf(store, deltaName(delta), snapshotPatchSchema))),
  ];
  for await (const { bySource } of mergeByKey<SearchRow | SnapshotPatch>(sources)) {
    let row = bySource[0]?.[0] as SearchRow | undefined;
    for (const patches of bySource.slice(1)) {
      for (const patch of patches ?? []) row = applyPatch(row, patch as SnapshotPatch);
    }
    if (row) yield row;
  }
}

async function* emptyLines<T>(): AsyncGenerator<T> {}

async function* byItemId<T extends { itemId: string }>(lines: AsyncIterable<T>): AsyncGenerator<Keyed<T>> {
  for await (const line of lines) yield { key: line.itemId, value: line };
}

/** A row or patch as a line of a snapshot file. */
function snapshotLine(line: SearchRow | SnapshotPatch): string {
  return `${JSON.stringify(line)}\n`;
}

function* sortedValues(rows: ReadonlyMap<string, string[]>): Generator<string> {
  for (const itemId of [...rows.keys()].sort()) yield* rows.get(itemId) as string[];
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
 * A snapshot file's lines, each validated; none when the file does not exist. Read a chunk at a
 * time as lines are taken (readline's iterator would read ahead without bound: a merge of many
 * deltas took one line at a time from each while the others filled up whole).
 */
async function* linesOf<S extends z.ZodType>(
  store: BackupStore,
  name: string,
  schema: S,
): AsyncGenerator<z.infer<S>> {
  const opened = await store.openIfExists(name);
  if (!opened) return;
  let number = 0;
  for await (const text of splitLines(opened.body as AsyncIterable<Buffer>)) {
    number++;
    yield parseStoredJson(schema, text, `${name} line ${number}`);
  }
}
