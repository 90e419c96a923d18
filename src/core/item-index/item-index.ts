import type { TableClient } from "@azure/data-tables";
import { z } from "zod";
import { isStatus } from "../identities/table-identity-store.js";
import { quoteOData } from "../tables/document-rows.js";

/**
 * The item index of every identity, in Table Storage (ITEM_INDEX_TABLE), written when a run ends
 * and rebuilt from the manifests when lost:
 *
 * - items: partition `items~<identityId>`, row = item id: the last known title, type, owner,
 *   folder and tags, when and in which run it was first seen, its version count and newest version,
 *   and whether it is still in the org (`present`) or, if not, the last run that saw it;
 * - versions: partition `versions~<identityId>~<itemId>`, row = version: when and in which run it
 *   was first captured, its files (paths, sizes, hashes; attachments counted), feature counts and
 *   sharing;
 * - the head: partition `head`, row = identity id: the newest complete unfiltered run indexed.
 *
 * Rows change only with what changed in the org: an unchanged item costs a run nothing here.
 */

const itemRowSchema = z.object({
  title: z.string(),
  type: z.string(),
  owner: z.string(),
  folderTitle: z.string(),
  tags: z.string(),
  search: z.string(),
  firstRunId: z.string(),
  firstSeenAt: z.string(),
  present: z.boolean(),
  lastSeenRunId: z.string(),
  lastSeenAt: z.string(),
  lastVersion: z.string(),
  versionCount: z.number().int(),
});
export type ItemRow = z.infer<typeof itemRowSchema> & { itemId: string };

const versionFileSchema = z.object({
  path: z.string(),
  size: z.number(),
  sha256: z.string(),
  kind: z.string(),
});
export type VersionFile = z.infer<typeof versionFileSchema>;

const versionRowSchema = z.object({
  modified: z.number(),
  firstRunId: z.string(),
  firstSeenAt: z.string(),
  title: z.string(),
  access: z.string(),
  groups: z.string(),
  files: z.string(),
  attachments: z.number().int(),
  attachmentBytes: z.number(),
  counts: z.string(),
});

export interface VersionRow {
  itemId: string;
  version: string;
  modified: number;
  firstRunId: string;
  firstSeenAt: string;
  title: string;
  access: string;
  groups: string[];
  /** Every file but the attachments, which are counted. */
  files: VersionFile[];
  attachments: { count: number; bytes: number };
  counts: Record<string, number>;
}

export interface IndexHead {
  lastRunId: string;
  lastRunAt: string;
}

export interface ItemQuery {
  /** Matched (case-insensitively) against title, tags and item id. */
  q?: string;
  type?: string;
  owner?: string;
  /** true: only items no longer in the org; false: only items still there. */
  deleted?: boolean;
  top: number;
  /** The last item id of the previous page. */
  after?: string;
}

const HEAD_PARTITION = "head";
/** A table string property holds 32K UTF-16 characters. */
const MAX_PROPERTY_CHARS = 30_000;

export class ItemIndex {
  constructor(private readonly table: TableClient) {}

  async head(identityId: string): Promise<IndexHead | undefined> {
    const row = await this.read(HEAD_PARTITION, identityId);
    const parsed = z.object({ lastRunId: z.string(), lastRunAt: z.string() }).safeParse(row);
    return parsed.success ? parsed.data : undefined;
  }

  async setHead(identityId: string, head: IndexHead): Promise<void> {
    await this.table.upsertEntity({ partitionKey: HEAD_PARTITION, rowKey: identityId, ...head }, "Replace");
  }

  async item(identityId: string, itemId: string): Promise<ItemRow | undefined> {
    const row = await this.read(itemPartition(identityId), itemId);
    return row ? toItem(itemId, row) : undefined;
  }

  async putItem(identityId: string, item: ItemRow): Promise<void> {
    const { itemId, ...fields } = item;
    await this.table.upsertEntity(
      { partitionKey: itemPartition(identityId), rowKey: itemId, ...fields },
      "Replace",
    );
  }

  /** Records a version; false when it was recorded already (a run indexed twice, a rebuild). */
  async addVersion(identityId: string, version: VersionRow): Promise<boolean> {
    const files = JSON.stringify(version.files);
    try {
      await this.table.createEntity({
        partitionKey: versionPartition(identityId, version.itemId),
        rowKey: version.version,
        modified: version.modified,
        firstRunId: version.firstRunId,
        firstSeenAt: version.firstSeenAt,
        title: version.title,
        access: version.access,
        groups: JSON.stringify(version.groups),
        // An item with very many resources keeps the first of them here; its marker has all.
        files: files.length <= MAX_PROPERTY_CHARS ? files : JSON.stringify(trimFiles(version.files)),
        attachments: version.attachments.count,
        attachmentBytes: version.attachments.bytes,
        counts: JSON.stringify(version.counts),
      });
      return true;
    } catch (error) {
      if (isStatus(error, 409)) return false;
      throw error;
    }
  }

  /** The item's versions, oldest first (versions sort by their `modified`). */
  async versions(identityId: string, itemId: string): Promise<VersionRow[]> {
    const out: VersionRow[] = [];
    const filter = `PartitionKey eq '${quoteOData(versionPartition(identityId, itemId))}'`;
    for await (const row of this.table.listEntities<Record<string, unknown>>({ queryOptions: { filter } })) {
      out.push(toVersion(itemId, String(row.rowKey), row));
    }
    return out;
  }

  /**
   * A page of the identity's items in item id order: type, owner and deleted are filtered by the
   * table, `q` here. `next` is the last item id looked at when more may follow.
   */
  async search(identityId: string, query: ItemQuery): Promise<{ items: ItemRow[]; next?: string }> {
    const clauses = [`PartitionKey eq '${quoteOData(itemPartition(identityId))}'`];
    if (query.after) clauses.push(`RowKey gt '${quoteOData(query.after)}'`);
    if (query.type) clauses.push(`type eq '${quoteOData(query.type)}'`);
    if (query.owner) clauses.push(`owner eq '${quoteOData(query.owner)}'`);
    if (query.deleted !== undefined) clauses.push(`present eq ${query.deleted ? "false" : "true"}`);
    const needle = query.q?.toLowerCase();
    const items: ItemRow[] = [];
    for await (const row of this.table.listEntities<Record<string, unknown>>({
      queryOptions: { filter: clauses.join(" and ") },
    })) {
      const item = toItem(String(row.rowKey), row);
      if (needle && !item.search.includes(needle)) continue;
      items.push(item);
      if (items.length > query.top) break;
    }
    if (items.length <= query.top) return { items };
    items.pop();
    return { items, next: items[items.length - 1]?.itemId };
  }

  /** Everything of an identity's index, for a rebuild. */
  async clear(identityId: string): Promise<void> {
    const partitions = [itemPartition(identityId)];
    const filter = `PartitionKey eq '${quoteOData(itemPartition(identityId))}'`;
    for await (const row of this.table.listEntities({ queryOptions: { filter, select: ["RowKey"] } })) {
      partitions.push(versionPartition(identityId, String(row.rowKey)));
    }
    for (const partition of partitions) {
      const rows = this.table.listEntities({
        queryOptions: { filter: `PartitionKey eq '${quoteOData(partition)}'`, select: ["RowKey"] },
      });
      for await (const row of rows) await this.table.deleteEntity(partition, String(row.rowKey));
    }
    await this.table.deleteEntity(HEAD_PARTITION, identityId).catch((error: unknown) => {
      if (!isStatus(error, 404)) throw error;
    });
  }

  private async read(partitionKey: string, rowKey: string): Promise<Record<string, unknown> | undefined> {
    try {
      return await this.table.getEntity<Record<string, unknown>>(partitionKey, rowKey);
    } catch (error) {
      if (isStatus(error, 404)) return undefined;
      throw error;
    }
  }
}

function itemPartition(identityId: string): string {
  return `items~${identityId}`;
}

function versionPartition(identityId: string, itemId: string): string {
  return `versions~${identityId}~${itemId}`;
}

function toItem(itemId: string, row: Record<string, unknown>): ItemRow {
  return { itemId, ...checked(itemRowSchema, row, `item ${itemId}`) };
}

function toVersion(itemId: string, version: string, row: Record<string, unknown>): VersionRow {
  const fields = checked(versionRowSchema, row, `version ${itemId}/${version}`);
  return {
    itemId,
    version,
    modified: fields.modified,
    firstRunId: fields.firstRunId,
    firstSeenAt: fields.firstSeenAt,
    title: fields.title,
    access: fields.access,
    groups: parseJson(z.array(z.string()), fields.groups),
    files: parseJson(z.array(versionFileSchema), fields.files),
    attachments: { count: fields.attachments, bytes: fields.attachmentBytes },
    counts: parseJson(z.record(z.string(), z.number()), fields.counts),
  };
}

function checked<S extends z.ZodType>(schema: S, row: unknown, what: string): z.infer<S> {
  const parsed = schema.safeParse(row);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`The index row of ${what} is damaged: ${issue?.path.join(".")}: ${issue?.message}`);
  }
  return parsed.data;
}

function parseJson<S extends z.ZodType>(schema: S, text: string): z.infer<S> {
  return checked(schema, JSON.parse(text), "a JSON property");
}

function trimFiles(files: VersionFile[]): VersionFile[] {
  const out: VersionFile[] = [];
  let size = 2;
  for (const file of files) {
    size += JSON.stringify(file).length + 1;
    if (size > MAX_PROPERTY_CHARS) break;
    out.push(file);
  }
  return out;
}
