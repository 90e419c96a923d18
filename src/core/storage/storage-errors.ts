import { AppError } from "../errors.js";
import { BLOCKED_ADDRESS_CODE } from "../net/guarded-agents.js";
import { BLOCKED_HOST_TEXT } from "../net/host-policy.js";

/** Stable codes of backup-storage failures (`AppError.code`). */
export const STORAGE_ERROR_CODES = {
  /** The connection string cannot be parsed or lacks what a blob client needs. */
  connectionString: "ERR_STORAGE_CONNECTION_STRING",
  /** Storage refused the credentials: wrong key, bad/expired SAS, token refused, network rule. */
  auth: "ERR_STORAGE_AUTH",
  /** No answer: unknown host, connection refused, TLS failure, timeout. */
  unreachable: "ERR_STORAGE_UNREACHABLE",
  /** The container does not exist. */
  containerNotFound: "ERR_STORAGE_CONTAINER_NOT_FOUND",
  /** The credentials are valid but may not write blobs (read-only SAS, Reader role). */
  noWrite: "ERR_STORAGE_NO_WRITE",
  /** The probe blob was written but could not be deleted (SAS without d, immutability policy). */
  noDelete: "ERR_STORAGE_NO_DELETE",
  /** The app holds no credential for an accountUrl target (server configuration). */
  noCredential: "ERR_STORAGE_NO_CREDENTIAL",
  /** Any other answer from the storage service. */
  failed: "ERR_STORAGE",
} as const;

export type StorageErrorCode = (typeof STORAGE_ERROR_CODES)[keyof typeof STORAGE_ERROR_CODES];

/** The AppError status of each code, for callers that surface a storage failure as an HTTP error. */
const STATUS: Record<StorageErrorCode, number> = {
  ERR_STORAGE_CONNECTION_STRING: 400,
  ERR_STORAGE_AUTH: 403,
  ERR_STORAGE_UNREACHABLE: 503,
  ERR_STORAGE_CONTAINER_NOT_FOUND: 404,
  ERR_STORAGE_NO_WRITE: 403,
  ERR_STORAGE_NO_DELETE: 403,
  ERR_STORAGE_NO_CREDENTIAL: 500,
  ERR_STORAGE: 502,
};

/**
 * A backup-storage failure. Messages are written here, never copied from the SDK or the
 * service (whose texts can carry signed URLs or strings-to-sign); `cause` is a sanitized
 * summary (status and service error code only).
 */
export class StorageError extends AppError {
  constructor(code: StorageErrorCode, message: string, options: { field?: string; cause?: unknown } = {}) {
    super(message, {
      code,
      status: STATUS[code],
      ...(options.field ? { field: options.field } : {}),
      ...(options.cause === undefined ? {} : { cause: options.cause }),
    });
  }
}

const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "ESOCKETTIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EPIPE",
  "REQUEST_SEND_ERROR",
]);

/** Service codes meaning "who you are is fine, but this operation is not allowed". */
const PERMISSION_CODES = new Set([
  "AuthorizationPermissionMismatch",
  "AuthorizationResourceTypeMismatch",
  "AuthorizationServiceMismatch",
]);

export interface StorageFailureFacts {
  status: number | undefined;
  /** The service's x-ms-error-code, or the Node network error code. */
  code: string | undefined;
  name: string | undefined;
}

export function storageFailureFacts(error: unknown): StorageFailureFacts {
  const e = (error ?? {}) as { statusCode?: unknown; code?: unknown; name?: unknown };
  return {
    status: typeof e.statusCode === "number" ? e.statusCode : undefined,
    code: typeof e.code === "string" ? e.code : undefined,
    name: typeof e.name === "string" ? e.name : undefined,
  };
}

/**
 * Classifies an SDK failure into a StorageError. `operation` tells a permission failure on a
 * write or container creation (NO_WRITE) from one on a delete (NO_DELETE).
 */
export function toStorageError(
  error: unknown,
  context: {
    account: string;
    container: string;
    operation: "read" | "write" | "delete" | "create";
    timedOut?: boolean;
  },
): StorageError {
  if (error instanceof StorageError) return error;
  const facts = storageFailureFacts(error);
  const cause = new Error(
    [facts.status === undefined ? undefined : `status ${facts.status}`, facts.code, facts.name]
      .filter(Boolean)
      .join(", ") || "unknown failure",
  );
  const where = `storage account "${context.account}"`;
  if (context.timedOut || facts.name === "AbortError" || facts.code === "TIMEOUT") {
    return new StorageError(
      STORAGE_ERROR_CODES.unreachable,
      `The ${where} did not answer in time; check the account name, endpoint and network access`,
      { cause },
    );
  }
  if (facts.code === BLOCKED_ADDRESS_CODE) {
    return new StorageError(
      STORAGE_ERROR_CODES.unreachable,
      `The ${where} endpoint resolves to ${BLOCKED_HOST_TEXT}; the app does not connect there`,
      { cause },
    );
  }
  if (facts.status === undefined) {
    const reason = facts.code && /^[A-Z_0-9]+$/.test(facts.code) ? ` (${facts.code})` : "";
    const kind =
      facts.code && NETWORK_CODES.has(facts.code)
        ? "is unreachable"
        : "could not be reached securely or at all";
    return new StorageError(
      STORAGE_ERROR_CODES.unreachable,
      `The ${where} ${kind}${reason}; check the account name or endpoint and network access`,
      { cause },
    );
  }
  if (facts.status === 404 && facts.code === "ContainerNotFound") {
    return new StorageError(
      STORAGE_ERROR_CODES.containerNotFound,
      `Container "${context.container}" does not exist in ${where}`,
      { field: "container", cause },
    );
  }
  if (facts.status === 403 && facts.code && PERMISSION_CODES.has(facts.code)) {
    return context.operation === "delete"
      ? new StorageError(
          STORAGE_ERROR_CODES.noDelete,
          `The credentials may write but not delete blobs in container "${context.container}" (add the delete permission)`,
          { cause },
        )
      : new StorageError(
          STORAGE_ERROR_CODES.noWrite,
          `The credentials may not ${context.operation === "create" ? "create containers" : "write blobs"} in ${where} (a read-only SAS or role; backups need write, e.g. Storage Blob Data Contributor or SAS permissions racwdl)`,
          { cause },
        );
  }
  if (facts.status === 401 || facts.status === 403) {
    return new StorageError(
      STORAGE_ERROR_CODES.auth,
      `The ${where} refused the credentials (${facts.status}${facts.code ? ` ${facts.code}` : ""}): wrong account key, invalid or expired SAS, or a firewall rule`,
      { cause },
    );
  }
  return new StorageError(
    STORAGE_ERROR_CODES.failed,
    `The ${where} failed to ${context.operation} (status ${facts.status}${facts.code ? `, ${facts.code}` : ""})`,
    { cause },
  );
}

/**
 * A write or delete refused because the blob is protected: a time-based immutability policy or a
 * legal hold (409 BlobImmutableDueToPolicy, BlobImmutableDueToLegalHold, and the like).
 */
export function isImmutabilityRefusal(error: unknown): boolean {
  const { statusCode, code } = (error ?? {}) as { statusCode?: unknown; code?: unknown };
  return statusCode === 409 && typeof code === "string" && /Immutab/i.test(code);
}
