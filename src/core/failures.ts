/**
 * The one place that decides what a failure means, for backup and restore alike: whatever
 * failed (a portal call, Blob or Table storage, Key Vault, the file system, the network), it is
 *
 * - `transient`: the same call may succeed in a moment (a 5xx, a reset, a timeout, a cut body);
 * - `throttled`: the service asks us to slow down (429, Azure's 503 ServerBusy);
 * - `auth`: the portal refused our token (498/499, HTTP 401): refresh it and try again;
 * - `permanent`: trying again changes nothing (a 4xx, a missing item, a bug).
 *
 * Which layer retries what, and how often, is in the README ("Failures and retries").
 */
export type FailureKind = "transient" | "throttled" | "auth" | "permanent";

/** An error that was classified when it was made (portal errors: by HTTP status or ArcGIS code). */
export interface ClassifiedError {
  readonly failureKind: FailureKind;
}

/**
 * The kind of an HTTP status, or of an ArcGIS `error.code` (ArcGIS uses HTTP numbers in its
 * HTTP 200 error bodies). 501 and 505 are answers about the request, not about the moment.
 */
export function kindOfStatus(status: number): FailureKind {
  if (status === 429) return "throttled";
  if (status === 401 || status === 498 || status === 499) return "auth";
  if (status === 408 || (status >= 500 && status !== 501 && status !== 505)) return "transient";
  return "permanent";
}

/**
 * Node, undici and Azure SDK codes of a connection or stream that failed on the way; also file
 * system codes that clear once other work releases handles. A host name that no longer resolves
 * counts too: it resolved when the identity was saved, so mid-run it is a DNS outage.
 */
const TRANSIENT_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "ETIMEDOUT",
  "ESOCKETTIMEDOUT",
  "EPIPE",
  "EAI_AGAIN",
  "ENOTFOUND",
  "EHOSTUNREACH",
  "EHOSTDOWN",
  "ENETUNREACH",
  "ENETDOWN",
  "ERR_STREAM_PREMATURE_CLOSE",
  "ERR_SOCKET_CONNECTION_TIMEOUT",
  "UND_ERR_SOCKET",
  "UND_ERR_CLOSED",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
  // @azure/core-rest-pipeline: the request could not be sent, or its answer not read whole.
  "REQUEST_SEND_ERROR",
  "PARSE_ERROR",
  // The file system: too many open files, a busy resource.
  "EMFILE",
  "ENFILE",
  "EBUSY",
  "EAGAIN",
  // The app's own error for a storage account that did not answer (after its SDK's retries).
  "ERR_STORAGE_UNREACHABLE",
]);

/** Azure Storage's answers that mean "slow down" although they are not 429. */
const AZURE_THROTTLING_CODES = new Set(["ServerBusy", "TooManyRequests"]);

/** The messages undici gives the TypeError that wraps a network failure (its cause says which). */
const UNDICI_NETWORK_MESSAGES = new Set(["fetch failed", "terminated"]);

/**
 * @azure/storage-blob's words (it gives the error no code) for a download still cut short after
 * all its re-reads: the connection failed, not the request. A download our own signal stopped
 * never ends this way: it ends as an AbortError (src/core/storage/resumable-downloads.ts).
 */
const BLOB_BODY_CUT_MESSAGE = /^Data corruption failure: received less data than required/;

const KINDS = new Set<unknown>(["transient", "throttled", "auth", "permanent"]);

/** What a failure means (see the module comment). Anything unrecognised is permanent: a bug is not retried. */
export function classifyFailure(error: unknown): FailureKind {
  if (!error || typeof error !== "object") return "permanent";
  const known = (error as Partial<ClassifiedError>).failureKind;
  if (KINDS.has(known)) return known as FailureKind;
  const { name, message, code, statusCode, cause } = error as {
    name?: unknown;
    message?: unknown;
    code?: unknown;
    statusCode?: unknown;
    cause?: unknown;
  };
  if (typeof statusCode === "number") return kindOfAzureAnswer(statusCode, azureErrorCode(error));
  // A deliberate stop (a cancelled run, a download our signal stopped) is not retried; a timeout
  // that fired is. The app's Blob clients never report a cut body as an abort (resumable-downloads.ts).
  if (name === "AbortError") return "permanent";
  if (name === "TimeoutError") return "transient";
  if (typeof code === "string" && TRANSIENT_CODES.has(code)) return "transient";
  if (typeof message === "string" && BLOB_BODY_CUT_MESSAGE.test(message)) return "transient";
  // undici's fetch wraps what went wrong (a reset, a refused connection, a bad certificate).
  if (error instanceof TypeError && UNDICI_NETWORK_MESSAGES.has(String(message))) {
    return cause === undefined ? "transient" : classifyFailure(cause);
  }
  return "permanent";
}

/** The same call may succeed later: transient or throttled. */
export function isRetryableFailure(error: unknown): boolean {
  const kind = classifyFailure(error);
  return kind === "transient" || kind === "throttled";
}

/**
 * Not the item's fault (the portal or storage is unreachable, our sign-in is refused): every
 * other item would meet it too, so its batch deals with it instead of failing the item.
 */
export function isSystemicFailure(error: unknown): boolean {
  return classifyFailure(error) !== "permanent";
}

/**
 * An answer from an Azure service (Blob, Table, Key Vault). Their SDKs renew tokens and answer
 * auth challenges themselves: a 401 or 403 that reaches us is a wrong key, SAS or role.
 */
function kindOfAzureAnswer(status: number, code: string | undefined): FailureKind {
  if (code && AZURE_THROTTLING_CODES.has(code)) return "throttled";
  const kind = kindOfStatus(status);
  return kind === "auth" ? "permanent" : kind;
}

/** The service's error code: Blob's RestError carries it as `code`, Table's in its details. */
function azureErrorCode(error: object): string | undefined {
  const { code, details } = error as { code?: unknown; details?: { errorCode?: unknown } };
  if (typeof code === "string") return code;
  return typeof details?.errorCode === "string" ? details.errorCode : undefined;
}
