import type { TableClient } from "@azure/data-tables";
import { z } from "zod";
import { mapWithConcurrency } from "../concurrency.js";
import { isStatus } from "../identities/table-identity-store.js";
import { quoteOData } from "../tables/document-rows.js";

/**
 * The item index of every identity: its version rows in Table Storage (ITEM_INDEX_TABLE) and its
 * items in the search snapshot (search-snapshot.ts), written when a run ends and rebuilt from the
 * manifests when lost:
 *
 * - versions: partition `versions~<identityId>`, row = `<itemId>~<version>`: when and in which run it
 *   was first captured, its files (paths, sizes, hashes; attachments counted), feature counts and
 *   sharing. Written once, by the run that captured the version: never read back to be updated;
 * - the head: partition `head`, row = identity id: the newest complete unfiltered run indexed, and
 *   the state of the search snapshot.
 *
 * Rows change only with what changed in the org: an unchanged item costs a run nothing here.
 */

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
  baseItems: number;
  deltaItems: number;
}

export interface IndexHead {
  /** The newest complete unfiltered run indexed: what "deleted" is relative to. */
  lastRunId: string;
  lastRunAt: string;
  snapshot: SnapshotState;
}

/**
 * The head's layout: a head of another (an index written before the items moved to the search
 * snapshot) is taken as none, and the identity's index is rebuilt from its manifests.
 */
const INDEX_FORMAT = 2;

const headRowSchema = z.object({
  format: z.literal(INDEX_FORMAT),
  lastRunId: z.string(),
  lastRunAt: z.string(),
  snapshotRunId: z.string(),
  snapshotDeltas: z.string(),
  snapshotBaseItems: z.number().int(),
  snapshotDeltaItems: z.number().int(),
});

const HEAD_PARTITION = "head";
/** Entities in one entity group transaction (the service's limit). */
const TRANSACTION_SIZE = 100;
const TRANSACTIONS_AT_ONCE = 4;
/** A table string property holds 32K UTF-16 characters. */
const MAX_PROPERTY_CHARS = 30_000;

export class ItemIndex {
  constructor(private readonly table: TableClient) {}

  /** The head; undefined when there is none, it is damaged or of an older layout. */
  async head(identityId: string): Promise<IndexHead | undefined> {
    const parsed = headRowSchema.safeParse(await this.read(HEAD_PARTITION, identityId));
    if (!parsed.success) return undefined;
    const row = parsed.data;
    const deltas = parseJsonSafely(z.array(z.string()), row.snapshotDeltas);
    if (!deltas) return undefined;
    return {
      lastRunId: row.lastRunId,
      lastRunAt: row.lastRunAt,
      snapshot: {
        writtenBy: row.snapshotRunId,
        deltas,
        baseItems: row.snapshotBaseItems,
        deltaItems: row.snapshotDeltaItems,
      },
    };
  }

  async setHead(identityId: string, head: IndexHead): Promise<void> {
    const { snapshot } = head;
    await this.table.upsertEntity(
      {
        partitionKey: HEAD_PARTITION,
        rowKey: identityId,
        format: INDEX_FORMAT,
        lastRunId: head.lastRunId,
        lastRunAt: head.lastRunAt,
        snapshotRunId: snapshot.writtenBy,
        snapshotDeltas: JSON.stringify(snapshot.deltas),
        snapshotBaseItems: snapshot.baseItems,
        snapshotDeltaItems: snapshot.deltaItems,
      },
      "Replace",
    );
  }

  /**
   * Writes version rows (upserts, so a run indexed twice writes the same), a hundred to an entity
   * group transaction (one partition holds an identity's versions), a few transactions at once.
   */
  async putVersions(identityId: string, versions: readonly VersionRow[]): Promise<void> {
    const transactions: VersionRow[][] = [];
    for (let i = 0; i < versions.length; i += TRANSACTION_SIZE) {
      transactions.push(versions.slice(i, i + TRANSACTION_SIZE));
    }
    await mapWithConcurrency(transactions, TRANSACTIONS_AT_ONCE, (rows) =>
      this.table.submitTransaction(
        rows.map((version) => ["upsert", versionEntity(identityId, version), "Replace"] as const),
      ),
    );
  }

  /** The given versions of an item that have rows, in the order given: one point read each. */
  async versions(identityId: string, itemId: string, versions: readonly string[]): Promise<VersionRow[]> {
    const rows = await Promise.all(
      versions.map((version) => this.read(versionPartition(identityId), versionRowKey(itemId, version))),
    );
    return rows.flatMap((row, i) => (row ? [toVersion(itemId, versions[i] as string, row)] : []));
  }

  /** Everything of an identity's index in the table, for a rebuild (items rows of the older layout too). */
  async clear(identityId: string): Promise<void> {
    for (const partition of [`items~${identityId}`, versionPartition(identityId)]) {
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
