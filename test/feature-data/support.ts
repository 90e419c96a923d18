import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { BlobServiceClient, type ContainerClient } from "@azure/storage-blob";
import { PortalClient } from "../../src/core/arcgis/portal-client.js";
import { UsernamePasswordTokenProvider } from "../../src/core/arcgis/token-providers.js";
import { CacheSpace } from "../../src/core/backup/cache.js";
import {
  exportItem,
  type ItemResult,
  type ServiceDataExporter,
  type VersionMarker,
} from "../../src/core/backup/export-item.js";
import type { InventoryRecord } from "../../src/core/backup/inventory.js";
import { itemVersionPrefix } from "../../src/core/backup/layout.js";
import { silentLogger } from "../../src/core/log.js";
import { BlobBackupStore } from "../../src/core/storage/blob-backup-store.js";
import type { PortalSim, SimItem } from "../portal-sim/index.js";

export const IDENTITY = "00000000-0000-4000-8000-0000000000f1";

/** A signed-in client for the sim's admin; `fetch` lets a test see or bend the traffic. */
export function portalFor(sim: PortalSim, fetchImpl?: typeof fetch): PortalClient {
  const base = {
    sharingUrl: sim.sharingUrl,
    baseDelayMs: 5,
    maxDelayMs: 40,
    ...(fetchImpl ? { fetch: fetchImpl } : {}),
  };
  const tokenClient = new PortalClient(base);
  return new PortalClient({
    ...base,
    tokens: new UsernamePasswordTokenProvider(tokenClient, { ...sim.admin, referer: tokenClient.referer }),
  });
}

export interface Backup {
  container: ContainerClient;
  store: BlobBackupStore;
  cacheDirectory: string;
  cacheSpace: CacheSpace;
  dispose(): Promise<void>;
}

export async function openBackup(connectionString: string): Promise<Backup> {
  const container = BlobServiceClient.fromConnectionString(connectionString).getContainerClient(
    `features-${randomBytes(5).toString("hex")}`,
  );
  await container.create();
  const cacheDirectory = await mkdtemp(path.join(tmpdir(), "feature-cache-"));
  return {
    container,
    store: new BlobBackupStore(container, IDENTITY),
    cacheDirectory,
    cacheSpace: new CacheSpace(512 * 1024 * 1024),
    async dispose() {
      await rm(cacheDirectory, { recursive: true, force: true });
      await container.delete().catch(() => undefined);
    },
  };
}

export function recordOf(item: SimItem): InventoryRecord {
  return {
    id: item.id,
    title: item.title,
    type: item.type,
    typeKeywords: item.typeKeywords,
    owner: item.owner,
    folderId: null,
    folderTitle: null,
    modified: item.modified,
    size: item.size,
    url: item.url,
    access: item.access,
    groups: item.groups,
  };
}

/** Exports one item, by default as a run of its own (a version an earlier call completed is `unchanged`). */
export async function runExport(
  backup: Backup,
  portal: PortalClient,
  serviceData: ServiceDataExporter,
  item: SimItem,
  runId = `b-feature-data-${randomBytes(4).toString("hex")}`,
): Promise<ItemResult> {
  return exportItem(
    {
      runId,
      portal,
      store: backup.store,
      cacheDirectory: backup.cacheDirectory,
      cacheSpace: backup.cacheSpace,
      log: silentLogger,
      serviceData,
    },
    recordOf(item),
  );
}

export async function readText(
  backup: Backup,
  itemId: string,
  version: string,
  file: string,
): Promise<string> {
  const blob = backup.store.blobName(`${itemVersionPrefix(itemId, version)}${file}`);
  const buffer = await backup.container.getBlobClient(blob).downloadToBuffer();
  return buffer.toString("utf8");
}

export async function readBytes(
  backup: Backup,
  itemId: string,
  version: string,
  file: string,
): Promise<Buffer> {
  const blob = backup.store.blobName(`${itemVersionPrefix(itemId, version)}${file}`);
  return backup.container.getBlobClient(blob).downloadToBuffer();
}

export async function readNdjson<T>(
  backup: Backup,
  itemId: string,
  version: string,
  file: string,
): Promise<T[]> {
  const text = await readText(backup, itemId, version, file);
  return text
    .split("\n")
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line) as T);
}

export async function readMarker(backup: Backup, itemId: string, version: string): Promise<VersionMarker> {
  return JSON.parse(await readText(backup, itemId, version, "_complete.json")) as VersionMarker;
}

export function featureServices(sim: PortalSim): SimItem[] {
  return [...sim.model.items()].filter(
    (i) => i.type === "Feature Service" && !i.typeKeywords.includes("View Service"),
  );
}

/** The sim's own definition of a service (pinned, so edits to it stick). */
export function serviceDef(sim: PortalSim, item: SimItem) {
  const index = sim.model.indexOf(item.id);
  if (index === null) throw new Error(`no item ${item.id}`);
  const def = sim.model.pinService(index);
  if (!def) throw new Error(`no service for ${item.id}`);
  return def;
}

export function objectIdsOf(features: Array<{ attributes: Record<string, unknown> }>): number[] {
  return features.map((f) => f.attributes.OBJECTID as number);
}

/** Form bodies and query strings of every request the client sent. */
export function recordingFetch(seen: Array<{ url: string; params: URLSearchParams }>): typeof fetch {
  return async (input, init) => {
    const url = String(input instanceof Request ? input.url : input);
    const params = new URLSearchParams(new URL(url).search);
    if (typeof init?.body === "string") for (const [k, v] of new URLSearchParams(init.body)) params.set(k, v);
    seen.push({ url: url.split("?")[0] ?? url, params });
    return fetch(input, init);
  };
}
