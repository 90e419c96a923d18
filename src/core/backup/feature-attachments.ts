import { Readable } from "node:stream";
import type { PortalClient, PortalStream } from "../arcgis/portal-client.js";
import { PortalError, PortalNotFoundError } from "../arcgis/portal-errors.js";
import { mapWithConcurrency } from "../concurrency.js";
import { isSystemicFailure } from "../failures.js";
import { streamToCache } from "./cache.js";
import type { ExportedFile, FileKind, VersionWriter } from "./export-item.js";
import { FeaturePagingError } from "./feature-errors.js";
import { type LayerDefinition, supportsQueryAttachments } from "./feature-layers.js";
import { mapOrdered } from "./feature-paging.js";
import { attachmentPath, attachmentsIndexPath } from "./layout.js";

/** Features whose attachments one queryAttachments call lists (a change set's rows, by object id). */
const IDS_PER_QUERY = 100;

/** One line of `attachments/<layerId>/index.ndjson`. */
export interface AttachmentRecord {
  parentObjectId: number;
  parentGlobalId: string | null;
  id: number;
  name: string;
  contentType: string;
  /** Bytes stored (a difference from the service's `size` is reported in the notes). */
  size: number;
  globalId: string | null;
  keywords?: string;
  /** The file inside the version folder. */
  path: string;
}

interface AttachmentInfo {
  id: number;
  globalId?: string | null;
  parentGlobalId?: string | null;
  name?: string;
  contentType?: string;
  size?: number;
  keywords?: string | null;
}

interface AttachmentGroup {
  parentObjectId: number;
  parentGlobalId?: string | null;
  attachmentInfos?: AttachmentInfo[];
}

export interface AttachmentExportInput {
  portal: PortalClient;
  writer: VersionWriter;
  layerUrl: string;
  layer: LayerDefinition;
  label: string;
  objectIdField: string;
  /** Object id ranges [first, last, first, last, …] that together cover the layer's features. */
  ranges: readonly number[];
  /** Instead of ranges: just these features (ascending object ids), e.g. the rows of a change set. */
  objectIds?: readonly number[];
  /** Where the records go (default `attachments/<layerId>/index.ndjson`, kind attachments-index). */
  index?: { path: string; kind: FileKind; detail: Record<string, string | number> };
  /** Downloads in flight per range; two ranges run at once. */
  concurrency: number;
  onProgress?: (done: number) => void;
}

export interface AttachmentExportResult {
  count: number;
  bytes: number;
  notes: string[];
}

/**
 * Captures the attachments of a layer: their records (queryAttachments over object id ranges
 * where the layer supports it, else `{oid}/attachments` per feature) into
 * `attachments/<layerId>/index.ndjson`, and each file, streamed through the cache, to
 * `attachments/<layerId>/<oid>/<attachmentId>`. Empty files are stored (and recorded) too. A
 * record goes into the index only once its file is stored.
 */
export async function exportAttachments(input: AttachmentExportInput): Promise<AttachmentExportResult> {
  const { portal, writer, layerUrl, layer, label, objectIdField } = input;
  const notes: string[] = [];
  let useQuery = supportsQueryAttachments(layer);
  let count = 0;
  let bytes = 0;

  const rangeWhere = (a: number, b: number) => `${objectIdField} >= ${a} AND ${objectIdField} <= ${b}`;

  const queryRange = async (a: number, b: number): Promise<AttachmentGroup[]> => {
    const response = await portal.json<{
      attachmentGroups?: AttachmentGroup[];
      exceededTransferLimit?: boolean;
    }>(`${layerUrl}/queryAttachments`, { definitionExpression: rangeWhere(a, b), returnUrl: false });
    if (response.exceededTransferLimit) {
      if (a >= b) return perFeature([a]);
      const middle = Math.floor((a + b) / 2);
      return [...(await queryRange(a, middle)), ...(await queryRange(middle + 1, b))];
    }
    return response.attachmentGroups ?? [];
  };

  const perFeature = async (objectIds: readonly number[]): Promise<AttachmentGroup[]> => {
    const groups = await mapWithConcurrency(
      objectIds,
      input.concurrency,
      async (oid): Promise<AttachmentGroup | undefined> => {
        try {
          const response = await portal.json<{ attachmentInfos?: AttachmentInfo[] }>(
            `${layerUrl}/${oid}/attachments`,
            {},
            { method: "GET" },
          );
          const infos = response.attachmentInfos ?? [];
          return {
            parentObjectId: oid,
            parentGlobalId: infos.find((i) => i.parentGlobalId)?.parentGlobalId ?? null,
            attachmentInfos: infos,
          } satisfies AttachmentGroup;
        } catch (error) {
          // Deleted since its id was read: it has no attachments to keep.
          if (error instanceof PortalNotFoundError) return undefined;
          throw error;
        }
      },
    );
    return groups.filter((g): g is AttachmentGroup => g !== undefined);
  };

  const idsInRange = async (a: number, b: number): Promise<number[]> => {
    const response = await portal.json<{ objectIds?: number[] | null }>(`${layerUrl}/query`, {
      where: rangeWhere(a, b),
      returnIdsOnly: true,
    });
    return [...(response.objectIds ?? [])].sort((x, y) => x - y);
  };

  const queryIds = async (ids: readonly number[]): Promise<AttachmentGroup[]> => {
    const response = await portal.json<{ attachmentGroups?: AttachmentGroup[] }>(
      `${layerUrl}/queryAttachments`,
      {
        objectIds: ids.join(","),
        returnUrl: false,
      },
    );
    return response.attachmentGroups ?? [];
  };

  const groupsFor = async (a: number, b: number, ids?: readonly number[]): Promise<AttachmentGroup[]> => {
    const eachFeature = async () => perFeature(ids ?? (await idsInRange(a, b)));
    if (useQuery) {
      try {
        return ids ? await queryIds(ids) : await queryRange(a, b);
      } catch (error) {
        if (isSystemicFailure(error) || !(error instanceof PortalError)) throw error;
        // Advertised but refused: fall back to asking each feature.
        if (!useQuery) return eachFeature();
        useQuery = false;
        notes.push(
          `Layer ${label}: queryAttachments failed (${error.message}); attachments were listed per feature`,
        );
      }
    }
    return eachFeature();
  };

  const captureOne = async (record: AttachmentRecord): Promise<AttachmentRecord | undefined> => {
    const url = `${layerUrl}/${record.parentObjectId}/attachments/${record.id}`;
    const open = async (): Promise<PortalStream> =>
      (await portal.openStream(url)) ?? {
        body: Readable.from([]),
        contentType: record.contentType,
        contentLength: 0,
        fileName: record.name,
      };
    let stored: ExportedFile | undefined;
    for (let attempt = 1; attempt <= 2; attempt++) {
      try {
        stored = await writer.capture(record.path, open, "attachment", {
          ...(record.contentType ? { contentType: record.contentType } : {}),
          originalName: record.name,
          detail: { layerId: layer.id, objectId: record.parentObjectId, attachmentId: record.id },
        });
      } catch (error) {
        if (error instanceof PortalNotFoundError) {
          notes.push(
            `Layer ${label}: attachment ${record.id} of feature ${record.parentObjectId} was deleted during the capture`,
          );
          return undefined;
        }
        throw error;
      }
      if (!stored || record.size < 0 || stored.size === record.size) break;
    }
    if (!stored) return undefined;
    if (record.size >= 0 && stored.size !== record.size) {
      notes.push(
        `Layer ${label}: attachment ${record.id} of feature ${record.parentObjectId} is listed as ${record.size} bytes but ${stored.size} were downloaded`,
      );
    }
    return { ...record, size: stored.size };
  };

  async function* ranges(): AsyncGenerator<[number, number, (readonly number[])?]> {
    if (input.objectIds) {
      for (let i = 0; i < input.objectIds.length; i += IDS_PER_QUERY) {
        const ids = input.objectIds.slice(i, i + IDS_PER_QUERY);
        yield [ids[0] as number, ids.at(-1) as number, ids];
      }
      return;
    }
    for (let i = 0; i + 1 < input.ranges.length; i += 2) {
      yield [input.ranges[i] as number, input.ranges[i + 1] as number];
    }
  }

  async function* lines(): AsyncGenerator<Buffer> {
    const pages = mapOrdered(ranges(), 2, async ([a, b, ids]) => {
      const wanted = ids ? new Set(ids) : undefined;
      const groups = (await groupsFor(a, b, ids))
        .filter(
          (g) => g.parentObjectId >= a && g.parentObjectId <= b && (!wanted || wanted.has(g.parentObjectId)),
        )
        .sort((x, y) => x.parentObjectId - y.parentObjectId);
      const records: AttachmentRecord[] = [];
      const seen = new Set<string>();
      for (const group of groups) {
        const infos = [...(group.attachmentInfos ?? [])].sort((x, y) => x.id - y.id);
        for (const info of infos) {
          const key = `${group.parentObjectId}/${info.id}`;
          if (seen.has(key)) {
            throw new FeaturePagingError(`Layer ${label}: attachment ${key} was listed twice`);
          }
          seen.add(key);
          records.push(recordOf(group, info, layer.id));
        }
      }
      const stored = await mapWithConcurrency(records, input.concurrency, captureOne);
      return stored.filter((r): r is AttachmentRecord => r !== undefined);
    });
    for await (const records of pages) {
      if (records.length === 0) continue;
      count += records.length;
      for (const r of records) bytes += r.size;
      input.onProgress?.(count);
      yield Buffer.from(records.map((r) => `${JSON.stringify(r)}\n`).join(""));
    }
  }

  await writer.captureFile(
    input.index?.path ?? attachmentsIndexPath(layer.id),
    (directory, space) => streamToCache(Readable.from(lines(), { highWaterMark: 2 }), directory, space),
    input.index?.kind ?? "attachments-index",
    { contentType: "application/x-ndjson", detail: input.index?.detail ?? { layerId: layer.id } },
  );
  return { count, bytes, notes };
}

function recordOf(group: AttachmentGroup, info: AttachmentInfo, layerId: number): AttachmentRecord {
  const parentObjectId = group.parentObjectId;
  return {
    parentObjectId,
    parentGlobalId: group.parentGlobalId ?? info.parentGlobalId ?? null,
    id: info.id,
    name: info.name ?? `attachment-${info.id}`,
    contentType: info.contentType ?? "application/octet-stream",
    // -1 until stored: the service did not say.
    size: typeof info.size === "number" ? info.size : -1,
    globalId: info.globalId ?? null,
    ...(info.keywords ? { keywords: info.keywords } : {}),
    path: attachmentPath(layerId, parentObjectId, info.id),
  };
}
