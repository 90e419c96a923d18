import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import type { Cookie, HttpResponseInit } from "@azure/functions";
import type { CapturedFunction } from "./core-api.js";
import { DURABLE_PREFIX, type DurableApi } from "./durable/api.js";
import type { Invoker } from "./invoke.js";
import { type CompiledRoute, compileRoute, matchRoute, splitPath } from "./routes.js";

export interface HttpRoute {
  fn: CapturedFunction;
  route: CompiledRoute;
  /** Upper-case methods; undefined means any. */
  methods: string[] | undefined;
}

export function buildRoutes(functions: Iterable<CapturedFunction>): HttpRoute[] {
  const routes: HttpRoute[] = [];
  for (const fn of functions) {
    if (fn.trigger.type.toLowerCase() !== "httptrigger") continue;
    const template = typeof fn.trigger.route === "string" ? fn.trigger.route : fn.name;
    const methods = Array.isArray(fn.trigger.methods)
      ? (fn.trigger.methods as string[]).map((m) => m.toUpperCase())
      : undefined;
    routes.push({ fn, route: compileRoute(template), methods });
  }
  return routes.sort((a, b) => compareFunctionNames(a.fn.name, b.fn.name));
}

/**
 * The order Azure tries routes in: by function name, ignoring case (the host sorts its function
 * metadata with `StringComparer.OrdinalIgnoreCase`), not by how specific a template is. The first
 * route whose template and methods match wins, so a literal route whose function name sorts after
 * a parameter route that matches the same path is never reached — locally as in Azure.
 */
export function compareFunctionNames(a: string, b: string): number {
  const x = a.toUpperCase();
  const y = b.toUpperCase();
  return x < y ? -1 : x > y ? 1 : 0;
}

export type RouteLookup =
  | { route: HttpRoute; params: Record<string, string> }
  | { route: undefined; allowed: string[] };

/** The first route that takes the path and method; else the methods other routes take on the path. */
export function findRoute(routes: HttpRoute[], path: string[], method: string): RouteLookup {
  const allowed = new Set<string>();
  for (const route of routes) {
    const params = matchRoute(route.route, path);
    if (!params) continue;
    if (!route.methods || route.methods.includes(method)) return { route, params };
    for (const m of route.methods) allowed.add(m);
  }
  return { route: undefined, allowed: [...allowed] };
}

export function routeUrl(prefix: string, template: string): string {
  const parts = [prefix, template.replace(/^[~/]+/, "")].filter((p) => p !== "");
  return `/${parts.join("/")}`;
}

export function serializeCookie(cookie: Cookie): string {
  let text = `${cookie.name}=${cookie.value}`;
  if (cookie.domain) text += `; Domain=${cookie.domain}`;
  if (cookie.path) text += `; Path=${cookie.path}`;
  if (cookie.expires !== undefined) {
    const date = cookie.expires instanceof Date ? cookie.expires : new Date(cookie.expires);
    text += `; Expires=${date.toUTCString()}`;
  }
  if (cookie.maxAge !== undefined) text += `; Max-Age=${cookie.maxAge}`;
  if (cookie.secure) text += "; Secure";
  if (cookie.httpOnly) text += "; HttpOnly";
  if (cookie.sameSite) text += `; SameSite=${cookie.sameSite}`;
  return text;
}

export interface HttpHandlerOptions {
  routePrefix: string;
  routes: HttpRoute[];
  invoker: Invoker;
  durable: DurableApi;
  /** Extra inputs for a function (the durable client binding). */
  extraInputs: (fn: CapturedFunction) => Record<string, unknown>;
  adminInvoke: (name: string, body: string) => Promise<number>;
  log: (line: string) => void;
}

async function readText(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

function sendJson(
  res: ServerResponse,
  status: number,
  body?: unknown,
  headers: Record<string, string> = {},
): void {
  res.statusCode = status;
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  if (body === undefined) {
    res.end();
    return;
  }
  res.setHeader("Content-Type", "application/json; charset=utf-8");
  res.end(JSON.stringify(body));
}

/**
 * A JSON 404, or a 405 with `Allow` when routes take the path with other methods. (Azure's host
 * answers both with an empty 404; an app that wants JSON there registers a catch-all route.)
 */
function sendNoRoute(res: ServerResponse, method: string, pathname: string, allowed: string[]): void {
  if (allowed.length === 0) {
    const message = `No endpoint at ${method} ${pathname}`;
    sendJson(res, 404, { error: { code: "ERR_NOT_FOUND", message } });
    return;
  }
  const message = `${method} is not allowed on ${pathname}; allowed: ${allowed.join(", ")}`;
  sendJson(res, 405, { error: { code: "ERR_METHOD_NOT_ALLOWED", message } }, { Allow: allowed.join(", ") });
}

export function createRequestHandler(options: HttpHandlerOptions) {
  const { routePrefix, routes, invoker, durable, log } = options;
  const prefixSegments = splitPath(routePrefix);

  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const started = Date.now();
    const method = (req.method ?? "GET").toUpperCase();
    const url = new URL(req.url ?? "/", `http://${req.headers.host ?? "127.0.0.1"}`);
    try {
      if (url.pathname === DURABLE_PREFIX || url.pathname.startsWith(`${DURABLE_PREFIX}/`)) {
        const segments = splitPath(url.pathname.slice(DURABLE_PREFIX.length));
        const query = new URLSearchParams(url.search);
        const token = req.headers["x-ms-continuation-token"];
        if (typeof token === "string") query.set("continuationToken", token);
        const body = method === "GET" || method === "HEAD" ? "" : await readText(req);
        const response = await durable.handle(method, segments, query, body);
        sendJson(res, response.status, response.body, response.headers);
        return;
      }
      const admin = /^\/admin\/functions\/([^/]+)\/?$/.exec(url.pathname);
      if (admin && method === "POST") {
        const status = await options.adminInvoke(decodeURIComponent(admin[1]!), await readText(req));
        sendJson(res, status);
        return;
      }
      if (url.pathname === "/" && (method === "GET" || method === "HEAD")) {
        res.setHeader("Content-Type", "text/plain; charset=utf-8");
        res.end("Azure Functions local host is running.\n");
        return;
      }
      const segments = splitPath(url.pathname);
      const prefixMatches = prefixSegments.every((p, i) => segments[i]?.toLowerCase() === p.toLowerCase());
      if (!prefixMatches) {
        sendJson(res, 404);
        return;
      }
      const found = findRoute(routes, segments.slice(prefixSegments.length), method);
      if (found.route) {
        await invokeHttp(found.route.fn, found.params, req, res, url, options);
        log(
          `${method} ${url.pathname} -> ${found.route.fn.name} ${res.statusCode} (${Date.now() - started} ms)`,
        );
        return;
      }
      sendNoRoute(res, method, url.pathname, found.allowed);
      log(`${method} ${url.pathname} -> ${res.statusCode} (no function)`);
    } catch (error) {
      log(`${method} ${url.pathname} failed: ${(error as Error).stack ?? error}`);
      if (!res.headersSent) sendJson(res, 500);
      else res.destroy();
    }
  };

  async function invokeHttp(
    fn: CapturedFunction,
    params: Record<string, string>,
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    opts: HttpHandlerOptions,
  ): Promise<void> {
    const lib = invoker.lib;
    const headers = new Headers();
    for (const [name, values] of Object.entries(req.headersDistinct)) {
      for (const value of values ?? []) headers.append(name, value);
    }
    const method = (req.method ?? "GET").toUpperCase();
    const hasBody = method !== "GET" && method !== "HEAD";
    const nativeRequest = new Request(url.href, {
      method,
      headers,
      ...(hasBody ? { body: req as unknown as string, duplex: "half" } : {}),
    } as RequestInit);
    const request = new lib.HttpRequest({ nativeRequest, params } as unknown as ConstructorParameters<
      typeof lib.HttpRequest
    >[0]);
    let result: unknown;
    let context: Awaited<ReturnType<Invoker["invoke"]>>["context"];
    try {
      const invocation = await invoker.invoke(fn, [request], {
        extraInputs: opts.extraInputs(fn),
        invocationId: randomUUID(),
      });
      result = invocation.result;
      context = invocation.context;
    } catch (error) {
      log(`[${fn.name}] failed: ${(error as Error)?.stack ?? error}`);
      if (hasBody && !req.readableEnded) req.resume();
      res.statusCode = 500;
      res.end();
      return;
    }
    // The HTTP output is the return value, or a named http output binding.
    if (fn.bindings.$return?.type.toLowerCase() !== "http") {
      const output = Object.entries(fn.bindings).find(
        ([, b]) => b.direction === "out" && b.type.toLowerCase() === "http",
      );
      if (output) result = context.extraOutputs.get(output[0]);
    }
    if (hasBody && !req.readableEnded) req.resume();
    if (result === undefined || result === null) {
      res.statusCode = 204;
      res.end();
      return;
    }
    const response =
      result instanceof lib.HttpResponse ? result : new lib.HttpResponse(result as HttpResponseInit);
    res.statusCode = response.status;
    for (const [name, value] of response.headers) {
      if (name.toLowerCase() !== "set-cookie") res.setHeader(name, value);
    }
    const setCookies = [...response.headers.getSetCookie(), ...response.cookies.map(serializeCookie)];
    if (setCookies.length > 0) res.setHeader("Set-Cookie", setCookies);
    if (!response.body) {
      res.end();
      return;
    }
    await pipeline(Readable.fromWeb(response.body as unknown as WebReadableStream), res);
  }
}
