import { request as httpRequest } from "node:http";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { type LocalHost, startLocalHost } from "../../tools/local-host/index.js";
import { APP_ENV, APP_ROOT } from "./helpers.js";

let host: LocalHost;
const logs: string[] = [];

beforeAll(async () => {
  host = await startLocalHost({
    appRoot: APP_ROOT, // entry points from package.json "main", as the worker resolves them
    port: 0,
    storageConnectionString: inject("azurite").connectionString,
    taskHub: "LocalHostHttp",
    env: APP_ENV,
    timers: false,
    log: (line) => logs.push(line),
  });
});

afterAll(async () => {
  await host?.close();
});

const url = (path: string) => `${host.baseUrl}${path}`;

describe("registrations", () => {
  test("captures every function with its kind, route and methods", () => {
    const byName = new Map(host.functions.map((f) => [f.name, f]));
    expect(byName.get("hello")).toMatchObject({ kind: "http", methods: ["GET"], path: "/api/hello/{name?}" });
    expect(byName.get("defaultRoute")).toMatchObject({ kind: "http", path: "/api/defaultRoute" });
    // @azure/functions defaults methods to GET and POST.
    expect(byName.get("defaultRoute")?.methods).toEqual(["GET", "POST"]);
    expect(byName.get("tick")).toMatchObject({ kind: "timer", schedule: "*/2 * * * * *" });
    expect(byName.get("startup")).toMatchObject({ kind: "timer", runOnStartup: true });
    expect(byName.get("sequence")?.kind).toBe("orchestration");
    expect(byName.get("hello")?.durableClient).toBeUndefined();
    expect(byName.get("startOrchestration")?.durableClient).toBe(true);
    expect(byName.get("add")?.kind).toBe("activity");
    expect(host.baseUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });
});

describe("routing", () => {
  test("optional parameters, query and the route prefix", async () => {
    expect(await (await fetch(url("/api/hello/Ada?greeting=Hi"))).text()).toBe("Hi, Ada");
    expect(await (await fetch(url("/api/hello"))).text()).toBe("Hello, world");
    expect(await (await fetch(url("/API/Hello/Bob"))).text()).toBe("Hello, Bob");
    expect((await fetch(url("/hello/Ada"))).status).toBe(404);
  });

  test("constraints choose between routes, tried in function-name order as in Azure", async () => {
    expect(await (await fetch(url("/api/items/42"))).json()).toEqual({ kind: "int", id: 42, method: "GET" });
    expect(await (await fetch(url("/api/items/abc"))).json()).toEqual({ kind: "alpha", name: "abc" });
    // "itemByName" sorts before "itemsLiteral": its items/{name:alpha} takes the literal's path.
    expect(await (await fetch(url("/api/items/special"))).json()).toEqual({ kind: "alpha", name: "special" });
    expect((await fetch(url("/api/items/a1"))).status).toBe(404);
    const guid = "0f8fad5b-d9cb-469f-a165-70867728950e";
    expect(await (await fetch(url(`/api/things/${guid}`))).json()).toEqual({ id: guid });
    expect((await fetch(url("/api/things/not-a-guid"))).status).toBe(404);
    expect((await fetch(url("/api/status/204"))).status).toBe(204);
    expect((await fetch(url("/api/status/418"))).status).toBe(418);
    expect((await fetch(url("/api/status/700"))).status).toBe(404);
  });

  test("catch-all parameters", async () => {
    expect(await (await fetch(url("/api/files/a/b/c.txt"))).json()).toEqual({ path: "a/b/c.txt" });
    expect(await (await fetch(url("/api/files"))).json()).toEqual({ path: null });
  });

  test("methods: only the listed ones; another method is a JSON 405 with Allow", async () => {
    expect((await fetch(url("/api/items/7"), { method: "PUT" })).status).toBe(200);
    expect(await (await fetch(url("/api/defaultRoute"), { method: "POST" })).text()).toBe("default POST");
    const wrong = await fetch(url("/api/items/7"), { method: "POST" });
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get("allow")).toBe("GET, PUT, DELETE");
    expect(wrong.headers.get("content-type")).toMatch(/^application\/json/);
    expect(((await wrong.json()) as { error: unknown }).error).toEqual({
      code: "ERR_METHOD_NOT_ALLOWED",
      message: "POST is not allowed on /api/items/7; allowed: GET, PUT, DELETE",
    });
    const defaultMethods = await fetch(url("/api/defaultRoute"), { method: "DELETE" });
    expect(defaultMethods.status).toBe(405);
    expect(defaultMethods.headers.get("allow")).toBe("GET, POST");
  });

  test("unknown paths under the route prefix: a JSON 404", async () => {
    const unknown = await fetch(url("/api/nothing-here"));
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toEqual({
      error: { code: "ERR_NOT_FOUND", message: "No endpoint at GET /api/nothing-here" },
    });
    expect((await fetch(url("/api/items/a1"), { method: "DELETE" })).status).toBe(404);
  });
});

describe("requests and responses", () => {
  test("JSON body, headers, query, cookies and status", async () => {
    const response = await fetch(url("/api/echo?x=1&y=two"), {
      method: "POST",
      headers: { "content-type": "application/json", "x-test": "header-value", cookie: "a=1; b=2" },
      body: JSON.stringify({ hello: "world" }),
    });
    expect(response.status).toBe(201);
    expect(response.headers.get("x-echo")).toBe("yes");
    expect(response.headers.get("content-type")).toBe("application/json");
    expect(response.headers.getSetCookie()).toEqual(["session=abc; Path=/; HttpOnly; SameSite=Lax"]);
    expect(await response.json()).toEqual({
      method: "POST",
      header: "header-value",
      cookie: "a=1; b=2",
      query: { x: "1", y: "two" },
      body: { hello: "world" },
    });
  });

  test("a throwing handler gives 500", async () => {
    expect((await fetch(url("/api/throws"))).status).toBe(500);
    expect(logs.some((l) => l.includes("handler failed on purpose"))).toBe(true);
  });

  test("request bodies stream in", async () => {
    const size = 8 * 1024 * 1024 + 3;
    let sum = 0;
    let sent = 0;
    const result = await new Promise<{ bytes: number; sum: number }>((resolve, reject) => {
      const req = httpRequest(
        url("/api/upload"),
        { method: "POST", headers: { "transfer-encoding": "chunked" } },
        (res) => {
          let text = "";
          res.on("data", (c) => {
            text += c;
          });
          res.on("end", () => resolve(JSON.parse(text)));
        },
      );
      req.on("error", reject);
      const write = () => {
        while (sent < size) {
          const n = Math.min(65536, size - sent);
          const chunk = Buffer.alloc(n, sent % 251);
          for (const b of chunk) sum = (sum + b) % 65521;
          sent += n;
          if (!req.write(chunk)) {
            req.once("drain", write);
            return;
          }
        }
        req.end();
      };
      write();
    });
    expect(result).toEqual({ bytes: size, sum });
  });

  test("response bodies stream out", async () => {
    const size = 5 * 1024 * 1024;
    const response = await fetch(url(`/api/download/${size}`));
    expect(response.status).toBe(200);
    expect(response.headers.get("transfer-encoding")).toBe("chunked");
    const reader = response.body!.getReader();
    let bytes = 0;
    let chunks = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      bytes += value.length;
      chunks++;
    }
    expect(bytes).toBe(size);
    expect(chunks).toBeGreaterThan(1);
  });
});
