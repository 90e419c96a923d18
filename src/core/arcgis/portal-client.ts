import { finished, Readable, Transform } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { encodeFormData, encodeQueryString } from "@esri/arcgis-rest-request";
import { AppError } from "../errors.js";
import { classifyFailure } from "../failures.js";
import {
  fetchTransport,
  type HeaderLookup,
  type HttpAnswer,
  type HttpTransport,
  nodeHttpTransport,
} from "./http-transport.js";
import {
  classifyPortalBody,
  PortalThrottledError,
  PortalTransientError,
  parsePortalJson,
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
  headers: HeaderLookup | undefined;
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
  /** Another way to send requests (tests watch or bend traffic with one); node:http by default. */
  fetch?: typeof fetch;
  /**
   * Stops every request of the client (a cancelled run): one in flight, its body included, is
   * aborted, and neither it nor a later one is retried — they throw the signal's reason.
   */
  signal?: AbortSignal;
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
/**
 * Retries of a request after a transient or throttled failure: with full jitter from 0.5 s,
 * doubling up to 30 s, at most 15.5 s of backoff in all (Retry-After aside). The README's
 * "Failures and retries" states the whole budget.
 */
export const DEFAULT_MAX_RETRIES = 5;
/** A token can expire between refresh and use under load; twice is enough, more is a loop. */
const MAX_TOKEN_REFRESHES = 2;
const MAX_REDIRECTS = 5;
/** An ArcGIS error body is read whole up to this size. */
const ERROR_SNIFF_LIMIT = 1024 * 1024;
/** Bytes looked at to tell an error body from data. */
const ERROR_PEEK_BYTES = 32;
/** How an ArcGIS error body begins. */
const ERROR_START = /^\s*\{\s*"error"\s*:/;

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
  private readonly transport: HttpTransport;
  private readonly init: PortalClientOptions;

  constructor(options: PortalClientOptions) {
    this.init = options;
    this.sharingUrl = options.sharingUrl.replace(/\/+$/, "");
    this.tokens = options.tokens;
    this.pacer = options.pacer;
    this.transport = options.fetch ? fetchTransport(options.fetch) : nodeHttpTransport;
    this.options = {
      timeoutMs: options.timeoutMs ?? 60_000,
      idleTimeoutMs: options.idleTimeoutMs ?? 60_000,
      maxRetries: options.maxRetries ?? DEFAULT_MAX_RETRIES,
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
  fork(overrides: { pacer?: RequestPacer; signal?: AbortSignal } = {}): PortalClient {
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
        const text = await readText(response, url);
        if (text.trim() === "") return {} as T;
        const body = parsePortalJson(text, url) as T;
        return classifyPortalBody(body, url, parseRetryAfter(response.headers.get("retry-after")));
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
      (token, signal, controller) => this.openAttempt(url, params, token, signal, controller),
      params,
    );
  }

  /**
   * A whole answer as bytes (a page of features), or undefined for an empty one. Unlike a
   * stream, a body cut short is retried here, with the request, within the client's budget.
   */
  async bytes(
    pathOrUrl: string,
    params: Record<string, unknown> = {},
    options: RequestOptions = {},
  ): Promise<Buffer | undefined> {
    const url = this.resolve(pathOrUrl);
    return this.withRetries(
      url,
      options,
      async (token, signal, controller) => {
        const stream = await this.openAttempt(url, params, token, signal, controller);
        if (!stream) return undefined;
        const bytes = await readAll(stream.body, Number.POSITIVE_INFINITY);
        // An error body under a content type the stream does not look into.
        if (ERROR_START.test(bytes.subarray(0, ERROR_PEEK_BYTES).toString("utf8"))) {
          classifyPortalBody(parsePortalJson(bytes.toString("utf8"), url), url);
        }
        return bytes;
      },
      params,
    );
  }

  /** One attempt of a download: the answer's stream once its error sniffing is done. */
  private async openAttempt(
    url: string,
    params: Record<string, unknown>,
    token: string | undefined,
    signal: AbortSignal,
    controller: AbortController,
  ): Promise<PortalStream | undefined> {
    const response = await this.send(url, params, token, signal, "GET");
    const contentType = response.headers.get("content-type") ?? undefined;
    const lengthHeader = response.headers.get("content-length");
    const contentLength = lengthHeader === null ? undefined : Number(lengthHeader);
    let body: Readable = response.body;
    if (contentLength === 0) {
      body.destroy();
      return undefined;
    }
    const mayBeError = contentType?.includes("json") || contentType?.includes("text/plain");
    // Peek: an empty chunked body is no data; a JSON error hides behind JSON and text types.
    if (mayBeError || contentLength === undefined) {
      const { head, rest } = await peek(body, ERROR_PEEK_BYTES);
      if (!rest && head.length === 0) return undefined;
      if (mayBeError && ERROR_START.test(head.toString("utf8"))) {
        const whole = rest ? await readAll(rest, ERROR_SNIFF_LIMIT) : head;
        const parsed = parsePortalJson(whole.toString("utf8"), url);
        classifyPortalBody(parsed, url, parseRetryAfter(response.headers.get("retry-after")));
        // An "error" member that is no error: the bytes read are the data.
        body.destroy();
        body = Readable.from([whole]);
      } else if (!rest) body = Readable.from([head]);
    }
    return {
      body: guardDownload(body, { idleMs: this.options.idleTimeoutMs, controller, contentLength, url }),
      contentType,
      contentLength,
      fileName: fileNameFrom(response.headers.get("content-disposition")),
    };
  }

  private async withRetries<T>(
    url: string,
    options: RequestOptions,
    attempt: (token: string | undefined, signal: AbortSignal, controller: AbortController) => Promise<T>,
    params?: Record<string, unknown>,
  ): Promise<T> {
    let tokenRefreshes = 0;
    const stop = this.init.signal;
    for (let retry = 0; ; retry++) {
      // Checked before the pacer only: once it has let a request go, the request must be answered
      // (an aborted one fails at once) so that the pacer sees it end.
      stop?.throwIfAborted();
      await this.pacer?.beforeRequest(url, params);
      const token = options.auth === false || !this.tokens ? undefined : await this.tokens.getToken();
      const controller = new AbortController();
      const timeoutMs = options.timeoutMs ?? this.options.timeoutMs;
      const timer = setTimeout(
        () => controller.abort(new Error(`timed out after ${timeoutMs} ms`)),
        timeoutMs,
      );
      // Not AbortSignal.any: its composite signals stay registered on the run's long-lived stop
      // signal, and a run of 100,000 items made every request slower and the heap grow.
      const unlink = stop ? forwardAbort(stop, controller) : undefined;
      try {
        const result = await attempt(token, controller.signal, controller);
        if (unlink) unlinkWhenConsumed(result, unlink);
        return result;
      } catch (raw) {
        unlink?.();
        stop?.throwIfAborted();
        const error = toPortalError(raw, url, controller.signal);
        const kind = classifyFailure(error);
        const throttle = error instanceof PortalThrottledError ? error : undefined;
        // HTTP 429s reach the pacer through afterResponse; the body form only shows up here.
        if (throttle?.arcgisCode !== undefined) this.pacer?.onThrottled?.(url, throttle.retryAfterMs);
        if (kind === "auth" && token && this.tokens && tokenRefreshes < MAX_TOKEN_REFRESHES) {
          tokenRefreshes++;
          this.tokens.invalidate(token);
          this.stats.tokenRefreshes++;
          retry--;
          continue;
        }
        const maxRetries = options.maxRetries ?? this.options.maxRetries;
        if ((kind !== "transient" && kind !== "throttled") || retry >= maxRetries) throw error;
        if (kind === "throttled") this.stats.throttled++;
        const delay = calculateRetryDelay({
          attempt: retry + 1,
          baseDelayMs: this.options.baseDelayMs,
          maxDelayMs: this.options.maxDelayMs,
          ...(throttle?.retryAfterMs !== undefined ? { retryAfterMs: throttle.retryAfterMs } : {}),
        });
        this.stats.retries++;
        this.stats.retryWaitMs += delay;
        await sleep(delay, undefined, stop ? { signal: stop } : {}).catch(() => stop?.throwIfAborted());
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
  ): Promise<HttpAnswer> {
    const withToken = token ? { ...params, token } : params;
    const headers: Record<string, string> = { referer: this.options.referer };
    let target = url;
    let body: string | FormData | undefined;
    if (method === "GET") {
      const query = encodeQueryString(withToken);
      target = query ? `${url}${url.includes("?") ? "&" : "?"}${query}` : url;
    } else {
      body = encodeFormData(withToken) as string | FormData;
      if (typeof body === "string") headers["content-type"] = "application/x-www-form-urlencoded";
    }
    const started = performance.now();
    this.stats.requests++;
    let response: HttpAnswer;
    try {
      response = await this.transport(target, {
        method,
        headers,
        signal,
        ...(body === undefined ? {} : { body }),
      });
      const origin = new URL(url).origin;
      for (let hops = 0; isRedirect(response.status) && hops < MAX_REDIRECTS; hops++) {
        const location = response.headers.get("location");
        response.body.destroy();
        if (!location) break;
        const next = new URL(location, target);
        // Storage hosts get a signed URL and nothing of ours: no token, no referer.
        const sameOrigin = next.origin === origin;
        target = next.toString();
        response = await this.transport(target, {
          method: "GET",
          headers: sameOrigin ? headers : {},
          signal,
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
    if (response.status < 200 || response.status > 299) {
      response.body.destroy();
      throw portalHttpError(response.status, url, parseRetryAfter(response.headers.get("retry-after")));
    }
    return response;
  }
}

/** The whole body as text; a body shorter than announced is a transient error. */
async function readText(response: HttpAnswer, url: string): Promise<string> {
  const bytes = await readAll(response.body, Number.POSITIVE_INFINITY);
  const declared = response.headers.get("content-length");
  if (declared !== null && bytes.length < Number(declared)) throw truncated(url);
  return bytes.toString("utf8");
}

/** The body, or its first `limit`-odd bytes when it is longer (the rest is dropped with the stream). */
async function readAll(body: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    chunks.push(chunk as Buffer);
    size += (chunk as Buffer).length;
    if (size > limit) break;
  }
  return Buffer.concat(chunks);
}

/**
 * The first `bytes` of a body. When the body is longer, they are put back and `rest` is the
 * whole body again; when it ended sooner, `head` is all of it and there is no `rest`.
 */
async function peek(body: Readable, bytes: number): Promise<{ head: Buffer; rest: Readable | undefined }> {
  const chunks: Buffer[] = [];
  let size = 0;
  const ended = await new Promise<boolean>((resolve, reject) => {
    const stop = (outcome: boolean | Error) => {
      body.off("readable", onReadable);
      body.off("end", onEnd);
      body.off("error", onError);
      if (outcome instanceof Error) reject(outcome);
      else resolve(outcome);
    };
    const onReadable = () => {
      for (let chunk = body.read() as Buffer | null; chunk !== null; chunk = body.read() as Buffer | null) {
        chunks.push(chunk);
        size += chunk.length;
        if (size >= bytes) {
          // Put back at once, in this handler: later, the stream may already have announced its end.
          body.unshift(Buffer.concat(chunks));
          return stop(false);
        }
      }
    };
    const onEnd = () => stop(true);
    const onError = (error: Error) => stop(error);
    body.on("readable", onReadable);
    body.once("end", onEnd);
    body.once("error", onError);
  });
  const head = Buffer.concat(chunks);
  return { head, rest: ended ? undefined : body };
}

function truncated(url: string): PortalTransientError {
  return new PortalTransientError(`Truncated response from ${redactPath(url)}`, {
    code: "ERR_PORTAL_BAD_RESPONSE",
    status: 502,
  });
}

function isRedirect(status: number): boolean {
  return status === 301 || status === 302 || status === 303 || status === 307 || status === 308;
}

function redactPath(url: string): string {
  const parsed = new URL(url);
  return `${parsed.origin}${parsed.pathname}`;
}

/**
 * A failure of the exchange as a portal error: our own timeout, or whatever the classifier calls
 * a transient network failure (a reset, a refused connection, a cut body). Typed errors (portal
 * errors, a connection the app refused) and anything else (a bug) pass through unchanged.
 */
/** Aborts `to` when `from` aborts (at once if it has); the returned function undoes the link. */
function forwardAbort(from: AbortSignal, to: AbortController): () => void {
  const abort = () => to.abort(from.reason);
  if (from.aborted) abort();
  from.addEventListener("abort", abort, { once: true });
  return () => from.removeEventListener("abort", abort);
}

/** A download's body outlives its attempt: the link to the stop signal lasts until it ends. */
function unlinkWhenConsumed(result: unknown, unlink: () => void): void {
  const body = (result as { body?: unknown } | undefined)?.body;
  if (body instanceof Readable) finished(body, unlink);
  else unlink();
}

function toPortalError(error: unknown, url: string, signal: AbortSignal): unknown {
  if (error instanceof AppError) return error;
  const where = redactPath(url);
  if (signal.aborted) {
    return new PortalTransientError(`Request to ${where} ${errorText(signal.reason)}`, {
      code: "ERR_PORTAL_TIMEOUT",
      status: 504,
      cause: error,
    });
  }
  if (classifyFailure(error) === "transient") {
    const cause = (error as Error & { cause?: { code?: string } }).cause;
    const detail = cause?.code ?? (error as Error & { code?: string }).code ?? (error as Error).message;
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

/**
 * A download as the caller reads it: aborted when no bytes arrive for `idleMs`, and failed as
 * transient when it ends short of its announced length.
 */
function guardDownload(
  source: Readable,
  options: { idleMs: number; controller: AbortController; contentLength: number | undefined; url: string },
): Readable {
  let received = 0;
  const timer = setTimeout(() => {
    const error = new PortalTransientError(`Download stalled for ${options.idleMs} ms`, {
      code: "ERR_PORTAL_TIMEOUT",
      status: 504,
    });
    options.controller.abort(error);
    guard.destroy(error);
  }, options.idleMs);
  const guard = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      received += chunk.length;
      timer.refresh();
      callback(null, chunk);
    },
    flush(callback) {
      clearTimeout(timer);
      if (options.contentLength !== undefined && received < options.contentLength) {
        callback(truncated(options.url));
      } else callback();
    },
  });
  guard.on("close", () => clearTimeout(timer));
  // A connection lost mid-body is a network failure like any other: transient, fetched again.
  source.on("error", (error) =>
    guard.destroy(toPortalError(error, options.url, options.controller.signal) as Error),
  );
  return source.pipe(guard);
}
