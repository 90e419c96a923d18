import { randomUUID } from "node:crypto";
import type { TokenCredential } from "@azure/identity";
import type { ContainerClient, StorageRetryOptions } from "@azure/storage-blob";
import { AppError } from "../errors.js";
import { parseInput } from "../validation.js";
import { type BlobStorageTarget, openBlobContainer } from "./blob-container.js";
import {
  isImmutabilityRefusal,
  STORAGE_ERROR_CODES,
  type StorageErrorCode,
  storageFailureFacts,
  toStorageError,
} from "./storage-errors.js";
import { storageCheckInputSchema } from "./storage-input.js";

/** Body of POST /api/storage/check ("Check Azure Credentials"). */
export type StorageCheckInput = BlobStorageTarget & { createIfMissing?: boolean };

export type StorageCheckErrorCode = StorageErrorCode | "ERR_VALIDATION";

export type StorageCheckResult =
  | {
      ok: true;
      account: string;
      container: string;
      containerCreated: boolean;
      /** The probe could not be deleted because the container is immutable (WORM): it stays. */
      immutable?: true;
    }
  | { ok: false; error: { code: StorageCheckErrorCode; message: string; field?: string } };

export interface StorageCheckOptions {
  /** For accountUrl targets: the app's managed identity. */
  credential?: TokenCredential;
  allowInsecureLoopback?: boolean;
  /** Upper bound for the whole check (an abortSignal on every call). Default 15 s. */
  timeoutMs?: number;
  /** Merged over CHECK_RETRY_OPTIONS. */
  retryOptions?: StorageRetryOptions;
}

/**
 * A check must answer while the user waits: 2 tries 0.3 s apart (8 s server-side timeout). An
 * unknown host or a closed port fails in well under a second; a host that never answers is cut
 * off by the check's deadline (timeoutMs).
 */
export const CHECK_RETRY_OPTIONS: Readonly<StorageRetryOptions> = {
  maxTries: 2,
  tryTimeoutInMs: 8_000,
  retryDelayInMs: 300,
  maxRetryDelayInMs: 1_000,
};

/** Probe blobs live under this prefix and are deleted at once. */
export const PROBE_PREFIX = ".arcgis-org-backup-probe/";

/**
 * HTTP status the trigger answers for a check result:
 * - 200 for `ok: true`, and for every outcome of a check that ran (auth, unreachable, missing
 *   container, no write/delete, other service errors): the request was fine, the answer is
 *   "these credentials do not work, because…" in the body.
 * - 400 for input the check could not run with (ERR_VALIDATION, ERR_STORAGE_CONNECTION_STRING).
 * - 500 for ERR_STORAGE_NO_CREDENTIAL (the app itself lacks a managed identity credential).
 */
export function storageCheckHttpStatus(result: StorageCheckResult | StorageCheckErrorCode): number {
  const code = typeof result === "string" ? result : result.ok ? undefined : result.error.code;
  if (code === undefined) return 200;
  if (code === "ERR_VALIDATION" || code === STORAGE_ERROR_CODES.connectionString) return 400;
  if (code === STORAGE_ERROR_CODES.noCredential) return 500;
  return 200;
}

/** Checks the body (unknown fields refused, wrong types named); never echoes a value. */
export function parseStorageCheckInput(input: unknown): StorageCheckInput {
  const body = parseInput(storageCheckInputSchema, input);
  const { container, createIfMissing = false } = body;
  return body.connectionString !== undefined
    ? { type: "azure-blob", container, connectionString: body.connectionString, createIfMissing }
    : { type: "azure-blob", container, accountUrl: body.accountUrl!, createIfMissing };
}

/**
 * "Check Azure Credentials": proves the target can hold backups by really writing a small
 * probe blob (`.arcgis-org-backup-probe/<uuid>`) and deleting it. With createIfMissing a missing
 * container is created first. Never throws for a failed check: returns `ok: false` with a
 * stable code; messages never contain the connection string, key or SAS.
 */
export async function checkStorage(
  input: unknown,
  options: StorageCheckOptions = {},
): Promise<StorageCheckResult> {
  let target: StorageCheckInput;
  let container: ContainerClient;
  try {
    target = parseStorageCheckInput(input);
    container = openBlobContainer(target, {
      ...(options.credential ? { credential: options.credential } : {}),
      allowInsecureLoopback: options.allowInsecureLoopback === true,
      retryOptions: { ...CHECK_RETRY_OPTIONS, ...options.retryOptions },
    });
  } catch (error) {
    return failure(error);
  }

  const account = container.accountName;
  const timeoutMs = options.timeoutMs ?? 15_000;
  const abortSignal = AbortSignal.timeout(timeoutMs);
  const probe = container.getBlockBlobClient(`${PROBE_PREFIX}${randomUUID()}`);
  const body = `arcgis-org-backup storage check ${new Date().toISOString()}\n`;
  const upload = () =>
    probe.upload(body, Buffer.byteLength(body), {
      abortSignal,
      blobHTTPHeaders: { blobContentType: "text/plain; charset=utf-8" },
    });
  let operation: "write" | "create" | "delete" = "write";
  let containerCreated = false;
  const context = () => ({
    account,
    container: target.container,
    operation,
    timedOut: abortSignal.aborted,
  });

  try {
    try {
      await upload();
    } catch (error) {
      const facts = storageFailureFacts(error);
      if (!(target.createIfMissing && facts.status === 404 && facts.code === "ContainerNotFound"))
        throw error;
      operation = "create";
      try {
        await container.create({ abortSignal });
        containerCreated = true;
      } catch (createError) {
        // Created meanwhile by someone else: fine.
        if (storageFailureFacts(createError).code !== "ContainerAlreadyExists") throw createError;
      }
      operation = "write";
      await upload();
    }
    operation = "delete";
    await probe.delete({ abortSignal });
  } catch (error) {
    // A container under an immutability policy (WORM) keeps its blobs by design: the probe stays
    // until the policy lets it go, and backups work as they should.
    if (operation === "delete" && isImmutabilityRefusal(error)) {
      return { ok: true, account, container: target.container, containerCreated, immutable: true };
    }
    return failure(toStorageError(error, context()));
  }
  return { ok: true, account, container: target.container, containerCreated };
}

function failure(error: unknown): StorageCheckResult {
  if (error instanceof AppError) {
    return {
      ok: false,
      error: {
        code: error.code as StorageCheckErrorCode,
        message: error.message,
        ...(error.field ? { field: error.field } : {}),
      },
    };
  }
  // Unexpected (a bug): do not pass on a message that could hold anything.
  return {
    ok: false,
    error: { code: STORAGE_ERROR_CODES.failed, message: "The storage check failed unexpectedly" },
  };
}
