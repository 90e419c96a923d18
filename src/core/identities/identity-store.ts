import type { Identity, StoredIdentity } from "./identity.js";

/** Port: where identities (without secrets) are kept, with optimistic concurrency. */
export interface IdentityStore {
  list(): Promise<StoredIdentity[]>;
  get(id: string): Promise<StoredIdentity | undefined>;
  /** Fails with ConflictError when the id exists. */
  insert(identity: Identity): Promise<StoredIdentity>;
  /** Fails with PreconditionFailedError when `etag` is stale, NotFoundError when gone. */
  replace(identity: Identity, etag: string): Promise<StoredIdentity>;
  /** True when something was deleted. */
  delete(id: string): Promise<boolean>;
}
