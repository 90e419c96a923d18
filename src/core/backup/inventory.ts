import { z } from "zod";
import type { PortalClient } from "../arcgis/portal-client.js";
import { PortalNotFoundError } from "../arcgis/portal-errors.js";
import { mapWithConcurrency } from "../concurrency.js";
import type { Logger } from "../log.js";
import { checkStored } from "../stored-document.js";
import { type BackupStore, ndjsonBytes } from "./backup-store.js";
import { batchResultsSchema, hasSeparateDataVersion, type ItemResult } from "./export-item.js";
import {
  inventoryChangesName,
  inventoryChunkName,
  itemVersion,
  orgRecordNames,
  runResultsPrefix,
  unchangedResultName,
} from "./layout.js";
import { captureOrgStructure } from "./org-structure.js";
import {
  type PagedResponse,
  type PortalGroup,
  type PortalItem,
  type PortalUser,
  portalItemSchema,
  type UserContentResponse,
} from "./portal-types.js";

/** Which items a run covers; every list is optional and they combine with AND. */
export interface BackupFilter {
  types?: string[];
  owners?: string[];
  /** Folder titles or ids. */
  folders?: string[];
  tags?: string[];
  itemIds?: string[];
}

/** One line of an inventory chunk: enough to export, version and restore the item. */
export const inventoryRecordSchema = z.object({
  id: z.string().min(1),
  title: z.string(),
  type: z.string(),
  typeKeywords: z.array(z.string()),
  owner: z.string(),
  folderId: z.string().nullable(),
  folderTitle: z.string().nullable(),
  modified: z.number(),
  size: z.number(),
  url: z.string().nullable(),
  access: z.string(),
  groups: z.array(z.string()),
  /** The item JSON as the listing returned it, so the export need not fetch it again. */
  item: portalItemSchema.optional(),
  /** The version the newest earlier run captured: a new version reuses its files that did not change. */
  previousVersion: z.string().optional(),
});
export type InventoryRecord = z.infer<typeof inventoryRecordSchema>;

/**
 * A chunk line that is not a valid record (damaged, or written by another version): its item
 * fails with the reason, the other items of the chunk go on, and batches keep their lines.
 */
export interface InvalidInventoryLine {
  /** The item's id when the line still has one, else the chunk and line. */
  id: string;
  error: { code: string; message: string };
}

export type InventoryEntry = InventoryRecord | InvalidInventoryLine;

export function isInvalidLine(entry: InventoryEntry): entry is InvalidInventoryLine {
  return "error" in entry;
}

/**
 * What the previous complete run captured of an item: its version, and where its result lies
 * among that run's results blobs (read again only for the items found unchanged, a few blobs at
 * a time), so that a run of 100,000 items holds ids and versions, not 100,000 results.
 */
export interface PreviousCapture {
  version: string;
  /** Its title, owner and folder as a hash (listingHash), to tell a move or rename of hosted data. */
  listing: number;
  /** Index into PreviousRun.resultBlobs, and the result's position in that blob. */
  blob: number;
  position: number;
}

/** The newest earlier complete run, as the inventory compares with it. */
export interface PreviousRun {
  runId: string;
  /** Its results blobs, in name order. */
  resultBlobs: string[];
  items: Map<string, PreviousCapture>;
}

/** Reads a run's results blobs into ids, versions and places (every failed item left out). */
export async function previousRunOf(store: BackupStore, runId: string): Promise<PreviousRun> {
  const resultBlobs: string[] = [];
  for await (const name of store.list(runResultsPrefix(runId))) resultBlobs.push(name);
  const items = new Map<string, PreviousCapture>();
  // Each blob's results are dropped once their ids are noted: never the whole run in memory.
  await mapWithConcurrency(resultBlobs, LISTING_CONCURRENCY, async (name, blob) => {
    const results = (await store.readJson(name, batchResultsSchema)) ?? [];
    results.forEach((result, position) => {
      if (result.status !== "failed" && result.version) {
        const listing = listingHash(result.title, result.owner, result.folderTitle);
        items.set(result.itemId, { version: result.version, listing, blob, position });
      }
    });
  });
  return { runId, resultBlobs, items };
}

/**
 * What the inventory found changed in the org against the run it compared with, beyond the items
 * it sent to export: unchanged items whose title, owner or folder changed, and (a run without a
 * filter) the items gone from the org. The item index takes a run in from this and the batches'
 * results alone when its head is that run, instead of comparing every item.
 */
export const inventoryChangesSchema = z.object({
  comparedWithRunId: z.string(),
  listingChanged: z.array(
    z.object({
      itemId: z.string(),
      title: z.string(),
      owner: z.string(),
      folderTitle: z.string().nullable(),
    }),
  ),
  gone: z.array(z.string()),
  /**
   * Items sent to export that the compared run had captured: the version it had, and whether they
   * are listed as it had them (title, owner, folder). One the export finds at that version again
   * (hosted data, sent to export every run, whose rows did not change) is unchanged for the index.
   */
  exportedAgain: z.array(z.tuple([z.string(), z.string(), z.boolean()])).default([]),
});
export type InventoryChanges = z.infer<typeof inventoryChangesSchema>;
type ListingChange = InventoryChanges["listingChanged"][number];

export interface InventorySummary {
  /** Items to export (in the chunks). */
  itemCount: number;
  /** Items already captured at their current version by an earlier run: recorded, not exported. */
  unchangedCount: number;
  chunkCount: number;
  users: number;
  groups: number;
}

export const INVENTORY_CHUNK_SIZE = 200;
const PAGE = 100;
const LISTING_CONCURRENCY = 6;

/** Pages a Sharing REST list to its end (start/num/nextStart), one page in memory at a time. */
export async function* pages<T extends PagedResponse>(
  portal: PortalClient,
  path: string,
  params: Record<string, unknown> = {},
): AsyncGenerator<T> {
  let start = 1;
  for (let guard = 0; guard < 100_000; guard++) {
    const page = await portal.json<T>(path, { ...params, start, num: PAGE }, { method: "GET" });
    yield page;
    if (!page.nextStart || page.nextStart < 0 || page.nextStart <= start) return;
    start = page.nextStart;
  }
}

/** An item found unchanged: its fresh listing and where the previous run's result lies. */
interface UnchangedItem {
  record: InventoryRecord;
  capture: PreviousCapture;
}

/**
 * Items found unchanged that are buffered before their previous results are read back. The listing
 * comes in the previous run's order, so a small buffer still reads each results blob about once;
 * each buffered record holds its item JSON: the unchanged 100,000-item run peaked at 246 MB with
 * 500 against 263–279 MB with 2,000 (the unchanged-run harness, same build otherwise).
 */
const UNCHANGED_BUFFER = 500;

/**
 * Results of items found unchanged during the inventory, written like a batch's results: the
 * previous run's result with the fresh listing's title, owner, folder and sharing. Buffered, then
 * resolved one previous results blob at a time; an item whose previous result is not where the
 * previous run said (a results blob rewritten since) is exported instead.
 */
class UnchangedWriter {
  private pending: UnchangedItem[] = [];
  private blobs = 0;
  count = 0;
  /** Unchanged items listed under another title, owner or folder than their previous result. */
  readonly listingChanged: ListingChange[] = [];
  constructor(
    private readonly store: BackupStore,
    private readonly runId: string,
    private readonly previous: PreviousRun | undefined,
    private readonly exportInstead: (record: InventoryRecord) => Promise<void>,
  ) {}

  async add(item: UnchangedItem): Promise<void> {
    this.pending.push(item);
    if (this.pending.length >= UNCHANGED_BUFFER) await this.flush();
  }

  async flush(): Promise<void> {
    const pending = this.pending;
    this.pending = [];
    if (pending.length === 0 || !this.previous) return;
    const byBlob = new Map<number, UnchangedItem[]>();
    for (const item of pending) {
      const sameBlob = byBlob.get(item.capture.blob);
      if (sameBlob) sameBlob.push(item);
      else byBlob.set(item.capture.blob, [item]);
    }
    let out: ItemResult[] = [];
    for (const [blob, items] of [...byBlob].sort((a, b) => a[0] - b[0])) {
      const name = this.previous.resultBlobs[blob];
      const results = name ? ((await this.store.readJson(name, batchResultsSchema)) ?? []) : [];
      for (const { record, capture } of items) {
        const before = results[capture.position];
        if (before?.itemId !== record.id || before.version !== capture.version) {
          await this.exportInstead(record);
          continue;
        }
        if (
          before.title !== record.title ||
          before.owner !== record.owner ||
          before.folderTitle !== record.folderTitle
        ) {
          const { title, owner, folderTitle } = record;
          this.listingChanged.push({ itemId: record.id, title, owner, folderTitle });
        }
        out.push(unchangedResult(before, record));
        if (out.length >= INVENTORY_CHUNK_SIZE) {
          await this.write(out);
          out = [];
        }
      }
    }
    await this.write(out);
  }

  private async write(results: ItemResult[]): Promise<void> {
    if (results.length === 0) return;
    await this.store.uploadJson(unchangedResultName(this.runId, this.blobs++), results);
    this.count += results.length;
  }
}

/** The previous run's result of an unchanged item, with what the listing says now. */
function unchangedResult(before: ItemResult, record: InventoryRecord): ItemResult {
  const { error: _error, ...rest } = before;
  return {
    ...rest,
    title: record.title,
    owner: record.owner,
    folderId: record.folderId,
    folderTitle: record.folderTitle,
    access: record.access,
    groups: record.groups,
    status: "unchanged",
    // Nothing uploaded by this run.
    bytes: 0,
  };
}

/** An item's title, owner and folder as a 32-bit FNV-1a hash: 100,000 of them hold no strings. */
function listingHash(title: string, owner: string, folderTitle: string | null): number {
  let hash = 0x811c9dc5;
  for (const text of [title, owner, folderTitle ?? ""]) {
    for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193);
    hash = Math.imul(hash ^ 0xffff, 0x01000193);
  }
  return hash >>> 0;
}

/** Buffers inventory lines into chunk blobs of INVENTORY_CHUNK_SIZE. */
class ChunkWriter {
  private lines: string[] = [];
  chunks = 0;
  items = 0;
  constructor(
    private readonly store: BackupStore,
    private readonly runId: string,
  ) {}

  async add(record: InventoryRecord): Promise<void> {
    this.lines.push(JSON.stringify(record));
    this.items++;
    if (this.lines.length >= INVENTORY_CHUNK_SIZE) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.lines.length === 0) return;
    const body = `${this.lines.join("\n")}\n`;
    this.lines = [];
    const index = this.chunks++;
    await this.store.uploadBuffer(
      inventoryChunkName(this.runId, index),
      Buffer.from(body),
      "application/x-ndjson",
    );
  }
}

/** Takes one listed item into the run: its place (folder), the groups it is shared to. */
type AcceptItem = (
  item: PortalItem,
  folderId: string | null,
  folderTitle: string | null,
  groups: string[],
) => Promise<void>;

/**
 * Lists every item of the org the identity can reach — each member's root folder and every
 * folder (not search, whose paging stops at 10,000 results), plus items shared into the org's
 * groups from elsewhere — and the org records (portal, users, groups with members, folders).
 * A filter of item ids reads just those items (a snapshot before a risky edit starts at once,
 * whatever the org's size). Writes it all to Blob; returns only counts.
 */
export async function takeInventory(options: {
  portal: PortalClient;
  store: BackupStore;
  runId: string;
  filter?: BackupFilter;
  /** The last complete run's captures: items still at that version are not exported again. */
  previous?: PreviousRun;
  log: Logger;
}): Promise<InventorySummary> {
  const { portal, store, runId, log } = options;
  const filter = options.filter ?? {};
  const org = orgRecordNames(runId);
  const self = await portal.json<PortalSelf>("portals/self", {}, { method: "GET" });
  await store.uploadJson(org.portal, self);

  const writer = new ChunkWriter(store, runId);
  const unchanged = new UnchangedWriter(store, runId, options.previous, (record) => writer.add(record));
  const seen = new Set<string>();
  const exportedAgain: InventoryChanges["exportedAgain"] = [];
  const accept: AcceptItem = async (item, folderId, folderTitle, groups) => {
    if (seen.has(item.id)) return;
    seen.add(item.id);
    const record = toRecord(item, folderId, folderTitle, groups);
    if (!matches(record, item, filter)) return;
    const before = options.previous?.items.get(item.id);
    // Hosted feature data changes without `modified`; those items are versioned by the export.
    if (before && !hasSeparateDataVersion(record) && before.version === itemVersion(record.modified)) {
      await unchanged.add({ record, capture: before });
      return;
    }
    if (before) {
      const sameListing = before.listing === listingHash(record.title, record.owner, record.folderTitle);
      exportedAgain.push([record.id, before.version, sameListing]);
    }
    await writer.add(before ? { ...record, previousVersion: before.version } : record);
  };
  const listed =
    filter.itemIds && filter.itemIds.length > 0
      ? await listItemsById(portal, store, org, filter.itemIds, accept, log)
      : await listOrg(portal, store, org, self, filter, accept);
  await writer.flush();
  await unchanged.flush();
  if (options.previous) {
    const gone = options.filter ? [] : [...options.previous.items.keys()].filter((id) => !seen.has(id));
    const changes: InventoryChanges = {
      comparedWithRunId: options.previous.runId,
      listingChanged: unchanged.listingChanged,
      gone,
      exportedAgain,
    };
    await store.uploadJson(inventoryChangesName(runId), changes);
  }
  log.info("Inventory taken", {
    runId,
    items: writer.items,
    unchanged: unchanged.count,
    chunks: writer.chunks,
    users: listed.users,
  });
  return {
    itemCount: writer.items,
    unchangedCount: unchanged.count,
    chunkCount: writer.chunks,
    users: listed.users,
    groups: listed.groups,
  };
}

type PortalSelf = { id?: string; user?: { username?: string } };
type OrgRecords = ReturnType<typeof orgRecordNames>;

/** The whole org: users, groups, then each member's content, folder by folder. */
async function listOrg(
  portal: PortalClient,
  store: BackupStore,
  org: OrgRecords,
  self: PortalSelf,
  filter: BackupFilter,
  accept: AcceptItem,
): Promise<{ users: number; groups: number }> {
  const users: PortalUser[] = [];
  for await (const page of pages<PagedResponse & { users: PortalUser[] }>(portal, "portals/self/users")) {
    users.push(...page.users);
  }
  if (users.length === 0 && self.user?.username) users.push({ username: self.user.username });
  await store.uploadBuffer(org.users, ndjsonBytes(users), "application/x-ndjson");

  // Groups first: they say which items are shared where.
  const { groupsOfItem, outsideItems, groupCount } = await recordGroups(portal, store, org.groups, {
    query: self.id ? `orgid:${self.id}` : "*",
    orgUsers: new Set(users.map((u) => u.username)),
  });
  // The org's structure (roles, categories, settings; groups enriched) for org-to-org moves.
  await captureOrgStructure({ portal, store, org, self });
  const groupsOf = (item: PortalItem) => groupsOfItem.get(item.id) ?? [];
  const folders: Array<{ owner: string; id: string; title: string }> = [];
  const owners = filter.owners ? users.filter((u) => filter.owners?.includes(u.username)) : users;
  await mapWithConcurrency(owners, LISTING_CONCURRENCY, async (user) => {
    const path = `content/users/${encodeURIComponent(user.username)}`;
    const userFolders: Array<{ id: string; title: string }> = [];
    for await (const page of pages<UserContentResponse>(portal, path)) {
      if (page.folders && userFolders.length === 0) userFolders.push(...page.folders);
      for (const item of page.items) await accept(item, null, null, groupsOf(item));
    }
    for (const folder of userFolders) {
      folders.push({ owner: user.username, id: folder.id, title: folder.title });
      for await (const page of pages<UserContentResponse>(portal, `${path}/${folder.id}`)) {
        for (const item of page.items) await accept(item, folder.id, folder.title, groupsOf(item));
      }
    }
  });
  for (const item of outsideItems.values()) await accept(item, null, null, groupsOf(item));
  await store.uploadBuffer(org.folders, ndjsonBytes(folders), "application/x-ndjson");
  return { users: users.length, groups: groupCount };
}

/**
 * Just the items asked for, each read by id with the groups it is shared to and its folder; the
 * org records hold only their owners, groups and folders (what a restore of them looks up).
 */
async function listItemsById(
  portal: PortalClient,
  store: BackupStore,
  org: OrgRecords,
  itemIds: readonly string[],
  accept: AcceptItem,
  log: Logger,
): Promise<{ users: number; groups: number }> {
  const groups = new Map<string, PortalGroup & { itemIds: string[] }>();
  const foldersOfOwner = new Map<string, Promise<Array<{ id: string; title: string }>>>();
  const folders = new Map<string, { owner: string; id: string; title: string }>();
  const owners = new Set<string>();
  for (const id of itemIds) {
    let item: PortalItem;
    try {
      item = await portal.json<PortalItem>(`content/items/${id}`, {}, { method: "GET" });
    } catch (error) {
      if (!(error instanceof PortalNotFoundError)) throw error;
      log.warn("Item in the filter is missing or not visible", { itemId: id });
      continue;
    }
    const shared = await portal.json<Partial<Record<"admin" | "member" | "other", PortalGroup[]>>>(
      `content/items/${id}/groups`,
      {},
      { method: "GET" },
    );
    const itemGroups = [...(shared.admin ?? []), ...(shared.member ?? []), ...(shared.other ?? [])];
    for (const group of itemGroups) {
      const record = groups.get(group.id) ?? { ...group, itemIds: [] };
      record.itemIds.push(item.id);
      groups.set(group.id, record);
    }
    owners.add(item.owner);
    const folderId = item.ownerFolder ?? null;
    let folder: { id: string; title: string } | undefined;
    if (folderId) {
      if (!foldersOfOwner.has(item.owner)) foldersOfOwner.set(item.owner, ownerFolders(portal, item.owner));
      folder = (await foldersOfOwner.get(item.owner))?.find((f) => f.id === folderId);
      if (folder) folders.set(folder.id, { owner: item.owner, ...folder });
    }
    await accept(
      item,
      folderId,
      folder?.title ?? null,
      itemGroups.map((g) => g.id),
    );
  }
  const users = [...owners].map((username) => ({ username }));
  await store.uploadBuffer(org.users, ndjsonBytes(users), "application/x-ndjson");
  await store.uploadBuffer(org.groups, ndjsonBytes([...groups.values()]), "application/x-ndjson");
  await store.uploadBuffer(org.folders, ndjsonBytes([...folders.values()]), "application/x-ndjson");
  return { users: users.length, groups: groups.size };
}

/** A user's folders (the first page of their content lists them all). */
async function ownerFolders(portal: PortalClient, username: string) {
  const content = await portal.json<UserContentResponse>(
    `content/users/${encodeURIComponent(username)}`,
    { num: 1 },
    { method: "GET" },
  );
  return content.folders ?? [];
}

/**
 * Writes the org's groups with their members and items, and answers which groups each item is
 * shared to and the items shared into them from outside the org. The group records (with every
 * item id of every group) are let go once written: an org of 100,000 items keeps only the map.
 */
async function recordGroups(
  portal: PortalClient,
  store: BackupStore,
  blob: string,
  options: { query: string; orgUsers: ReadonlySet<string> },
) {
  const groups: PortalGroup[] = [];
  for await (const page of pages<PagedResponse & { results: PortalGroup[] }>(portal, "community/groups", {
    q: options.query,
  })) {
    groups.push(...page.results);
  }
  const groupsOfItem = new Map<string, string[]>();
  const outsideItems = new Map<string, PortalItem>();
  const groupRecords = await mapWithConcurrency(groups, LISTING_CONCURRENCY, async (group) => {
    const members = await portal
      .json<{ owner?: string; admins?: string[]; users?: string[] }>(
        `community/groups/${group.id}/users`,
        {},
        { method: "GET" },
      )
      .catch(() => ({}));
    const itemIds: string[] = [];
    for await (const page of pages<PagedResponse & { items: PortalItem[] }>(
      portal,
      `content/groups/${group.id}`,
    )) {
      for (const item of page.items) {
        itemIds.push(item.id);
        const shared = groupsOfItem.get(item.id);
        if (shared) shared.push(group.id);
        else groupsOfItem.set(item.id, [group.id]);
        if (!options.orgUsers.has(item.owner)) outsideItems.set(item.id, item);
      }
    }
    return { ...group, members, itemIds };
  });
  await store.uploadBuffer(blob, ndjsonBytes(groupRecords), "application/x-ndjson");
  return { groupsOfItem, outsideItems, groupCount: groups.length };
}

/**
 * Reads one inventory chunk back, every line validated: a line that is not a record becomes an
 * InvalidInventoryLine in its place (its item fails with ERR_STORED_DOCUMENT_INVALID naming the
 * chunk and line). A chunk that is missing or not NDJSON at all throws.
 */
export async function readInventoryChunk(
  store: BackupStore,
  runId: string,
  chunkIndex: number,
): Promise<InventoryEntry[]> {
  const name = inventoryChunkName(runId, chunkIndex);
  const lines = await store.readNdjson(name, z.unknown());
  if (!lines) throw new Error(`The inventory chunk ${name} is missing`);
  return lines.map((line, index) => {
    const checked = checkStored(inventoryRecordSchema, line, `${name}: line ${index + 1}`);
    if (checked.ok) return checked.value;
    const { code, message } = checked.error;
    return { id: idOf(line) ?? `${name}#${index + 1}`, error: { code, message } };
  });
}

/** The item id of a damaged line, when it still has one. */
function idOf(line: unknown): string | undefined {
  const id = (line as { id?: unknown } | null)?.id;
  return typeof id === "string" && id !== "" ? id : undefined;
}

function toRecord(
  item: PortalItem,
  folderId: string | null,
  folderTitle: string | null,
  groups: string[],
): InventoryRecord {
  return {
    id: item.id,
    title: item.title,
    type: item.type,
    typeKeywords: item.typeKeywords ?? [],
    owner: item.owner,
    folderId: folderId ?? item.ownerFolder ?? null,
    folderTitle,
    modified: item.modified,
    size: item.size ?? -1,
    url: item.url ?? null,
    access: item.access ?? "private",
    groups,
    item,
  };
}

function matches(record: InventoryRecord, item: PortalItem, filter: BackupFilter): boolean {
  const lower = (values: string[] | undefined) => values?.map((v) => v.toLowerCase());
  const types = lower(filter.types);
  if (types && !types.includes(record.type.toLowerCase())) return false;
  if (filter.owners && !filter.owners.includes(record.owner)) return false;
  if (filter.folders) {
    const hit = filter.folders.some((f) => f === record.folderId || f === record.folderTitle);
    if (!hit) return false;
  }
  const tags = lower(filter.tags);
  if (tags && !(item.tags ?? []).some((t) => tags.includes(t.toLowerCase()))) return false;
  return true;
}
