import { createHash } from "node:crypto";
import { z } from "zod";
import type { LayerDefinition } from "./feature-layers.js";
import { safeName } from "./layout.js";

/**
 * How a hosted layer's rows are stored in an item version, and the files of a change set.
 *
 * A layer version is either `full` (every row in `features/<layerId>.ndjson`, attachments in
 * `attachments/<layerId>/index.ndjson`, as always) or `changes`: the rows of the last full export
 * (`baseVersion`) with the change sets of the versions after it applied in order, this version's
 * last. Each change set is two files, both sorted by object id:
 *
 *   feature-changes/<layerId>/<n>.ndjson              one line per changed row (ChangeLine)
 *   feature-changes/<layerId>/<n>.attachments.ndjson  the attachments (AttachmentRecord lines) of
 *                                                     the rows whose line says `attachments: true`
 *
 * where n (1, 2, …) counts the change sets since the full export. A version names every file its
 * rows are built from — the base's features file and the earlier change sets as files reused from
 * their versions — so a prune keeps them while the version is kept, and a restore reads only the
 * version's own manifest entry.
 */

/** What the manifest (and the completion marker) says of each hosted layer of a version. */
export const layerStorageSchema = z.object({
  layerId: z.number().int(),
  /** full: the rows are one file; changes: the base version's rows with `changeSets` change sets applied. */
  storage: z.enum(["full", "changes"]),
  /** The version whose full export the rows start from (this version, or an earlier one). */
  baseVersion: z.string(),
  /** Change sets applied on top of the full export (0 when full). */
  changeSets: z.number().int().nonnegative(),
  /** The layer's change-tracking generation the rows reflect (absent: the layer tracks no changes). */
  serverGen: z.number().optional(),
  /** Where this version's change set starts (storage "changes", when this version added one). */
  fromServerGen: z.number().optional(),
  /** The layer's `editingInfo.dataLastEditDate` when captured: the same date means the same rows. */
  dataLastEditDate: z.number().optional(),
  /** A fingerprint of the layer's fields, geometry and ids: another schema forces a full export. */
  schema: z.string(),
  /** Why a layer that tracks changes was exported full, or kept from the previous version. */
  reason: z.string().optional(),
});
export type LayerStorage = z.infer<typeof layerStorageSchema>;

/** One line of a change set: a row inserted or updated (its whole JSON), deleted, or only its attachments. */
export const changeLineSchema = z.object({
  oid: z.number(),
  op: z.enum(["upsert", "delete", "attachments"]),
  /** The change set lists this row's attachments in full (a delete: it has none any more). */
  attachments: z.boolean().optional(),
  feature: z.record(z.string(), z.unknown()).optional(),
});
export type ChangeLine = z.infer<typeof changeLineSchema>;

export const CHANGE_FILE_KIND = "feature-changes";

/** `feature-changes/<layerId>/<n>`, n zero-padded: the two files of a change set add their endings. */
function changeSetStem(layerId: number, changeSet: number): string {
  return `feature-changes/${safeName(String(layerId))}/${String(changeSet).padStart(4, "0")}`;
}

export function changeRowsPath(layerId: number, changeSet: number): string {
  return `${changeSetStem(layerId, changeSet)}.ndjson`;
}

export function changeAttachmentsPath(layerId: number, changeSet: number): string {
  return `${changeSetStem(layerId, changeSet)}.attachments.ndjson`;
}

/** The parts of a layer definition that decide whether stored rows still fit it. */
export function schemaFingerprint(
  layer: Pick<
    LayerDefinition,
    "geometryType" | "objectIdField" | "globalIdField" | "hasZ" | "hasM" | "hasAttachments" | "fields"
  >,
): string {
  const shape = {
    geometryType: layer.geometryType ?? null,
    objectIdField: layer.objectIdField ?? null,
    globalIdField: layer.globalIdField ?? null,
    hasZ: layer.hasZ === true,
    hasM: layer.hasM === true,
    hasAttachments: layer.hasAttachments === true,
    fields: (layer.fields ?? []).map((f) => [f.name, f.type]),
  };
  return createHash("sha256").update(JSON.stringify(shape)).digest("hex").slice(0, 16);
}

/** The default of LAYER_FULL_EXPORT_EVERY: a full export at least every 7th version of a layer. */
export const DEFAULT_FULL_EXPORT_EVERY = 7;

export type LayerPlan =
  | { action: "keep"; previous: LayerStorage }
  | { action: "changes"; previous: LayerStorage; since: number }
  | { action: "full"; reason?: string };

export interface LayerNow {
  schema: string;
  dataLastEditDate: number | undefined;
  /** The layer's generations, when the service tracks changes well enough for a change set. */
  tracking: { serverGen: number; minServerGen: number } | undefined;
}

/**
 * How to capture a layer now, given how the previous version stored it: keep the previous rows
 * (nothing was edited since), a change set since its generation, or a full export — when the
 * layer tracks no changes, the previous version has no generation, its generation expired, the
 * schema changed, or `fullEvery` versions have passed since the last full export (so a restore
 * never replays an unbounded chain).
 */
export function planLayer(previous: LayerStorage | undefined, now: LayerNow, fullEvery: number): LayerPlan {
  if (!previous) return { action: "full" };
  if (previous.schema !== now.schema) return { action: "full", reason: "the layer's schema changed" };
  if (now.dataLastEditDate !== undefined && previous.dataLastEditDate === now.dataLastEditDate) {
    return { action: "keep", previous };
  }
  if (!now.tracking) return { action: "full" };
  if (previous.serverGen === undefined) {
    return { action: "full", reason: "the previous version has no change-tracking generation" };
  }
  if (previous.serverGen < now.tracking.minServerGen) {
    return {
      action: "full",
      reason: `the previous generation ${previous.serverGen} is older than the layer's minServerGen ${now.tracking.minServerGen}`,
    };
  }
  if (previous.changeSets + 1 >= Math.max(1, fullEvery)) {
    return { action: "full", reason: `a full export every ${fullEvery} versions` };
  }
  return { action: "changes", previous, since: previous.serverGen };
}
