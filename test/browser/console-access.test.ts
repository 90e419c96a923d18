import { request as httpRequest } from "node:http";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import {
  consoleHosting,
  decideConsoleAccess,
  parseClientPrincipal,
  SIGN_IN_PATH,
} from "../../src/core/console/access.js";
import { type AppHarness, startAppHarness } from "../support/app-harness.js";
import { buildConsole } from "./support.js";

// Who may use the console and what its answers carry, over plain HTTP against the local host:
// security headers, no inline script, the same answers as /api, CSRF and loopback rules, and (with
// the Azure platform's variables set, as App Service sets them) the Entra ID principal and role.

let app: AppHarness;

beforeAll(async () => {
  await buildConsole();
  app = await startAppHarness();
}, 120_000);

afterAll(async () => {
  await app?.close();
});

const principal = (roles: string[], name = "ada@contoso.com") =>
  Buffer.from(
    JSON.stringify({
      auth_typ: "aad",
      name_typ: "name",
      role_typ: "roles",
      claims: [{ typ: "name", val: name }, ...roles.map((val) => ({ typ: "roles", val }))],
    }),
  ).toString("base64");

describe("the console's page and files", () => {
  test("/api/console redirects to the page, which has a strict CSP and no inline script", async () => {
    const bare = await fetch(`${app.host.baseUrl}/api/console`, { redirect: "manual" });
    expect(bare.status).toBe(301);
    expect(bare.headers.get("location")).toBe("/api/console/");
    const page = await fetch(`${app.host.baseUrl}/api/console/`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toBe("text/html; charset=utf-8");
    const csp = page.headers.get("content-security-policy") ?? "";
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain("unsafe-inline");
    expect(csp).not.toContain("unsafe-eval");
    expect(page.headers.get("x-content-type-options")).toBe("nosniff");
    const html = await page.text();
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/gi)];
    expect(scripts.length).toBeGreaterThan(0);
    for (const [, attributes, body] of scripts) {
      expect(attributes).toMatch(/\bsrc="[^"]+"/);
      expect(body?.trim()).toBe("");
    }
    expect(html).not.toMatch(/<style\b|\sstyle=|\son[a-z]+=/i);
  });

  test("scripts are served compressed with an ETag, revalidated with 304", async () => {
    const script = await fetch(`${app.host.baseUrl}/api/console/app.js`, {
      headers: { "accept-encoding": "gzip" },
    });
    expect(script.status).toBe(200);
    expect(script.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
    expect(script.headers.get("content-encoding")).toBe("gzip");
    expect(script.headers.get("cache-control")).toBe("no-cache");
    const etag = script.headers.get("etag") ?? "";
    expect(etag).toMatch(/^"[\w-]+"$/);
    const again = await fetch(`${app.host.baseUrl}/api/console/app.js`, {
      headers: { "if-none-match": etag },
    });
    expect(again.status).toBe(304);
  });

  test("nothing but the console's own files: traversal and unknown names are 404", async () => {
    for (const name of ["%2e%2e%2fhost.json", "..%2Fpackage.json", "api.ts", "tsconfig.json", "nope.js"]) {
      const answer = await app.call("GET", `/api/console/${name}`);
      expect(answer.status, name).toBe(404);
    }
    const post = await app.call("POST", "/api/console/app.js", {});
    expect(post.status).toBe(405);
  });
});

describe("the console's API locally (loopback, no sign-in, as the API)", () => {
  test("answers what /api answers, through the same handlers", async () => {
    const origin = { origin: app.host.baseUrl };
    const created = await app.call("POST", "/api/console/api/identities", identityBody(), origin);
    expect(created.status, created.text).toBe(201);
    const id = created.body.id as string;
    const direct = await app.call("GET", `/api/identities/${id}`);
    const viaConsole = await app.call("GET", `/api/console/api/identities/${id}`);
    expect(viaConsole.status).toBe(200);
    expect(viaConsole.body).toEqual(direct.body);
    expect(viaConsole.headers.get("etag")).toBe(direct.headers.get("etag"));
    expect(viaConsole.headers.get("cache-control")).toBe("no-store");
    const bad = await app.call(
      "POST",
      "/api/console/api/storage/check",
      { type: "azure-blob", container: "Bad_Name" },
      origin,
    );
    const badDirect = await app.call("POST", "/api/storage/check", {
      type: "azure-blob",
      container: "Bad_Name",
    });
    expect(bad.status).toBe(400);
    expect(bad.body).toEqual(badDirect.body);
    expect(bad.body.error.field).toBe("container");
    expect((await app.call("GET", "/api/console/api/nothing/here")).status).toBe(404);
    expect((await app.call("PATCH", "/api/console/api/identities", {}, origin)).status).toBe(405);
  });

  test("a write without same-origin proof, or a cross-site request, is refused", async () => {
    const foreign = await app.call("POST", "/api/console/api/identities", identityBody(), {
      origin: "https://evil.example",
    });
    expect(foreign.status).toBe(403);
    expect(foreign.body.error.code).toBe("ERR_CONSOLE_CSRF");
    const unproven = await app.call("POST", "/api/console/api/identities", identityBody());
    expect(unproven.body.error.code).toBe("ERR_CONSOLE_CSRF");
    const crossSite = await app.call("GET", "/api/console/api/identities", undefined, {
      "sec-fetch-site": "cross-site",
    });
    expect(crossSite.status).toBe(403);
    expect(crossSite.body.error.code).toBe("ERR_CONSOLE_CROSS_SITE");
    const sameOrigin = await app.call("DELETE", "/api/console/api/identities/none", undefined, {
      "sec-fetch-site": "same-origin",
    });
    expect(sameOrigin.status).toBe(404);
  });

  test("a request addressed to another host name (DNS rebinding) is refused", async () => {
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const url = new URL(`${app.host.baseUrl}/api/console/api/identities`);
      const request = httpRequest(url, { headers: { host: `attacker.example:${url.port}` } }, (response) => {
        let body = "";
        response.on("data", (chunk) => (body += chunk));
        response.on("end", () => resolve({ status: response.statusCode ?? 0, body }));
      });
      request.on("error", reject);
      request.end();
    });
    expect(answer.status).toBe(403);
    expect(JSON.parse(answer.body).error.code).toBe("ERR_CONSOLE_NOT_LOOPBACK");
  });
});

describe("the console in Azure (App Service Authentication with Entra ID)", () => {
  const saved = { ...process.env };
  afterEach(() => {
    for (const name of ["WEBSITE_SITE_NAME", "WEBSITE_AUTH_ENABLED", "CONSOLE_ALLOWED_ROLE"]) {
      if (saved[name] === undefined) delete process.env[name];
      else process.env[name] = saved[name];
    }
  });

  test("admits only a signed-in principal with the app role; the page sends others to sign in", async () => {
    process.env.WEBSITE_SITE_NAME = "func-test";
    process.env.WEBSITE_AUTH_ENABLED = "True";
    const anonymous = await app.call("GET", "/api/console/api/identities");
    expect(anonymous.status).toBe(401);
    expect(anonymous.body.error).toMatchObject({ code: "ERR_CONSOLE_SIGN_IN", signIn: SIGN_IN_PATH });
    const page = await fetch(`${app.host.baseUrl}/api/console/`, { redirect: "manual" });
    expect(page.status).toBe(302);
    expect(page.headers.get("location")).toBe(`${SIGN_IN_PATH}?post_login_redirect_uri=%2Fapi%2Fconsole%2F`);
    const withoutRole = await app.call("GET", "/api/console/api/identities", undefined, {
      "x-ms-client-principal": principal(["Reader"]),
    });
    expect(withoutRole.status).toBe(403);
    expect(withoutRole.body.error.code).toBe("ERR_CONSOLE_FORBIDDEN");
    const admitted = await app.call("GET", "/api/console/api/identities", undefined, {
      "x-ms-client-principal": principal(["Console.Admin"]),
    });
    expect(admitted.status).toBe(200);
    expect(admitted.body).toEqual((await app.call("GET", "/api/identities")).body);
  });

  test("trusts no principal header while App Service Authentication is off", async () => {
    process.env.WEBSITE_SITE_NAME = "func-test";
    const forged = await app.call("GET", "/api/console/api/identities", undefined, {
      "x-ms-client-principal": principal(["Console.Admin"]),
    });
    expect(forged.status).toBe(403);
    expect(forged.body.error.code).toBe("ERR_CONSOLE_AUTH_DISABLED");
  });
});

describe("access rules (pure)", () => {
  const request = (
    headers: Record<string, string> = {},
    method = "GET",
    url = "https://func-x.azurewebsites.net/api/console/api/identities",
  ) => ({
    method,
    url,
    headers: new Headers(headers),
  });
  const azure = { hosting: { kind: "azure", easyAuth: true } as const, allowedRole: "Console.Admin" };

  test("hosting comes from the platform's variables, never from the request", () => {
    expect(consoleHosting({})).toEqual({ kind: "local" });
    expect(consoleHosting({ WEBSITE_SITE_NAME: "x" })).toEqual({ kind: "azure", easyAuth: false });
    expect(consoleHosting({ WEBSITE_INSTANCE_ID: "i", WEBSITE_AUTH_ENABLED: "True" })).toEqual({
      kind: "azure",
      easyAuth: true,
    });
  });

  test("a principal's roles, by either claim type; garbage is no principal", () => {
    expect(parseClientPrincipal(principal(["Console.Admin", "Other"]))).toEqual({
      name: "ada@contoso.com",
      roles: ["Console.Admin", "Other"],
    });
    const long = Buffer.from(
      JSON.stringify({
        claims: [
          { typ: "http://schemas.microsoft.com/ws/2008/06/identity/claims/role", val: "Console.Admin" },
        ],
      }),
    ).toString("base64");
    expect(parseClientPrincipal(long)?.roles).toEqual(["Console.Admin"]);
    expect(parseClientPrincipal("not base64 json")).toBeUndefined();
    expect(parseClientPrincipal(Buffer.from("[]").toString("base64"))).toBeUndefined();
    expect(parseClientPrincipal(undefined)).toBeUndefined();
  });

  test("another configured role; writes need the same origin (or PUBLIC_BASE_URL's)", () => {
    const headers = { "x-ms-client-principal": principal(["Backup.Operators"]) };
    expect(decideConsoleAccess(request(headers), azure)).toMatchObject({ ok: false, status: 403 });
    expect(decideConsoleAccess(request(headers), { ...azure, allowedRole: "Backup.Operators" })).toEqual({
      ok: true,
      user: "ada@contoso.com",
    });
    const admin = { "x-ms-client-principal": principal(["Console.Admin"]) };
    expect(
      decideConsoleAccess(request({ ...admin, origin: "https://func-x.azurewebsites.net" }, "POST"), azure)
        .ok,
    ).toBe(true);
    expect(
      decideConsoleAccess(request({ ...admin, origin: "https://backup.contoso.com" }, "POST"), {
        ...azure,
        publicBaseUrl: "https://backup.contoso.com",
      }).ok,
    ).toBe(true);
    expect(decideConsoleAccess(request({ ...admin, origin: "null" }, "DELETE"), azure)).toMatchObject({
      code: "ERR_CONSOLE_CSRF",
    });
    expect(
      decideConsoleAccess(request({ ...admin, "sec-fetch-site": "same-site" }, "PATCH"), azure),
    ).toMatchObject({ code: "ERR_CONSOLE_CROSS_SITE" });
    // Following a link to the console from another site is a navigation, not an attack.
    expect(
      decideConsoleAccess(
        request({ ...admin, "sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate" }),
        azure,
      ).ok,
    ).toBe(true);
  });
});

function identityBody() {
  return {
    name: "Via the console",
    kind: "arcgis-online",
    portalUrl: app.sim.orgUrl,
    auth: { type: "builtin", username: app.sim.admin.username, password: app.sim.admin.password },
    storage: {
      type: "azure-blob",
      container: "console-access",
      connectionString: app.storageConnectionString,
    },
  };
}
