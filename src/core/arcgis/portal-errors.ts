import { AppError } from "../errors.js";
import { type ClassifiedError, classifyFailure, type FailureKind, kindOfStatus } from "../failures.js";
import { redactUrl } from "../redact.js";

/**
 * Errors from a portal or ArcGIS Server. ArcGIS reports most errors inside HTTP 200 bodies,
 * so every response goes through `classifyPortalBody`; callers branch on the class or `code`.
 * The class carries the failure's kind (see failures.ts), chosen by `kindOfStatus`.
 */
export class PortalError extends AppError implements ClassifiedError {
  readonly failureKind: FailureKind = "permanent";
  /** ArcGIS `error.code` (or the HTTP status when the body had none). */
  readonly arcgisCode: number | undefined;
  /** ArcGIS `error.messageCode`, e.g. CONT_0001. */
  readonly messageCode: string | undefined;

  constructor(
    message: string,
    options: { code: string; status: number; arcgisCode?: number; messageCode?: string; cause?: unknown },
  ) {
    super(message, options);
    this.arcgisCode = options.arcgisCode;
    this.messageCode = options.messageCode;
  }
}

/** 498/499 (HTTP 401): the token is invalid, expired or missing. Retried with a fresh token. */
export class PortalAuthError extends PortalError {
  override readonly failureKind: FailureKind = "auth";
}

/**
 * A token could not be obtained (bad credentials, revoked app, expired refresh token): an auth
 * failure, unless the portal could not be reached for it (then the kind of that cause).
 */
export class PortalSignInError extends PortalError {
  override readonly failureKind: FailureKind;

  constructor(
    message: string,
    options: { code: string; status: number; arcgisCode?: number; messageCode?: string; cause?: unknown },
  ) {
    super(message, options);
    const causeKind = options.cause === undefined ? "permanent" : classifyFailure(options.cause);
    this.failureKind = causeKind === "transient" || causeKind === "throttled" ? causeKind : "auth";
  }
}

/** 429 as HTTP status or body code: the org is throttled. */
export class PortalThrottledError extends PortalError {
  override readonly failureKind: FailureKind = "throttled";
  readonly retryAfterMs: number | undefined;
  constructor(message: string, options: { arcgisCode?: number; retryAfterMs?: number; cause?: unknown }) {
    super(message, { code: "ERR_PORTAL_THROTTLED", status: 503, ...options });
    this.retryAfterMs = options.retryAfterMs;
  }
}

/** 5xx, resets, timeouts, truncated bodies: worth retrying. */
export class PortalTransientError extends PortalError {
  override readonly failureKind: FailureKind = "transient";
}

/** The item (or service) does not exist or the caller may not see it. */
export class PortalNotFoundError extends PortalError {}

interface ArcgisErrorBody {
  error?: { code?: number | string; messageCode?: string; message?: string; details?: unknown };
  status?: string;
  statusMessage?: string;
}

/** Throws the typed error a portal body describes; returns the body when it is not an error. */
export function classifyPortalBody<T>(body: T, url: string, retryAfterMs?: number): T {
  if (!body || typeof body !== "object") return body;
  const candidate = body as ArcgisErrorBody;
  const where = redactUrl(url);
  if (candidate.error && typeof candidate.error === "object") {
    const code = Number(candidate.error.code);
    const messageCode = candidate.error.messageCode;
    const details = Array.isArray(candidate.error.details)
      ? candidate.error.details.filter(Boolean).join(" ")
      : "";
    const text = [candidate.error.message ?? "ArcGIS error", details].filter(Boolean).join(" ");
    const message = `${text} (${Number.isFinite(code) ? code : "?"}${messageCode ? ` ${messageCode}` : ""}) at ${where}`;
    const common = {
      ...(Number.isFinite(code) ? { arcgisCode: code } : {}),
      ...(messageCode ? { messageCode } : {}),
    };
    const kind = Number.isFinite(code) ? kindOfStatus(code) : "permanent";
    if (kind === "auth") {
      throw new PortalAuthError(message, { code: "ERR_PORTAL_AUTH", status: 401, ...common });
    }
    if (kind === "throttled")
      throw new PortalThrottledError(message, { ...common, ...(retryAfterMs ? { retryAfterMs } : {}) });
    if (kind === "transient") {
      throw new PortalTransientError(message, { code: "ERR_PORTAL_UNAVAILABLE", status: 502, ...common });
    }
    // CONT_0001: item missing or invisible; CONT_0036: item info file (metadata, thumbnail) missing.
    if (messageCode === "CONT_0001" || messageCode === "CONT_0036" || code === 404) {
      throw new PortalNotFoundError(message, { code: "ERR_PORTAL_NOT_FOUND", status: 404, ...common });
    }
    if (code === 403)
      throw new PortalError(message, { code: "ERR_PORTAL_FORBIDDEN", status: 403, ...common });
    throw new PortalError(message, { code: "ERR_PORTAL_REQUEST", status: 502, ...common });
  }
  if (candidate.status === "failed" || candidate.status === "failure") {
    throw new PortalError(`ArcGIS job failed: ${candidate.statusMessage ?? "no message"} at ${where}`, {
      code: "ERR_PORTAL_JOB_FAILED",
      status: 502,
    });
  }
  return body;
}

/** Maps a non-2xx HTTP status (which carries no ArcGIS body) to the typed error. */
export function portalHttpError(status: number, url: string, retryAfterMs?: number): PortalError {
  const message = `HTTP ${status} from ${redactUrl(url)}`;
  const kind = kindOfStatus(status);
  if (kind === "throttled")
    return new PortalThrottledError(message, { ...(retryAfterMs ? { retryAfterMs } : {}) });
  if (kind === "transient") {
    return new PortalTransientError(message, {
      code: "ERR_PORTAL_UNAVAILABLE",
      status: 502,
      arcgisCode: status,
    });
  }
  if (kind === "auth")
    return new PortalAuthError(message, { code: "ERR_PORTAL_AUTH", status: 401, arcgisCode: status });
  if (status === 404) return new PortalNotFoundError(message, { code: "ERR_PORTAL_NOT_FOUND", status: 404 });
  if (status === 403) return new PortalError(message, { code: "ERR_PORTAL_FORBIDDEN", status: 403 });
  return new PortalError(message, { code: "ERR_PORTAL_REQUEST", status: 502, arcgisCode: status });
}

/**
 * A portal answer as JSON. Text that does not parse is a body cut short or a gateway's HTML
 * page: transient, like the connection that delivered it.
 */
export function parsePortalJson(text: string, url: string): unknown {
  try {
    return JSON.parse(text);
  } catch (cause) {
    const where = new URL(url);
    throw new PortalTransientError(`Unreadable JSON from ${where.origin}${where.pathname}`, {
      code: "ERR_PORTAL_BAD_RESPONSE",
      status: 502,
      cause,
    });
  }
}

/** The portal refused this request for good (a forbidden, missing or invalid thing), not an outage. */
export function isPortalRefusal(error: unknown): boolean {
  return error instanceof PortalError && classifyFailure(error) === "permanent";
}
