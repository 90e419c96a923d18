import { request as httpRequest, type IncomingHttpHeaders } from "node:http";
import { request as httpsRequest } from "node:https";
import { Readable } from "node:stream";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import { GuardedHttpAgent, GuardedHttpsAgent } from "../net/guarded-agents.js";

/** Response headers by name, case-insensitive (what `Headers#get` offers). */
export interface HeaderLookup {
  get(name: string): string | null;
}

/** One HTTP answer, whichever transport carried it. The body must be read or destroyed. */
export interface HttpAnswer {
  status: number;
  headers: HeaderLookup;
  body: Readable;
}

export interface HttpExchange {
  method: "GET" | "POST";
  headers: Record<string, string>;
  /** Form-encoded text, or multipart form data (files). */
  body?: string | FormData;
  signal: AbortSignal;
}

/** Sends one request, never following redirects: the caller decides where tokens may go. */
export type HttpTransport = (url: string, exchange: HttpExchange) => Promise<HttpAnswer>;

/**
 * Connections are kept and reused: most of a backup is many small requests to one host. An idle
 * connection is closed after 15 s, or a second before the server's announced keep-alive timeout,
 * so a request rarely meets a connection the server has just closed (a reset, retried as such).
 * The agents refuse link-local and metadata addresses, also after DNS and on every redirect.
 */
const AGENT_OPTIONS = { keepAlive: true, scheduling: "lifo", timeout: 15_000 } as const;
const httpAgent = new GuardedHttpAgent(AGENT_OPTIONS);
const httpsAgent = new GuardedHttpsAgent(AGENT_OPTIONS);

/**
 * node:http(s) with keep-alive. Chosen over fetch for its cost: a download arrives as Buffers
 * without a web stream in between, and a small request takes about a third of fetch's CPU.
 */
export const nodeHttpTransport: HttpTransport = async (url, exchange) => {
  const target = new URL(url);
  const secure = target.protocol === "https:";
  const headers = { ...exchange.headers };
  let payload: Readable | string | undefined;
  if (typeof exchange.body === "string") {
    payload = exchange.body;
    headers["content-length"] = String(Buffer.byteLength(payload));
  } else if (exchange.body) {
    // Multipart encoding (boundary and all) done by the platform's own FormData serializer.
    const encoded = new Response(exchange.body);
    headers["content-type"] = encoded.headers.get("content-type") ?? "multipart/form-data";
    payload = Readable.fromWeb(encoded.body as WebReadableStream<Uint8Array>);
  }
  return new Promise<HttpAnswer>((resolve, reject) => {
    const request = (secure ? httpsRequest : httpRequest)(
      target,
      { method: exchange.method, headers, agent: secure ? httpsAgent : httpAgent, signal: exchange.signal },
      (response) =>
        resolve({
          status: response.statusCode ?? 0,
          headers: headerLookup(response.headers),
          body: response,
        }),
    );
    request.on("error", reject);
    if (payload instanceof Readable) payload.pipe(request);
    else request.end(payload);
  });
};

function headerLookup(headers: IncomingHttpHeaders): HeaderLookup {
  return {
    get(name) {
      const value = headers[name.toLowerCase()];
      if (value === undefined) return null;
      return Array.isArray(value) ? value.join(", ") : value;
    },
  };
}

/** Any fetch (tests bend or watch traffic with one) as a transport. */
export function fetchTransport(fetchImpl: typeof fetch): HttpTransport {
  return async (url, exchange) => {
    const response = await fetchImpl(url, {
      method: exchange.method,
      headers: exchange.headers,
      signal: exchange.signal,
      redirect: "manual",
      ...(exchange.body === undefined ? {} : { body: exchange.body }),
    });
    return {
      status: response.status,
      headers: response.headers,
      body: response.body
        ? Readable.fromWeb(response.body as WebReadableStream<Uint8Array>)
        : Readable.from([]),
    };
  };
}
