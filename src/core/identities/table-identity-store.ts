import { RestError, type TableClient, type TableEntityResult } from "@azure/data-tables";
import { ConflictError, NotFoundError, PreconditionFailedError } from "../errors.js";
import type { Identity, StoredIdentity } from "./identity.js";
import type { IdentityStore } from "./identity-store.js";

const PARTITION = "identity";

interface IdentityEntity {
  partitionKey: string;
  rowKey: string;
  name: string;
  document: string;
}

/** Identities in Azure Table Storage: one row each, the document as JSON, the row ETag as version. */
export class TableIdentityStore implements IdentityStore {
  constructor(private readonly table: TableClient) {}

  async list(): Promise<StoredIdentity[]> {
    const identities: StoredIdentity[] = [];
    const rows = this.table.listEntities<IdentityEntity>({
      queryOptions: { filter: `PartitionKey eq '${PARTITION}'` },
    });
    for await (const row of rows) identities.push(fromEntity(row));
    return identities.sort((a, b) => a.name.localeCompare(b.name));
  }

  async get(id: string): Promise<StoredIdentity | undefined> {
    try {
      return fromEntity(await this.table.getEntity<IdentityEntity>(PARTITION, id));
    } catch (error) {
      if (isStatus(error, 404)) return undefined;
      throw error;
    }
  }

  async insert(identity: Identity): Promise<StoredIdentity> {
    try {
      const response = await this.table.createEntity(toEntity(identity));
      return { ...identity, etag: response.etag ?? "" };
    } catch (error) {
      if (isStatus(error, 409)) throw new ConflictError(`Identity ${identity.id} already exists`);
      throw error;
    }
  }

  async replace(identity: Identity, etag: string): Promise<StoredIdentity> {
    try {
      const response = await this.table.updateEntity(toEntity(identity), "Replace", { etag });
      return { ...identity, etag: response.etag ?? "" };
    } catch (error) {
      if (isStatus(error, 412))
        throw new PreconditionFailedError(`Identity ${identity.id} was changed by someone else`);
      if (isStatus(error, 404)) throw new NotFoundError(`Identity ${identity.id} not found`);
      throw error;
    }
  }

  async delete(id: string): Promise<boolean> {
    try {
      await this.table.deleteEntity(PARTITION, id);
      return true;
    } catch (error) {
      if (isStatus(error, 404)) return false;
      throw error;
    }
  }
}

function toEntity(identity: Identity): IdentityEntity {
  return {
    partitionKey: PARTITION,
    rowKey: identity.id,
    name: identity.name,
    document: JSON.stringify(identity),
  };
}

function fromEntity(row: TableEntityResult<IdentityEntity>): StoredIdentity {
  return { ...(JSON.parse(row.document) as Identity), etag: row.etag };
}

export function isStatus(error: unknown, status: number): boolean {
  return error instanceof RestError && error.statusCode === status;
}
