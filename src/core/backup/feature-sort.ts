import { createReadStream } from "node:fs";
import { Readable } from "node:stream";
import { type CachedFile, type CacheSpace, streamToCache } from "./cache.js";

export type SortKey = string | number;

export interface SortOptions {
  /** The cache folder the sorted runs are written to, and its budget. */
  directory: string;
  space: CacheSpace;
  /** Lines sorted in memory at once (default 20,000): memory is bounded by this, not by the input. */
  runLines?: number;
}

/** Orders keys: numbers numerically, strings by code unit (both sides always of one kind). */
export function compareKeys(a: SortKey, b: SortKey): number {
  if (typeof a === "number" && typeof b === "number") return a - b;
  const x = String(a);
  const y = String(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/**
 * Lines sorted by `keyOf`, at bounded memory (an external merge sort): runs of `runLines` lines
 * are sorted in memory and written to the cache folder, then merged, one line per run in memory.
 * Lines of equal keys keep their input order. Input that fits one run never touches the disk.
 * The run files are removed when the generator ends, however it ends.
 */
export async function* sortLines(
  lines: AsyncIterable<string>,
  keyOf: (line: string) => SortKey,
  options: SortOptions,
): AsyncGenerator<string> {
  const runLines = Math.max(1, Math.floor(options.runLines ?? 20_000));
  const runs: CachedFile[] = [];
  try {
    let batch: Array<{ key: SortKey; line: string; at: number }> = [];
    let at = 0;
    for await (const line of lines) {
      batch.push({ key: keyOf(line), line, at: at++ });
      if (batch.length >= runLines) {
        runs.push(await writeRun(batch, options));
        batch = [];
      }
    }
    if (runs.length === 0) {
      batch.sort(byKeyThenPosition);
      for (const entry of batch) yield entry.line;
      return;
    }
    if (batch.length > 0) runs.push(await writeRun(batch, options));
    batch = [];
    yield* mergeSorted(
      runs.map((run) => fileLines(run.path)),
      keyOf,
    );
  } finally {
    await Promise.all(runs.map((run) => run.discard()));
  }
}

function byKeyThenPosition(a: { key: SortKey; at: number }, b: { key: SortKey; at: number }): number {
  return compareKeys(a.key, b.key) || a.at - b.at;
}

async function writeRun(
  batch: Array<{ key: SortKey; line: string; at: number }>,
  options: SortOptions,
): Promise<CachedFile> {
  batch.sort(byKeyThenPosition);
  return linesToCache(batch, (entry) => entry.line, options.directory, options.space);
}

/** Writes `lineOf` of each entry to a cache file, one a line, turned to text a thousand at a time. */
export function linesToCache<T>(
  entries: readonly T[],
  lineOf: (entry: T) => string,
  directory: string,
  space: CacheSpace,
): Promise<CachedFile> {
  async function* text(): AsyncGenerator<Buffer> {
    for (let i = 0; i < entries.length; i += 1000) {
      yield Buffer.from(
        entries
          .slice(i, i + 1000)
          .map((entry) => `${lineOf(entry)}\n`)
          .join(""),
      );
    }
  }
  return streamToCache(Readable.from(text()), directory, space);
}

/**
 * Merges sources that are each sorted by `keyOf` into one sorted sequence; of equal keys, the
 * earlier source's lines come first.
 */
async function* mergeSorted(
  sources: ReadonlyArray<AsyncIterable<string>>,
  keyOf: (line: string) => SortKey,
): AsyncGenerator<string> {
  const keyedSources = sources.map((source) => keyed(source, (line) => ({ key: keyOf(line), value: line })));
  for await (const group of mergeByKey(keyedSources)) {
    for (const lines of group.bySource) if (lines) yield* lines;
  }
}

export interface Keyed<T> {
  key: SortKey;
  value: T;
}

/** Each line of a source with its key. */
export async function* keyed<T>(
  lines: AsyncIterable<string>,
  parse: (line: string) => Keyed<T>,
): AsyncGenerator<Keyed<T>> {
  for await (const line of lines) yield parse(line);
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

/** The lines of a local file (UTF-8 safe across chunks), empty lines skipped. */
async function* fileLines(path: string): AsyncGenerator<string> {
  yield* splitLines(createReadStream(path) as AsyncIterable<Buffer>);
}

/** Splits a byte stream into its lines (UTF-8 safe across chunk boundaries), empty lines skipped. */
export async function* splitLines(chunks: AsyncIterable<Buffer>): AsyncGenerator<string> {
  let rest: Buffer = Buffer.alloc(0);
  for await (const chunk of chunks) {
    let buffer = rest.length > 0 ? Buffer.concat([rest, chunk]) : chunk;
    let newline = buffer.indexOf(0x0a);
    while (newline >= 0) {
      const line = buffer.subarray(0, newline).toString("utf8");
      if (line.trim() !== "") yield line;
      buffer = buffer.subarray(newline + 1);
      newline = buffer.indexOf(0x0a);
    }
    rest = Buffer.from(buffer);
  }
  const last = rest.toString("utf8");
  if (last.trim() !== "") yield last;
}
