import { z } from "zod";
import type { BackupStore } from "../backup/backup-store.js";
import type { CacheSpace } from "../backup/cache.js";
import type { ItemResult } from "../backup/export-item.js";
import { type InventoryChanges, inventoryChangesSchema } from "../backup/inventory.js";
import { inventoryChangesName } from "../backup/layout.js";
import { runResults } from "../backup/manifest.js";
import { isCompleteRun } from "../backup/retention.js";
import type { RunRecord } from "../backup/runs.js";
import type { IndexHead, ItemIndex, VersionRow } from "./item-index.js";
import { deleteDeltas, SnapshotChanges, updateSnapshot } from "./search-snapshot.js";

/** Version rows held before they are written (in transactions of 100). */
const VERSION_BATCH = 500;
const itemTagsSchema = z.object({ tags: z.array(z.string()).nullish() }).passthrough();

interface IndexContext {
  store: BackupStore;
  index: ItemIndex;
  run: RunRecord;
  head: IndexHead | undefined;
  /** A complete run of the whole org: what it lacks is gone from the org, and it becomes the head. */
  wholeOrg: boolean;
  /** The patches of the run, on their way to the search snapshot. */
  changes: SnapshotChanges;
  /** New versions, on their way to the table. */
  versions: VersionRow[];
  /** The batches wrote the rows of the versions they exported (recordCapturedVersions); a rebuild writes all. */
  rebuilding: boolean;
}

/** Whether a result gives the index something new: a patch for its item, a version row. */
type Novelty = (result: ItemResult) => { patch: boolean; version: boolean };

/**
 * Brings an identity's item index up to a run that has ended with its manifest. Compared with the
 * run the index last took in (its head), only what changed is written, and nothing is read back
 * from the index to write it: a version row for each version new to the index that no batch
 * recorded (see recordCapturedVersions), and a patch
 * of the search snapshot for each item captured at a new version, under a new title, owner or
 * folder, or gone from the org (an unfiltered complete run no longer has it: last seen in the
 * head's run). When the run's inventory compared the org with the head's run, what changed is known
 * without looking at every item: the batches' results (items exported), and what the inventory
 * noted (see InventoryChanges). Otherwise every result is compared with the head run's. Safe to
 * run twice.
 */
export async function indexRun(options: {
  store: BackupStore;
  index: ItemIndex;
  run: RunRecord;
  cacheDirectory: string;
  cacheSpace: CacheSpace;
  /** Indexing a run again (a rebuild): its batches' version rows are gone with the old index. */
  rebuilding?: boolean;
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
    versions: [],
    rebuilding: options.rebuilding ?? false,
  };
  const changes = head ? await readInventoryChanges(store, run.runId) : undefined;
  if (head && changes?.comparedWithRunId === head.lastRunId) await indexNotedChanges(context, changes);
  else await indexByComparison(context);
  await flushVersions(context);

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
  const exportedAgain = new Map(
    changes.exportedAgain.map(([itemId, version, sameListing]) => [itemId, { version, sameListing }]),
  );
  const exported = runResults(store, run.runId, "batches");
  await indexResults(context, exported, (result) => {
    const known = exportedAgain.get(result.itemId);
    const version = result.status === "exported" || known?.version !== result.version;
    return { patch: version || !known?.sameListing, version };
  });
  for (const change of changes.listingChanged) {
    const { itemId, title, owner } = change;
    const folderTitle = change.folderTitle ?? "";
    await context.changes.add({ kind: "listed", itemId, ...seenBy(run), title, owner, folderTitle });
  }
  if (context.wholeOrg) await markDeleted(context, changes.gone);
}

/** Indexes every result of the run that differs from the head run's (or all, without a head). */
async function indexByComparison(context: IndexContext): Promise<void> {
  const { store, run, head } = context;
  const before = head ? await capturesOf(store, head.lastRunId) : new Map<string, Capture>();
  const seen = new Set<string>();
  await indexResults(context, runResults(store, run.runId), (result) => {
    seen.add(result.itemId);
    const known = before.get(result.itemId);
    return {
      patch: known?.fingerprint !== fingerprint(result),
      version: result.status === "exported" || known?.version !== result.version,
    };
  });
  if (head && context.wholeOrg) {
    await markDeleted(
      context,
      [...before.keys()].filter((itemId) => !seen.has(itemId)),
    );
  }
}

/** Writes a patch and a version row for each result that is new as `novelty` says. */
async function indexResults(
  context: IndexContext,
  results: AsyncIterable<ItemResult>,
  novelty: Novelty,
): Promise<void> {
  const { store, run } = context;
  for await (const result of results) {
    if (result.status === "failed" || !result.version) continue;
    const news = novelty(result);
    if (news.patch) {
      await context.changes.add({
        kind: "captured",
        itemId: result.itemId,
        ...seenBy(run),
        title: result.title,
        type: result.type,
        owner: result.owner,
        folderTitle: result.folderTitle ?? "",
        tags: result.tags ?? (await tagsOf(store, result)),
        version: result.version,
      });
    }
    // A version a batch exported has its row from the batch (but not in a rebuild).
    if (news.version && (context.rebuilding || result.status !== "exported")) {
      context.versions.push(versionRowOf(result, run));
      if (context.versions.length >= VERSION_BATCH) await flushVersions(context);
    }
  }
}

async function flushVersions(context: IndexContext): Promise<void> {
  await context.index.putVersions(context.run.identityId, context.versions);
  context.versions = [];
}

/** Marks items gone from the org deleted, last seen in the head's run. */
async function markDeleted(context: IndexContext, itemIds: readonly string[]): Promise<void> {
  const head = context.head;
  if (!head) return;
  for (const itemId of itemIds) {
    await context.changes.add({ kind: "gone", itemId, runId: head.lastRunId, at: head.lastRunAt });
  }
}

function seenBy(run: Pick<RunRecord, "runId" | "startedAt">): { runId: string; at: string } {
  return { runId: run.runId, at: run.startedAt };
}

async function readInventoryChanges(
  store: BackupStore,
  runId: string,
): Promise<InventoryChanges | undefined> {
  return store.readJson(inventoryChangesName(runId), inventoryChangesSchema);
}

/** What of an item the search keeps, as one string: a change of any of it is a patch. */
function fingerprint(result: ItemResult): string {
  return JSON.stringify([result.version, result.title, result.type, result.owner, result.folderTitle ?? ""]);
}

interface Capture {
  version: string;
  fingerprint: string;
}

/** What a run captured of each item, to compare another run with. */
async function capturesOf(store: BackupStore, runId: string): Promise<Map<string, Capture>> {
  const out = new Map<string, Capture>();
  for await (const result of runResults(store, runId)) {
    if (result.status !== "failed" && result.version) {
      out.set(result.itemId, { version: result.version, fingerprint: fingerprint(result) });
    }
  }
  return out;
}

/**
 * Writes the version rows of the versions a batch captured first (its `exported` results), as the
 * batch ends: a run's end then writes none of them, whatever the run changed. Idempotent.
 */
export async function recordCapturedVersions(
  index: ItemIndex,
  run: Pick<RunRecord, "runId" | "identityId" | "startedAt">,
  results: readonly ItemResult[],
): Promise<void> {
  const captured = results.filter((result) => result.status === "exported" && result.version);
  await index.putVersions(
    run.identityId,
    captured.map((result) => versionRowOf(result, run)),
  );
}

function versionRowOf(result: ItemResult, run: Pick<RunRecord, "runId" | "startedAt">): VersionRow {
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

/** The item's tags, from its item.json as captured (results written before tags were recorded). */
async function tagsOf(store: BackupStore, result: ItemResult): Promise<string[]> {
  const file = result.files.find((f) => f.kind === "item");
  if (!file) return [];
  const item = await store.readJson(file.blob, itemTagsSchema).catch(() => undefined);
  return item?.tags ?? [];
}
