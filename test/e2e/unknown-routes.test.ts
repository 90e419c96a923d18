import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { compareFunctionNames } from "../../tools/local-host/http.js";
import { type AppHarness, startAppHarness } from "../support/app-harness.js";

let app: AppHarness;

beforeAll(async () => {
  app = await startAppHarness({ sim: { size: "empty" } });
});

afterAll(async () => {
  await app?.close();
});

const CATCH_ALL = "zzUnknownRoute";
const httpFunctions = () => app.host.functions.filter((f) => f.kind === "http");

describe("requests no endpoint takes", () => {
  test("the catch-all is tried last: Azure tries routes in function-name order", () => {
    const names = httpFunctions().map((f) => f.name);
    expect(names).toContain(CATCH_ALL);
    expect(names.sort(compareFunctionNames).at(-1)).toBe(CATCH_ALL);
  });

  test("an unknown path answers a JSON 404", async () => {
    for (const path of ["/api/nothing-here", "/api", "/api/backups/b-1/manifest/extra"]) {
      const response = await app.call("GET", path);
      expect(response.status, path).toBe(404);
      expect(response.headers.get("content-type")).toMatch(/^application\/json/);
      expect(response.body.error.code).toBe("ERR_NOT_FOUND");
      expect(response.body.error.message).toContain("No endpoint at GET /api");
    }
  });

  test("every endpoint asked with another method answers a JSON 405 with its methods in Allow", async () => {
    // No endpoint takes PUT, so every path an endpoint serves answers 405 to it.
    for (const fn of httpFunctions().filter((f) => f.name !== CATCH_ALL)) {
      const path = (fn.path ?? "").replace(/\{[^}]+\}/g, "x");
      const response = await app.call("PUT", path);
      expect(response.status, `PUT ${path}`).toBe(405);
      const allow = (response.headers.get("allow") ?? "").split(", ");
      expect(allow, `Allow of ${path}`).toEqual(expect.arrayContaining(fn.methods ?? []));
      expect(response.body.error).toEqual({
        code: "ERR_METHOD_NOT_ALLOWED",
        message: `PUT is not allowed on ${path}; allowed: ${allow.join(", ")}`,
      });
    }
  });

  test("the endpoints themselves still answer", async () => {
    expect((await app.call("GET", "/api/identities")).status).toBe(200);
    expect((await app.call("GET", "/api/identities/idn-unknown")).status).toBe(404);
    const allow = (await app.call("DELETE", "/api/identities")).headers.get("allow");
    expect(allow?.split(", ").sort()).toEqual(["GET", "POST"]);
  });
});
