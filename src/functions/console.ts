import functions, { type HttpMethod, type HttpRequest, type HttpResponseInit } from "@azure/functions";
import {
  type AccessDecision,
  allowedConsoleRole,
  consoleHosting,
  decideConsoleAccess,
} from "../core/console/access.js";
import { type ConsoleAssets as Assets, ConsoleAssets } from "../core/console/assets.js";
import { MethodNotAllowedError, NotFoundError, PayloadTooLargeError } from "../core/errors.js";
import { durableClientInput } from "./shared/durable.js";
import { httpHandler, json, MAX_BODY_BYTES } from "./shared/http.js";
import { allowedMethods, findEndpoint, httpEndpoint } from "./shared/routes.js";

// The administrators' console, served by the app itself: its page and scripts under
// /api/console/, and its calls to the API under /api/console/api/…, which run the very handlers
// of /api/… once the caller is allowed (src/core/console/access.ts). The console routes are
// anonymous for the Functions host: in Azure, App Service Authentication's session (not a
// function key) is what admits a person; scripts keep calling /api/… with function keys.

/** Strict: only the app's own scripts, styles, images and API; no inline code; never framed. */
const CONSOLE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

const SECURITY_HEADERS: Record<string, string> = {
  "content-security-policy": CONSOLE_CSP,
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
};

let assets: Assets | undefined;

function access(request: HttpRequest): AccessDecision {
  return decideConsoleAccess(
    { method: request.method, url: request.url, headers: request.headers },
    {
      hosting: consoleHosting(),
      allowedRole: allowedConsoleRole(),
      publicBaseUrl: process.env.PUBLIC_BASE_URL?.trim() || undefined,
    },
  );
}

function refusal(decision: AccessDecision & { ok: false }): HttpResponseInit {
  const signIn = decision.signIn ? { signIn: decision.signIn } : {};
  return json(decision.status, { error: { code: decision.code, message: decision.message, ...signIn } });
}

function withHeaders(response: HttpResponseInit, extra: Record<string, string>): HttpResponseInit {
  const headers = new Headers(response.headers as ConstructorParameters<typeof Headers>[0]);
  for (const [name, value] of Object.entries({ ...SECURITY_HEADERS, ...extra })) {
    if (!headers.has(name)) headers.set(name, value);
  }
  return { ...response, headers: Object.fromEntries(headers) };
}

/** GET /api/console/{file}: the page (sign-in first in Azure), its stylesheet and its scripts. */
export const consoleAssets = httpHandler(async (request) => {
  const url = new URL(request.url);
  const name = request.params.path ?? "";
  // The page's relative URLs (app.js, api/…) need the trailing slash.
  if (name === "" && !url.pathname.endsWith("/")) {
    return withHeaders({ status: 301, headers: { location: `${url.pathname}/` } }, {});
  }
  const decision = access(request);
  if (!decision.ok) {
    if (decision.signIn && name === "") {
      const back = encodeURIComponent(url.pathname);
      return withHeaders(
        { status: 302, headers: { location: `${decision.signIn}?post_login_redirect_uri=${back}` } },
        { "cache-control": "no-store" },
      );
    }
    return withHeaders(refusal(decision), { "cache-control": "no-store" });
  }
  assets ??= new ConsoleAssets();
  const asset = await assets.get(name);
  if (!asset) throw new NotFoundError(`The console has no file ${name}`);
  const caching = { etag: asset.etag, "cache-control": "no-cache", vary: "accept-encoding" };
  if (request.headers.get("if-none-match") === asset.etag) {
    return withHeaders({ status: 304, headers: caching }, {});
  }
  const gzip = /\bgzip\b/.test(request.headers.get("accept-encoding") ?? "");
  const body = gzip ? asset.gzip : asset.body;
  const headers: Record<string, string> = {
    ...caching,
    "content-type": asset.contentType,
    "content-length": String(body.byteLength),
    ...(gzip ? { "content-encoding": "gzip" } : {}),
  };
  return withHeaders({ status: 200, headers, body: request.method === "HEAD" ? undefined : body }, {});
});

/** /api/console/api/{…}: the same endpoint as /api/{…}, for a person the console admits. */
export const consoleApi = httpHandler(async (request, context) => {
  const decision = access(request);
  if (!decision.ok) return withHeaders(refusal(decision), { "cache-control": "no-store" });
  const { rawPath, segments } = apiPath(request.url);
  const endpoint = findEndpoint(request.method, segments);
  if (!endpoint || endpoint.name.startsWith("console")) {
    const allowed = allowedMethods(segments.join("/"));
    if (allowed.length > 0) throw new MethodNotAllowedError(request.method, `/api/${rawPath}`, allowed);
    throw new NotFoundError(`No endpoint at ${request.method} /api/${rawPath}`);
  }
  const url = new URL(request.url);
  const forwarded = new functions.HttpRequest({
    method: request.method,
    url: `${url.origin}/api/${rawPath}${url.search}`,
    headers: Object.fromEntries(request.headers),
    params: endpoint.params,
    ...(await bodyOf(request)),
  });
  const response = await endpoint.handler(forwarded, context);
  return withHeaders(response as HttpResponseInit, { "cache-control": "no-store" });
});

/** The path below /api/console/api/: as sent (for the URL) and as decoded segments (for routing). */
function apiPath(requestUrl: string): { rawPath: string; segments: string[] } {
  const raw = new URL(requestUrl).pathname.split("/").filter((s) => s !== "");
  const at = raw.findIndex((s, i) => s.toLowerCase() === "console" && raw[i + 1]?.toLowerCase() === "api");
  const rest = at < 0 ? [] : raw.slice(at + 2);
  const segments = rest.map((segment) => {
    try {
      return decodeURIComponent(segment);
    } catch {
      return segment;
    }
  });
  return { rawPath: rest.join("/"), segments };
}

/** The request's body, read whole (the API takes at most 1 MiB) to hand to the handler. */
async function bodyOf(request: HttpRequest): Promise<{ body?: { bytes: Uint8Array } }> {
  if (request.method === "GET" || request.method === "HEAD" || !request.body) return {};
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request.body as AsyncIterable<Uint8Array>) {
    size += chunk.byteLength;
    if (size > MAX_BODY_BYTES) throw new PayloadTooLargeError(MAX_BODY_BYTES);
    chunks.push(Buffer.from(chunk));
  }
  return { body: { bytes: Buffer.concat(chunks) } };
}

// Left out of test/bad-input's probes (their methods are constants, which its route reader
// skips): the assets take no input but a file name from a fixed set, and the API runs the
// endpoints probed there; test/browser/console-access.test.ts checks both.
const ASSET_METHODS: HttpMethod[] = ["GET", "HEAD"];
const API_METHODS: HttpMethod[] = ["GET", "POST", "PATCH", "DELETE"];

// Azure tries routes in the order of their function names: consoleApi before consoleAssets,
// whose catch-all would otherwise take /api/console/api/… too.
httpEndpoint("consoleApi", {
  route: "console/api/{*rest}",
  methods: API_METHODS,
  authLevel: "anonymous",
  extraInputs: [durableClientInput],
  handler: consoleApi,
});
httpEndpoint("consoleAssets", {
  route: "console/{*path}",
  methods: ASSET_METHODS,
  authLevel: "anonymous",
  handler: consoleAssets,
});
