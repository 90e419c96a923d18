import type { TokenCredential } from "@azure/identity";
import { SecretClient, type SecretClientOptions } from "@azure/keyvault-secrets";
import { KEY_VAULT_RETRY_OPTIONS } from "../azure-retries.js";
import { AppError, ConfigurationError } from "../errors.js";
import { classifyFailure } from "../failures.js";
import {
  assertSecretName,
  SECRET_STORE_ERROR_CODES,
  type SecretStore,
  SecretStoreError,
} from "./secret-store.js";

export interface KeyVaultSecretStoreOptions {
  /**
   * Passed to `SecretClient` (merged over the defaults below). Tests use
   * `{ disableChallengeResourceVerification: true, tlsOptions: { ca } }`.
   */
  clientOptions?: SecretClientOptions;
  /** Upper bound for one store call, SDK retries and token acquisition included. Default 30 s. */
  operationTimeoutMs?: number;
  /** Interval between polls of delete/recover operations. Default 1 s. */
  pollIntervalMs?: number;
  /** How long `delete` waits for the vault to finish the soft delete before returning. Default 5 s. */
  deleteWaitMs?: number;
  /** How long `set` waits for a deleted secret of the same name to be recovered. Default 20 s. */
  recoverWaitMs?: number;
}

/** Name read by `check()`: it need not exist; a 404 proves reachability, auth and permissions. */
const HEALTH_PROBE_NAME = "arcgis-org-backup-health-probe";

/**
 * The production secret store: Azure Key Vault through the real `SecretClient`.
 *
 * - get: 404 → undefined.
 * - set: a new version. When the name belongs to a soft-deleted secret (409 Conflict: soft delete
 *   and purge protection are on in production) it recovers that secret and then sets the new
 *   value; if recovery is impossible it fails with ERR_SECRET_DELETED_CONFLICT.
 * - delete: starts the soft delete and waits a bounded time for it to finish; 404 is success.
 * - Every failure becomes a SecretStoreError (see SECRET_STORE_ERROR_CODES); messages name the
 *   vault host and the secret name, never a value.
 */
export class KeyVaultSecretStore implements SecretStore {
  readonly kind = "keyvault" as const;
  readonly vaultUrl: string;
  private readonly client: SecretClient;
  private readonly host: string;
  private readonly operationTimeoutMs: number;
  private readonly pollIntervalMs: number;
  private readonly deleteWaitMs: number;
  private readonly recoverWaitMs: number;

  constructor(vaultUrl: string, credential: TokenCredential, options: KeyVaultSecretStoreOptions = {}) {
    const clientOptions = options.clientOptions ?? {};
    let url: URL;
    try {
      url = new URL(vaultUrl);
    } catch {
      throw new ConfigurationError("KEY_VAULT_URL is not a valid URL", "KEY_VAULT_URL");
    }
    if (url.protocol !== "https:" && !(url.protocol === "http:" && clientOptions.allowInsecureConnection)) {
      throw new ConfigurationError("KEY_VAULT_URL must be an https:// URL", "KEY_VAULT_URL");
    }
    if (url.username || url.password || url.search) {
      throw new ConfigurationError("KEY_VAULT_URL must be a plain vault URL", "KEY_VAULT_URL");
    }
    this.vaultUrl = url.origin;
    this.host = url.host;
    this.operationTimeoutMs = options.operationTimeoutMs ?? 30_000;
    this.pollIntervalMs = options.pollIntervalMs ?? 1_000;
    this.deleteWaitMs = options.deleteWaitMs ?? 5_000;
    this.recoverWaitMs = options.recoverWaitMs ?? 20_000;
    this.client = new SecretClient(this.vaultUrl, credential, {
      ...clientOptions,
      retryOptions: { ...KEY_VAULT_RETRY_OPTIONS, ...clientOptions.retryOptions },
    });
  }

  async get(name: string): Promise<string | undefined> {
    assertSecretName(name);
    return this.run("read", name, async (abortSignal) => {
      try {
        const secret = await this.client.getSecret(name, { abortSignal });
        return secret.value;
      } catch (error) {
        if (statusOf(error) === 404) return undefined;
        throw error;
      }
    });
  }

  async set(name: string, value: string, tags?: Record<string, string>): Promise<void> {
    assertSecretName(name);
    if (typeof value !== "string") throw new TypeError("Secret values are strings");
    await this.run("write", name, async (abortSignal) => {
      const options = { abortSignal, ...(tags ? { tags } : {}) };
      try {
        await this.client.setSecret(name, value, options);
        return;
      } catch (error) {
        if (statusOf(error) !== 409) throw error;
      }
      await this.recoverDeleted(name, abortSignal);
      await this.client.setSecret(name, value, options);
    });
  }

  async delete(name: string): Promise<void> {
    assertSecretName(name);
    await this.run("delete", name, async (abortSignal) => {
      let poller: Awaited<ReturnType<SecretClient["beginDeleteSecret"]>>;
      try {
        poller = await this.client.beginDeleteSecret(name, {
          abortSignal,
          intervalInMs: this.pollIntervalMs,
        });
      } catch (error) {
        if (statusOf(error) === 404) return;
        throw error;
      }
      // The secret is gone for get/set from here; waiting lets a quick re-set find it in the
      // deleted state (recoverable) rather than mid-deletion. Bounded, and failures are moot.
      try {
        await settle(poller, Date.now() + this.deleteWaitMs, this.pollIntervalMs, abortSignal);
      } catch {
        // The delete was accepted; the soft delete finishes on the vault's side.
      }
    });
  }

  async list(prefix = ""): Promise<string[]> {
    return this.run("list", undefined, async (abortSignal) => {
      const names: string[] = [];
      for await (const properties of this.client.listPropertiesOfSecrets({ abortSignal })) {
        if (properties.name.startsWith(prefix)) names.push(properties.name);
      }
      return names.sort();
    });
  }

  async check(): Promise<void> {
    await this.run("read", HEALTH_PROBE_NAME, async (abortSignal) => {
      try {
        await this.client.getSecret(HEALTH_PROBE_NAME, { abortSignal });
      } catch (error) {
        if (statusOf(error) !== 404) throw error;
      }
    });
  }

  /** Recovers a soft-deleted secret so its name can be used again (bounded by recoverWaitMs). */
  private async recoverDeleted(name: string, abortSignal: AbortSignal): Promise<void> {
    const deadline = Date.now() + this.recoverWaitMs;
    for (;;) {
      try {
        const poller = await this.client.beginRecoverDeletedSecret(name, {
          abortSignal,
          intervalInMs: this.pollIntervalMs,
        });
        if (await settle(poller, deadline, this.pollIntervalMs, abortSignal)) return;
        break;
      } catch (error) {
        const status = statusOf(error);
        // 404: no longer in the deleted state (purged meanwhile) — the set can simply be retried.
        if (status === 404) return;
        // 409: still being deleted; try again shortly.
        if (status !== 409) throw error;
      }
      if (Date.now() + this.pollIntervalMs >= deadline) break;
      await delay(this.pollIntervalMs, abortSignal);
    }
    throw new SecretStoreError(
      SECRET_STORE_ERROR_CODES.deletedConflict,
      `The secret name "${name}" is held by a deleted secret in Key Vault ${this.host} that could not be recovered in time; recover or purge it (az keyvault secret recover/purge) and try again`,
    );
  }

  private async run<T>(
    action: string,
    name: string | undefined,
    work: (signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    const signal = AbortSignal.timeout(this.operationTimeoutMs);
    try {
      return await work(signal);
    } catch (error) {
      throw this.translate(error, action, name, signal.aborted);
    }
  }

  private translate(error: unknown, action: string, name: string | undefined, timedOut: boolean): Error {
    if (error instanceof AppError) return error;
    const what = name ? `secret "${name}"` : "secrets";
    const where = `Key Vault ${this.host}`;
    const status = statusOf(error);
    const code = stringProp(error, "code");
    const errorName = stringProp(error, "name");
    const summary = new Error(
      [
        `${action} ${what}`,
        status === undefined ? undefined : `status ${status}`,
        code ? `code ${code}` : undefined,
        innerCode(error) ? `inner ${innerCode(error)}` : undefined,
        errorName ? `(${errorName})` : undefined,
      ]
        .filter(Boolean)
        .join(", "),
    );
    if (timedOut || errorName === "AbortError") {
      return new SecretStoreError(
        SECRET_STORE_ERROR_CODES.unreachable,
        `${where} did not answer within ${this.operationTimeoutMs} ms (${action} ${what})`,
        summary,
      );
    }
    if (
      errorName === "CredentialUnavailableError" ||
      errorName === "AuthenticationError" ||
      errorName === "AggregateAuthenticationError"
    ) {
      return new SecretStoreError(
        SECRET_STORE_ERROR_CODES.auth,
        `The app could not get a token for ${where}: no usable managed identity (check that the identity is assigned and AZURE_CLIENT_ID names it)`,
        summary,
      );
    }
    if (status === 401) {
      return new SecretStoreError(
        SECRET_STORE_ERROR_CODES.auth,
        `${where} rejected the app's token (401); check the tenant and the managed identity`,
        summary,
      );
    }
    if (status === 403 && innerCode(error) === "SecretDisabled") {
      return new SecretStoreError(
        SECRET_STORE_ERROR_CODES.failed,
        `The ${what} is disabled in ${where}; enable it or set a new value`,
        summary,
      );
    }
    if (status === 403 && innerCode(error) === "ForbiddenByFirewall") {
      return new SecretStoreError(
        SECRET_STORE_ERROR_CODES.forbidden,
        `${where} refused to ${action} ${what} (403 ForbiddenByFirewall): the vault's firewall or network rules do not admit the app; allow its outbound addresses, VNet or private endpoint`,
        summary,
      );
    }
    if (status === 403) {
      return new SecretStoreError(
        SECRET_STORE_ERROR_CODES.forbidden,
        `${where} refused to ${action} ${what} (403 Forbidden): the app's identity lacks the "Key Vault Secrets Officer" role on the vault (or, with access policies, get/list/set/delete/recover secret permissions); a network rule or firewall on the vault can also cause this`,
        summary,
      );
    }
    if (status === undefined) {
      const reason = code ? ` (${code})` : "";
      return new SecretStoreError(
        SECRET_STORE_ERROR_CODES.unreachable,
        `${where} is unreachable${reason}; check KEY_VAULT_URL, DNS, private endpoint and network settings`,
        summary,
      );
    }
    if (status === 409) {
      return new SecretStoreError(
        SECRET_STORE_ERROR_CODES.deletedConflict,
        `${where} answered 409 Conflict for ${what}; it may be held by a deleted secret`,
        summary,
      );
    }
    return new SecretStoreError(
      SECRET_STORE_ERROR_CODES.failed,
      `${where} failed to ${action} ${what} (status ${status}${code ? `, ${code}` : ""})`,
      summary,
      classifyFailure(error),
    );
  }
}

interface PollerLike {
  isDone(): boolean;
  poll(options?: { abortSignal?: AbortSignal }): Promise<void>;
}

/** Polls until done or the deadline; true when done. */
async function settle(
  poller: PollerLike,
  deadline: number,
  intervalMs: number,
  abortSignal: AbortSignal,
): Promise<boolean> {
  while (!poller.isDone()) {
    if (Date.now() + intervalMs > deadline) return false;
    await delay(intervalMs, abortSignal);
    await poller.poll({ abortSignal });
  }
  return true;
}

function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

function statusOf(error: unknown): number | undefined {
  const status = (error as { statusCode?: unknown } | null)?.statusCode;
  return typeof status === "number" ? status : undefined;
}

function stringProp(error: unknown, key: "code" | "name"): string | undefined {
  const value = (error as Record<string, unknown> | null)?.[key];
  return typeof value === "string" ? value : undefined;
}

function innerCode(error: unknown): string | undefined {
  const details = (error as { details?: { error?: { innererror?: { code?: unknown } } } } | null)?.details;
  const code = details?.error?.innererror?.code;
  return typeof code === "string" ? code : undefined;
}
