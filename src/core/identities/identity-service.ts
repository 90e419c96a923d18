import { randomUUID } from "node:crypto";
import { toSharingUrl } from "../arcgis/portal-url.js";
import { NotFoundError, PreconditionFailedError, ValidationError } from "../errors.js";
import { checkCacheDirectory } from "../fs-checks.js";
import type { Logger } from "../log.js";
import { parseNcrontab } from "../schedule.js";
import type { SecretStore } from "../secrets/secret-store.js";
import { identitySecretName, identitySecretPrefix } from "../secrets/secret-store.js";
import { parseAccountUrl, parseBlobConnectionString } from "../storage/blob-container.js";
import { parseInput } from "../validation.js";
import {
  DEFAULT_BUDGET_SHARE,
  type Identity,
  type IdentityInput,
  type IdentityView,
  identityInputSchema,
  identityPatchSchema,
  SECRET_FIELDS,
  type SecretField,
  type StoredAuth,
  type StoredIdentity,
  type StoredStorage,
  toView,
} from "./identity.js";
import type { IdentityStore } from "./identity-store.js";

export interface IdentityServiceOptions {
  store: IdentityStore;
  secrets: SecretStore;
  allowInsecureLoopback: boolean;
  cacheRoot: string;
  log: Logger;
  now?: () => Date;
}

const IDENTITY_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

type SecretValues = Partial<Record<SecretField, string>>;

const SECRET_NAME_FIELD: Record<SecretField, string> = {
  password: "password",
  clientSecret: "client-secret",
  refreshToken: "refresh-token",
  connectionString: "connection-string",
};

/**
 * The "Manage Identities" use cases. Secrets go to the secret store, the rest to the identity
 * store, ordered so that no row ever points at a missing secret: secrets are written before
 * the row and removed after it, and a failed row write rolls the secrets back.
 */
export class IdentityService {
  constructor(private readonly options: IdentityServiceOptions) {}

  async list(): Promise<IdentityView[]> {
    return (await this.options.store.list()).map(toView);
  }

  async get(id: string): Promise<StoredIdentity> {
    const identity = await this.find(id);
    if (!identity) throw new NotFoundError(`Identity ${id} not found`);
    return identity;
  }

  /** The identity, or undefined when there is none of that id (say, deleted). */
  async find(id: string): Promise<StoredIdentity | undefined> {
    return IDENTITY_ID.test(id) ? await this.options.store.get(id) : undefined;
  }

  async create(body: unknown): Promise<StoredIdentity> {
    const input = parseInput(identityInputSchema, body);
    const id = randomUUID();
    const now = this.now();
    const { auth, secrets: authSecrets } = splitAuth(input.auth);
    const { storage, secrets: storageSecrets } = splitStorage(input.storage);
    const draft: Identity = {
      id,
      name: input.name,
      kind: input.kind,
      portalUrl: input.portalUrl,
      sharingUrl: "",
      auth,
      storage,
      // Relative to CACHE_ROOT; stored as the real absolute path once checked.
      cacheDirectory: input.cacheDirectory ?? id,
      maxOrgBudgetShare: input.maxOrgBudgetShare ?? DEFAULT_BUDGET_SHARE,
      secretNames: {},
      createdAt: now,
      updatedAt: now,
      ...(input.schedule ? { schedule: input.schedule } : {}),
      ...(input.retention ? { retention: input.retention } : {}),
    };
    const identity = await this.validated(draft, {
      checkCache: true,
      connectionString: storageSecrets.connectionString,
    });
    const values = { ...authSecrets, ...storageSecrets };
    identity.secretNames = await this.writeSecrets(id, values);
    try {
      return await this.options.store.insert(identity);
    } catch (error) {
      await this.removeSecrets(id, Object.values(identity.secretNames), "create failed");
      throw error;
    }
  }

  async update(id: string, body: unknown, ifMatch: string | undefined): Promise<StoredIdentity> {
    const patch = parseInput(identityPatchSchema, body);
    const current = await this.get(id);
    if (ifMatch && ifMatch !== "*" && ifMatch !== current.etag) {
      throw new PreconditionFailedError(`Identity ${id} was changed since etag ${ifMatch}`);
    }
    const next: Identity = { ...stripEtag(current), updatedAt: this.now() };
    if (patch.name !== undefined) next.name = patch.name;
    if (patch.kind !== undefined) next.kind = patch.kind;
    if (patch.portalUrl !== undefined) next.portalUrl = patch.portalUrl;
    if (patch.cacheDirectory !== undefined) next.cacheDirectory = patch.cacheDirectory;
    if (patch.maxOrgBudgetShare !== undefined) next.maxOrgBudgetShare = patch.maxOrgBudgetShare;
    if (patch.schedule === null) delete next.schedule;
    else if (patch.schedule !== undefined) next.schedule = patch.schedule;
    if (patch.retention === null) delete next.retention;
    else if (patch.retention !== undefined) next.retention = patch.retention;

    const newValues: SecretValues = {};
    const keep = new Set<SecretField>(SECRET_FIELDS.filter((field) => current.secretNames[field]));
    if (patch.auth) {
      const sameType = patch.auth.type === current.auth.type;
      const merged = mergeAuth(patch.auth, sameType, current.auth);
      next.auth = merged.auth;
      for (const field of ["password", "clientSecret", "refreshToken"] as const) {
        if (merged.secrets[field] !== undefined) newValues[field] = merged.secrets[field];
        if (!merged.keep.has(field)) keep.delete(field);
      }
    }
    if (patch.storage) {
      next.storage = { type: "azure-blob", container: patch.storage.container };
      if (patch.storage.connectionString !== undefined && patch.storage.accountUrl !== undefined) {
        throw new ValidationError(
          "give exactly one of connectionString or accountUrl",
          "storage.connectionString",
        );
      }
      if (patch.storage.connectionString !== undefined)
        newValues.connectionString = patch.storage.connectionString;
      else if (patch.storage.accountUrl !== undefined) {
        next.storage.accountUrl = patch.storage.accountUrl;
        keep.delete("connectionString");
      } else if (current.storage.accountUrl) next.storage.accountUrl = current.storage.accountUrl;
      else if (!current.secretNames.connectionString) {
        throw new ValidationError(
          "storage.connectionString or storage.accountUrl is required",
          "storage.connectionString",
        );
      }
    }
    const identity = await this.validated(next, {
      checkCache: patch.cacheDirectory !== undefined,
      connectionString: newValues.connectionString,
    });

    // New values first (remembering the old ones), then the row, then drop what is unused.
    const previous = await this.readSecrets(current, Object.keys(newValues) as SecretField[]);
    const written = await this.writeSecrets(id, newValues);
    identity.secretNames = {};
    for (const field of SECRET_FIELDS) {
      const name = written[field] ?? (keep.has(field) ? current.secretNames[field] : undefined);
      if (name) identity.secretNames[field] = name;
    }
    let saved: StoredIdentity;
    try {
      saved = await this.options.store.replace(identity, current.etag);
    } catch (error) {
      await this.restoreSecrets(id, written, previous);
      throw error;
    }
    const unused = SECRET_FIELDS.filter((f) => current.secretNames[f] && !saved.secretNames[f]).map(
      (f) => current.secretNames[f] as string,
    );
    await this.removeSecrets(id, unused, "no longer used");
    return saved;
  }

  async delete(id: string): Promise<void> {
    const current = await this.get(id);
    if (!(await this.options.store.delete(id))) throw new NotFoundError(`Identity ${id} not found`);
    let names = Object.values(current.secretNames);
    try {
      names = [...new Set([...names, ...(await this.options.secrets.list(identitySecretPrefix(id)))])];
    } catch {
      // Listing is a sweep for strays; the named secrets are deleted regardless.
    }
    await this.removeSecrets(id, names, "identity deleted");
  }

  /** Secret values for a backup or a verification; never returned by the API. */
  async secretsOf(identity: Identity): Promise<SecretValues> {
    return this.readSecrets(
      identity,
      SECRET_FIELDS.filter((f) => identity.secretNames[f]),
    );
  }

  /** Stores a (new or rotated) refresh token and what the OAuth flow learned. */
  async saveRefreshToken(
    id: string,
    token: {
      refreshToken: string;
      expiresAt: number | undefined;
      username?: string | undefined;
      redirectUri?: string | undefined;
    },
  ): Promise<StoredIdentity> {
    for (let attempt = 0; ; attempt++) {
      const current = await this.get(id);
      if (current.auth.type !== "oauth2-user") {
        throw new ValidationError("This identity does not use oauth2-user sign-in", "auth.type");
      }
      const name = identitySecretName(id, SECRET_NAME_FIELD.refreshToken);
      await this.options.secrets.set(name, token.refreshToken, { identityId: id, field: "refreshToken" });
      const auth: StoredAuth = { ...current.auth };
      if (token.username) auth.username = token.username;
      if (token.redirectUri) auth.redirectUri = token.redirectUri;
      if (token.expiresAt !== undefined) auth.refreshTokenExpiresAt = token.expiresAt;
      else delete auth.refreshTokenExpiresAt;
      const next: Identity = {
        ...stripEtag(current),
        auth,
        secretNames: { ...current.secretNames, refreshToken: name },
        updatedAt: this.now(),
      };
      try {
        return await this.options.store.replace(next, current.etag);
      } catch (error) {
        if (!(error instanceof PreconditionFailedError) || attempt >= 3) throw error;
      }
    }
  }

  /** Records something about the identity that is not user input (verification, scheduling). */
  async record(id: string, change: (identity: Identity) => void): Promise<StoredIdentity> {
    for (let attempt = 0; ; attempt++) {
      const current = await this.get(id);
      const next = stripEtag(current);
      change(next);
      try {
        return await this.options.store.replace(next, current.etag);
      } catch (error) {
        if (!(error instanceof PreconditionFailedError) || attempt >= 3) throw error;
      }
    }
  }

  /** Checks what a save brings; a new connection string is checked as the storage check does. */
  private async validated(
    identity: Identity,
    options: { checkCache: boolean; connectionString: string | undefined },
  ): Promise<Identity> {
    const { allowInsecureLoopback, cacheRoot } = this.options;
    identity.sharingUrl = toSharingUrl(identity.kind, identity.portalUrl, allowInsecureLoopback);
    if (identity.storage.accountUrl) {
      const url = parseAccountUrl(identity.storage.accountUrl, {
        allowInsecureLoopback,
        field: "storage.accountUrl",
      });
      identity.storage.accountUrl = url.toString().replace(/\/+$/, "");
    }
    if (options.connectionString !== undefined) {
      parseBlobConnectionString(options.connectionString, {
        allowInsecureLoopback,
        field: "storage.connectionString",
      });
    }
    if (identity.schedule) parseNcrontab(identity.schedule.cron, "schedule.cron");
    if (options.checkCache) {
      identity.cacheDirectory = await checkCacheDirectory(
        identity.cacheDirectory,
        cacheRoot,
        "cacheDirectory",
      );
    }
    return identity;
  }

  private async writeSecrets(
    id: string,
    values: SecretValues,
  ): Promise<Partial<Record<SecretField, string>>> {
    const written: Partial<Record<SecretField, string>> = {};
    try {
      for (const field of SECRET_FIELDS) {
        const value = values[field];
        if (value === undefined) continue;
        const name = identitySecretName(id, SECRET_NAME_FIELD[field]);
        await this.options.secrets.set(name, value, { identityId: id, field });
        written[field] = name;
      }
    } catch (error) {
      await this.removeSecrets(id, Object.values(written), "write failed");
      throw error;
    }
    return written;
  }

  private async readSecrets(identity: Identity, fields: SecretField[]): Promise<SecretValues> {
    const values: SecretValues = {};
    for (const field of fields) {
      const name = identity.secretNames[field];
      if (!name) continue;
      const value = await this.options.secrets.get(name);
      if (value !== undefined) values[field] = value;
    }
    return values;
  }

  /** After a failed row write: put back the values that were overwritten, drop the new ones. */
  private async restoreSecrets(
    id: string,
    written: Partial<Record<SecretField, string>>,
    previous: SecretValues,
  ) {
    for (const field of SECRET_FIELDS) {
      const name = written[field];
      if (!name) continue;
      const old = previous[field];
      try {
        if (old === undefined) await this.options.secrets.delete(name);
        else await this.options.secrets.set(name, old, { identityId: id, field });
      } catch {
        this.options.log.warn("Could not roll back a secret after a failed identity update", {
          identityId: id,
          secretName: name,
        });
      }
    }
  }

  /** Deletes secrets; one that cannot be deleted is reported by name, never silently orphaned. */
  private async removeSecrets(id: string, names: string[], reason: string): Promise<void> {
    for (const name of names) {
      try {
        await this.options.secrets.delete(name);
      } catch (error) {
        this.options.log.warn(`Orphaned secret: could not delete it (${reason}); delete it by hand`, {
          identityId: id,
          secretName: name,
          errorCode: (error as { code?: string }).code ?? "unknown",
        });
      }
    }
  }

  private now(): string {
    return (this.options.now?.() ?? new Date()).toISOString();
  }
}

function stripEtag(identity: StoredIdentity): Identity {
  const { etag: _etag, ...rest } = identity;
  return structuredClone(rest);
}

function splitAuth(auth: IdentityInput["auth"]): { auth: StoredAuth; secrets: SecretValues } {
  switch (auth.type) {
    case "builtin":
      return { auth: { type: "builtin", username: auth.username }, secrets: { password: auth.password } };
    case "oauth2-app":
      return {
        auth: { type: "oauth2-app", clientId: auth.clientId },
        secrets: { clientSecret: auth.clientSecret },
      };
    case "oauth2-user":
      return { auth: { type: "oauth2-user", clientId: auth.clientId }, secrets: {} };
  }
}

function splitStorage(storage: IdentityInput["storage"]): { storage: StoredStorage; secrets: SecretValues } {
  if (storage.connectionString !== undefined) {
    return {
      storage: { type: "azure-blob", container: storage.container },
      secrets: { connectionString: storage.connectionString },
    };
  }
  return {
    storage: { type: "azure-blob", container: storage.container, accountUrl: storage.accountUrl! },
    secrets: {},
  };
}

type AuthPatch =
  | { type: "builtin"; username: string; password?: string | undefined }
  | { type: "oauth2-app"; clientId: string; clientSecret?: string | undefined }
  | { type: "oauth2-user"; clientId: string };

/** A PATCHed auth block: a secret left out keeps its value only when the auth type is unchanged. */
function mergeAuth(
  patch: AuthPatch,
  sameType: boolean,
  current: StoredAuth,
): { auth: StoredAuth; secrets: SecretValues; keep: Set<SecretField> } {
  switch (patch.type) {
    case "builtin":
      if (patch.password === undefined && !sameType)
        throw new ValidationError("auth.password is required", "auth.password");
      return {
        auth: { type: "builtin", username: patch.username },
        secrets: patch.password === undefined ? {} : { password: patch.password },
        keep: new Set(["password"]),
      };
    case "oauth2-app":
      if (patch.clientSecret === undefined && !sameType) {
        throw new ValidationError("auth.clientSecret is required", "auth.clientSecret");
      }
      return {
        auth: { type: "oauth2-app", clientId: patch.clientId },
        secrets: patch.clientSecret === undefined ? {} : { clientSecret: patch.clientSecret },
        keep: new Set(["clientSecret"]),
      };
    case "oauth2-user": {
      // A new app id invalidates the stored sign-in.
      const keepSignIn = sameType && current.type === "oauth2-user" && current.clientId === patch.clientId;
      const auth: StoredAuth = keepSignIn
        ? { ...current, type: "oauth2-user" }
        : { type: "oauth2-user", clientId: patch.clientId };
      return { auth, secrets: {}, keep: new Set(keepSignIn ? ["refreshToken"] : []) };
    }
  }
}
