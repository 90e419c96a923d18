import { createInterface } from "node:readline";
import { Readable } from "node:stream";
import type { BackupStore } from "../backup/backup-store.js";
import { type CacheSpace, streamToCache } from "../backup/cache.js";
import { parseStoredJson } from "../stored-document.js";
import { type SearchRow, searchRowSchema } from "./item-index.js";

/**
 * `index/items.ndjson` in the identity's folder: every item the index knows, one line each, in
 * item id order — what a search reads (a table query per search would scan every row on the
 * emulator, and pages through the table on Azure). Rewritten by each indexed run as a merge of
 * the old file with what changed, streamed through the cache folder.
 */
export const SEARCH_SNAPSHOT = "index/items.ndjson";

export async function rewriteSnapshot(options: {
  store: BackupStore;
  /** The lines of the rows that changed (new, updated, deleted), by item id (see snapshotLine). */
  changes: ReadonlyMap<string, string>;
  cacheDirectory: string;
  cacheSpace: CacheSpace;
}): Promise<void> {
  const { store, changes } = options;
  const pending = [...changes.keys()].sort();
  const changed = (itemId: string) => Buffer.from(changes.get(itemId) ?? "");
  async function* lines(): AsyncGenerator<Buffer> {
    let next = 0;
    for await (const row of snapshotRows(store)) {
      while (next < pending.length && (pending[next] as string) < row.itemId) {
        yield changed(pending[next++] as string);
      }
      if (pending[next] === row.itemId) yield changed(pending[next++] as string);
      else yield Buffer.from(snapshotLine(row));
    }
    while (next < pending.length) yield changed(pending[next++] as string);
  }
  const file = await streamToCache(Readable.from(lines()), options.cacheDirectory, options.cacheSpace);
  try {
    await store.uploadCached(SEARCH_SNAPSHOT, file, "application/x-ndjson");
  } finally {
    await file.discard();
  }
}

/** The snapshot's rows in item id order, each validated; none when there is no snapshot yet. */
export async function* snapshotRows(store: BackupStore): AsyncGenerator<SearchRow> {
  const opened = await store.openIfExists(SEARCH_SNAPSHOT);
  if (!opened) return;
  let number = 0;
  for await (const text of createInterface({ input: opened.body, crlfDelay: Number.POSITIVE_INFINITY })) {
    number++;
    if (text.trim() === "") continue;
    yield parseStoredJson(searchRowSchema, text, `${SEARCH_SNAPSHOT} line ${number}`);
  }
}

/** A row as a line of the snapshot. */
export function snapshotLine(row: SearchRow): string {
  return `${JSON.stringify(row)}\n`;
}
