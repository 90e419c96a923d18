import { createHash } from "node:crypto";
import path from "node:path";

/**
 * Every blob name of a backup, built here and nowhere else. Names are relative to the identity's
 * folder `<identityId>/` in its container:
 *
 *   items/<itemId>/<version>/item.json, data/…, metadata.xml, thumbnail/…, resources/…,
 *                            related.json, service/…, features/…, attachments/…,
 *                            _complete.json   (the version counts only once this exists)
 *   runs/<runId>/inventory/chunk-<n>.ndjson, results/…, org/…, manifest.json (written last)
 *   restores/<restoreId>/plan.json, report.json
 *   prunes/<pruneId>/plan.json, report.json
 *
 * Every segment that comes from the portal (item and layer ids, file, resource and attachment
 * names) goes through `safeName` or `safeRelativePath`, so no name leaves its item version.
 */

/** A name relative to the identity's folder, as its container knows it. */
export function identityBlobName(identityId: string, relative: string): string {
  return `${identityId}/${relative}`;
}

// --- item versions -------------------------------------------------------------------------

export function itemVersionPrefix(itemId: string, version: string): string {
  return `items/${safeName(itemId)}/${safeName(version)}/`;
}

/** Files of an item version with fixed names, relative to the version's prefix. */
export const VERSION_FILES = {
  item: "item.json",
  data: "data.json",
  metadata: "metadata.xml",
  related: "related.json",
  service: "service/service.json",
  /** Written last: a version without it never counts. */
  completionMarker: "_complete.json",
} as const;

export function completionMarkerName(itemId: string, version: string): string {
  return `${itemVersionPrefix(itemId, version)}${VERSION_FILES.completionMarker}`;
}

/** A file item's data, under the name the portal gave it. */
export function dataFilePath(fileName: string): string {
  return `data/${safeRelativePath(fileName)}`;
}

export function thumbnailPath(thumbnail: string): string {
  return `thumbnail/${safeRelativePath(path.posix.basename(thumbnail))}`;
}

/** A resource keeps its folders (`prefix/name`), each made safe. */
export function resourcePath(resource: string): string {
  return `resources/${safeRelativePath(resource)}`;
}

export function layerDefinitionPath(layerId: string | number): string {
  return `service/layers/${safeName(String(layerId))}.json`;
}

export function featuresPath(layerId: string | number): string {
  return `features/${safeName(String(layerId))}.ndjson`;
}

export function attachmentsIndexPath(layerId: string | number): string {
  return `attachments/${safeName(String(layerId))}/index.ndjson`;
}

export function attachmentPath(
  layerId: string | number,
  parentObjectId: string | number,
  attachmentId: string | number,
): string {
  return `attachments/${safeName(String(layerId))}/${safeName(String(parentObjectId))}/${safeName(String(attachmentId))}`;
}

// --- runs ----------------------------------------------------------------------------------

export function runPrefix(runId: string): string {
  return `runs/${runId}/`;
}

export function inventoryChunkName(runId: string, chunkIndex: number): string {
  return `${runPrefix(runId)}inventory/chunk-${String(chunkIndex).padStart(5, "0")}.ndjson`;
}

/** What the inventory found changed against the run it compared with (see InventoryChanges). */
export function inventoryChangesName(runId: string): string {
  return `${runPrefix(runId)}inventory/changes.json`;
}

/** Every results blob of a run (batches and items found unchanged by the inventory). */
export function runResultsPrefix(runId: string): string {
  return `${runPrefix(runId)}results/`;
}

/** The results of the run's batches (the items sent to export), not the inventory's unchanged ones. */
export function batchResultsPrefix(runId: string): string {
  return `${runResultsPrefix(runId)}chunk-`;
}

export function batchResultName(runId: string, chunkIndex: number, batchIndex: number): string {
  return `${batchResultsPrefix(runId)}${String(chunkIndex).padStart(5, "0")}-batch-${String(batchIndex).padStart(4, "0")}.json`;
}

const UNCHANGED_RESULTS = "inventory-unchanged-";

export function unchangedResultName(runId: string, index: number): string {
  return `${runResultsPrefix(runId)}${UNCHANGED_RESULTS}${String(index).padStart(5, "0")}.json`;
}

export function manifestName(runId: string): string {
  return `${runPrefix(runId)}manifest.json`;
}

/**
 * The org records a run's inventory writes. A whole-org run adds the org's structure (see
 * org-structure.ts): custom roles, the content category schema and the settings worth restoring.
 */
export function orgRecordNames(runId: string): {
  portal: string;
  users: string;
  groups: string;
  folders: string;
  roles: string;
  categories: string;
  settings: string;
} {
  const org = `${runPrefix(runId)}org/`;
  return {
    portal: `${org}portal.json`,
    users: `${org}users.ndjson`,
    groups: `${org}groups.ndjson`,
    folders: `${org}folders.ndjson`,
    roles: `${org}roles.ndjson`,
    categories: `${org}categories.json`,
    settings: `${org}settings.json`,
  };
}

/** A group's thumbnail, in the run's org folder beside the group records (which name it). */
export function groupThumbnailName(org: { groups: string }, groupId: string, fileName: string): string {
  const folder = path.posix.dirname(org.groups);
  return `${folder}/group-thumbnails/${safeName(groupId)}/${safeName(path.posix.basename(fileName))}`;
}

// --- restores ------------------------------------------------------------------------------

export function restorePrefix(restoreId: string): string {
  return `restores/${restoreId}/`;
}

export function restorePlanName(restoreId: string): string {
  return `${restorePrefix(restoreId)}plan.json`;
}

export function restoreReportName(restoreId: string): string {
  return `${restorePrefix(restoreId)}report.json`;
}

// --- prunes --------------------------------------------------------------------------------

/** Every item version of the identity: what a prune sweeps. */
export const ITEMS_PREFIX = "items/";

export function prunePlanName(pruneId: string): string {
  return `prunes/${pruneId}/plan.json`;
}

export function pruneReportName(pruneId: string): string {
  return `prunes/${pruneId}/report.json`;
}

/**
 * An item's version: its `modified` time and, for services whose data is edited apart from
 * the item, the latest data edit. An unchanged item maps to the same version and is not
 * exported again.
 */
export function itemVersion(modified: number, dataEditedAt?: number): string {
  const base = `v${modified}`;
  return dataEditedAt && dataEditedAt > 0 ? `${base}-e${dataEditedAt}` : base;
}

const MAX_SEGMENT = 120;
const SAFE = /^[\p{L}\p{N} ._()~+,=@-]+$/u;

/**
 * Turns a name from the portal (a resource path, a file name) into blob path segments that
 * cannot climb out of their folder: `.` and `..` and empty segments are neutralised, control
 * and reserved characters percent-encoded, very long segments shortened with a hash so two
 * names never collide. The original name is kept in the completion marker.
 */
export function safeRelativePath(original: string): string {
  const segments = original.split(/[\\/]+/).filter((s) => s.length > 0);
  const safe = segments.map(safeSegment);
  return safe.length > 0 ? safe.join("/") : "_";
}

/**
 * One segment from a name the portal gave (an item or layer id, an object id): like
 * `safeRelativePath`, but a slash is encoded too, so it never makes a folder.
 */
export function safeName(original: string): string {
  return original.length > 0 ? safeSegment(original) : "_";
}

function safeSegment(segment: string): string {
  let out: string;
  if (segment === "." || segment === "..") out = segment.replace(/\./g, "%2E");
  else if (SAFE.test(segment)) out = segment;
  else
    out = [...segment]
      .map((c) => (SAFE.test(c) ? c : encodeURIComponent(c).replace(/[!'*]/g, escapeChar)))
      .join("");
  if (out.endsWith(".")) out = `${out.slice(0, -1)}%2E`;
  if (Buffer.byteLength(out) > MAX_SEGMENT) {
    const hash = createHash("sha256").update(segment).digest("hex").slice(0, 12);
    out = `${truncateBytes(out, MAX_SEGMENT - 13)}~${hash}`;
  }
  return out;
}

function escapeChar(c: string): string {
  return `%${c.charCodeAt(0).toString(16).toUpperCase()}`;
}

function truncateBytes(value: string, maxBytes: number): string {
  let out = "";
  for (const char of value) {
    if (Buffer.byteLength(out + char) > maxBytes) break;
    out += char;
  }
  // Never end inside a percent escape.
  return out.replace(/%[0-9A-F]?$/i, "");
}

/** Run ids sort newest first and say when they started: b-<inverted ms>-<random>. */
export function newRunId(prefix: "b" | "r" | "p", now = Date.now(), random = Math.random): string {
  const inverted = String(9_999_999_999_999 - now).padStart(13, "0");
  const suffix = Math.floor(random() * 36 ** 6)
    .toString(36)
    .padStart(6, "0");
  return `${prefix}-${inverted}-${suffix}`;
}

export const RUN_ID_PATTERN = /^[br]-\d{13}-[0-9a-z]{6}$/;

/** Prune ids: like run ids, with `p-`. */
export const PRUNE_ID_PATTERN = /^p-\d{13}-[0-9a-z]{6}$/;
