import { Readable } from "node:stream";
import type { BackupStore } from "./backup-store.js";
import { type CacheSpace, streamToCache } from "./cache.js";
import type { ItemResult } from "./export-item.js";
import { itemVersionPrefix, MANIFEST_NAME, runPrefix } from "./layout.js";
import type { RunRecord } from "./runs.js";

export const MANIFEST_SCHEMA_VERSION = 1;

export interface ManifestHeader {
  schemaVersion: typeof MANIFEST_SCHEMA_VERSION;
  kind: "arcgis-org-backup/manifest";
  runId: string;
  identityId: string;
  identityName: string;
  name: string;
  trigger: RunRecord["trigger"];
  status: RunRecord["status"];
  startedAt: string;
  endedAt: string;
  portal: { sharingUrl: string; orgId: string | null; orgName: string | null; isPortal: boolean | null };
  filter: RunRecord["filter"] | null;
  totals: { items: number; exported: number; unchanged: number; failed: number; bytes: number };
  traffic: RunRecord["traffic"] | null;
  /** Org records of this run, relative to the identity's prefix. */
  org: { portal: string; users: string; groups: string; folders: string };
  failures: Array<{ itemId: string; title: string; type: string; code: string; message: string }>;
}

/** One item in the manifest: where its version lives and every file with size and hash. */
export type ManifestItem = ItemResult & { versionPath: string | null };

export interface Manifest extends ManifestHeader {
  items: ManifestItem[];
}

/** Reads the batch results of a run in name order. */
async function* runResults(store: BackupStore, runId: string): AsyncGenerator<ItemResult> {
  for await (const name of store.list(`${runPrefix(runId)}results/`)) {
    const results = await store.readJson<ItemResult[]>(name);
    for (const result of results ?? []) yield result;
  }
}

/**
 * Writes `runs/<runId>/manifest.json` last: totals and failures from a first pass over the
 * batch results, then the items streamed through the cache folder, so a run of 100,000 items
 * never holds its manifest in memory.
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
  const portal = await store.readJson<{ id?: string; name?: string; isPortal?: boolean }>(
    `${runPrefix(run.runId)}org/portal.json`,
  );
  const orgPrefix = `${runPrefix(run.runId)}org/`;
  const header: ManifestHeader = {
    schemaVersion: MANIFEST_SCHEMA_VERSION,
    kind: "arcgis-org-backup/manifest",
    runId: run.runId,
    identityId: run.identityId,
    identityName: options.identityName,
    name: run.name,
    trigger: run.trigger,
    status: run.status,
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
    org: {
      portal: `${orgPrefix}portal.json`,
      users: `${orgPrefix}users.ndjson`,
      groups: `${orgPrefix}groups.ndjson`,
      folders: `${orgPrefix}folders.ndjson`,
    },
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
    await store.uploadCached(`${runPrefix(run.runId)}${MANIFEST_NAME}`, file, "application/json");
  } finally {
    await file.discard();
  }
  return header;
}

/** Reads a run's manifest (small and medium runs; restore streams large ones). */
export async function readManifest(store: BackupStore, runId: string): Promise<Manifest | undefined> {
  return store.readJson<Manifest>(`${runPrefix(runId)}${MANIFEST_NAME}`);
}
