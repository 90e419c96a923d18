import { describe, expect, test } from "vitest";
import { type IdSource, mapOrdered, objectIdPages } from "../../src/core/backup/feature-paging.js";

/** An in-memory layer that answers the where clauses the scan sends. */
function layerOf(ids: number[], options: { capIds?: number; countDelta?: number } = {}) {
  const sorted = [...ids].sort((a, b) => a - b);
  const calls: string[] = [];
  let largest = 0;
  const select = (where: string) => {
    if (where === "1=1") return sorted;
    let lo = Number.NEGATIVE_INFINITY;
    let hi = Number.POSITIVE_INFINITY;
    for (const [, op, value] of where.matchAll(/OBJECTID (>=|<=) (-?\d+)/g)) {
      if (op === ">=") lo = Number(value);
      else hi = Number(value);
    }
    return sorted.filter((id) => id >= lo && id <= hi);
  };
  const source: IdSource = {
    objectIdField: "OBJECTID",
    async count(where) {
      calls.push(`count ${where}`);
      return select(where).length + (where === "1=1" ? (options.countDelta ?? 0) : 0);
    },
    async ids(where) {
      calls.push(`ids ${where}`);
      const all = select(where);
      // Shuffled, as a server may send them.
      const out = all.slice(0, options.capIds ?? all.length).reverse();
      largest = Math.max(largest, out.length);
      return { ids: out, exceeded: out.length < all.length };
    },
  };
  return { source, calls, largest: () => largest };
}

async function scan(source: IdSource, expected: number, pageSize: number, window: number) {
  const pages: number[][] = [];
  for await (const page of objectIdPages(source, expected, { pageSize, window })) pages.push([...page]);
  return pages;
}

describe("object id pages", () => {
  test("a small layer is read in one call and cut into pages", async () => {
    const ids = Array.from({ length: 2_345 }, (_, i) => i + 1);
    const layer = layerOf(ids);
    const pages = await scan(layer.source, ids.length, 1_000, 100_000);
    expect(pages.map((p) => p.length)).toEqual([1_000, 1_000, 345]);
    expect(pages.flat()).toEqual(ids);
    expect(layer.calls).toEqual(["ids 1=1"]);
  });

  test("large, sparse layers are read in bounded windows that adapt to the gaps", async () => {
    const ids: number[] = [];
    for (let i = 1; i <= 5_000; i++) ids.push(i);
    for (let i = 0; i < 3_000; i++) ids.push(1_000_000 + i * 7);
    ids.push(9_000_000_000, 9_000_000_001);
    const layer = layerOf(ids);
    const pages = await scan(layer.source, ids.length, 250, 1_000);
    expect(pages.flat()).toEqual([...ids].sort((a, b) => a - b));
    expect(pages.every((p) => p.length <= 250)).toBe(true);
    expect(pages.slice(0, -1).every((p) => p.length === 250)).toBe(true);
    // Memory stays bounded by the window whatever the layer's size.
    expect(layer.largest()).toBeLessThanOrEqual(4_000);
    expect(layer.calls.length).toBeLessThan(120);
  });

  test.each([
    ["over", 5],
    ["under", -5],
  ])("a count that is %s the truth neither stops the scan early nor runs it forever", async (_, delta) => {
    const ids = Array.from({ length: 3_000 }, (_, i) => 2 * i + 10);
    const layer = layerOf(ids, { countDelta: delta });
    const pages = await scan(layer.source, ids.length + delta, 100, 500);
    expect(pages.flat()).toEqual(ids);
  });

  test("a server that caps its id lists gets narrower windows", async () => {
    const ids = Array.from({ length: 4_000 }, (_, i) => i + 1);
    const layer = layerOf(ids, { capIds: 300 });
    const pages = await scan(layer.source, ids.length, 100, 1_000);
    expect(pages.flat()).toEqual(ids);
  });

  test("an empty layer yields no pages", async () => {
    const layer = layerOf([]);
    expect(await scan(layer.source, 0, 100, 1_000)).toEqual([]);
  });
});

describe("mapOrdered", () => {
  test("keeps source order with tasks overlapping, and stops cleanly on a failure", async () => {
    async function* numbers() {
      for (let i = 0; i < 20; i++) yield i;
    }
    let running = 0;
    let peak = 0;
    const out: number[] = [];
    for await (const value of mapOrdered(numbers(), 3, async (n) => {
      running++;
      peak = Math.max(peak, running);
      await new Promise((resolve) => setTimeout(resolve, (n * 7) % 5));
      running--;
      return n * 2;
    })) {
      out.push(value);
    }
    expect(out).toEqual(Array.from({ length: 20 }, (_, i) => i * 2));
    expect(peak).toBe(3);

    const failing = mapOrdered(numbers(), 3, async (n) => {
      if (n === 4) throw new Error("boom");
      return n;
    });
    const seen: number[] = [];
    await expect(
      (async () => {
        for await (const value of failing) seen.push(value);
      })(),
    ).rejects.toThrow("boom");
    expect(seen).toEqual([0, 1, 2, 3]);
  });
});
