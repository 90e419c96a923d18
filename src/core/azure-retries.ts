import type { StorageRetryOptions } from "@azure/storage-blob";

// The retry policies of the Azure SDKs, in one place. Each SDK retries on its own what is worth
// it (5xx, Azure's 503 ServerBusy and 500 OperationTimedOut, 408, 429, dropped connections), with
// exponential backoff; nothing above it retries the same call again. A failure that outlasts
// these retries pauses the batch that met it (see outage.ts and the README, "Failures and retries").

/**
 * Backup containers (Blob): 4 tries, 1 s growing to 16 s between them; tryTimeoutInMs 2 min.
 *
 * Measured with @azure/storage-blob 12.32: its retry policy (StorageRetryPolicyV2) only sends
 * tryTimeoutInMs to the service as the `timeout` query parameter (whole seconds) — it does not
 * cut off a try on the client side. A host that accepts connections and never answers is
 * therefore bounded only by an `abortSignal` on the call: callers pass one (checkStorage does).
 */
export const BLOB_RETRY_OPTIONS: Readonly<StorageRetryOptions> = {
  maxTries: 4,
  tryTimeoutInMs: 120_000,
  retryDelayInMs: 1_000,
  maxRetryDelayInMs: 16_000,
};

/**
 * Blob downloads: a body cut short is read on from the byte it reached, at once, up to 3 times
 * (the SDK's `maxRetryRequests`; each re-read is a request with the retries above). What the SDK
 * reads whole (a listing, an error answer) is not read again: cut short, it reaches the caller as
 * `transient`, for the layer above (a paused batch, an activity retry).
 */
export const BLOB_BODY_REREADS = 3;

/** The app's own tables (identities, runs, org governors): 5 tries, 200 ms growing to 5 s apart. */
export const TABLE_RETRY_OPTIONS = { maxRetries: 4, retryDelayInMs: 200, maxRetryDelayInMs: 5_000 } as const;

/** Key Vault: 4 tries, 0.5 s growing to 4 s apart, within each operation's own timeout. */
export const KEY_VAULT_RETRY_OPTIONS = {
  maxRetries: 3,
  retryDelayInMs: 500,
  maxRetryDelayInMs: 4_000,
} as const;
