import type { PortalClient } from "../arcgis/portal-client.js";
import type { CacheSpace } from "../backup/cache.js";
import type { ExportedFile } from "../backup/export-item.js";
import type { AttachmentRecord } from "../backup/feature-attachments.js";
import { layerIdSource, objectIdPages } from "../backup/feature-paging.js";
import { sortLines } from "../backup/feature-sort.js";
import { normalGuid } from "../backup/layer-changes.js";
import { type LayerFiles, layerAttachments, mergeByKey } from "../backup/layer-version-rows.js";
import { mapWithConcurrency } from "../concurrency.js";
import { AppError } from "../errors.js";
import type { BackupFiles } from "./backup-files.js";
import { writeOnce } from "./context.js";
import { globalIdsWhere, type TargetLayer } from "./row-restore.js";

/** What an attachment is compared by: its parent's GlobalID and its own (else name and size). */
interface AttachmentFacts {
  parentObjectId: number;
  parentGlobalId: string | null;
  id: number;
  globalId: string | null;
  name: string;
  size: number;
  contentType: string;
  keywords?: string;
  path?: string;
}

export interface AttachmentDiffInput {
  portal: PortalClient;
  files: BackupFiles;
  layer: LayerFiles;
  target: TargetLayer;
  /** The version's attachment files by path. */
  attachmentFiles: Map<string, ExportedFile>;
  cache: { directory: string; space: CacheSpace };
  concurrency: number;
  dryRun: boolean;
}

export interface AttachmentDiff {
  added: number;
  deleted: number;
  /** Attachments the version holds: what the layer holds once the difference is applied. */
  expected: number;
}

const ADDS_PER_LOOKUP = 25;

/**
 * The attachments of a layer restored in place: those of the version missing now are added to
 * the row with their parent's GlobalID (with their own GlobalID), those the version does not hold
 * are deleted, one that changed is replaced. Both sides are sorted by parent GlobalID and
 * attachment key through the cache folder, then merged. Run again, it finds nothing left to do.
 */
export async function restoreAttachmentsInPlace(input: AttachmentDiffInput): Promise<AttachmentDiff> {
  const diff: AttachmentDiff = { added: 0, deleted: 0, expected: 0 };
  const stored = sortedByKey(storedAttachments(input), input.cache);
  const current = sortedByKey(currentAttachments(input.portal, input.target), input.cache);
  let adds: AttachmentFacts[] = [];
  let deletes: AttachmentFacts[] = [];
  for await (const group of mergeByKey<AttachmentFacts>([stored, current])) {
    const was = group.bySource[0]?.[0];
    const now = group.bySource[1]?.[0];
    if (was) diff.expected++;
    const same = was && now && was.size === now.size && was.name === now.name;
    if (same) continue;
    if (now) deletes.push(now);
    if (was) adds.push(was);
    if (adds.length + deletes.length < ADDS_PER_LOOKUP) continue;
    await apply(input, diff, deletes, adds);
    adds = [];
    deletes = [];
  }
  await apply(input, diff, deletes, adds);
  return diff;
}

async function apply(
  input: AttachmentDiffInput,
  diff: AttachmentDiff,
  deletes: AttachmentFacts[],
  adds: AttachmentFacts[],
): Promise<void> {
  diff.deleted += deletes.length;
  diff.added += adds.length;
  if (input.dryRun || deletes.length + adds.length === 0) return;
  const byParent = new Map<number, number[]>();
  for (const d of deletes) byParent.set(d.parentObjectId, [...(byParent.get(d.parentObjectId) ?? []), d.id]);
  for (const [parent, ids] of byParent) {
    await input.portal.json(`${input.target.url}/${parent}/deleteAttachments`, {
      attachmentIds: ids.join(","),
    });
  }
  if (adds.length === 0) return;
  const parents = await parentsByGlobalId(input.portal, input.target, adds);
  await mapWithConcurrency(adds, input.concurrency, (record) => addOne(input, record, parents));
}

async function addOne(input: AttachmentDiffInput, record: AttachmentFacts, parents: Map<string, number>) {
  const parent = parents.get(normalGuid(record.parentGlobalId));
  const file = record.path ? input.attachmentFiles.get(record.path) : undefined;
  if (parent === undefined || !file) {
    throw new AppError(
      `Attachment ${record.id} cannot be put back (${parent === undefined ? "its row is missing" : "its file is not in the manifest"})`,
      { code: "ERR_ATTACHMENT_PARENT", status: 502 },
    );
  }
  const bytes = await input.files.read(file);
  const url = `${input.target.url}/${parent}`;
  const result = await addAttachment(input.portal, url, record, bytes, async () => {
    // The answer was lost: the row's attachments say whether this one went in.
    const there = await input.portal.json<{ attachmentInfos?: AttachmentFacts[] }>(
      `${url}/attachments`,
      {},
      { method: "GET" },
    );
    return (there.attachmentInfos ?? []).some((a) => attachmentKey(a) === attachmentKey(record));
  });
  if (result?.success === false) {
    throw new AppError(
      `Attachment ${record.name} was refused (${result.error?.description ?? "no reason"})`,
      { code: "ERR_ATTACHMENT_NOT_ADDED", status: 502 },
    );
  }
}

type AddAttachmentResult = { success?: boolean; error?: { description?: string } };

/**
 * One attachment added to a row (`rowUrl`: the layer's URL and the row's object id), with its own
 * GlobalID when it has one. Not repeated blindly: a lost answer is settled by `wentIn`.
 */
export async function addAttachment(
  portal: PortalClient,
  rowUrl: string,
  record: Pick<AttachmentFacts, "name" | "contentType" | "globalId" | "keywords">,
  bytes: Buffer,
  wentIn: () => Promise<boolean>,
): Promise<AddAttachmentResult | undefined> {
  type Added = { addAttachmentResult?: AddAttachmentResult };
  const response = await writeOnce<Added>(
    (options) =>
      portal.json<Added>(
        `${rowUrl}/addAttachment`,
        {
          attachment: new File([bytes], record.name, { type: record.contentType }),
          ...(record.globalId ? { globalId: record.globalId, useGlobalIds: true } : {}),
          ...(record.keywords ? { keywords: record.keywords } : {}),
        },
        options,
      ),
    async () => ((await wentIn()) ? { addAttachmentResult: { success: true } } : undefined),
  );
  return response.addAttachmentResult;
}

/** What tells two attachments of a row apart: their GlobalID, else name and size. */
export function attachmentKey(a: { globalId?: string | null; name: string; size: number }): string {
  return a.globalId ? `g:${normalGuid(a.globalId)}` : `n:${a.name}\n${a.size}`;
}

async function* storedAttachments(input: AttachmentDiffInput): AsyncGenerator<AttachmentFacts> {
  for await (const record of layerAttachments(input.files, input.layer))
    yield record satisfies AttachmentRecord;
}

async function* sortedByKey(
  records: AsyncIterable<AttachmentFacts>,
  cache: { directory: string; space: CacheSpace },
): AsyncGenerator<{ key: string; value: AttachmentFacts }> {
  const sortKey = (a: AttachmentFacts) => `${normalGuid(a.parentGlobalId)}|${attachmentKey(a)}`;
  async function* lines(): AsyncGenerator<string> {
    for await (const record of records) yield JSON.stringify(record);
  }
  for await (const line of sortLines(lines(), (l) => sortKey(JSON.parse(l) as AttachmentFacts), cache)) {
    const value = JSON.parse(line) as AttachmentFacts;
    yield { key: sortKey(value), value };
  }
}

interface Group {
  parentObjectId: number;
  parentGlobalId?: string | null;
  attachmentInfos?: Array<Omit<AttachmentFacts, "parentObjectId" | "parentGlobalId">>;
}

/** Every attachment of the target layer now, by object id windows of its rows. */
async function* currentAttachments(
  portal: PortalClient,
  target: TargetLayer,
): AsyncGenerator<AttachmentFacts> {
  const field = target.objectIdField;
  const source = layerIdSource(portal, target.url, field);
  const expected = await source.count("1=1");
  for await (const page of objectIdPages(source, expected, { pageSize: 500, window: 100_000 })) {
    const response = await portal.json<{ attachmentGroups?: Group[] }>(`${target.url}/queryAttachments`, {
      definitionExpression: `${field} >= ${page[0]} AND ${field} <= ${page.at(-1)}`,
      returnUrl: false,
    });
    for (const group of response.attachmentGroups ?? []) {
      for (const info of group.attachmentInfos ?? []) {
        yield { ...info, parentObjectId: group.parentObjectId, parentGlobalId: group.parentGlobalId ?? null };
      }
    }
  }
}

/** The target's object ids of the rows these attachments belong to, by their GlobalIDs. */
async function parentsByGlobalId(
  portal: PortalClient,
  target: TargetLayer,
  records: AttachmentFacts[],
): Promise<Map<string, number>> {
  const wanted = [...new Set(records.map((r) => normalGuid(r.parentGlobalId)).filter((g) => g !== ""))];
  const out = new Map<string, number>();
  if (wanted.length === 0) return out;
  const response = await portal.json<{ features?: Array<{ attributes?: Record<string, unknown> }> }>(
    `${target.url}/query`,
    {
      where: globalIdsWhere(target.globalIdField, wanted),
      outFields: `${target.objectIdField},${target.globalIdField}`,
      returnGeometry: false,
    },
  );
  for (const feature of response.features ?? []) {
    const oid = feature.attributes?.[target.objectIdField];
    const gid = feature.attributes?.[target.globalIdField];
    if (typeof oid === "number" && gid) out.set(normalGuid(gid), oid);
  }
  return out;
}
