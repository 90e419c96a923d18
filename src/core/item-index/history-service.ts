import type { Readable } from "node:stream";
import { z } from "zod";
import type { BackupStore } from "../backup/backup-store.js";
import { cacheSpaceFor } from "../backup/cache.js";
import { type ExportedFile, type ItemResult, versionMarkerSchema } from "../backup/export-item.js";
import { completionMarkerName, RUN_ID_PATTERN } from "../backup/layout.js";
import { runResults } from "../backup/manifest.js";
import type { RunRecord, RunStore } from "../backup/runs.js";
import { NotFoundError, ValidationError } from "../errors.js";
import type { StoredIdentity } from "../identities/identity.js";
import type { IdentityService } from "../identities/identity-service.js";
import { parseInput } from "../validation.js";
import { indexRun } from "./indexer.js";
import type { ItemIndex, SnapshotState, VersionRow } from "./item-index.js";
import { jsonPatch, type PatchOperation } from "./json-patch.js";
import { deleteSnapshot, type SearchRow, snapshotRows } from "./search-snapshot.js";

const ITEM_ID = /^[0-9A-Za-z_-]{1,64}$/;
const VERSION = /^v\d{1,16}(-e\d{1,16})?$/;
/** Changed items of a run diff that get JSON patches; the others list which parts changed. */
const PATCHED_ITEMS = 100;
/** JSON files larger than this are compared by hash only. */
const PATCHABLE_BYTES = 2 * 1024 * 1024;

const searchSchema = z.strictObject({
  q: z.string().max(200).optional(),
  type: z.string().min(1).max(100).optional(),
  owner: z.string().min(1).max(200).optional(),
  deleted: z.enum(["true", "false"]).optional(),
  top: z.coerce.number().int().min(1).max(500).optional(),
  continuationToken: z
    .string()
    .max(200)
    .regex(/^[A-Za-z0-9_-]+$/, "must be a token from an earlier page")
    .optional(),
});

/** An item as the search answers it. */
export interface ItemView {
  itemId: string;
  title: string;
  type: string;
  owner: string;
  folder: string | null;
  tags: string[];
  firstRunId: string;
  firstSeenAt: string;
  lastRunId: string;
  lastSeenAt: string;
  versions: number;
  lastVersion: string;
  deleted: boolean;
}

/** What changed between two versions of an item (or an item between two runs). */
export interface ItemChange {
  itemId: string;
  title: string;
  type: string;
  from: string | null;
  to: string | null;
  /** Parts whose bytes differ: item, data, metadata, thumbnail, resources, service, features, attachments, sharing. */
  parts: string[];
  /** Top-level item fields that differ (title, tags, snippet, extent…). */
  fields: string[];
  resources?: { added: string[]; removed: string[]; changed: string[] };
  sharing?: { from: { access: string; groups: string[] }; to: { access: string; groups: string[] } };
  features?: Record<string, { from: number | null; to: number | null }>;
  /** RFC 6902 JSON Patches from the older to the newer: the item JSON and, for JSON items, the data. */
  patches?: {
    item?: PatchOperation[];
    data?: PatchOperation[];
    /** JSON resources that changed, by their name in the portal. */
    resources?: Record<string, PatchOperation[]>;
  };
}

/**
 * Finding things in an identity's backups: search over every item ever captured, an item's
 * versions with what changed between them, one captured file, and what changed between two runs.
 * Search and history read the item index (the search snapshot and the versions in
 * ITEM_INDEX_TABLE); diffs read the runs' results and the versions' files.
 */
export class HistoryService {
  constructor(
    private readonly deps: {
      identities: IdentityService;
      runs: RunStore;
      index: ItemIndex;
      openStore(identity: StoredIdentity): Promise<BackupStore>;
      /** The cache folder's budget (a rebuild writes the search snapshot through it). */
      cacheMaxBytes: number;
    },
  ) {}

  /** Each identity's search snapshot as last read, and the run that wrote it. */
  private readonly snapshots = new Map<string, { runId: string; rows: Promise<SearchRow[]> }>();

  async search(identityId: string, query: unknown) {
    const input = parseInput(searchSchema, query);
    const identity = await this.deps.identities.get(identityId);
    const head = await this.deps.index.head(identity.id);
    const rows = head ? await this.snapshot(identity, head.snapshot) : [];
    const top = input.top ?? 50;
    const after = input.continuationToken ? Buffer.from(input.continuationToken, "base64url").toString() : "";
    const needle = input.q?.toLowerCase();
    const deleted = input.deleted === undefined ? undefined : input.deleted === "true";
    const items: SearchRow[] = [];
    let next: string | undefined;
    for (let i = firstAfter(rows, after); i < rows.length; i++) {
      const row = rows[i] as SearchRow;
      if (input.type && row.type !== input.type) continue;
      if (input.owner && row.owner !== input.owner) continue;
      if (deleted !== undefined && row.present === deleted) continue;
      if (needle && !row.search.includes(needle)) continue;
      if (items.length === top) {
        next = items[items.length - 1]?.itemId;
        break;
      }
      items.push(row);
    }
    return {
      items: items.map((item) => itemView(item, head?.lastRunId, head?.lastRunAt)),
      ...(next ? { continuationToken: Buffer.from(next).toString("base64url") } : {}),
    };
  }

  /** The item's versions, oldest first, each with the runs that hold it and what changed since the one before. */
  async versions(identityId: string, itemId: string) {
    const identity = await this.deps.identities.get(identityId);
    const item = await this.knownItem(identity, itemId);
    const store = await this.deps.openStore(identity);
    const versions = await this.deps.index.versions(identity.id, item.itemId, item.versions);
    const runs = (await this.deps.runs.list(identity.id, Number.POSITIVE_INFINITY)).filter(isComplete);
    const out = [];
    for (const [i, version] of versions.entries()) {
      const next = versions[i + 1];
      const until = next ? Date.parse(next.firstSeenAt) : Number.POSITIVE_INFINITY;
      const lastSeen = item.present ? Number.POSITIVE_INFINITY : Date.parse(item.lastSeenAt);
      const holding = runs
        .filter((run) => {
          const at = Date.parse(run.startedAt);
          return at >= Date.parse(version.firstSeenAt) && at < until && at <= lastSeen;
        })
        .map((run) => run.runId)
        .reverse();
      const previous = versions[i - 1];
      out.push({
        version: version.version,
        modified: new Date(version.modified).toISOString(),
        firstRunId: version.firstRunId,
        firstSeenAt: version.firstSeenAt,
        runs: holding,
        files: version.files,
        attachments: version.attachments,
        counts: version.counts,
        sharing: { access: version.access, groups: version.groups },
        changes: previous ? await this.changeBetween(store, item, previous, version, false) : null,
      });
    }
    return { itemId: item.itemId, title: item.title, type: item.type, deleted: !item.present, versions: out };
  }

  /** One captured file of a version, to stream with its type. */
  async file(identityId: string, itemId: string, version: string, filePath: string) {
    const identity = await this.deps.identities.get(identityId);
    if (!ITEM_ID.test(itemId)) throw new NotFoundError(`Item ${itemId} not found`);
    if (!VERSION.test(version)) throw new NotFoundError(`Version ${version} of item ${itemId} not found`);
    const store = await this.deps.openStore(identity);
    const marker = await store.readJson(completionMarkerName(itemId, version), versionMarkerSchema);
    if (!marker) throw new NotFoundError(`Version ${version} of item ${itemId} not found`);
    const file = marker.files.find((f) => f.path === filePath);
    if (!file) throw new NotFoundError(`File ${filePath} is not in version ${version} of item ${itemId}`);
    const opened = await store.openIfExists(file.blob);
    if (!opened) throw new NotFoundError(`File ${filePath} of version ${version} is missing from the backup`);
    return {
      body: opened.body as Readable,
      size: opened.size,
      contentType: file.contentType,
      fileName: (file.originalName ?? file.path).split("/").pop() ?? "file",
    };
  }

  /** What changed in one item from version `from` to version `to`. */
  async diffVersions(identityId: string, itemId: string, query: unknown): Promise<ItemChange> {
    const identity = await this.deps.identities.get(identityId);
    const item = await this.knownItem(identity, itemId);
    const input = parseInput(
      z.strictObject({ from: z.string().regex(VERSION), to: z.string().regex(VERSION) }),
      query,
    );
    const versions = await this.deps.index.versions(identity.id, item.itemId, item.versions);
    const find = (version: string, field: string) => {
      const found = versions.find((v) => v.version === version);
      if (!found) throw new ValidationError(`${field}: ${version} is not a version of item ${itemId}`, field);
      return found;
    };
    const store = await this.deps.openStore(identity);
    return this.changeBetween(store, item, find(input.from, "from"), find(input.to, "to"), true);
  }

  /**
   * What changed from run `against` to run `runId` (the older first, whichever is given first):
   * items added, removed and changed, with the parts that changed, JSON Patches for the item JSON
   * and JSON data of the first PATCHED_ITEMS changed items, sharing and feature count changes.
   */
  async diffRuns(runId: string, query: unknown) {
    const run = RUN_ID_PATTERN.test(runId) ? await this.deps.runs.get(runId) : undefined;
    if (!run) throw new NotFoundError(`Backup run ${runId} not found`);
    const input = parseInput(
      z.strictObject({ against: z.string().regex(RUN_ID_PATTERN, "must be a backup run id") }),
      query,
    );
    const other = await this.deps.runs.find(run.identityId, input.against);
    if (!other)
      throw new ValidationError(`against: ${input.against} is not a run of this identity`, "against");
    for (const r of [run, other]) {
      if (!r.manifest || r.heldForDeletedItems) {
        throw new ValidationError(
          `Run ${r.runId} has no complete manifest to compare`,
          r === run ? "runId" : "against",
        );
      }
    }
    const [older, newer] =
      Date.parse(run.startedAt) <= Date.parse(other.startedAt) ? [run, other] : [other, run];
    const identity = await this.deps.identities.get(run.identityId);
    const store = await this.deps.openStore(identity);
    const before = await summaries(store, older.runId);
    const added: Array<Pick<ItemResult, "itemId" | "title" | "type">> = [];
    const changed: ItemChange[] = [];
    let unchanged = 0;
    for await (const result of runResults(store, newer.runId)) {
      const was = before.get(result.itemId);
      before.delete(result.itemId);
      if (!was) {
        added.push({ itemId: result.itemId, title: result.title, type: result.type });
        continue;
      }
      const sharingChanged = was.access !== result.access || was.groups !== JSON.stringify(result.groups);
      if (was.version === result.version && !sharingChanged) {
        unchanged++;
        continue;
      }
      const patch = changed.length < PATCHED_ITEMS;
      changed.push(await this.changeOfResults(store, was, result, patch));
    }
    const removed = [...before.values()].map(({ itemId, title, type }) => ({ itemId, title, type }));
    return {
      from: older.runId,
      to: newer.runId,
      totals: { added: added.length, removed: removed.length, changed: changed.length, unchanged },
      added,
      removed,
      changed,
      ...(changed.length > PATCHED_ITEMS ? { patchesFor: PATCHED_ITEMS } : {}),
    };
  }

  /** Rebuilds the identity's index from the manifests of its runs, oldest first. */
  async rebuild(identityId: string) {
    const identity = await this.deps.identities.get(identityId);
    const store = await this.deps.openStore(identity);
    await this.deps.index.clear(identity.id);
    const runs = (await this.deps.runs.list(identity.id, Number.POSITIVE_INFINITY))
      .filter((run) => run.manifest && !run.heldForDeletedItems && run.status !== "running")
      .reverse();
    const cacheSpace = cacheSpaceFor(identity.cacheDirectory, this.deps.cacheMaxBytes);
    await deleteSnapshot(store);
    for (const run of runs) {
      await indexRun({
        store,
        index: this.deps.index,
        run,
        cacheDirectory: identity.cacheDirectory,
        cacheSpace,
        rebuilding: true,
      });
    }
    this.snapshots.delete(identity.id);
    return { runsIndexed: runs.length };
  }

  // --- inside -------------------------------------------------------------------------------

  /** The search snapshot's rows, read once per run that wrote it (kept while no newer run did). */
  private snapshot(identity: StoredIdentity, state: SnapshotState): Promise<SearchRow[]> {
    const runId = state.writtenBy;
    const cached = this.snapshots.get(identity.id);
    if (cached?.runId === runId) return cached.rows;
    const rows = (async () => {
      const store = await this.deps.openStore(identity);
      const out: SearchRow[] = [];
      for await (const row of snapshotRows(store, state)) out.push(row);
      return out;
    })();
    rows.catch(() => this.snapshots.delete(identity.id));
    this.snapshots.set(identity.id, { runId, rows });
    return rows;
  }

  /** The item as the search snapshot has it (read once, like a search). */
  private async knownItem(identity: StoredIdentity, itemId: string): Promise<SearchRow> {
    const head = ITEM_ID.test(itemId) ? await this.deps.index.head(identity.id) : undefined;
    const rows = head ? await this.snapshot(identity, head.snapshot) : [];
    const found = rows[firstAfter(rows, itemId) - 1];
    if (found?.itemId !== itemId) throw new NotFoundError(`Item ${itemId} is in no backup of this identity`);
    return found;
  }

  private async changeOfResults(
    store: BackupStore,
    was: Summary,
    now: ItemResult,
    patch: boolean,
  ): Promise<ItemChange> {
    const sameVersion = was.version === now.version;
    const change = await compareFiles(
      store,
      {
        itemId: now.itemId,
        title: now.title,
        type: now.type,
        from: was.version ?? null,
        to: now.version ?? null,
      },
      sameVersion || !was.version ? [] : await filesOfVersion(store, now.itemId, was.version),
      sameVersion ? [] : now.files,
      patch,
    );
    return withSharingAndCounts(
      change,
      { access: was.access, groups: JSON.parse(was.groups) as string[], counts: was.counts },
      { access: now.access, groups: now.groups, counts: now.counts ?? {} },
    );
  }

  private async changeBetween(
    store: BackupStore,
    item: SearchRow,
    from: VersionRow,
    to: VersionRow,
    patch: boolean,
  ): Promise<ItemChange> {
    const change = await compareFiles(
      store,
      { itemId: item.itemId, title: to.title, type: item.type, from: from.version, to: to.version },
      await filesOfVersion(store, item.itemId, from.version),
      await filesOfVersion(store, item.itemId, to.version),
      patch,
    );
    return withSharingAndCounts(change, from, to);
  }
}

/** A version's files, from its completion marker (none when the version is gone). */
async function filesOfVersion(store: BackupStore, itemId: string, version: string): Promise<ExportedFile[]> {
  return (await store.readJson(completionMarkerName(itemId, version), versionMarkerSchema))?.files ?? [];
}

interface SharingAndCounts {
  access: string;
  groups: string[];
  counts: Record<string, number>;
}

/** Adds to a change what differs in sharing and in feature counts. */
function withSharingAndCounts(change: ItemChange, from: SharingAndCounts, to: SharingAndCounts): ItemChange {
  if (from.access !== to.access || JSON.stringify(from.groups) !== JSON.stringify(to.groups)) {
    change.parts.push("sharing");
    change.sharing = {
      from: { access: from.access, groups: from.groups },
      to: { access: to.access, groups: to.groups },
    };
  }
  const features = countChanges(from.counts, to.counts);
  if (features) change.features = features;
  return change;
}

function isComplete(run: RunRecord): boolean {
  return (run.status === "completed" || run.status === "completed-with-failures") && !!run.manifest;
}

/** The index of the first row whose item id sorts after `after` (rows are in item id order). */
function firstAfter(rows: readonly SearchRow[], after: string): number {
  let low = 0;
  let high = rows.length;
  while (low < high) {
    const mid = (low + high) >> 1;
    if ((rows[mid] as SearchRow).itemId <= after) low = mid + 1;
    else high = mid;
  }
  return low;
}

function itemView(item: SearchRow, headRunId: string | undefined, headAt: string | undefined): ItemView {
  const seenByHead = item.present && headRunId && headAt && headAt >= item.lastSeenAt;
  return {
    itemId: item.itemId,
    title: item.title,
    type: item.type,
    owner: item.owner,
    folder: item.folderTitle || null,
    tags: item.tags,
    firstRunId: item.firstRunId,
    firstSeenAt: item.firstSeenAt,
    lastRunId: seenByHead ? headRunId : item.lastSeenRunId,
    lastSeenAt: seenByHead ? headAt : item.lastSeenAt,
    versions: item.versions.length,
    lastVersion: item.versions[item.versions.length - 1] as string,
    deleted: !item.present,
  };
}

interface Summary {
  itemId: string;
  title: string;
  type: string;
  version: string | undefined;
  access: string;
  groups: string;
  counts: Record<string, number>;
}

/** What a diff needs of each item of a run: a few strings, not its files. */
async function summaries(store: BackupStore, runId: string): Promise<Map<string, Summary>> {
  const out = new Map<string, Summary>();
  for await (const result of runResults(store, runId)) {
    out.set(result.itemId, {
      itemId: result.itemId,
      title: result.title,
      type: result.type,
      version: result.version,
      access: result.access,
      groups: JSON.stringify(result.groups),
      counts: result.counts ?? {},
    });
  }
  return out;
}

const PART_OF_KIND: Record<string, string> = {
  item: "item",
  data: "data",
  metadata: "metadata",
  thumbnail: "thumbnail",
  resource: "resources",
  related: "related",
  service: "service",
  layer: "service",
  features: "features",
  // A change set (rows or their attachments) changes the layer's rows: counts stay full-row counts.
  "feature-changes": "features",
  attachment: "attachments",
  "attachments-index": "attachments",
};

/** The parts whose files differ between two versions, with item fields and JSON patches. */
async function compareFiles(
  store: BackupStore,
  base: Pick<ItemChange, "itemId" | "title" | "type" | "from" | "to">,
  before: ExportedFile[],
  after: ExportedFile[],
  patch: boolean,
): Promise<ItemChange> {
  const parts = new Set<string>();
  const resources = { added: [] as string[], removed: [] as string[], changed: [] as string[] };
  const old = new Map(before.map((f) => [f.path, f]));
  for (const file of after) {
    const was = old.get(file.path);
    old.delete(file.path);
    if (was && was.sha256 === file.sha256) continue;
    parts.add(PART_OF_KIND[file.kind] ?? file.kind);
    if (file.kind === "resource")
      (was ? resources.changed : resources.added).push(file.originalName ?? file.path);
  }
  for (const file of old.values()) {
    parts.add(PART_OF_KIND[file.kind] ?? file.kind);
    if (file.kind === "resource") resources.removed.push(file.originalName ?? file.path);
  }
  const change: ItemChange = { ...base, parts: [...parts], fields: [] };
  if (resources.added.length + resources.removed.length + resources.changed.length > 0)
    change.resources = resources;
  const pair = (kind: string) =>
    [before.find((f) => f.kind === kind), after.find((f) => f.kind === kind)] as const;
  const [itemBefore, itemAfter] = pair("item");
  if (parts.has("item") && itemBefore && itemAfter) {
    const [a, b] = await Promise.all([readJsonFile(store, itemBefore), readJsonFile(store, itemAfter)]);
    if (isRecord(a) && isRecord(b)) {
      change.fields = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter(
        (key) => JSON.stringify(a[key]) !== JSON.stringify(b[key]),
      );
    }
    if (patch && a !== undefined && b !== undefined) change.patches = { item: jsonPatch(a, b) };
  }
  const [dataBefore, dataAfter] = pair("data");
  if (patch && parts.has("data") && dataBefore?.path === "data.json" && dataAfter?.path === "data.json") {
    const [a, b] = await Promise.all([readJsonFile(store, dataBefore), readJsonFile(store, dataAfter)]);
    if (a !== undefined && b !== undefined) change.patches = { ...change.patches, data: jsonPatch(a, b) };
  }
  if (patch) {
    const resources: Record<string, PatchOperation[]> = {};
    const old = new Map(before.filter((f) => f.kind === "resource").map((f) => [f.path, f]));
    for (const file of after) {
      const was = old.get(file.path);
      if (file.kind !== "resource" || !was || was.sha256 === file.sha256 || !/\.json$/i.test(file.path))
        continue;
      const [a, b] = await Promise.all([readJsonFile(store, was), readJsonFile(store, file)]);
      if (a !== undefined && b !== undefined) resources[file.originalName ?? file.path] = jsonPatch(a, b);
    }
    if (Object.keys(resources).length > 0) change.patches = { ...change.patches, resources };
  }
  return change;
}

async function readJsonFile(store: BackupStore, file: ExportedFile): Promise<unknown> {
  if (file.size > PATCHABLE_BYTES) return undefined;
  return store.readJson(file.blob, z.unknown()).catch(() => undefined);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function countChanges(
  from: Record<string, number>,
  to: Record<string, number>,
): Record<string, { from: number | null; to: number | null }> | undefined {
  const out: Record<string, { from: number | null; to: number | null }> = {};
  for (const key of new Set([...Object.keys(from), ...Object.keys(to)])) {
    if (from[key] !== to[key]) out[key] = { from: from[key] ?? null, to: to[key] ?? null };
  }
  return Object.keys(out).length > 0 ? out : undefined;
}
