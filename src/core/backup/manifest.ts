import { Readable } from "node:stream";
import { z } from "zod";
import { schemaVersion } from "../stored-document.js";
import type { BackupStore } from "./backup-store.js";
import { type CacheSpace, streamToCache } from "./cache.js";
import { batchResultsSchema, type ItemResult, itemResultSchema } from "./export-item.js";
import {
  batchResultsPrefix,
  itemVersionPrefix,
  manifestName,
  orgRecordNames,
  runResultsPrefix,
} from "./layout.js";
import { backupFilterSchema, RUN_STATUSES, type RunRecord, trafficSchema } from "./runs.js";

export const MANIFEST_SCHEMA_VERSION = 1;

const count = z.number().int().nonnegative();
const nameOfBlob = z.string().min(1);

/** Everything of the manifest but its items: written first, so totals read without the items. */
/** An item a run (or a restore) could not handle, and why: the same shape in manifests and reports. */
export const itemFailureSchema = z.object({
  itemId: z.string(),
  title: z.string(),
  type: z.string(),
  code: z.string(),
  message: z.string(),
});

export const manifestHeaderSchema = z.object({
  schemaVersion: schemaVersion(MANIFEST_SCHEMA_VERSION),
  kind: z.literal("arcgis-org-backup/manifest"),
  runId: z.string(),
  identityId: z.string(),
  identityName: z.string(),
  name: z.string(),
  trigger: z.enum(["manual", "schedule"]),
  status: z.enum(RUN_STATUSES),
  startedAt: z.string(),
  endedAt: z.string(),
  portal: z.object({
    sharingUrl: z.string(),
    orgId: z.string().nullable(),
    orgName: z.string().nullable(),
    isPortal: z.boolean().nullable(),
  }),
  filter: backupFilterSchema.nullable(),
  totals: z.object({ items: count, exported: count, unchanged: count, failed: count, bytes: count }),
  traffic: trafficSchema.nullable(),
  /** Org records of this run, relative to the identity's folder. */
  org: z.object({ portal: nameOfBlob, users: nameOfBlob, groups: nameOfBlob, folders: nameOfBlob }),
  failures: z.array(itemFailureSchema),
  /** Set by a prune that kept this run only for the deleted items it last saw (the items left). */
  trimmed: z.object({ at: z.string(), heldUntil: z.string() }).optional(),
});
export type ManifestHeader = z.infer<typeof manifestHeaderSchema>;

/** One item in the manifest: where its version lives and every file with size and hash. */
export const manifestItemSchema = itemResultSchema.extend({ versionPath: z.string().nullable() });
export type ManifestItem = z.infer<typeof manifestItemSchema>;

/** `runs/<runId>/manifest.json`, schema version 1 (what every version of this app has written). */
export const manifestSchema = manifestHeaderSchema.extend({ items: z.array(manifestItemSchema) });
export type Manifest = z.infer<typeof manifestSchema>;

/** What the inventory keeps of `portals/self`, for the manifest's `portal`. */
const portalSelfSchema = z.object({
  id: z.string().nullish(),
  name: z.string().nullish(),
  isPortal: z.boolean().nullish(),
});

/**
 * Reads the results of a run in name order: all of them, or just the batches' (the items sent to
 * export, not those the inventory found unchanged).
 */
export async function* runResults(
  store: BackupStore,
  runId: string,
  which: "all" | "batches" = "all",
): AsyncGenerator<ItemResult> {
  const prefix = which === "all" ? runResultsPrefix(runId) : batchResultsPrefix(runId);
  for await (const name of store.list(prefix)) {
    const results = await store.readJson(name, batchResultsSchema);
    for (const result of results ?? []) yield result;
  }
}

/**
 * Writes `runs/<runId>/manifest.json` last: totals and failures from a first pass over the
 * batch results, then the items streamed through the cache folder, so a run of 100,000 items
 * never holds its manifest in memory. A completed run with failed items ends (and says in its
 * manifest) `completed-with-failures`.
 */
export async function writeManifest(options: {
  store: BackupStore;
  run: RunRecord;
  identityName: string;
  sharingUrl: string;
  cacheDirectory: string;
  cacheSpace: CacheSpace;
}): Promise<ManifestHeader> {
  const { store, run } = options;
  const totals = { items: 0, exported: 0, unchanged: 0, failed: 0, bytes: 0 };
  const failures: ManifestHeader["failures"] = [];
  for await (const result of runResults(store, run.runId)) {
    totals.items++;
    totals[result.status]++;
    totals.bytes += result.bytes;
    if (result.status === "failed") {
      failures.push({
        itemId: result.itemId,
        title: result.title,
        type: result.type,
        code: result.error?.code ?? "ERR_EXPORT",
        message: result.error?.message ?? "",
      });
    }
  }
  const org = orgRecordNames(run.runId);
  const portal = await store.readJson(org.portal, portalSelfSchema);
  const header: ManifestHeader = {
    schemaVersion: MANIFEST_SCHEMA_VERSION,
    kind: "arcgis-org-backup/manifest",
    runId: run.runId,
    identityId: run.identityId,
    identityName: options.identityName,
    name: run.name,
    trigger: run.trigger,
    status: run.status === "completed" && failures.length > 0 ? "completed-with-failures" : run.status,
    startedAt: run.startedAt,
    endedAt: run.endedAt ?? new Date().toISOString(),
    portal: {
      sharingUrl: options.sharingUrl,
      orgId: portal?.id ?? null,
      orgName: portal?.name ?? null,
      isPortal: portal?.isPortal ?? null,
    },
    filter: run.filter ?? null,
    totals,
    traffic: run.traffic ?? null,
    org,
    failures,
  };

  const headerText = JSON.stringify(header, null, 2);
  async function* manifestText(): AsyncGenerator<Buffer> {
    yield Buffer.from(`${headerText.slice(0, -2)},\n  "items": [`);
    let first = true;
    for await (const result of runResults(store, run.runId)) {
      const item: ManifestItem = {
        ...result,
        versionPath: result.version ? itemVersionPrefix(result.itemId, result.version) : null,
      };
      yield Buffer.from(`${first ? "\n" : ",\n"}    ${JSON.stringify(item)}`);
      first = false;
    }
    yield Buffer.from("\n  ]\n}\n");
  }
  const file = await streamToCache(Readable.from(manifestText()), options.cacheDirectory, options.cacheSpace);
  try {
    await store.uploadCached(manifestName(run.runId), file, "application/json");
  } finally {
    await file.discard();
  }
  return header;
}

/**
 * Reads a run's manifest, validated (small and medium runs: it is read whole). Throws
 * StoredDocumentError naming the blob when it does not match; undefined when there is none.
 */
export async function readManifest(store: BackupStore, runId: string): Promise<Manifest | undefined> {
  return store.readJson(manifestName(runId), manifestSchema);
}
