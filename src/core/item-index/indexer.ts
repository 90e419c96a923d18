import { z } from "zod";
import type { BackupStore } from "../backup/backup-store.js";
import type { CacheSpace } from "../backup/cache.js";
import type { ItemResult } from "../backup/export-item.js";
import { runResults } from "../backup/manifest.js";
import { isCompleteRun } from "../backup/retention.js";
import type { RunRecord } from "../backup/runs.js";
import { mapWithConcurrency } from "../concurrency.js";
import type { ItemIndex, ItemRow, VersionRow } from "./item-index.js";
import { rewriteSnapshot, snapshotLine } from "./search-snapshot.js";

/** Item rows read at once (writes go in transactions of 100). */
const READERS = 8;
/** Changed items read from the run's results before their rows are written. */
const INDEX_BATCH = 500;
const itemTagsSchema = z.object({ tags: z.array(z.string()).nullish() }).passthrough();

/**
 * Brings an identity's item index up to a run that has ended with its manifest. Compared with the
 * run the index last took in (its head), only what changed is written: a new item or version, a
 * new title, owner or folder, an item gone from the org (an unfiltered complete run no longer has
 * it: it is marked deleted, last seen in the head's run) or back in it; then the search snapshot
 * is rewritten with those rows. Safe to run twice.
 */
export async function indexRun(options: {
  store: BackupStore;
  index: ItemIndex;
  run: RunRecord;
  cacheDirectory: string;
  cacheSpace: CacheSpace;
}) {
  const { store, index, run } = options;
  const identityId = run.identityId;
  const head = await index.head(identityId);
  const before = head ? await fingerprints(store, head.lastRunId) : new Map<string, string>();
  const seen = new Set<string>();
  // The snapshot lines of what changed, serialised: a first run of 100,000 items changes them all.
  const rows = new Map<string, string>();
  let batch: ItemResult[] = [];
  const flush = async () => {
    const indexed = await mapWithConcurrency(batch, READERS, (result) =>
      indexItem(store, index, identityId, run, result),
    );
    await index.putRows(
      identityId,
      indexed.map((entry) => entry.row),
      indexed.flatMap((entry) => (entry.version ? [entry.version] : [])),
    );
    for (const { row } of indexed) {
      const { versions: _versions, ...searchRow } = row;
      rows.set(row.itemId, snapshotLine(searchRow));
    }
    batch = [];
  };
  for await (const result of runResults(store, run.runId)) {
    seen.add(result.itemId);
    if (result.status === "failed" || !result.version) continue;
    if (before.get(result.itemId) === fingerprint(result)) continue;
    batch.push(result);
    if (batch.length >= INDEX_BATCH) await flush();
  }
  await flush();
  const unfiltered = isCompleteRun(run) && !run.filter;
  if (head && unfiltered) {
    const gone = [...before.keys()].filter((itemId) => !seen.has(itemId));
    const deleted = (
      await mapWithConcurrency(gone, READERS, async (itemId) => {
        const item = await index.item(identityId, itemId);
        if (!item?.present) return [];
        return [{ ...item, present: false, lastSeenRunId: head.lastRunId, lastSeenAt: head.lastRunAt }];
      })
    ).flat();
    await index.putRows(identityId, deleted, []);
    for (const { versions: _versions, ...row } of deleted) rows.set(row.itemId, snapshotLine(row));
  }
  const rewrite = rows.size > 0 || !head;
  if (rewrite) {
    await rewriteSnapshot({
      store,
      changes: rows,
      cacheDirectory: options.cacheDirectory,
      cacheSpace: options.cacheSpace,
    });
  }
  await index.setHead(identityId, {
    lastRunId: unfiltered || !head ? run.runId : head.lastRunId,
    lastRunAt: unfiltered || !head ? run.startedAt : head.lastRunAt,
    snapshotRunId: rewrite || !head ? run.runId : head.snapshotRunId,
  });
  return { changed: rows.size };
}

/** What of an item the index keeps, as one string: a change of any of it is written. */
function fingerprint(result: ItemResult): string {
  return JSON.stringify([result.version, result.title, result.type, result.owner, result.folderTitle]);
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
  index: ItemIndex,
  identityId: string,
  run: RunRecord,
  result: ItemResult,
): Promise<{ row: ItemRow; version?: VersionRow }> {
  const version = result.version as string;
  const known = await index.item(identityId, result.itemId);
  const knownVersions = known ? (JSON.parse(known.versions) as string[]) : [];
  const isNew = !knownVersions.includes(version);
  const tags =
    result.tags ?? (known && !isNew ? (JSON.parse(known.tags) as string[]) : await tagsOf(store, result));
  const newest = !known || version >= known.lastVersion;
  const row: ItemRow = {
    itemId: result.itemId,
    title: newest ? result.title : (known?.title ?? result.title),
    type: result.type,
    owner: result.owner,
    folderTitle: result.folderTitle ?? "",
    tags: JSON.stringify(tags),
    search: [result.title, ...tags, result.itemId].join(" ").toLowerCase(),
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
