import { Readable } from "node:stream";
import type { PortalClient } from "../arcgis/portal-client.js";
import { classifyPortalBody, PortalError, parsePortalJson } from "../arcgis/portal-errors.js";
import { errorMessage } from "../errors.js";
import { isRetryableFailure, isSystemicFailure } from "../failures.js";
import type { Logger } from "../log.js";
import { streamToCache } from "./cache.js";
import type { ServiceDataContext, ServiceDataExporter, VersionWriter } from "./export-item.js";
import { exportAttachments } from "./feature-attachments.js";
import { FeatureCountMismatchError, FeaturePagingError } from "./feature-errors.js";
import {
  advertisesQuery,
  attributeOf,
  type FeatureJson,
  hasGeometry,
  holdsFeatures,
  type LayerDefinition,
  lastEditOf,
  layerLabel,
  loadServiceLayers,
  objectIdFieldOf,
  type ServiceRoot,
} from "./feature-layers.js";
import { toNdjson } from "./feature-ndjson.js";
import { layerIdSource, mapOrdered, objectIdPages } from "./feature-paging.js";
import { splitRawPage } from "./feature-raw-page.js";
import { captureChangeSet, keepLayer, type LayerCapture, layerNow } from "./layer-changes.js";
import {
  DEFAULT_FULL_EXPORT_EVERY,
  type LayerNow,
  type LayerStorage,
  planLayer,
} from "./layer-changes-format.js";
import { featuresPath } from "./layout.js";
import type { PortalItem } from "./portal-types.js";

export type { AttachmentRecord } from "./feature-attachments.js";
export { FeatureCountMismatchError, FeaturePagingError } from "./feature-errors.js";

export interface FeatureExportProgress {
  serviceUrl: string;
  layerId: number;
  phase: "features" | "attachments";
  /** Features (or attachments) written so far. */
  done: number;
  /** What the service counts (features phase). */
  expected?: number;
  finished: boolean;
}

export interface FeatureExportOptions {
  /** Upper bound of a page, below the layer's maxRecordCount (default 2,000). */
  maxPageSize?: number;
  /** Object ids read per `returnIdsOnly` call (default 100,000): bounds memory on any layer size. */
  idWindow?: number;
  /** Feature pages in flight per layer (default 2), written in order. */
  pageConcurrency?: number;
  /** Attachment downloads in flight per object id range (default 6; two ranges run at once). */
  attachmentConcurrency?: number;
  onProgress?: (event: FeatureExportProgress) => void;
  log?: Logger;
  /**
   * A layer that tracks changes is exported full at least every this many versions, change sets
   * in between (LAYER_FULL_EXPORT_EVERY, default 7; 1: always full).
   */
  fullExportEvery?: number;
}

interface FeatureQueryResponse {
  objectIdFieldName?: string;
  features?: FeatureJson[];
  exceededTransferLimit?: boolean;
}

/** One page of features as NDJSON bytes. */
interface Page {
  chunks: Buffer[];
  count: number;
  /** The object id range asked for. */
  first: number;
  last: number;
}

/** What one layer's capture produced. */
interface LayerOutcome {
  features: number;
  /** [first, last] object id of every page, for the attachments pass. */
  ranges: number[];
}

/**
 * The hosted feature data of a service: every row of every layer and table as
 * `features/<layerId>.ndjson` (one feature per line, as the service's JSON gives it), and the
 * attachments of layers that have them under `attachments/<layerId>/`. Built by the backup runner
 * through `serviceDataFor`.
 */
export function createFeatureDataExporter(
  portal: PortalClient,
  options: FeatureExportOptions = {},
): ServiceDataExporter {
  return new FeatureDataExporter(portal, options);
}

class FeatureDataExporter implements ServiceDataExporter {
  private readonly maxPageSize: number;
  private readonly idWindow: number;
  private readonly pageConcurrency: number;
  private readonly attachmentConcurrency: number;
  private readonly fullExportEvery: number;

  constructor(
    private readonly portal: PortalClient,
    private readonly options: FeatureExportOptions,
  ) {
    this.maxPageSize = Math.max(1, Math.floor(options.maxPageSize ?? 2000));
    this.idWindow = Math.max(1, Math.floor(options.idWindow ?? 100_000));
    this.pageConcurrency = Math.max(1, Math.floor(options.pageConcurrency ?? 2));
    this.attachmentConcurrency = Math.max(1, Math.floor(options.attachmentConcurrency ?? 6));
    this.fullExportEvery = Math.max(1, Math.floor(options.fullExportEvery ?? DEFAULT_FULL_EXPORT_EVERY));
  }

  async dataVersion(_item: PortalItem, serviceUrl: string): Promise<number | undefined> {
    const { layers } = await loadServiceLayers(this.portal, trimUrl(serviceUrl));
    return latestEdit(layers);
  }

  async export(
    item: PortalItem,
    serviceUrl: string,
    writer: VersionWriter,
    context?: ServiceDataContext,
  ): Promise<{ notes: string[]; counts: Record<string, number>; layerStorage?: LayerStorage[] }> {
    const url = trimUrl(serviceUrl);
    const notes: string[] = [];
    const counts: Record<string, number> = {};
    const layerStorage: LayerStorage[] = [];
    const { root, layers } = await loadServiceLayers(this.portal, url);
    const log = this.options.log?.child({ itemId: item.id });
    for (const layer of layers) {
      const label = layerLabel(layer);
      if (!holdsFeatures(layer)) {
        notes.push(`Layer ${label} is a ${layer.type}: it holds no features of its own`);
        continue;
      }
      const now = layerNow(root, layer);
      const incremental = context ? await this.incremental(url, layer, writer, context, now) : undefined;
      if (incremental && "capture" in incremental) {
        Object.assign(counts, incremental.capture.counts);
        notes.push(...incremental.capture.notes);
        layerStorage.push(incremental.capture.storage);
        log?.info("Layer captured", { layerId: layer.id, storage: incremental.capture.storage.storage });
        continue;
      }
      const outcome = await this.exportLayer(url, root, layer, writer, notes);
      if (!outcome) continue;
      if (context) layerStorage.push(fullStorage(layer.id, context.version, now, incremental?.reason));
      counts[`features:${layer.id}`] = outcome.features;
      if (layer.hasAttachments) {
        const attachments = await exportAttachments({
          portal: this.portal,
          writer,
          layerUrl: `${url}/${layer.id}`,
          layer,
          label,
          objectIdField: objectIdFieldOf(layer),
          ranges: outcome.ranges,
          concurrency: this.attachmentConcurrency,
          onProgress: (done) => this.progress(url, layer.id, "attachments", done, undefined, false),
        });
        notes.push(...attachments.notes);
        counts[`attachments:${layer.id}`] = attachments.count;
        counts[`attachmentBytes:${layer.id}`] = attachments.bytes;
        this.progress(url, layer.id, "attachments", attachments.count, undefined, true);
      }
      log?.info("Layer captured", {
        layerId: layer.id,
        features: outcome.features,
        attachments: counts[`attachments:${layer.id}`],
      });
    }
    notes.push(...(await this.editedDuring(url, layers)));
    return { notes, counts, ...(context ? { layerStorage } : {}) };
  }

  /**
   * A layer captured from the previous version: kept (not edited since) or a change set; else
   * why a full export is taken (undefined: the layer has no previous version or tracks no changes).
   */
  private async incremental(
    serviceUrl: string,
    layer: LayerDefinition,
    writer: VersionWriter,
    context: ServiceDataContext,
    now: LayerNow,
  ): Promise<{ capture: LayerCapture } | { reason?: string }> {
    const { previous } = context;
    const stored = previous?.layerStorage?.find((l) => l.layerId === layer.id);
    const plan = planLayer(stored, now, this.fullExportEvery);
    if (!previous || plan.action === "full")
      return plan.action === "full" && plan.reason ? { reason: plan.reason } : {};
    if (plan.action === "keep") return { capture: keepLayer(writer, previous, layer, plan.previous) };
    const changes = await captureChangeSet({
      portal: this.portal,
      writer,
      serviceUrl,
      layer,
      previous,
      previousStorage: plan.previous,
      since: plan.since,
      now,
    });
    return "fallback" in changes ? { reason: changes.fallback } : { capture: changes };
  }

  /** Writes `features/<layerId>.ndjson`; undefined when the layer cannot be queried (noted). */
  private async exportLayer(
    serviceUrl: string,
    root: ServiceRoot,
    layer: LayerDefinition,
    writer: VersionWriter,
    notes: string[],
  ): Promise<LayerOutcome | undefined> {
    const layerUrl = `${serviceUrl}/${layer.id}`;
    const label = layerLabel(layer);
    const objectIdField = objectIdFieldOf(layer);
    const source = layerIdSource(this.portal, layerUrl, objectIdField);
    let expected: number;
    try {
      expected = await source.count("1=1");
    } catch (error) {
      if (advertisesQuery(layer, root) || isSystemicFailure(error) || !(error instanceof PortalError)) {
        throw error;
      }
      notes.push(
        `Layer ${label} does not support queries (${errorMessage(error)}): its features and attachments were not captured`,
      );
      return undefined;
    }
    const pageSize = Math.max(
      1,
      Math.min(positive(layer.maxRecordCount) ?? positive(root.maxRecordCount) ?? 1000, this.maxPageSize),
    );
    const params = queryParams(layer);
    const bigIntegerFields = (layer.fields ?? [])
      .filter((f) => f.type === "esriFieldTypeBigInteger")
      .map((f) => f.name);
    let unsafeIntegers = false;

    /** Asks the service for more of one page by object ids until it stops saying it capped it. */
    const rest = async (ids: number[], have: Set<number>): Promise<FeatureJson[]> => {
      const out: FeatureJson[] = [];
      let remaining = ids.filter((id) => !have.has(id));
      while (remaining.length > 0) {
        const response = await this.portal.json<FeatureQueryResponse>(`${layerUrl}/query`, {
          ...params,
          objectIds: remaining.join(","),
        });
        const page = response.features ?? [];
        for (const feature of page) {
          const oid = objectIdOf(feature, response.objectIdFieldName ?? objectIdField);
          if (oid !== undefined) have.add(oid);
          out.push(feature);
        }
        if (!response.exceededTransferLimit) break;
        if (page.length === 0) {
          throw new FeaturePagingError(`Layer ${label}: the service reports more rows but sends none`);
        }
        remaining = remaining.filter((id) => !have.has(id));
      }
      return out;
    };

    /**
     * One page: the object id range of `ids`. The usual answer is split as it came (see
     * splitRawPage); an unusual one is parsed, and a capped one completed by object ids.
     */
    const fetchPage = async (ids: number[]): Promise<Page> => {
      const first = ids[0] as number;
      const last = ids.at(-1) as number;
      const bytes = await this.readPage(`${layerUrl}/query`, {
        ...params,
        where: `${objectIdField} >= ${first} AND ${objectIdField} <= ${last}`,
        f: "json",
      });
      const raw = splitRawPage(
        bytes,
        objectIdField,
        (oids, exceeded) => !exceeded && ascendingWithin(oids, first, last),
      );
      if (raw) return { chunks: raw.chunks, count: raw.oids.length, first, last };

      const response = classifyPortalBody(
        parsePortalJson(bytes.toString("utf8"), layerUrl) as FeatureQueryResponse,
        layerUrl,
      );
      const features = [...(response.features ?? [])];
      if (response.exceededTransferLimit) {
        const have = new Set<number>();
        for (const feature of features) {
          const oid = objectIdOf(feature, response.objectIdFieldName ?? objectIdField);
          if (oid !== undefined) have.add(oid);
        }
        features.push(...(await rest(ids, have)));
      }
      const oids = features.map((feature) => {
        const oid = objectIdOf(feature, response.objectIdFieldName ?? objectIdField);
        if (oid === undefined) {
          throw new FeaturePagingError(
            `Layer ${label}: a feature came without its object id (${objectIdField})`,
          );
        }
        return oid;
      });
      const rows = inObjectIdOrder(features, oids);
      if (!ascendingWithin(rows.oids, first, last)) {
        throw new FeaturePagingError(
          `Layer ${label}: a page for object ids ${first}…${last} held ids outside that range or twice`,
        );
      }
      if (bigIntegerFields.length > 0 && !unsafeIntegers) {
        unsafeIntegers = hasUnsafeIntegers(rows.features, bigIntegerFields);
      }
      return { chunks: [Buffer.from(toNdjson(rows.features))], count: rows.oids.length, first, last };
    };

    let written = 0;
    const ranges: number[] = [];
    const lines = async function* (this: FeatureDataExporter): AsyncGenerator<Buffer> {
      const pages = mapOrdered(
        objectIdPages(source, expected, { pageSize, window: this.idWindow }),
        this.pageConcurrency,
        fetchPage,
      );
      for await (const page of pages) {
        written += page.count;
        ranges.push(page.first, page.last);
        this.progress(serviceUrl, layer.id, "features", written, expected, false);
        for (const chunk of page.chunks) if (chunk.length > 0) yield chunk;
      }
    }.bind(this);

    await writer.captureFile(
      featuresPath(layer.id),
      async (directory, space) => {
        const file = await streamToCache(Readable.from(lines(), { highWaterMark: 2 }), directory, space);
        if (written !== expected) {
          await file.discard();
          throw new FeatureCountMismatchError(label, expected, written, await this.explain(layerUrl, layer));
        }
        return file;
      },
      "features",
      { contentType: "application/x-ndjson", detail: { layerId: layer.id } },
    );
    this.progress(serviceUrl, layer.id, "features", written, expected, true);
    if (unsafeIntegers) {
      notes.push(
        `Layer ${label}: some big integer values lie beyond ±2^53 and may have lost precision in JSON`,
      );
    }
    return { features: written, ranges };
  }

  /**
   * A query answer as the service's bytes, read whole inside the portal client's retries: a body
   * cut short is asked for again there, never here (one retry layer, one budget per page).
   */
  private async readPage(url: string, params: Record<string, unknown>): Promise<Buffer> {
    const bytes = await this.portal.bytes(url, params);
    if (!bytes) throw new FeaturePagingError(`A query came back empty: ${url}`);
    return bytes;
  }

  /** Why a count may differ: a second count, and whether the layer was edited meanwhile. */
  private async explain(layerUrl: string, layer: LayerDefinition): Promise<string> {
    const parts: string[] = [];
    try {
      const again = await layerIdSource(this.portal, layerUrl, objectIdFieldOf(layer)).count("1=1");
      parts.push(`it counts ${again} now`);
      const now = await this.portal.json<LayerDefinition>(layerUrl, {}, { method: "GET" });
      if (lastEditOf(now) !== lastEditOf(layer)) parts.push("the layer was edited during the capture");
    } catch (error) {
      parts.push(`a second look failed: ${errorMessage(error)}`);
    }
    return parts.join("; ");
  }

  /** Notes layers whose data changed while they were captured (the next run captures them again). */
  private async editedDuring(serviceUrl: string, before: LayerDefinition[]): Promise<string[]> {
    try {
      const { layers: after } = await loadServiceLayers(this.portal, serviceUrl);
      const notes: string[] = [];
      for (const layer of before) {
        const now = after.find((l) => l.id === layer.id);
        if (now && lastEditOf(now) !== lastEditOf(layer)) {
          notes.push(
            `Layer ${layerLabel(layer)} was edited while it was captured; the next backup captures it again`,
          );
        }
      }
      return notes;
    } catch (error) {
      // A second look only adds notes: an outage now must not fail what was captured.
      if (isRetryableFailure(error)) return [];
      throw error;
    }
  }

  private progress(
    serviceUrl: string,
    layerId: number,
    phase: FeatureExportProgress["phase"],
    done: number,
    expected: number | undefined,
    finished: boolean,
  ): void {
    this.options.onProgress?.({
      serviceUrl,
      layerId,
      phase,
      done,
      ...(expected === undefined ? {} : { expected }),
      finished,
    });
  }
}

/** How a layer exported whole is stored: full, from the generation read before its export began. */
function fullStorage(
  layerId: number,
  version: string,
  now: LayerNow,
  reason: string | undefined,
): LayerStorage {
  return {
    layerId,
    storage: "full",
    baseVersion: version,
    changeSets: 0,
    ...(now.tracking ? { serverGen: now.tracking.serverGen } : {}),
    ...(now.dataLastEditDate !== undefined ? { dataLastEditDate: now.dataLastEditDate } : {}),
    schema: now.schema,
    ...(reason ? { reason } : {}),
  };
}

/** The latest data edit over a service's layers and tables. */
export function latestEdit(layers: readonly LayerDefinition[]): number | undefined {
  let latest: number | undefined;
  for (const layer of layers) {
    const edit = lastEditOf(layer);
    if (edit !== undefined && (latest === undefined || edit > latest)) latest = edit;
  }
  return latest;
}

function queryParams(layer: LayerDefinition): Record<string, unknown> {
  const params: Record<string, unknown> = { where: "1=1", outFields: "*" };
  if (hasGeometry(layer)) {
    params.returnGeometry = true;
    if (layer.hasZ) params.returnZ = true;
    if (layer.hasM) params.returnM = true;
    if (layer.allowTrueCurvesUpdates) params.returnTrueCurves = true;
  } else {
    params.returnGeometry = false;
  }
  return params;
}

function inObjectIdOrder(
  features: FeatureJson[],
  oids: number[],
): { features: FeatureJson[]; oids: number[] } {
  let ascending = true;
  for (let i = 1; i < oids.length && ascending; i++)
    ascending = (oids[i - 1] as number) < (oids[i] as number);
  if (ascending) return { features, oids };
  const order = oids.map((_, i) => i).sort((a, b) => (oids[a] as number) - (oids[b] as number));
  return {
    features: order.map((i) => features[i] as FeatureJson),
    oids: order.map((i) => oids[i] as number),
  };
}

/** Strictly ascending (so no id twice) and all within [first, last]. */
function ascendingWithin(oids: readonly number[], first: number, last: number): boolean {
  let previous = first - 1;
  for (const oid of oids) {
    if (!(oid > previous) || oid > last) return false;
    previous = oid;
  }
  return true;
}

function hasUnsafeIntegers(features: FeatureJson[], fields: string[]): boolean {
  return features.some((feature) =>
    fields.some((name) => {
      const value = feature.attributes?.[name];
      return typeof value === "number" && !Number.isSafeInteger(value);
    }),
  );
}

function objectIdOf(feature: FeatureJson, field: string): number | undefined {
  const value = attributeOf(feature, field);
  return typeof value === "number" && Number.isFinite(value) ? value : undefined;
}

function positive(value: number | undefined): number | undefined {
  return typeof value === "number" && value > 0 ? Math.floor(value) : undefined;
}

function trimUrl(url: string): string {
  return url.replace(/\/+$/, "");
}
