import { AppError, ValidationError } from "../errors.js";
import type { ClassifiedError, FailureKind } from "../failures.js";

/**
 * Where the app keeps secrets (ArcGIS client secrets and refresh tokens, storage connection
 * strings). Values never leave through errors, logs or return values other than `get`.
 *
 * Implementations: Key Vault (production) and a 0600 JSON file (local development only).
 */
export interface SecretStore {
  readonly kind: "keyvault" | "file";
  /** The current value, or undefined when there is no such secret (or it was deleted). */
  get(name: string): Promise<string | undefined>;
  /** Creates or replaces the value (Key Vault: a new version). */
  set(name: string, value: string, tags?: Record<string, string>): Promise<void>;
  /** Removes the secret; succeeds when it does not exist (idempotent). */
  delete(name: string): Promise<void>;
  /** Names of the current secrets that start with `prefix` (never values), sorted. */
  list(prefix?: string): Promise<string[]>;
  /** Proves the store is reachable and usable, for /api/health; throws a SecretStoreError. */
  check(): Promise<void>;
}

/** Stable codes of secret store failures (`AppError.code`). */
export const SECRET_STORE_ERROR_CODES = {
  /** The vault could not be reached (DNS, connection refused, TLS, timeout). 503. */
  unreachable: "ERR_SECRET_STORE_UNREACHABLE",
  /** The app's identity has no data-plane permission on the vault (403). 500: a deployment fault. */
  forbidden: "ERR_SECRET_STORE_FORBIDDEN",
  /** The app could not get a token (no managed identity, wrong client id) or the vault refused it (401). 500. */
  auth: "ERR_SECRET_STORE_AUTH",
  /** The name is held by a deleted secret that could not be recovered (soft delete / purge protection). 409. */
  deletedConflict: "ERR_SECRET_DELETED_CONFLICT",
  /** The development secret file is unreadable, corrupt or not writable. 500. */
  file: "ERR_SECRET_STORE_FILE",
  /** Any other failure answered by the store. 502. */
  failed: "ERR_SECRET_STORE",
} as const;

export type SecretStoreErrorCode = (typeof SECRET_STORE_ERROR_CODES)[keyof typeof SECRET_STORE_ERROR_CODES];

const STATUS: Record<SecretStoreErrorCode, number> = {
  ERR_SECRET_STORE_UNREACHABLE: 503,
  ERR_SECRET_STORE_FORBIDDEN: 500,
  ERR_SECRET_STORE_AUTH: 500,
  ERR_SECRET_DELETED_CONFLICT: 409,
  ERR_SECRET_STORE_FILE: 500,
  ERR_SECRET_STORE: 502,
};

/**
 * A secret store failure. The message says what went wrong and what to do; it never holds a
 * secret value. `cause` (non-enumerable) is a sanitized summary, never the SDK's raw error
 * (whose request could carry the value being set).
 */
export class SecretStoreError extends AppError implements ClassifiedError {
  /** Unreachable is transient; an answer of the store keeps the kind of that answer (a 503 too). */
  readonly failureKind: FailureKind;

  constructor(code: SecretStoreErrorCode, message: string, cause?: unknown, failureKind?: FailureKind) {
    super(message, { code, status: STATUS[code], ...(cause === undefined ? {} : { cause }) });
    this.failureKind =
      failureKind ?? (code === SECRET_STORE_ERROR_CODES.unreachable ? "transient" : "permanent");
  }
}

/** Key Vault's rule for secret names; the file store uses the same so both behave alike. */
export const SECRET_NAME_PATTERN = /^[0-9a-zA-Z-]{1,127}$/;

export function isValidSecretName(name: string): boolean {
  return SECRET_NAME_PATTERN.test(name);
}

/** Throws a ValidationError (field "secretName") unless `name` is a valid secret name. */
export function assertSecretName(name: string): void {
  if (typeof name !== "string" || !isValidSecretName(name)) {
    throw new ValidationError(
      "Secret names must be 1-127 characters of letters, digits and hyphens",
      "secretName",
    );
  }
}

const IDENTITY_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const FIELD = /^[0-9a-z]+(?:-[0-9a-z]+)*$/;

/**
 * The secret name for one field of one identity: `idn-<identityId>-<field>`, e.g.
 * `idn-0f8fad5b-d9cb-469f-a165-70867728950e-client-secret`. The identity id must be a lowercase
 * uuid and the field lowercase letters/digits/hyphens.
 */
export function identitySecretName(identityId: string, field: string): string {
  if (!IDENTITY_ID.test(identityId)) {
    throw new ValidationError("Identity ids are lowercase uuids", "identityId");
  }
  if (!FIELD.test(field)) {
    throw new ValidationError("Secret fields are lowercase letters, digits and single hyphens", "field");
  }
  const name = `idn-${identityId}-${field}`;
  assertSecretName(name);
  return name;
}

/** The prefix every secret of one identity starts with (for `list` when deleting an identity). */
export function identitySecretPrefix(identityId: string): string {
  if (!IDENTITY_ID.test(identityId)) {
    throw new ValidationError("Identity ids are lowercase uuids", "identityId");
  }
  return `idn-${identityId}-`;
}
