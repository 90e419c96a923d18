import { describe, expect, test } from "vitest";
import { splitRawPage } from "../../src/core/backup/feature-raw-page.js";

const features = [
  {
    attributes: { OBJECTID: 7, name: 'quote " and },{"attributes": inside', big: 2 ** 52 + 1 },
    geometry: { x: 1.5, y: -2 },
  },
  { attributes: { OBJECTID: 8, name: "é ✓ \\n" }, geometry: null },
  { attributes: { OBJECTID: 12, name: null } },
];

function page(body: Record<string, unknown>): Buffer {
  return Buffer.from(JSON.stringify(body));
}

const text = (chunks: Buffer[]) => Buffer.concat(chunks).toString("utf8");

describe("splitRawPage", () => {
  test("cuts the service's own bytes into one feature per line", () => {
    const raw =
      '{"objectIdFieldName":"OBJECTID","fields":[{"name":"big","type":"esriFieldTypeBigInteger"}],"features":[{"attributes":{"OBJECTID":7,"big":9007199254740993}},{"attributes":{"OBJECTID":8,"big":-1}}]}';
    const result = splitRawPage(Buffer.from(raw), "OBJECTID");
    expect(result?.oids).toEqual([7, 8]);
    expect(result?.exceededTransferLimit).toBe(false);
    // Digits beyond 2^53 survive: nothing was parsed.
    expect(text(result?.chunks ?? [])).toBe(
      '{"attributes":{"OBJECTID":7,"big":9007199254740993}}\n{"attributes":{"OBJECTID":8,"big":-1}}\n',
    );
  });

  test("strings that look like separators, escapes and non-ASCII text stay intact", () => {
    const result = splitRawPage(
      page({ objectIdFieldName: "OBJECTID", exceededTransferLimit: true, features }),
      "OBJECTID",
    );
    expect(result?.exceededTransferLimit).toBe(true);
    expect(result?.oids).toEqual([7, 8, 12]);
    const lines = text(result?.chunks ?? []).split("\n");
    expect(lines.pop()).toBe("");
    expect(lines.map((l) => JSON.parse(l))).toEqual(JSON.parse(JSON.stringify(features)));
  });

  test("an empty page has no lines", () => {
    expect(splitRawPage(page({ features: [] }), "OBJECTID")).toEqual({
      chunks: [],
      oids: [],
      exceededTransferLimit: false,
    });
  });

  test.each([
    ["features not last", { features, exceededTransferLimit: false }],
    ["geometry before attributes", { features: [{ geometry: { x: 1 }, attributes: { OBJECTID: 1 } }] }],
    ["a field named attributes", { features: [{ attributes: { OBJECTID: 1, attributes: 2 } }] }],
    ["no object id", { features: [{ attributes: { FID: 1 } }] }],
    ["a fractional object id", { features: [{ attributes: { OBJECTID: 1.5 } }] }],
    ["an error body", { error: { code: 500, message: "x" } }],
  ])("declines (for the parser to handle) %s", (_, body) => {
    expect(splitRawPage(page(body), "OBJECTID")).toBeUndefined();
  });

  test("a refused page is left untouched, still valid JSON", () => {
    const bytes = page({ features });
    const copy = Buffer.from(bytes);
    expect(splitRawPage(bytes, "OBJECTID", (oids) => oids.length < 3)).toBeUndefined();
    expect(bytes.equals(copy)).toBe(true);
  });
});
