import { describe, expect, test } from "vitest";
import { toNdjson } from "../../src/core/backup/feature-ndjson.js";

const lines = (text: string) => text.split("\n").slice(0, -1);

describe("toNdjson", () => {
  test("one line per feature, each exactly JSON.stringify of it", () => {
    const features = [
      { attributes: { OBJECTID: 1, note: '},{"attributes":' }, geometry: { x: 1, y: 2 } },
      { attributes: { OBJECTID: 2, note: "line\nbreak ✓" }, geometry: { rings: [[[0, 0, 1, 2]]] } },
      { attributes: { OBJECTID: 3, nested: null } },
    ];
    const text = toNdjson(features);
    expect(text.endsWith("\n")).toBe(true);
    expect(lines(text)).toEqual(features.map((f) => JSON.stringify(f)));
    expect(lines(text).map((l) => JSON.parse(l))).toEqual(features);
  });

  test("features that do not start with attributes are written one by one", () => {
    const features = [{ geometry: { x: 1 }, attributes: { OBJECTID: 1 } }, { attributes: { OBJECTID: 2 } }];
    expect(lines(toNdjson(features))).toEqual(features.map((f) => JSON.stringify(f)));
  });

  test("a separator-like sequence inside the structure falls back safely", () => {
    const features = [
      { attributes: { OBJECTID: 1 }, extra: [{ a: 1 }, { attributes: 2 }] },
      { attributes: { OBJECTID: 2 } },
    ];
    expect(lines(toNdjson(features))).toEqual(features.map((f) => JSON.stringify(f)));
  });

  test("nothing for no features", () => {
    expect(toNdjson([])).toBe("");
  });
});
