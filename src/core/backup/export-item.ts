import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { z } from "zod";
import type { PortalClient, PortalStream } from "../arcgis/portal-client.js";
import { PortalError, PortalNotFoundError } from "../arcgis/portal-errors.js";
import { calculateRetryDelay } from "../arcgis/retry-delay.js";
import { errorMessage } from "../errors.js";
import { classifyFailure, isRetryableFailure, isSystemicFailure } from "../failures.js";
import type { Logger } from "../log.js";
import { schemaVersion } from "../stored-document.js";
import { type BackupStore, JSON_TYPE, jsonBytes, type StoredFile } from "./backup-store.js";
import { type CachedFile, type CacheSpace, startCaching } from "./cache.js";
import { previousMarkerOf, ReusableFiles } from "./file-reuse.js";
import type { InventoryRecord } from "./inventory.js";
import { layerStorageSchema } from "./layer-changes-format.js";
import {
  completionMarkerName,
  dataFilePath,
  itemVersion,
  itemVersionPrefix,
  layerDefinitionPath,
  resourcePath,
  thumbnailPath,
  VERSION_FILES,
} from "./layout.js";
import type { PagedResponse, PortalItem } from "./portal-types.js";

const FILE_KINDS = [
  "item",
  "data",
  "metadata",
  "thumbnail",
  "resource",
  "related",
  "service",
  "layer",
  "features",
  "attachment",
  "attachments-index",
  /** A change set of a hosted layer (rows, or the attachments of its rows): see layer-changes-format.ts. */
  "feature-changes",
  "other",
] as const;
export type FileKind = (typeof FILE_KINDS)[number];

/** One captured file of an item version (as the completion marker, results and manifest hold it). */
export const exportedFileSchema = z.object({
  /** Relative to the identity's folder. */
  blob: z.string(),
  size: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, "must be a SHA-256 in hex"),
  contentType: z.string(),
  /** Path inside the version folder. */
  path: z.string(),
  kind: z.enum(FILE_KINDS),
  /** The name the portal used (resource path, file name), when it differs from `path`. */
  originalName: z.string().optional(),
  /** Feature layer id, attachment ids and the like. */
  detail: z.record(z.string(), z.union([z.string(), z.number()])).optional(),
  /**
   * The blob was stored by an earlier version of the item with the same SHA-256 and size: this
   * version names it and uploaded nothing (`blob` is then outside the version's folder).
   */
  reused: z.literal(true).optional(),
});
export type ExportedFile = z.infer<typeof exportedFileSchema>;

const counts = z.record(z.string(), z.number());
const itemError = z.object({ code: z.string(), message: z.string() });

/** The completion marker of an item version: written last, so a version without it never counts. */
export const versionMarkerSchema = z.object({
  schemaVersion: schemaVersion(1),
  itemId: z.string(),
  version: z.string(),
  /** The run that wrote it (absent from markers written before runs were recorded in them). */
  runId: z.string().optional(),
  capturedAt: z.string(),
  files: z.array(exportedFileSchema),
  notes: z.array(z.string()),
  /** Counts a restore checks against (features per layer, attachments). */
  counts: counts.optional(),
  /** The item's tags at this version (for the index; absent from older markers). */
  tags: z.array(z.string()).optional(),
  /** How each hosted layer's rows are stored (full or change set); absent from older markers. */
  layerStorage: z.array(layerStorageSchema).optional(),
});
export type VersionMarker = z.infer<typeof versionMarkerSchema>;

const ITEM_STATUSES = ["exported", "unchanged", "failed"] as const;
export type ItemStatus = (typeof ITEM_STATUSES)[number];

/** What a run captured of one item: a line of the batch results, an item of the manifest. */
export const itemResultSchema = z.object({
  itemId: z.string(),
  title: z.string(),
  type: z.string(),
  owner: z.string(),
  folderId: z.string().nullable(),
  folderTitle: z.string().nullable(),
  access: z.string(),
  groups: z.array(z.string()),
  /** The item's tags as listed (absent from results written before they were recorded). */
  tags: z.array(z.string()).optional(),
  status: z.enum(ITEM_STATUSES),
  version: z.string().optional(),
  files: z.array(exportedFileSchema),
  bytes: z.number().nonnegative(),
  notes: z.array(z.string()),
  counts: counts.optional(),
  /** How each hosted layer's rows are stored in this version (full or change set). */
  layerStorage: z.array(layerStorageSchema).optional(),
  error: itemError.optional(),
});
export type ItemResult = z.infer<typeof itemResultSchema>;

/** A batch's results blob: every item of the batch that ran (one left out by a cancel is absent). */
export const batchResultsSchema = z.array(itemResultSchema);

/** related.json: the item's relationships by type and direction. */
export const relatedItemsSchema = z.array(
  z.object({ relationshipType: z.string(), direction: z.string(), itemIds: z.array(z.string()) }),
);
export type RelatedItems = z.infer<typeof relatedItemsSchema>;

/** Writes files of one item version; what feature data export builds on. */
export interface VersionWriter {
  readonly prefix: string;
  /** Streams a download into the cache, then into the version folder. */
  capture(
    relativePath: string,
    open: () => Promise<PortalStream | undefined>,
    kind: FileKind,
    options?: { contentType?: string; originalName?: string; detail?: Record<string, string | number> },
  ): Promise<ExportedFile | undefined>;
  /** Uploads a file already in the cache (e.g. a features NDJSON file). */
  captureFile(
    relativePath: string,
    write: (directory: string, space: CacheSpace) => Promise<import("./cache.js").CachedFile>,
    kind: FileKind,
    options?: { contentType?: string; detail?: Record<string, string | number> },
  ): Promise<ExportedFile>;
  json(relativePath: string, value: unknown, kind: FileKind): Promise<ExportedFile>;
  /** Names a file an earlier version of the item stored, as this version's (nothing is uploaded). */
  reference(file: ExportedFile): ExportedFile;
}

/** Hosted feature data (features, attachments): plugged in by the feature export. */
export interface ServiceDataExporter {
  /** The latest data edit of the service's layers, part of the item's version. */
  dataVersion(item: PortalItem, serviceUrl: string): Promise<number | undefined>;
  export(
    item: PortalItem,
    serviceUrl: string,
    writer: VersionWriter,
    context?: ServiceDataContext,
  ): Promise<{
    notes: string[];
    counts: Record<string, number>;
    layerStorage?: VersionMarker["layerStorage"];
  }>;
}

/** What the feature export knows of the version it writes and of the item's previous one. */
export interface ServiceDataContext {
  version: string;
  /** The completion marker of the version the newest earlier run captured, if any. */
  previous?: VersionMarker;
}

export interface ItemExportContext {
  /** The run exporting: a version it completed itself (an earlier attempt of a batch) counts as exported. */
  runId: string;
  portal: PortalClient;
  store: BackupStore;
  cacheDirectory: string;
  cacheSpace: CacheSpace;
  log: Logger;
  serviceData?: ServiceDataExporter;
  /** Aborts once the run is cancelled: the item is then left out of the run, not failed. */
  signal?: AbortSignal;
}

const SERVICE_TYPES = new Set([
  "Feature Service",
  "Map Service",
  "Image Service",
  "Vector Tile Service",
  "Scene Service",
  "WFS",
  "WMS",
]);

/** Forward relationships worth recording per item type (reverse ones are the other item's forward). */
const RELATIONSHIPS: Record<string, string[]> = {
  "Web Map": ["Map2Service", "Map2FeatureCollection", "Map2Area"],
  "Web Mapping Application": ["WMA2Code"],
  Form: ["Survey2Service", "Survey2Data"],
  "Feature Service": ["Service2Data", "Service2Service", "Service2Layer"],
  "Map Area": ["Area2Package", "Area2CustomPackage"],
};

/** Downloads of one file whose body was cut short after the portal client handed it over. */
const FILE_BODY_ATTEMPTS = 3;
/** Backoff before such a file restarts: full jitter below 1 s, then 2 s. */
const FILE_RETRY_BASE_MS = 1_000;

export function isHostedFeatureService(item: { type: string; typeKeywords?: string[] }): boolean {
  const keywords = item.typeKeywords ?? [];
  return item.type === "Feature Service" && keywords.includes("Hosted Service");
}

export function isView(item: { typeKeywords?: string[] }): boolean {
  return (item.typeKeywords ?? []).includes("View Service");
}

/** An item's result before anything is known of its export: failed until it succeeds. */
export function resultFor(record: InventoryRecord): ItemResult {
  return {
    itemId: record.id,
    title: record.title,
    type: record.type,
    owner: record.owner,
    folderId: record.folderId,
    folderTitle: record.folderTitle,
    access: record.access,
    groups: record.groups,
    ...(record.item?.tags ? { tags: record.item.tags } : {}),
    status: "failed",
    files: [],
    bytes: 0,
    notes: [],
  };
}

/** Hosted feature layers (not views): their data is edited without changing the item. */
export function hasSeparateDataVersion(item: {
  type: string;
  typeKeywords?: string[];
  url?: string | null;
}): boolean {
  return isHostedFeatureService(item) && !isView(item) && Boolean(item.url);
}

/**
 * Exports one item into `items/<id>/<version>/`, or reports it unchanged when an earlier run
 * completed that version (exported when this run did, in an earlier attempt). A failure is
 * returned (with its reason), never thrown, unless it is worth retrying the whole batch (the org
 * is throttled, the portal is down) or the run stopped.
 */
export async function exportItem(ctx: ItemExportContext, record: InventoryRecord): Promise<ItemResult> {
  const base = resultFor(record);
  const log = ctx.log.child({ itemId: record.id });
  try {
    const hostedData = hasSeparateDataVersion(record) && ctx.serviceData;
    const dataEditedAt = hostedData
      ? await ctx.serviceData?.dataVersion(record as unknown as PortalItem, record.url as string)
      : undefined;
    const version = itemVersion(record.modified, dataEditedAt);
    const prefix = itemVersionPrefix(record.id, version);
    const existing = await ctx.store.readJson(completionMarkerName(record.id, version), versionMarkerSchema);
    if (existing) return resultOfMarker(base, existing, ctx.runId);
    // The listing's item JSON is the item JSON; fetch it only for records made without one.
    const item =
      record.item ?? (await ctx.portal.json<PortalItem>(`content/items/${record.id}`, {}, { method: "GET" }));
    if (!base.tags && item.tags) base.tags = item.tags;
    const previous = await previousMarkerOf(ctx.store, record.id, record.previousVersion);
    const reusable = previous ? new ReusableFiles(previous.files) : ReusableFiles.none;
    const writer = versionWriter(ctx, prefix, reusable);
    const notes: string[] = [];
    let counts: Record<string, number> | undefined;
    let layerStorage: VersionMarker["layerStorage"];
    await writer.json(VERSION_FILES.item, item, "item");
    await captureData(ctx, writer, item);
    await optional(
      writer.capture(
        VERSION_FILES.metadata,
        () => openUnlessHtml(ctx.portal, `content/items/${item.id}/info/metadata/metadata.xml`),
        "metadata",
        { contentType: "application/xml" },
      ),
    );
    if (item.thumbnail) {
      const thumbnail = item.thumbnail;
      await optional(
        writer.capture(
          thumbnailPath(thumbnail),
          () => ctx.portal.openStream(`content/items/${item.id}/info/${encodePath(thumbnail)}`),
          "thumbnail",
          { originalName: thumbnail },
        ),
      );
    }
    await captureResources(ctx, writer, item.id);
    await captureRelated(ctx, writer, item);
    if (item.url && SERVICE_TYPES.has(item.type)) {
      const service = await captureServiceDefinition(ctx, writer, item, item.url);
      notes.push(...service.notes);
      if (hostedData && !service.failed) {
        const data = await ctx.serviceData!.export(item, item.url, writer, {
          version,
          ...(previous ? { previous } : {}),
        });
        notes.push(...data.notes);
        counts = data.counts;
        layerStorage = data.layerStorage;
      } else if (!isHostedFeatureService(item)) {
        notes.push(
          "Not a hosted service: its data lives in the publisher's own data store; definitions and URL only",
        );
      } else if (isView(item)) {
        notes.push(
          "Hosted view: its features belong to the source layer, which is backed up with its own item",
        );
      }
    }
    const marker: VersionMarker = {
      schemaVersion: 1,
      itemId: item.id,
      version,
      runId: ctx.runId,
      capturedAt: new Date().toISOString(),
      files: dedupe(writer.files),
      notes,
      ...(counts ? { counts } : {}),
      ...(item.tags ? { tags: item.tags } : {}),
      ...(layerStorage ? { layerStorage } : {}),
    };
    await ctx.store.uploadJson(completionMarkerName(item.id, version), marker);
    const result = resultOfMarker(base, marker, ctx.runId);
    log.info("Item exported", { version, files: marker.files.length, bytes: result.bytes });
    return result;
  } catch (error) {
    // Not the item's fault (an outage, our sign-in refused): the batch deals with it.
    if (isSystemicFailure(error) || ctx.signal?.aborted) throw error;
    const code =
      error instanceof PortalError || hasCode(error) ? (error as { code: string }).code : "ERR_EXPORT";
    // The monitoring contract: one BackupItemFailed line per failed item (see docs/deploy.md).
    log.event("BackupItemFailed", { code, reason: errorMessage(error) }, "warn");
    return { ...base, error: { code, message: errorMessage(error) } };
  }
}

/**
 * What a completed version says of its item: `exported` by this run (with its bytes), or
 * `unchanged` since an earlier run.
 */
function resultOfMarker(base: ItemResult, marker: VersionMarker, runId: string): ItemResult {
  const exported = marker.runId === runId;
  return {
    ...base,
    status: exported ? "exported" : "unchanged",
    version: marker.version,
    files: marker.files,
    bytes: exported ? uploadedBytes(marker.files) : 0,
    notes: marker.notes,
    ...(marker.counts ? { counts: marker.counts } : {}),
    ...(marker.layerStorage ? { layerStorage: marker.layerStorage } : {}),
    ...(base.tags || marker.tags ? { tags: base.tags ?? marker.tags } : {}),
  };
}

/** Bytes a version uploaded: its files less those it reused from an earlier version. */
export function uploadedBytes(files: readonly ExportedFile[]): number {
  return files.reduce((sum, f) => sum + (f.reused ? 0 : f.size), 0);
}

function versionWriter(
  ctx: ItemExportContext,
  prefix: string,
  reusable: ReusableFiles,
): VersionWriter & { files: ExportedFile[] } {
  const files: ExportedFile[] = [];
  const recorded = (
    stored: StoredFile & { reused?: true },
    relativePath: string,
    kind: FileKind,
    options: { originalName?: string; detail?: Record<string, string | number> },
  ): ExportedFile => {
    const exported: ExportedFile = {
      ...stored,
      path: relativePath,
      kind,
      ...(options.originalName ? { originalName: options.originalName } : {}),
      ...(options.detail ? { detail: options.detail } : {}),
    };
    files.push(exported);
    return exported;
  };
  /** A whole cached file: the earlier version's blob when it holds the same bytes, else uploaded. */
  const storeCached = async (relative: string, file: CachedFile, contentType: string) => {
    const same = reusable.match(file.size, file.sha256);
    if (same)
      return { blob: same.blob, size: same.size, sha256: same.sha256, contentType, reused: true as const };
    return ctx.store.uploadCached(`${prefix}${relative}`, file, contentType);
  };
  return {
    prefix,
    files,
    async capture(relativePath, open, kind, options = {}) {
      for (let attempt = 1; ; attempt++) {
        // Reaching the answer is retried inside the portal client; its failure is final here.
        const stream = await open();
        if (!stream) return undefined;
        const file = startCaching(stream.body, ctx.cacheDirectory, ctx.cacheSpace);
        try {
          const contentType = options.contentType ?? stream.contentType ?? "application/octet-stream";
          // A file that may be one the earlier version stored is hashed whole before any upload;
          // any other uploads while the download is still being written into the cache.
          const stored = reusable.mayMatch(stream.contentLength)
            ? await storeCached(relativePath, await file.done, contentType)
            : await ctx.store.uploadWhileCaching(`${prefix}${relativePath}`, file, contentType);
          return recorded(stored, relativePath, kind, options);
        } catch (error) {
          // Only what the client cannot retry: a body cut short. The file restarts after a backoff.
          if (attempt >= FILE_BODY_ATTEMPTS || !isCutBody(error)) throw error;
        } finally {
          await file.discard();
        }
        const delay = calculateRetryDelay({ attempt, baseDelayMs: FILE_RETRY_BASE_MS, maxDelayMs: 2_000 });
        await sleep(delay, undefined, ctx.signal ? { signal: ctx.signal } : {});
      }
    },
    async captureFile(relativePath, write, kind, options = {}) {
      const file = await write(ctx.cacheDirectory, ctx.cacheSpace);
      try {
        const stored = await storeCached(
          relativePath,
          file,
          options.contentType ?? "application/octet-stream",
        );
        return recorded(stored, relativePath, kind, options);
      } finally {
        await file.discard();
      }
    },
    reference(file) {
      const exported: ExportedFile = { ...file, reused: true };
      files.push(exported);
      return exported;
    },
    async json(relativePath, value, kind) {
      const content = jsonBytes(value);
      const sha256 = createHash("sha256").update(content).digest("hex");
      const same = reusable.match(content.length, sha256);
      const stored = same
        ? { blob: same.blob, size: same.size, sha256, contentType: JSON_TYPE, reused: true as const }
        : await ctx.store.uploadBuffer(`${prefix}${relativePath}`, content, JSON_TYPE);
      return recorded(stored, relativePath, kind, {});
    },
  };
}

/**
 * A portal failure raised while a download streamed: its request was answered (the client
 * retried until then), so a transient failure now means the body was cut short.
 */
function isCutBody(error: unknown): boolean {
  return error instanceof PortalError && classifyFailure(error) === "transient";
}

async function captureData(ctx: ItemExportContext, writer: VersionWriter, item: PortalItem) {
  const open = () => ctx.portal.openStream(`content/items/${item.id}/data`);
  const probe = await optional(open());
  if (!probe) return undefined;
  const isJson = (probe.contentType ?? "").includes("json");
  const name = isJson ? VERSION_FILES.data : dataFilePath(probe.fileName ?? item.name ?? "data");
  let first: PortalStream | undefined = probe;
  return writer.capture(
    name,
    async () => {
      // The probe's stream is used for the first attempt; retries open a new one.
      const stream = first ?? (await open());
      first = undefined;
      return stream;
    },
    "data",
    {
      ...(isJson ? { contentType: "application/json" } : {}),
      originalName: probe.fileName ?? item.name ?? "data",
    },
  );
}

async function captureResources(
  ctx: ItemExportContext,
  writer: VersionWriter,
  itemId: string,
): Promise<void> {
  let start = 1;
  for (let guard = 0; guard < 1000; guard++) {
    const page = await ctx.portal
      .json<PagedResponse & { resources?: Array<{ resource: string; size?: number }> }>(
        `content/items/${itemId}/resources`,
        { start, num: 100 },
        { method: "GET" },
      )
      .catch((error: unknown) => {
        if (error instanceof PortalNotFoundError) return undefined;
        throw error;
      });
    if (!page) break;
    for (const entry of page.resources ?? []) {
      await writer.capture(
        resourcePath(entry.resource),
        () => ctx.portal.openStream(`content/items/${itemId}/resources/${encodePath(entry.resource)}`),
        "resource",
        { originalName: entry.resource },
      );
    }
    if (!page.nextStart || page.nextStart < 0 || page.nextStart <= start) break;
    start = page.nextStart;
  }
}

async function captureRelated(ctx: ItemExportContext, writer: VersionWriter, item: PortalItem) {
  const types = RELATIONSHIPS[item.type] ?? [];
  const queries = types.map((type) => ({ type, direction: "forward" }));
  if (isView(item)) queries.push({ type: "Service2Service", direction: "reverse" });
  if (queries.length === 0) return;
  const related: RelatedItems = [];
  for (const query of queries) {
    const response = await ctx.portal.json<{ relatedItems?: PortalItem[] }>(
      `content/items/${item.id}/relatedItems`,
      { relationshipType: query.type, direction: query.direction },
      { method: "GET" },
    );
    const ids = (response.relatedItems ?? []).map((r) => r.id);
    if (ids.length > 0)
      related.push({ relationshipType: query.type, direction: query.direction, itemIds: ids });
  }
  await writer.json(VERSION_FILES.related, related, "related");
}

async function captureServiceDefinition(
  ctx: ItemExportContext,
  writer: VersionWriter,
  item: PortalItem,
  url: string,
) {
  const notes: string[] = [];
  try {
    const service = await ctx.portal.json<{ layers?: Array<{ id: number }>; tables?: Array<{ id: number }> }>(
      url,
      {},
      { method: "GET" },
    );
    await writer.json(VERSION_FILES.service, service, "service");
    if (item.type === "Feature Service" || item.type === "Map Service") {
      for (const layer of [...(service.layers ?? []), ...(service.tables ?? [])]) {
        const definition = await ctx.portal.json(`${url}/${layer.id}`, {}, { method: "GET" });
        await writer.json(layerDefinitionPath(layer.id), definition, "layer");
      }
    }
    return { notes, failed: false };
  } catch (error) {
    if (isRetryableFailure(error)) throw error;
    // A registered service that is gone, or secured by a server that refuses our token: keep the
    // item, say why the definition is missing.
    notes.push(`Service definition not captured: ${errorMessage(error)}`);
    return { notes, failed: true };
  }
}

/** A missing optional part (no data, no metadata) is not a failure. */
async function optional<T>(promise: Promise<T>): Promise<T | undefined> {
  try {
    return await promise;
  } catch (error) {
    if (error instanceof PortalNotFoundError) return undefined;
    if (error instanceof PortalError && error.arcgisCode === 400 && !error.messageCode) return undefined;
    throw error;
  }
}

/** Some portals answer a missing info file with an HTML error page instead of a JSON error. */
async function openUnlessHtml(portal: PortalClient, url: string): Promise<PortalStream | undefined> {
  const stream = await portal.openStream(url);
  if (stream?.contentType?.includes("text/html")) {
    stream.body.destroy();
    return undefined;
  }
  return stream;
}

function encodePath(value: string): string {
  return value
    .split("/")
    .map((segment) => encodeURIComponent(segment))
    .join("/");
}

function dedupe(files: ExportedFile[]): ExportedFile[] {
  const byPath = new Map<string, ExportedFile>();
  for (const file of files) byPath.set(file.path, file);
  return [...byPath.values()];
}

function hasCode(error: unknown): boolean {
  return typeof (error as { code?: unknown }).code === "string";
}
