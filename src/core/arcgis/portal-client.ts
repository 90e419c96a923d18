import { Readable, Transform } from "node:stream";
import type { ReadableStreamDefaultReader, ReadableStream as WebReadableStream } from "node:stream/web";
import { setTimeout as sleep } from "node:timers/promises";
import { encodeFormData, encodeQueryString } from "@esri/arcgis-rest-request";
import {
  classifyPortalBody,
  isRetryablePortalError,
  PortalAuthError,
  PortalError,
  PortalThrottledError,
  PortalTransientError,
  portalHttpError,
} from "./portal-errors.js";
import { calculateRetryDelay, parseRetryAfter } from "./retry-delay.js";

/** Gives the current token and forgets one the portal rejected. */
export interface TokenProvider {
  getToken(): Promise<string>;
  invalidate(token: string): void;
}

/** What a pacer (the org's rate governor) learns from each response. */
export interface ResponseObservation {
  url: string;
  /** The request's parameters (never the token): what kind of query it was. */
  params?: Record<string, unknown>;
  status: number;
  throttled: boolean;
  latencyMs: number;
  headers: Headers | undefined;
}

/** Hooks that let a rate governor slow requests down before the org's budget runs out. */
export interface RequestPacer {
  /** Awaited before every attempt, outside its timeout: waiting for budget is not a timeout. */
  beforeRequest(url: string, params?: Record<string, unknown>): Promise<void>;
  afterResponse(observation: ResponseObservation): void;
  /** A 429 that arrived as an ArcGIS error inside an HTTP 200 body. */
  onThrottled?(url: string, retryAfterMs: number | undefined): void;
}

export interface PortalClientOptions {
  /** The Sharing REST root, e.g. https://myorg.maps.arcgis.com/sharing/rest. */
  sharingUrl: string;
  tokens?: TokenProvider;
  /** Per attempt, until the whole JSON body is read (or the headers of a stream). */
  timeoutMs?: number;
  /** A stream that delivers nothing for this long is aborted. */
  idleTimeoutMs?: number;
  maxRetries?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  pacer?: RequestPacer;
  /** The referer a referer-bound token was generated for. */
  referer?: string;
  fetch?: typeof fetch;
}

export interface RequestOptions {
  method?: "GET" | "POST";
  /** Send the token (default true). */
  auth?: boolean;
  timeoutMs?: number;
  /** Retries after a transient failure (default: the client's); 0 for writes that are not idempotent. */
  maxRetries?: number;
}

export interface PortalStream {
  body: Readable;
  contentType: string | undefined;
  contentLength: number | undefined;
  fileName: string | undefined;
}

/** Counters a run reports: how many calls, retries and throttles it met. */
export interface PortalClientStats {
  requests: number;
  retries: number;
  throttled: number;
  tokenRefreshes: number;
  retryWaitMs: number;
}

export const DEFAULT_REFERER = "arcgis-org-backup";
const MAX_REDIRECTS = 5;
/** An ArcGIS error body is read whole up to this size. */
const ERROR_SNIFF_LIMIT = 1024 * 1024;
/** Bytes looked at to tell an error body from data. */
const ERROR_PEEK_BYTES = 32;

/**
 * The one way this app talks to a portal or ArcGIS Server: parameters encoded the ArcGIS way
 * (by @esri/arcgis-rest-request), a timeout on every attempt, bounded retries with backoff on
 * 429 (honouring Retry-After), 5xx, resets and truncated bodies, and one token refresh on
 * 498/499. Tokens never leave for another host: redirects to storage are followed without them.
 */
export class PortalClient {
  readonly sharingUrl: string;
  readonly stats: PortalClientStats = {
    requests: 0,
    retries: 0,
    throttled: 0,
    tokenRefreshes: 0,
    retryWaitMs: 0,
  };
  readonly referer: string;
  private readonly options: Required<
    Pick<
      PortalClientOptions,
      "timeoutMs" | "idleTimeoutMs" | "maxRetries" | "baseDelayMs" | "maxDelayMs" | "referer"
    >
  >;
  private readonly tokens: TokenProvider | undefined;
  private readonly pacer: RequestPacer | undefined;
  private readonly fetchImpl: typeof fetch;
  private readonly init: PortalClientOptions;

  constructor(options: PortalClientOptions) {
    this.init = options;
    this.sharingUrl = options.sharingUrl.replace(/\/+$/, "");
    this.tokens = options.tokens;
    this.pacer = options.pacer;
    this.fetchImpl = options.fetch ?? fetch;
    this.options = {
      timeoutMs: options.timeoutMs ?? 60_000,
      idleTimeoutMs: options.idleTimeoutMs ?? 60_000,
      maxRetries: options.maxRetries ?? 5,
      baseDelayMs: options.baseDelayMs ?? 500,
      maxDelayMs: options.maxDelayMs ?? 30_000,
      referer: options.referer ?? DEFAULT_REFERER,
    };
    this.referer = this.options.referer;
  }

  /**
   * The same client (sign-in, settings) with its own counters and optionally another pacer:
   * one per unit of work, so concurrent work in a process never mixes its statistics.
   */
  fork(overrides: { pacer?: RequestPacer } = {}): PortalClient {
    return new PortalClient({ ...this.init, ...overrides });
  }

  /** Resolves a path relative to the Sharing REST root; absolute URLs pass through. */
  resolve(pathOrUrl: string): string {
    if (/^https?:\/\//i.test(pathOrUrl)) return pathOrUrl;
    return `${this.sharingUrl}/${pathOrUrl.replace(/^\/+/, "")}`;
  }

  /** A JSON call; ArcGIS errors in the body become typed errors. POST unless told otherwise. */
  async json<T>(
    pathOrUrl: string,
    params: Record<string, unknown> = {},
    options: RequestOptions = {},
  ): Promise<T> {
    const url = this.resolve(pathOrUrl);
    return this.withRetries(
      url,
      options,
      async (token, signal) => {
        const response = await this.send(
          url,
          { ...params, f: "json" },
          token,
          signal,
          options.method ?? "POST",
        );
        const text = await this.readText(response, url);
        if (text.trim() === "") return {} as T;
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch (cause) {
          // A truncated or HTML body (gateways, cut connections): transient.
          throw new PortalTransientError(`Unreadable JSON from ${redactPath(url)}`, {
            code: "ERR_PORTAL_BAD_RESPONSE",
            status: 502,
            cause,
          });
        }
        return classifyPortalBody(body as T, url, parseRetryAfter(response.headers.get("retry-after")));
      },
      params,
    );
  }

  /**
   * Opens a download (item data, metadata, thumbnail, resource, attachment) as a stream.
   * Returns undefined for an empty body (an item without data). A JSON error body is thrown
   * as its typed error. Retries cover the response; a failure mid-stream is the caller's to
   * retry (it restarts the file).
   */
  async openStream(
    pathOrUrl: string,
    params: Record<string, unknown> = {},
    options: RequestOptions = {},
  ): Promise<PortalStream | undefined> {
    const url = this.resolve(pathOrUrl);
    return this.withRetries(
      url,
      options,
      async (token, signal, controller) => {
        const response = await this.send(url, params, token, signal, "GET");
        const contentType = response.headers.get("content-type") ?? undefined;
        const lengthHeader = response.headers.get("content-length");
        const contentLength = lengthHeader === null ? undefined : Number(lengthHeader);
        if (contentLength === 0 || !response.body) {
          await response.body?.cancel();
          return undefined;
        }
        const reader = (response.body as WebReadableStream<Uint8Array>).getReader();
        const mayBeError = contentType?.includes("json") || contentType?.includes("text/plain");
        // Peek: an empty chunked body is no data; a JSON error hides behind JSON and text types.
        let head = Buffer.alloc(0);
        let ended = false;
        while (head.length < ERROR_PEEK_BYTES) {
          const { done, value } = await reader.read();
          if (done) {
            ended = true;
            break;
          }
          head = Buffer.concat([head, value]);
        }
        if (ended && head.length === 0) return undefined;
        if (mayBeError && /^\s*\{\s*"error"\s*:/.test(head.toString("utf8"))) {
          const chunks = [head];
          let size = head.length;
          while (!ended && size <= ERROR_SNIFF_LIMIT) {
            const { done, value } = await reader.read();
            if (done) ended = true;
            else {
              chunks.push(Buffer.from(value));
              size += value.length;
            }
          }
          const text = Buffer.concat(chunks).toString("utf8");
          let parsed: unknown;
          try {
            parsed = JSON.parse(text);
          } catch {
            throw new PortalTransientError(`Truncated error response from ${redactPath(url)}`, {
              code: "ERR_PORTAL_BAD_RESPONSE",
              status: 502,
            });
          }
          classifyPortalBody(parsed, url, parseRetryAfter(response.headers.get("retry-after")));
          head = Buffer.concat(chunks);
        }
        const stream: PortalStream = {
          body: withIdleTimeout(
            Readable.from(replay(head, ended ? undefined : reader, contentLength, url)),
            this.options.idleTimeoutMs,
            controller,
          ),
          contentType,
          contentLength,
          fileName: fileNameFrom(response.headers.get("content-disposition")),
        };
        return stream;
      },
      params,
    );
  }

  private async withRetries<T>(
    url: string,
    options: RequestOptions,
    attempt: (token: string | undefined, signal: AbortSignal, controller: AbortController) => Promise<T>,
    params?: Record<string, unknown>,
  ): Promise<T> {
    // A token can expire between refresh and use under load; twice is enough, more is a loop.
    let tokenRefreshes = 0;
    for (let retry = 0; ; retry++) {
      await this.pacer?.beforeRequest(url, params);
      const token = options.auth === false || !this.tokens ? undefined : await this.tokens.getToken();
      const controller = new AbortController();
      const timeoutMs = options.timeoutMs ?? this.options.timeoutMs;
      const timer = setTimeout(
        () => controller.abort(new Error(`timed out after ${timeoutMs} ms`)),
        timeoutMs,
      );
      try {
        return await attempt(token, controller.signal, controller);
      } catch (raw) {
        const error = toPortalError(raw, url, controller.signal);
        // HTTP 429s reach the pacer through afterResponse; the body form only shows up here.
        if (error instanceof PortalThrottledError && error.arcgisCode !== undefined) {
          this.pacer?.onThrottled?.(url, error.retryAfterMs);
        }
        if (error instanceof PortalAuthError && token && this.tokens && tokenRefreshes < 2) {
          tokenRefreshes++;
          this.tokens.invalidate(token);
          this.stats.tokenRefreshes++;
          retry--;
          continue;
        }
        const maxRetries = options.maxRetries ?? this.options.maxRetries;
        if (!isRetryablePortalError(error) || retry >= maxRetries) throw error;
        if (error instanceof PortalThrottledError) this.stats.throttled++;
        const delay = calculateRetryDelay({
          attempt: retry + 1,
          baseDelayMs: this.options.baseDelayMs,
          maxDelayMs: this.options.maxDelayMs,
          ...(error instanceof PortalThrottledError && error.retryAfterMs !== undefined
            ? { retryAfterMs: error.retryAfterMs }
            : {}),
        });
        this.stats.retries++;
        this.stats.retryWaitMs += delay;
        await sleep(delay);
      } finally {
        // A stream keeps its own idle watchdog; the connect timeout ends here. (No abort on
        // success: the body is consumed, and an abort costs an exception object per request.)
        clearTimeout(timer);
      }
    }
  }

  /** One HTTP exchange, following redirects by hand so a token never reaches another host. */
  private async send(
    url: string,
    params: Record<string, unknown>,
    token: string | undefined,
    signal: AbortSignal,
    method: "GET" | "POST",
  ): Promise<Response> {
    const withToken = token ? { ...params, token } : params;
    const headers: Record<string, string> = { referer: this.options.referer };
    let target = url;
    let init: RequestInit;
    if (method === "GET") {
      const query = encodeQueryString(withToken);
      target = query ? `${url}${url.includes("?") ? "&" : "?"}${query}` : url;
      init = { method, headers, signal, redirect: "manual" };
    } else {
      const body = encodeFormData(withToken);
      if (typeof body === "string") headers["content-type"] = "application/x-www-form-urlencoded";
      init = { method, headers, body: body as RequestInit["body"], signal, redirect: "manual" };
    }
    const started = performance.now();
    this.stats.requests++;
    let response: Response;
    try {
      response = await this.fetchImpl(target, init);
      const origin = new URL(url).origin;
      for (let hops = 0; isRedirect(response.status) && hops < MAX_REDIRECTS; hops++) {
        const location = response.headers.get("location");
        await response.body?.cancel();
        if (!location) break;
        const next = new URL(location, target);
        // Storage hosts get a signed URL and nothing of ours: no token, no referer.
        const sameOrigin = next.origin === origin;
        target = next.toString();
        response = await this.fetchImpl(target, {
          method: "GET",
          headers: sameOrigin ? headers : {},
          signal,
          redirect: "manual",
        });
      }
    } catch (error) {
      // No answer (reset, refused, timed out): the pacer must still learn the attempt is over.
      this.pacer?.afterResponse({
        url,
        params,
        status: 0,
        throttled: false,
        latencyMs: performance.now() - started,
        headers: undefined,
      });
      throw error;
    }
    const throttledStatus = response.status === 429;
    this.pacer?.afterResponse({
      url,
      params,
      status: response.status,
      throttled: throttledStatus,
      latencyMs: performance.now() - started,
      headers: response.headers,
    });
    if (!response.ok) {
      await response.body?.cancel();
      throw portalHttpError(response.status, url, parseRetryAfter(response.headers.get("retry-after")));
    }
    return response;
  }

  private async readText(response: Response, url: string): Promise<string> {
    const text = await response.text();
    const declared = response.headers.get("content-length");
    if (declared !== null && Buffer.byteLength(text) < Number(declared)) {
      throw new PortalTransientError(`Truncated response from ${redactPath(url)}`, {
        code: "ERR_PORTAL_BAD_RESPONSE",
        status: 502,
      });
    }
    return text;
  }
}

/** The peeked bytes, then the rest of the body; a body shorter than announced is a transient error. */
async function* replay(
  head: Buffer,
  reader: ReadableStreamDefaultReader<Uint8Array> | undefined,
  contentLength: number | undefined,
  url: string,
): AsyncGenerator<Buffer> {
  let size = head.length;
  if (head.length > 0) yield head;
  while (reader) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    yield Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  }
  if (contentLength !== undefined && size < contentLength) {
    throw new PortalTransientError(`Truncated response from ${redactPath(url)}`, {
      code: "ERR_PORTAL_BAD_RESPONSE",
      status: 502,
    });
  }
}

function isRedirect(status: number): boolean {
  return status === 301 || status === 302 || status === 303 || status === 307 || status === 308;
}

function redactPath(url: string): string {
  const parsed = new URL(url);
  return `${parsed.origin}${parsed.pathname}`;
}

/** Network failures and aborts become transient portal errors; typed errors pass through. */
function toPortalError(error: unknown, url: string, signal: AbortSignal): unknown {
  if (error instanceof PortalError) return error;
  const where = redactPath(url);
  if (signal.aborted) {
    return new PortalTransientError(`Request to ${where} ${errorText(signal.reason)}`, {
      code: "ERR_PORTAL_TIMEOUT",
      status: 504,
      cause: error,
    });
  }
  if (error instanceof TypeError || (error instanceof Error && "code" in error)) {
    const cause = (error as Error & { cause?: { code?: string } }).cause;
    const detail = cause?.code ?? (error as Error & { code?: string }).code ?? error.message;
    return new PortalTransientError(`Network error calling ${where}: ${detail}`, {
      code: "ERR_PORTAL_NETWORK",
      status: 502,
      cause: error,
    });
  }
  return error;
}

function errorText(reason: unknown): string {
  return reason instanceof Error ? reason.message : "was aborted";
}

function fileNameFrom(disposition: string | null): string | undefined {
  if (!disposition) return undefined;
  const star = /filename\*\s*=\s*(?:UTF-8'')?([^;]+)/i.exec(disposition);
  if (star?.[1]) {
    try {
      return decodeURIComponent(star[1].trim().replace(/^"|"$/g, ""));
    } catch {
      // fall through to the plain form
    }
  }
  const plain = /filename\s*=\s*"?([^";]+)"?/i.exec(disposition);
  return plain?.[1]?.trim();
}

/** Aborts the download when no bytes arrive for `idleMs`. */
function withIdleTimeout(source: Readable, idleMs: number, controller: AbortController): Readable {
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      const error = new PortalTransientError(`Download stalled for ${idleMs} ms`, {
        code: "ERR_PORTAL_TIMEOUT",
        status: 504,
      });
      controller.abort(error);
      guard.destroy(error);
    }, idleMs);
  };
  const guard = new Transform({
    transform(chunk, _encoding, callback) {
      arm();
      callback(null, chunk);
    },
    flush(callback) {
      clearTimeout(timer);
      callback();
    },
  });
  guard.on("close", () => clearTimeout(timer));
  source.on("error", (error) => guard.destroy(error));
  arm();
  return source.pipe(guard);
}
