import { z } from "zod";
import type { BackupStore } from "../backup/backup-store.js";
import type { CacheSpace } from "../backup/cache.js";
import type { ItemResult } from "../backup/export-item.js";
import { type InventoryChanges, inventoryChangesSchema } from "../backup/inventory.js";
import { inventoryChangesName, isUnchangedResultName } from "../backup/layout.js";
import { runResults } from "../backup/manifest.js";
import { isCompleteRun } from "../backup/retention.js";
import type { RunRecord } from "../backup/runs.js";
import { mapWithConcurrency } from "../concurrency.js";
import { type IndexHead, type ItemIndex, type ItemRow, stringList, type VersionRow } from "./item-index.js";
import { deleteDeltas, SnapshotChanges, updateSnapshot } from "./search-snapshot.js";

/** Item rows read at once (writes go in transactions of 100). */
const READERS = 32;
/** Changed items read from the run's results before their rows are written. */
const INDEX_BATCH = 500;
const itemTagsSchema = z.object({ tags: z.array(z.string()).nullish() }).passthrough();

interface IndexContext {
  store: BackupStore;
  index: ItemIndex;
  run: RunRecord;
  head: IndexHead | undefined;
  /** A complete run of the whole org: what it lacks is gone from the org, and it becomes the head. */
  wholeOrg: boolean;
  /** The rows that changed, on their way to the search snapshot. */
  changes: SnapshotChanges;
}

/**
 * Brings an identity's item index up to a run that has ended with its manifest. Compared with the
 * run the index last took in (its head), only what changed is written: a new item or version, a
 * new title, owner or folder, an item gone from the org (an unfiltered complete run no longer has
 * it: it is marked deleted, last seen in the head's run) or back in it; then the search snapshot
 * takes those rows. When the run's inventory compared the org with the head's run, what changed
 * is known without looking at every item: the batches' results (items exported), and what the
 * inventory noted (see InventoryChanges). Otherwise every result is compared with the head run's.
 * Safe to run twice.
 */
export async function indexRun(options: {
  store: BackupStore;
  index: ItemIndex;
  run: RunRecord;
  cacheDirectory: string;
  cacheSpace: CacheSpace;
}) {
  const { store, index, run } = options;
  const head = await index.head(run.identityId);
  const cache = { cacheDirectory: options.cacheDirectory, cacheSpace: options.cacheSpace };
  const context: IndexContext = {
    store,
    index,
    run,
    head,
    wholeOrg: isCompleteRun(run) && !run.filter,
    changes: new SnapshotChanges(store, run.runId, cache),
  };
  const changes = head ? await readInventoryChanges(store, run.runId) : undefined;
  if (head && changes?.comparedWithRunId === head.lastRunId) await indexNotedChanges(context, changes);
  else await indexByComparison(context);

  const snapshot = await updateSnapshot({
    store,
    state: head?.snapshot,
    runId: run.runId,
    changes: context.changes,
    cache,
  });
  const newHead = context.wholeOrg || !head;
  await index.setHead(run.identityId, {
    lastRunId: newHead ? run.runId : head.lastRunId,
    lastRunAt: newHead ? run.startedAt : head.lastRunAt,
    snapshot: snapshot.state,
  });
  await deleteDeltas(store, snapshot.obsolete);
  return { changed: context.changes.count };
}

/** Indexes the results of the run's batches and what its inventory noted against the head's run. */
async function indexNotedChanges(context: IndexContext, changes: InventoryChanges): Promise<void> {
  const { store, run } = context;
  const exported = runResults(store, run.runId, (name) => !isUnchangedResultName(run.runId, name));
  await indexResults(context, exported, () => undefined);
  const listed = new Map(changes.listingChanged.map((change) => [change.itemId, change]));
  await writeKnownRows(context, [...listed.keys()], (known) => {
    const change = listed.get(known.itemId);
    if (!change || !known.present) return undefined;
    const { title, owner } = change;
    const seen = { lastSeenRunId: run.runId, lastSeenAt: run.startedAt };
    const search = searchText(title, stringList(known.tags), known.itemId);
    return { ...known, title, owner, folderTitle: change.folderTitle ?? "", search, ...seen };
  });
  if (context.wholeOrg) await markDeleted(context, changes.gone);
}

/** Indexes every result of the run that differs from the head run's (or all, without a head). */
async function indexByComparison(context: IndexContext): Promise<void> {
  const { store, run, head } = context;
  const before = head ? await fingerprints(store, head.lastRunId) : new Map<string, string>();
  const seen = new Set<string>();
  await indexResults(context, runResults(store, run.runId), (result) => {
    seen.add(result.itemId);
    return before.get(result.itemId);
  });
  if (head && context.wholeOrg) {
    await markDeleted(
      context,
      [...before.keys()].filter((itemId) => !seen.has(itemId)),
    );
  }
}

/**
 * Writes the rows of the results that changed: those whose fingerprint differs from `known` (the
 * head run's), or — none known — from the item's row as indexed.
 */
async function indexResults(
  context: IndexContext,
  results: AsyncIterable<ItemResult>,
  knownFingerprint: (result: ItemResult) => string | undefined,
): Promise<void> {
  const { store, index, run } = context;
  const identityId = run.identityId;
  let batch: Array<{ result: ItemResult; compareWithRow: boolean }> = [];
  const flush = async () => {
    const indexed = (
      await mapWithConcurrency(batch, READERS, async ({ result, compareWithRow }) => {
        // Without a head the index is empty (a first run, a rebuild): nothing to read.
        const known = context.head ? await index.item(identityId, result.itemId) : undefined;
        if (compareWithRow && known?.present && rowFingerprint(known) === fingerprint(result)) return [];
        return [await indexItem(store, known, run, result)];
      })
    ).flat();
    await index.putRows(
      identityId,
      indexed.map((entry) => entry.row),
      indexed.flatMap((entry) => (entry.version ? [entry.version] : [])),
    );
    for (const { row } of indexed) await noteRow(context, row);
    batch = [];
  };
  for await (const result of results) {
    const knownPrint = knownFingerprint(result);
    if (result.status === "failed" || !result.version) continue;
    if (knownPrint === fingerprint(result)) continue;
    batch.push({ result, compareWithRow: knownPrint === undefined && context.head !== undefined });
    if (batch.length >= INDEX_BATCH) await flush();
  }
  await flush();
}

/** Marks items gone from the org deleted, last seen in the head's run. */
async function markDeleted(context: IndexContext, itemIds: readonly string[]): Promise<void> {
  const head = context.head;
  if (!head) return;
  await writeKnownRows(context, itemIds, (known) =>
    known.present
      ? { ...known, present: false, lastSeenRunId: head.lastRunId, lastSeenAt: head.lastRunAt }
      : undefined,
  );
}

/** Rewrites the rows of items already indexed as `update` says (undefined: left as they are). */
async function writeKnownRows(
  context: IndexContext,
  itemIds: readonly string[],
  update: (known: ItemRow) => ItemRow | undefined,
): Promise<void> {
  const identityId = context.run.identityId;
  for (let i = 0; i < itemIds.length; i += INDEX_BATCH) {
    const rows = (
      await mapWithConcurrency(itemIds.slice(i, i + INDEX_BATCH), READERS, async (itemId) => {
        const known = await context.index.item(identityId, itemId);
        const row = known && update(known);
        return row ? [row] : [];
      })
    ).flat();
    await context.index.putRows(identityId, rows, []);
    for (const row of rows) await noteRow(context, row);
  }
}

async function noteRow(context: IndexContext, row: ItemRow): Promise<void> {
  const { versions: _versions, ...searchRow } = row;
  await context.changes.add(searchRow);
}

async function readInventoryChanges(
  store: BackupStore,
  runId: string,
): Promise<InventoryChanges | undefined> {
  return store.readJson(inventoryChangesName(runId), inventoryChangesSchema);
}

/** What of an item the index keeps, as one string: a change of any of it is written. */
function fingerprint(result: ItemResult): string {
  return JSON.stringify([result.version, result.title, result.type, result.owner, result.folderTitle ?? ""]);
}

/** The fingerprint of the item's newest version as its row holds it. */
function rowFingerprint(row: ItemRow): string {
  return JSON.stringify([row.lastVersion, row.title, row.type, row.owner, row.folderTitle]);
}

async function fingerprints(store: BackupStore, runId: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const result of runResults(store, runId)) {
    if (result.status !== "failed" && result.version) out.set(result.itemId, fingerprint(result));
  }
  return out;
}

async function indexItem(
  store: BackupStore,
  known: ItemRow | undefined,
  run: RunRecord,
  result: ItemResult,
): Promise<{ row: ItemRow; version?: VersionRow }> {
  const version = result.version as string;
  const knownVersions = known ? stringList(known.versions) : [];
  const isNew = !knownVersions.includes(version);
  const tags = result.tags ?? (known && !isNew ? stringList(known.tags) : await tagsOf(store, result));
  const newest = !known || version >= known.lastVersion;
  const title = newest ? result.title : (known?.title ?? result.title);
  const row: ItemRow = {
    itemId: result.itemId,
    title,
    type: result.type,
    owner: result.owner,
    folderTitle: result.folderTitle ?? "",
    tags: JSON.stringify(tags),
    search: searchText(title, tags, result.itemId),
    firstRunId: known?.firstRunId ?? run.runId,
    firstSeenAt: known?.firstSeenAt ?? run.startedAt,
    present: true,
    lastSeenRunId: run.runId,
    lastSeenAt: run.startedAt,
    lastVersion: newest ? version : (known?.lastVersion ?? version),
    versionCount: (known?.versionCount ?? 0) + (isNew ? 1 : 0),
    versions: JSON.stringify([...new Set([...knownVersions, version])].sort()),
  };
  return isNew ? { row, version: versionRowOf(result, run) } : { row };
}

/** What `q` matches: title, tags and item id. */
function searchText(title: string, tags: readonly string[], itemId: string): string {
  return [title, ...tags, itemId].join(" ").toLowerCase();
}

function versionRowOf(result: ItemResult, run: RunRecord): VersionRow {
  const attachments = result.files.filter((f) => f.kind === "attachment");
  return {
    itemId: result.itemId,
    version: result.version as string,
    modified: Number(/^v(\d+)/.exec(result.version ?? "")?.[1] ?? 0),
    firstRunId: run.runId,
    firstSeenAt: run.startedAt,
    title: result.title,
    access: result.access,
    groups: result.groups,
    files: result.files
      .filter((f) => f.kind !== "attachment")
      .map((f) => ({ path: f.path, size: f.size, sha256: f.sha256, kind: f.kind })),
    attachments: { count: attachments.length, bytes: attachments.reduce((sum, f) => sum + f.size, 0) },
    counts: result.counts ?? {},
  };
}

/** The item's tags, from its item.json as captured. */
async function tagsOf(store: BackupStore, result: ItemResult): Promise<string[]> {
  const file = result.files.find((f) => f.kind === "item");
  if (!file) return [];
  const item = await store.readJson(file.blob, itemTagsSchema).catch(() => undefined);
  return item?.tags ?? [];
}
