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
  async function* text(): AsyncGenerator<Buffer> {
    for (let i = 0; i < batch.length; i += 1000) {
      yield Buffer.from(
        batch
          .slice(i, i + 1000)
          .map((e) => `${e.line}\n`)
          .join(""),
      );
    }
  }
  return streamToCache(Readable.from(text()), options.directory, options.space);
}

/**
 * Merges sources that are each sorted by `keyOf` into one sorted sequence; of equal keys, the
 * earlier source's line comes first.
 */
export async function* mergeSorted(
  sources: ReadonlyArray<AsyncIterable<string>>,
  keyOf: (line: string) => SortKey,
): AsyncGenerator<string> {
  const iterators = sources.map((s) => s[Symbol.asyncIterator]());
  const heads: Array<{ line: string; key: SortKey } | undefined> = [];
  try {
    for (const iterator of iterators) heads.push(await nextOf(iterator, keyOf));
    for (;;) {
      let best = -1;
      for (let i = 0; i < heads.length; i++) {
        const head = heads[i];
        if (!head) continue;
        const current = best < 0 ? undefined : heads[best];
        if (!current || compareKeys(head.key, current.key) < 0) best = i;
      }
      if (best < 0) return;
      yield (heads[best] as { line: string }).line;
      heads[best] = await nextOf(iterators[best] as AsyncIterator<string>, keyOf);
    }
  } finally {
    await Promise.all(iterators.map((it) => it.return?.(undefined)));
  }
}

async function nextOf(
  iterator: AsyncIterator<string>,
  keyOf: (line: string) => SortKey,
): Promise<{ line: string; key: SortKey } | undefined> {
  const next = await iterator.next();
  return next.done ? undefined : { line: next.value, key: keyOf(next.value) };
}

/** The lines of a local file (UTF-8 safe across chunks), empty lines skipped. */
export async function* fileLines(path: string): AsyncGenerator<string> {
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
