import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, test } from "vitest";
import type { CapturedFunction } from "../../tools/local-host/core-api.js";
import { splitText } from "../../tools/local-host/durable/store.js";
import { buildRoutes } from "../../tools/local-host/http.js";
import { expandBraces, globFiles, resolveMainEntryPoints } from "../../tools/local-host/loader.js";
import { compileRoute, matchRoute, splitPath } from "../../tools/local-host/routes.js";
import { parseSchedule, resolveSetting } from "../../tools/local-host/schedule.js";
import { LOCAL_HOST_NODE_FLAGS } from "../../tools/local-host/spawn.js";
import { APP_ROOT } from "./helpers.js";

const match = (template: string, url: string) => matchRoute(compileRoute(template), splitPath(url));

describe("route templates", () => {
  test("parameters, optional, defaults, catch-all, complex segments", () => {
    expect(match("users/{id}", "/users/42")).toEqual({ id: "42" });
    expect(match("users/{id}", "/Users/42/")).toEqual({ id: "42" });
    expect(match("users/{id}", "/users")).toBeUndefined();
    expect(match("users/{id?}", "/users")).toEqual({});
    expect(match("page/{n=1}", "/page")).toEqual({ n: "1" });
    expect(match("files/{*rest}", "/files/a/b%20c/d")).toEqual({ rest: "a/b c/d" });
    expect(match("files/{name}.{ext}", "/files/report.v2.pdf")).toEqual({ name: "report", ext: "v2.pdf" });
    expect(match("a/{x}", "/a/b/c")).toBeUndefined();
  });

  test("constraints", () => {
    expect(match("n/{v:int}", "/n/-12")).toEqual({ v: "-12" });
    expect(match("n/{v:int}", "/n/1.5")).toBeUndefined();
    expect(match("n/{v:bool}", "/n/TRUE")).toEqual({ v: "TRUE" });
    expect(match("n/{v:minlength(3):alpha}", "/n/ab")).toBeUndefined();
    expect(match("n/{v:length(2,3)}", "/n/abc")).toEqual({ v: "abc" });
    expect(match("n/{v:regex(^[a-z]{{2}}\\d$)}", "/n/ab1")).toEqual({ v: "ab1" });
    expect(match("n/{v:datetime}", "/n/2024-01-02")).toEqual({ v: "2024-01-02" });
    expect(match("n/{v:guid?}", "/n")).toEqual({});
    expect(() => compileRoute("n/{v:nonsense}")).toThrow(/Unsupported route constraint/);
  });

  test("routes are tried in function-name order, ignoring case, as Azure does", () => {
    const httpFunction = (name: string, route: string) =>
      ({
        name,
        bindings: {},
        trigger: { type: "httpTrigger", name: "req", route },
      }) as unknown as CapturedFunction;
    const routes = buildRoutes([
      httpFunction("zzCatchAll", "{*all}"),
      httpFunction("literal", "x/literal"),
      httpFunction("Byid", "x/{id}"),
      httpFunction("z_last", "x/z"),
      httpFunction("byInt", "x/{id:int}"),
    ]);
    // OrdinalIgnoreCase compares upper case: "_" (0x5F) sorts after every letter.
    expect(routes.map((r) => r.fn.name)).toEqual(["Byid", "byInt", "literal", "zzCatchAll", "z_last"]);
  });
});

describe("NCRONTAB schedules", () => {
  test("six fields with seconds, in UTC", () => {
    const s = parseSchedule("*/15 * * * * *");
    expect(s.next(new Date("2024-01-01T00:00:01Z")).toISOString()).toBe("2024-01-01T00:00:15.000Z");
    const weekdays = parseSchedule("0 30 9 * * Mon-Fri");
    expect(weekdays.next(new Date("2024-01-06T00:00:00Z")).toISOString()).toBe("2024-01-08T09:30:00.000Z");
    expect(parseSchedule("0 0 */2 * * *").interval(new Date("2024-01-01T00:00:00Z"))).toBe(7_200_000);
  });

  test("TimeSpan schedules and app-setting references", () => {
    expect(parseSchedule("00:05:00").interval(new Date())).toBe(300_000);
    expect(resolveSetting("%MY_SCHEDULE%", { MY_SCHEDULE: "0 0 * * * *" })).toBe("0 0 * * * *");
    expect(() => resolveSetting("%MISSING%", {})).toThrow(/not set/);
  });

  test("rejects five-field cron and nonsense", () => {
    expect(() => parseSchedule("*/5 * * * *")).toThrow(/six fields/);
    expect(() => parseSchedule("0 0 99 * * *")).toThrow(/Invalid NCRONTAB/);
  });
});

describe("app loading", () => {
  test("brace expansion and globs resolve like the worker's package.json main", () => {
    expect(expandBraces("dist/src/{index.js,functions/*.js}")).toEqual([
      "dist/src/index.js",
      "dist/src/functions/*.js",
    ]);
    const files = resolveMainEntryPoints(APP_ROOT).map((f) => path.relative(APP_ROOT, f));
    expect(files).toEqual([
      "src/index.ts",
      "src/functions/durable.ts",
      "src/functions/http.ts",
      "src/functions/timers.ts",
    ]);
    expect(globFiles(APP_ROOT, "src/**/state.ts").map((f) => path.basename(f))).toEqual(["state.ts"]);
  });

  test("storage rows never split a surrogate pair", () => {
    const text = `${"a".repeat(9)}😀${"b".repeat(5)}`;
    const pieces = splitText(text, 10);
    expect(pieces.join("")).toBe(text);
    expect(pieces[0]).toBe("a".repeat(9));
  });

  test("npm start runs the host with the same Node flags as a spawned host", () => {
    const repoRoot = path.resolve(import.meta.dirname, "../..");
    const scripts = JSON.parse(readFileSync(path.join(repoRoot, "package.json"), "utf8")).scripts;
    expect(scripts.start).toContain(`node ${LOCAL_HOST_NODE_FLAGS.join(" ")} dist/tools/local-host/main.js`);
  });
});
