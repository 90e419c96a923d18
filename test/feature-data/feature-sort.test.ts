import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { CacheSpace } from "../../src/core/backup/cache.js";
import { sortLines } from "../../src/core/backup/feature-sort.js";
import { mergeByKey } from "../../src/core/backup/layer-version-rows.js";

let directory: string;

beforeAll(async () => {
  directory = await mkdtemp(path.join(tmpdir(), "feature-sort-"));
});
afterAll(async () => {
  await rm(directory, { recursive: true, force: true });
});

async function* from<T>(values: T[]): AsyncGenerator<T> {
  yield* values;
}

async function all<T>(source: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const value of source) out.push(value);
  return out;
}

describe("sorting and merging at bounded memory", () => {
  test("an external sort over many runs gives every line once, in key order, stable, and cleans up", async () => {
    const lines = Array.from({ length: 1_000 }, (_, i) => JSON.stringify({ k: (i * 7919) % 257, i }));
    const space = new CacheSpace(64 * 1024 * 1024);
    const keyOf = (line: string) => (JSON.parse(line) as { k: number }).k;
    const sorted = await all(sortLines(from(lines), keyOf, { directory, space, runLines: 64 }));
    const expected = [...lines].sort((a, b) => keyOf(a) - keyOf(b));
    expect(sorted).toEqual(expected);
    expect(await readdir(directory)).toEqual([]);
  });

  test("mergeByKey groups what each sorted source holds for a key", async () => {
    const groups = await all(
      mergeByKey([
        from([
          { key: 1, value: "a1" },
          { key: 3, value: "a3" },
        ]),
        from([
          { key: 1, value: "b1" },
          { key: 1, value: "b1'" },
          { key: 2, value: "b2" },
        ]),
      ]),
    );
    expect(groups).toEqual([
      { key: 1, bySource: [["a1"], ["b1", "b1'"]] },
      { key: 2, bySource: [undefined, ["b2"]] },
      { key: 3, bySource: [["a3"]] },
    ]);
  });
});
