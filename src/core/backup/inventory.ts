import type { PortalClient } from "../arcgis/portal-client.js";
import { PortalNotFoundError } from "../arcgis/portal-errors.js";
import { mapWithConcurrency } from "../concurrency.js";
import type { Logger } from "../log.js";
import type { BackupStore } from "./backup-store.js";
import { hasSeparateDataVersion, type ItemResult } from "./export-item.js";
import { inventoryChunkName, itemVersion, runPrefix } from "./layout.js";
import type {
  PagedResponse,
  PortalGroup,
  PortalItem,
  PortalUser,
  UserContentResponse,
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

/** One line of the inventory: enough to export, version and restore the item. */
export interface InventoryRecord {
  id: string;
  title: string;
  type: string;
  typeKeywords: string[];
  owner: string;
  folderId: string | null;
  folderTitle: string | null;
  modified: number;
  size: number;
  url: string | null;
  access: string;
  groups: string[];
  /** The item JSON as the listing returned it, so the export need not fetch it again. */
  item?: PortalItem;
}

/** What the previous complete run captured of an item (from its manifest). */
export interface PreviousCapture {
  version: string;
  result: ItemResult;
}

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

/** Results of items found unchanged during the inventory, written like a batch's results. */
class UnchangedWriter {
  private results: ItemResult[] = [];
  private blobs = 0;
  count = 0;
  constructor(
    private readonly store: BackupStore,
    private readonly runId: string,
  ) {}

  async add(result: ItemResult): Promise<void> {
    this.results.push(result);
    this.count++;
    if (this.results.length >= INVENTORY_CHUNK_SIZE) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.results.length === 0) return;
    const results = this.results;
    this.results = [];
    const name = `${runPrefix(this.runId)}results/inventory-unchanged-${String(this.blobs++).padStart(5, "0")}.json`;
    await this.store.uploadJson(name, results);
  }
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

/**
 * Lists every item of the org the identity can reach — each member's root folder and every
 * folder (not search, whose paging stops at 10,000 results), plus items shared into the org's
 * groups from elsewhere — and the org records (portal, users, groups with members, folders).
 * Writes it all to Blob; returns only counts.
 */
export async function takeInventory(options: {
  portal: PortalClient;
  store: BackupStore;
  runId: string;
  filter?: BackupFilter;
  /** The last complete run's captures: items still at that version are not exported again. */
  previous?: Map<string, PreviousCapture>;
  log: Logger;
}): Promise<InventorySummary> {
  const { portal, store, runId, log } = options;
  const filter = options.filter ?? {};
  const orgPrefix = `${runPrefix(runId)}org/`;
  const self = await portal.json<{ id?: string; user?: { username?: string } }>(
    "portals/self",
    {},
    { method: "GET" },
  );
  await store.uploadJson(`${orgPrefix}portal.json`, self);

  const users: PortalUser[] = [];
  for await (const page of pages<PagedResponse & { users: PortalUser[] }>(portal, "portals/self/users")) {
    users.push(...page.users);
  }
  if (users.length === 0 && self.user?.username) users.push({ username: self.user.username });
  await store.uploadBuffer(`${orgPrefix}users.ndjson`, ndjson(users), "application/x-ndjson");

  // Groups first: they say which items are shared where.
  const groups: PortalGroup[] = [];
  const query = self.id ? `orgid:${self.id}` : "*";
  for await (const page of pages<PagedResponse & { results: PortalGroup[] }>(portal, "community/groups", {
    q: query,
  })) {
    groups.push(...page.results);
  }
  const groupsOfItem = new Map<string, string[]>();
  const orgUsers = new Set(users.map((u) => u.username));
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
        groupsOfItem.set(item.id, [...(groupsOfItem.get(item.id) ?? []), group.id]);
        if (!orgUsers.has(item.owner)) outsideItems.set(item.id, item);
      }
    }
    return { ...group, members, itemIds };
  });
  await store.uploadBuffer(`${orgPrefix}groups.ndjson`, ndjson(groupRecords), "application/x-ndjson");

  const writer = new ChunkWriter(store, runId);
  const unchanged = new UnchangedWriter(store, runId);
  const seen = new Set<string>();
  const folders: Array<{ owner: string; id: string; title: string }> = [];
  const accept = async (item: PortalItem, folderId: string | null, folderTitle: string | null) => {
    if (seen.has(item.id)) return;
    seen.add(item.id);
    const record = toRecord(item, folderId, folderTitle, groupsOfItem.get(item.id) ?? []);
    if (!matches(record, item, filter)) return;
    const before = options.previous?.get(item.id);
    // Hosted feature data changes without `modified`; those items are versioned by the export.
    if (before && !hasSeparateDataVersion(record) && before.version === itemVersion(record.modified)) {
      await unchanged.add({
        ...before.result,
        title: record.title,
        owner: record.owner,
        folderId: record.folderId,
        folderTitle: record.folderTitle,
        access: record.access,
        groups: record.groups,
        status: "unchanged",
        error: undefined,
      } as ItemResult);
      return;
    }
    await writer.add(record);
  };

  if (filter.itemIds && filter.itemIds.length > 0) {
    // A short list of ids: read them directly instead of listing the whole org.
    for (const id of filter.itemIds) {
      try {
        const item = await portal.json<PortalItem>(`content/items/${id}`, {}, { method: "GET" });
        await accept(item, item.ownerFolder ?? null, null);
      } catch (error) {
        if (!(error instanceof PortalNotFoundError)) throw error;
        log.warn("Item in the filter is missing or not visible", { itemId: id });
      }
    }
  } else {
    const owners = filter.owners ? users.filter((u) => filter.owners?.includes(u.username)) : users;
    await mapWithConcurrency(owners, LISTING_CONCURRENCY, async (user) => {
      const path = `content/users/${encodeURIComponent(user.username)}`;
      const userFolders: Array<{ id: string; title: string }> = [];
      for await (const page of pages<UserContentResponse>(portal, path)) {
        if (page.folders && userFolders.length === 0) userFolders.push(...page.folders);
        for (const item of page.items) await accept(item, null, null);
      }
      for (const folder of userFolders) {
        folders.push({ owner: user.username, id: folder.id, title: folder.title });
        for await (const page of pages<UserContentResponse>(portal, `${path}/${folder.id}`)) {
          for (const item of page.items) await accept(item, folder.id, folder.title);
        }
      }
    });
    for (const item of outsideItems.values()) await accept(item, null, null);
  }
  await writer.flush();
  await unchanged.flush();
  await store.uploadBuffer(`${orgPrefix}folders.ndjson`, ndjson(folders), "application/x-ndjson");
  log.info("Inventory taken", {
    runId,
    items: writer.items,
    unchanged: unchanged.count,
    chunks: writer.chunks,
    users: users.length,
  });
  return {
    itemCount: writer.items,
    unchangedCount: unchanged.count,
    chunkCount: writer.chunks,
    users: users.length,
    groups: groups.length,
  };
}

/** Reads one inventory chunk back. */
export async function readInventoryChunk(
  store: BackupStore,
  runId: string,
  chunkIndex: number,
): Promise<InventoryRecord[]> {
  const stream = await store.openRead(inventoryChunkName(runId, chunkIndex));
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks)
    .toString("utf8")
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => JSON.parse(line) as InventoryRecord);
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

function ndjson(values: unknown[]): Buffer {
  return Buffer.from(values.map((v) => `${JSON.stringify(v)}\n`).join(""));
}
