import type { TableClient } from "@azure/data-tables";
import type { z } from "zod";
import { isStatus } from "../identities/table-identity-store.js";

interface DocumentEntity {
  partitionKey: string;
  rowKey: string;
  document: string;
}

/** A string inside an OData filter's quotes. */
export function quoteOData(value: string): string {
  return value.replace(/'/g, "''");
}

/**
 * Rows of a table that each hold one JSON document (`document`), read back through a schema: a
 * damaged row fails loudly, naming the row and the first field that is wrong. Runs, restores and
 * prunes are kept this way in the runs table.
 */
export class DocumentRows<S extends z.ZodType> {
  constructor(
    private readonly table: TableClient,
    private readonly schema: S,
    /** What a row is, for messages: "run", "restore", "prune". */
    private readonly what: string,
  ) {}

  async create(partitionKey: string, rowKey: string, value: z.infer<S>): Promise<void> {
    await this.table.createEntity(entity(partitionKey, rowKey, value));
  }

  /** A point read; undefined when there is no such row. */
  async find(partitionKey: string, rowKey: string): Promise<z.infer<S> | undefined> {
    try {
      return this.parse(await this.table.getEntity<DocumentEntity>(partitionKey, rowKey));
    } catch (error) {
      if (isStatus(error, 404)) return undefined;
      throw error;
    }
  }

  /** The row with this key in any partition (a query: dearer than `find`). */
  async findInAnyPartition(rowKey: string): Promise<z.infer<S> | undefined> {
    for await (const row of this.rows(`RowKey eq '${quoteOData(rowKey)}'`)) return this.parse(row);
    return undefined;
  }

  /** The documents of the rows an OData filter selects, in key order, up to `limit`. */
  async list(filter: string, limit: number): Promise<z.infer<S>[]> {
    const out: z.infer<S>[] = [];
    if (limit <= 0) return out;
    for await (const row of this.rows(filter)) {
      out.push(this.parse(row));
      if (out.length >= limit) break;
    }
    return out;
  }

  /** Read-modify-write with the row's ETag, retried on a concurrent change. */
  async update(
    partitionKey: string,
    rowKey: string,
    change: (value: z.infer<S>) => void,
  ): Promise<z.infer<S>> {
    for (let attempt = 0; ; attempt++) {
      const row = await this.table.getEntity<DocumentEntity>(partitionKey, rowKey);
      const value = this.parse(row);
      change(value);
      try {
        await this.table.updateEntity(entity(partitionKey, rowKey, value), "Replace", { etag: row.etag });
        return value;
      } catch (error) {
        if (!isStatus(error, 412) || attempt >= 5) throw error;
      }
    }
  }

  private rows(filter: string) {
    return this.table.listEntities<DocumentEntity>({ queryOptions: { filter } });
  }

  private parse(row: DocumentEntity): z.infer<S> {
    const parsed = this.schema.safeParse(JSON.parse(row.document));
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new Error(
        `The record of ${this.what} ${row.rowKey} is damaged: ${issue?.path.join(".")}: ${issue?.message}`,
      );
    }
    return parsed.data;
  }
}

function entity(partitionKey: string, rowKey: string, value: unknown): DocumentEntity {
  return { partitionKey, rowKey, document: JSON.stringify(value) };
}
