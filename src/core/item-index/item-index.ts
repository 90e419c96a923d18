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
 * - versions: partition `versions~<identityId>`, row = `<itemId>~<version>`: when and in which run it
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
  /** The item's versions, oldest first (JSON): read one by one, never by a query. */
  versions: z.string(),
});
export type ItemRow = z.infer<typeof itemRowSchema> & { itemId: string };

/** An item as the search snapshot holds it (the item row less its version list). */
export const searchRowSchema = itemRowSchema.omit({ versions: true }).extend({ itemId: z.string() });
export type SearchRow = z.infer<typeof searchRowSchema>;

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

/**
 * The search snapshot as the head knows it: a base file and the delta files written since (run
 * ids, oldest first), with their line counts, so a run that changed a few items writes a few lines.
 */
export interface SnapshotState {
  /** The run whose indexing wrote the snapshot last (a search cache is as new as this). */
  writtenBy: string;
  deltas: string[];
  /** Lines of the base; undefined when not known (a head written before deltas existed). */
  baseItems: number | undefined;
  deltaItems: number;
}

export interface IndexHead {
  /** The newest complete unfiltered run indexed: what "deleted" is relative to. */
  lastRunId: string;
  lastRunAt: string;
  snapshot: SnapshotState;
}

const headRowSchema = z.object({
  lastRunId: z.string(),
  lastRunAt: z.string(),
  snapshotRunId: z.string(),
  snapshotDeltas: z.string().optional(),
  snapshotBaseItems: z.number().int().optional(),
  snapshotDeltaItems: z.number().int().optional(),
});

const HEAD_PARTITION = "head";
/** Entities in one entity group transaction (the service's limit). */
const TRANSACTION_SIZE = 100;
/** A table string property holds 32K UTF-16 characters. */
const MAX_PROPERTY_CHARS = 30_000;

export class ItemIndex {
  constructor(private readonly table: TableClient) {}

  /** The head; undefined when there is none or it is damaged (the next run indexes in full). */
  async head(identityId: string): Promise<IndexHead | undefined> {
    const parsed = headRowSchema.safeParse(await this.read(HEAD_PARTITION, identityId));
    if (!parsed.success) return undefined;
    const row = parsed.data;
    const deltas = parseJsonSafely(z.array(z.string()), row.snapshotDeltas ?? "[]");
    if (!deltas) return undefined;
    return {
      lastRunId: row.lastRunId,
      lastRunAt: row.lastRunAt,
      snapshot: {
        writtenBy: row.snapshotRunId,
        deltas,
        baseItems: row.snapshotBaseItems,
        deltaItems: row.snapshotDeltaItems ?? 0,
      },
    };
  }

  async setHead(identityId: string, head: IndexHead): Promise<void> {
    const { snapshot } = head;
    await this.table.upsertEntity(
      {
        partitionKey: HEAD_PARTITION,
        rowKey: identityId,
        lastRunId: head.lastRunId,
        lastRunAt: head.lastRunAt,
        snapshotRunId: snapshot.writtenBy,
        snapshotDeltas: JSON.stringify(snapshot.deltas),
        ...(snapshot.baseItems === undefined ? {} : { snapshotBaseItems: snapshot.baseItems }),
        snapshotDeltaItems: snapshot.deltaItems,
      },
      "Replace",
    );
  }

  async item(identityId: string, itemId: string): Promise<ItemRow | undefined> {
    const row = await this.read(itemPartition(identityId), itemId);
    return row ? toItem(itemId, row) : undefined;
  }

  /**
   * Writes item and version rows (upserts, so a run indexed twice writes the same), a hundred to
   * an entity group transaction: one partition holds an identity's items, one its versions.
   */
  async putRows(
    identityId: string,
    items: readonly ItemRow[],
    versions: readonly VersionRow[],
  ): Promise<void> {
    const itemEntities = items.map(({ itemId, ...fields }) => ({
      partitionKey: itemPartition(identityId),
      rowKey: itemId,
      ...fields,
    }));
    const versionEntities = versions.map((version) => versionEntity(identityId, version));
    for (const entities of [itemEntities, versionEntities]) {
      for (let i = 0; i < entities.length; i += TRANSACTION_SIZE) {
        await this.table.submitTransaction(
          entities.slice(i, i + TRANSACTION_SIZE).map((entity) => ["upsert", entity, "Replace"] as const),
        );
      }
    }
  }

  /** The item's versions, oldest first: point reads of the versions its row lists. */
  async versions(item: ItemRow, identityId: string): Promise<VersionRow[]> {
    const versions = stringList(item.versions);
    const rows = await Promise.all(
      versions.map((version) => this.read(versionPartition(identityId), versionRowKey(item.itemId, version))),
    );
    return rows.flatMap((row, i) => (row ? [toVersion(item.itemId, versions[i] as string, row)] : []));
  }

  /** Everything of an identity's index, for a rebuild. */
  async clear(identityId: string): Promise<void> {
    for (const partition of [itemPartition(identityId), versionPartition(identityId)]) {
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

function versionPartition(identityId: string): string {
  return `versions~${identityId}`;
}

/** Item ids and versions hold no `~` (item ids are [0-9A-Za-z_-], versions v<digits>[-e<digits>]). */
function versionRowKey(itemId: string, version: string): string {
  return `${itemId}~${version}`;
}

function versionEntity(identityId: string, version: VersionRow) {
  const files = JSON.stringify(version.files);
  return {
    partitionKey: versionPartition(identityId),
    rowKey: versionRowKey(version.itemId, version.version),
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
  };
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

/** A row's tags or versions (JSON lists of strings in the table), validated. */
export function stringList(json: string): string[] {
  return parseJson(z.array(z.string()), json);
}

function checked<S extends z.ZodType>(schema: S, row: unknown, what: string): z.infer<S> {
  const parsed = schema.safeParse(row);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`The index row of ${what} is damaged: ${issue?.path.join(".")}: ${issue?.message}`);
  }
  return parsed.data;
}

function parseJsonSafely<S extends z.ZodType>(schema: S, text: string): z.infer<S> | undefined {
  try {
    const parsed = schema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
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
