import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, test } from "vitest";
import { SETTINGS } from "../../src/core/config.js";
import { REPO_ROOT } from "../support/app-harness.js";

const readme = () => readFile(path.join(REPO_ROOT, "README.md"), "utf8");

describe("the README", () => {
  test("documents every app setting the code reads", async () => {
    const text = await readme();
    const missing = SETTINGS.map((s) => s.name).filter((name) => !text.includes(`\`${name}\``));
    expect(missing).toEqual([]);
  });

  test("documents every HTTP endpoint the app registers", async () => {
    const text = await readme();
    const files = (await readdir(path.join(REPO_ROOT, "src/functions"))).filter((f) => f.endsWith(".ts"));
    const sources = await Promise.all(
      files.map((f) => readFile(path.join(REPO_ROOT, "src/functions", f), "utf8")),
    );
    const routes = sources
      .flatMap((source) => [...source.matchAll(/route: "([^"]+)"/g)].map((m) => m[1] ?? ""))
      .filter((route) => !route.startsWith("{*")); // the catch-all for unknown paths
    expect(routes).toContain("backups/{runId}/manifest");
    expect(routes.length).toBeGreaterThan(10);
    // A route appears in the README with its parameters as shell variables or literally.
    const documented = (route: string) => {
      const pattern = route.replace(/\{[^}]+\}/g, "[^ /\"'`]+").replace(/\//g, "\\/");
      return new RegExp(`(/api|\\$API)/${pattern}`).test(text);
    };
    expect(routes.filter((route) => !documented(route))).toEqual([]);
  });

  test("shows the two commands", async () => {
    const text = await readme();
    expect(text).toContain("npm install");
    expect(text).toContain("npm start");
    expect(text).toContain("npm test");
  });
});
