import { describe, expect, test } from "vitest";
import { levelsOf } from "../../src/core/restore/graph.js";
import {
  idTokens,
  normalizeServiceUrl,
  remapText,
  serviceNameOf,
  serviceRootOf,
  urlsIn,
} from "../../src/core/restore/references.js";

const A = "a".repeat(32);
const B = `${"b".repeat(31)}1`;
const C = "0123456789abcdef0123456789abcdef";
const NEW_A = "f".repeat(32);

describe("references", () => {
  test("ids are 32-hex tokens, not parts of longer hex runs", () => {
    const text = JSON.stringify({ itemId: A, url: `https://x/home/item.html?id=${B}`, hash: `${C}00` });
    expect([...idTokens(text)].sort()).toEqual([A, B].sort());
  });

  test("remapping rewrites ids and service URLs in place and keeps everything else byte for byte", () => {
    const oldUrl = "https://services.example.com/ORG/arcgis/rest/services/Parks_1/FeatureServer";
    const text = `{"layers":[{"url":"${oldUrl}/0","itemId":"${A}"},{"url":"${oldUrl.replace("https:", "http:")}/2"}],"other":"${C}",  "keep":"${oldUrl}X"}`;
    const result = remapText(text, {
      ids: new Map([[A, NEW_A]]),
      urls: [
        {
          from: oldUrl,
          to: "https://new.example.com/O2/arcgis/rest/services/Parks_1/FeatureServer",
          layers: { "2": 5 },
        },
      ],
    });
    expect(result.text).toBe(
      `{"layers":[{"url":"https://new.example.com/O2/arcgis/rest/services/Parks_1/FeatureServer/0","itemId":"${NEW_A}"},{"url":"https://new.example.com/O2/arcgis/rest/services/Parks_1/FeatureServer/5"}],"other":"${C}",  "keep":"${oldUrl}X"}`,
    );
    expect(result.ids).toBe(1);
    expect(result.urls).toBe(2);
    expect([...result.unmapped]).toEqual([C]);
    const untouched = remapText(text, { ids: new Map(), urls: [] });
    expect(untouched.text).toBe(text);
  });

  test("service URL helpers", () => {
    const url = "https://h/ORG/arcgis/rest/services/Parks_1/FeatureServer/0";
    expect(serviceRootOf(url)).toBe("https://h/ORG/arcgis/rest/services/Parks_1/FeatureServer");
    expect(serviceNameOf(url)).toBe("Parks_1");
    expect(serviceNameOf("https://h/server/rest/services/Hosted/Trees/FeatureServer")).toBe("Trees");
    expect(normalizeServiceUrl("HTTPS://H/a/FeatureServer/")).toBe("h/a/featureserver");
    expect(urlsIn(`x ${url} y`, ["http://h/ORG/arcgis/rest/services/Parks_1/FeatureServer"])).toHaveLength(1);
    expect(
      urlsIn(`x ${url}x y`, ["https://h/ORG/arcgis/rest/services/Parks_1/FeatureServer/0"]),
    ).toHaveLength(0);
  });
});

describe("levels", () => {
  test("services first, then maps, then apps; a cycle shares one level", () => {
    const deps = new Map<string, string[]>([
      ["map", ["service", "mapService"]],
      ["app", ["map", "code"]],
      ["dashboard", ["map", "service"]],
      ["form", ["service"]],
      ["service", ["csv"]],
      ["x", ["y"]],
      ["y", ["x", "app"]],
    ]);
    const nodes = ["app", "map", "service", "csv", "mapService", "code", "dashboard", "form", "x", "y"];
    const { level, cyclic } = levelsOf(nodes, deps);
    const at = (n: string) => level.get(n) as number;
    expect(at("csv")).toBe(0);
    expect(at("service")).toBe(1);
    expect(at("map")).toBe(2);
    expect(at("form")).toBe(2);
    expect(at("app")).toBe(3);
    expect(at("dashboard")).toBe(3);
    expect(at("x")).toBe(at("y"));
    expect(at("x")).toBe(4);
    expect([...cyclic].sort()).toEqual(["x", "y"]);
  });

  test("a long chain needs no recursion", () => {
    const n = 20_000;
    const nodes = Array.from({ length: n }, (_, i) => `n${i}`);
    const deps = new Map(nodes.map((id, i) => [id, i > 0 ? [`n${i - 1}`] : []]));
    const { level } = levelsOf(nodes, deps);
    expect(level.get(`n${n - 1}`)).toBe(n - 1);
  });
});
