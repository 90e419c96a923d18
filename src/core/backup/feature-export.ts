import { Readable } from "node:stream";
import type { PortalClient } from "../arcgis/portal-client.js";
import { isRetryablePortalError, PortalError } from "../arcgis/portal-errors.js";
import { errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import { streamToCache } from "./cache.js";
import type { ServiceDataExporter, VersionWriter } from "./export-item.js";
import { exportAttachments } from "./feature-attachments.js";
import { FeatureCountMismatchError, FeaturePagingError } from "./feature-errors.js";
import {
  advertisesQuery,
  hasGeometry,
  holdsFeatures,
  type LayerDefinition,
  lastEditOf,
  layerLabel,
  loadServiceLayers,
  objectIdFieldOf,
  type ServiceRoot,
} from "./feature-layers.js";
import { type IdSource, mapOrdered, objectIdPages } from "./feature-paging.js";
import { safeRelativePath } from "./layout.js";
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
  /** Attachment downloads in flight per object id range (default 4; two ranges run at once). */
  attachmentConcurrency?: number;
  onProgress?: (event: FeatureExportProgress) => void;
  log?: Logger;
}

interface FeatureJson {
  attributes?: Record<string, unknown>;
  geometry?: unknown;
}

interface FeatureQueryResponse {
  objectIdFieldName?: string;
  features?: FeatureJson[];
  exceededTransferLimit?: boolean;
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

  constructor(
    private readonly portal: PortalClient,
    private readonly options: FeatureExportOptions,
  ) {
    this.maxPageSize = Math.max(1, Math.floor(options.maxPageSize ?? 2000));
    this.idWindow = Math.max(1, Math.floor(options.idWindow ?? 100_000));
    this.pageConcurrency = Math.max(1, Math.floor(options.pageConcurrency ?? 2));
    this.attachmentConcurrency = Math.max(1, Math.floor(options.attachmentConcurrency ?? 4));
  }

  async dataVersion(_item: PortalItem, serviceUrl: string): Promise<number | undefined> {
    const { layers } = await loadServiceLayers(this.portal, trimUrl(serviceUrl));
    return latestEdit(layers);
  }

  async export(
    item: PortalItem,
    serviceUrl: string,
    writer: VersionWriter,
  ): Promise<{ notes: string[]; counts: Record<string, number> }> {
    const url = trimUrl(serviceUrl);
    const notes: string[] = [];
    const counts: Record<string, number> = {};
    const { root, layers } = await loadServiceLayers(this.portal, url);
    const log = this.options.log?.child({ itemId: item.id });
    for (const layer of layers) {
      const label = layerLabel(layer);
      if (!holdsFeatures(layer)) {
        notes.push(`Layer ${label} is a ${layer.type}: it holds no features of its own`);
        continue;
      }
      const outcome = await this.exportLayer(url, root, layer, writer, notes);
      if (!outcome) continue;
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
    return { notes, counts };
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
    const source = this.idSource(layerUrl, objectIdField);
    let expected: number;
    try {
      expected = await source.count("1=1");
    } catch (error) {
      if (advertisesQuery(layer, root) || isRetryablePortalError(error) || !(error instanceof PortalError)) {
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

    const fetchPage = async (ids: number[]) => {
      const wanted = new Set(ids);
      const received = new Set<number>();
      const rows: Array<{ oid: number; line: string }> = [];
      let ordered = true;
      let remaining = ids;
      for (;;) {
        const response = await this.portal.json<FeatureQueryResponse>(`${layerUrl}/query`, {
          ...params,
          objectIds: remaining.join(","),
        });
        const features = response.features ?? [];
        const idName = response.objectIdFieldName ?? objectIdField;
        for (const feature of features) {
          const oid = objectIdOf(feature, idName);
          if (oid === undefined || !wanted.has(oid) || received.has(oid)) {
            throw new FeaturePagingError(
              `Layer ${label}: a page asked for ${ids.length} object ids (${ids[0]}…${ids.at(-1)}) and got ${
                oid === undefined ? "a feature without one" : received.has(oid) ? `${oid} twice` : `${oid}`
              }`,
            );
          }
          received.add(oid);
          if (rows.length > 0 && (rows.at(-1)?.oid ?? 0) > oid) ordered = false;
          rows.push({ oid, line: JSON.stringify(feature) });
          if (bigIntegerFields.length > 0 && !unsafeIntegers) {
            unsafeIntegers = bigIntegerFields.some((name) => {
              const value = feature.attributes?.[name];
              return typeof value === "number" && !Number.isSafeInteger(value);
            });
          }
        }
        if (!response.exceededTransferLimit) break;
        // The service sent less than asked (its own cap): ask for the rest of this page.
        remaining = remaining.filter((id) => !received.has(id));
        if (remaining.length === 0) break;
        if (features.length === 0) {
          throw new FeaturePagingError(`Layer ${label}: the service reports more rows but sends none`);
        }
      }
      if (!ordered) rows.sort((a, b) => a.oid - b.oid);
      let text = "";
      for (const row of rows) text += `${row.line}\n`;
      return { text, count: rows.length, first: ids[0] as number, last: ids.at(-1) as number };
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
        if (page.text.length > 0) yield Buffer.from(page.text);
      }
    }.bind(this);

    await writer.captureFile(
      `features/${safeRelativePath(String(layer.id))}.ndjson`,
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

  private idSource(layerUrl: string, objectIdField: string): IdSource {
    return {
      objectIdField,
      count: async (where) => {
        const response = await this.portal.json<{ count?: number }>(`${layerUrl}/query`, {
          where,
          returnCountOnly: true,
        });
        if (typeof response.count !== "number") {
          throw new FeaturePagingError(`${layerUrl}: returnCountOnly answered without a count`);
        }
        return response.count;
      },
      ids: async (where) => {
        const response = await this.portal.json<{
          objectIds?: number[] | null;
          exceededTransferLimit?: boolean;
        }>(`${layerUrl}/query`, { where, returnIdsOnly: true });
        return { ids: response.objectIds ?? [], exceeded: response.exceededTransferLimit === true };
      },
    };
  }

  /** Why a count may differ: a second count, and whether the layer was edited meanwhile. */
  private async explain(layerUrl: string, layer: LayerDefinition): Promise<string> {
    const parts: string[] = [];
    try {
      const again = await this.idSource(layerUrl, objectIdFieldOf(layer)).count("1=1");
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
      if (isRetryablePortalError(error)) return [];
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

function objectIdOf(feature: FeatureJson, field: string): number | undefined {
  const attributes = feature.attributes;
  if (!attributes) return undefined;
  let value = attributes[field];
  if (value === undefined) {
    const upper = field.toUpperCase();
    for (const [key, v] of Object.entries(attributes)) {
      if (key.toUpperCase() === upper) {
        value = v;
        break;
      }
    }
  }
  return typeof value === "number" && Number.isFinite(value) ? value : undefined;
}

function positive(value: number | undefined): number | undefined {
  return typeof value === "number" && value > 0 ? Math.floor(value) : undefined;
}

function trimUrl(url: string): string {
  return url.replace(/\/+$/, "");
}
