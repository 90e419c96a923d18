import { createHash } from "node:crypto";

/**
 * Where things live in an identity's container (all under `<identityId>/`):
 *
 *   items/<itemId>/<version>/item.json, data/…, metadata.xml, thumbnail/…, resources/…,
 *                            related.json, service/…, features/…, attachments/…,
 *                            _complete.json   (the version counts only once this exists)
 *   runs/<runId>/inventory/chunk-<n>.ndjson, results/…, org/…, manifest.json (written last)
 */
export const COMPLETION_MARKER = "_complete.json";
export const MANIFEST_NAME = "manifest.json";

export function itemVersionPrefix(itemId: string, version: string): string {
  return `items/${itemId}/${version}/`;
}

export function runPrefix(runId: string): string {
  return `runs/${runId}/`;
}

export function inventoryChunkName(runId: string, chunkIndex: number): string {
  return `${runPrefix(runId)}inventory/chunk-${String(chunkIndex).padStart(5, "0")}.ndjson`;
}

export function batchResultName(runId: string, chunkIndex: number, batchIndex: number): string {
  return `${runPrefix(runId)}results/chunk-${String(chunkIndex).padStart(5, "0")}-batch-${String(batchIndex).padStart(4, "0")}.json`;
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
export function newRunId(prefix: "b" | "r", now = Date.now(), random = Math.random): string {
  const inverted = String(9_999_999_999_999 - now).padStart(13, "0");
  const suffix = Math.floor(random() * 36 ** 6)
    .toString(36)
    .padStart(6, "0");
  return `${prefix}-${inverted}-${suffix}`;
}

export const RUN_ID_PATTERN = /^[br]-\d{13}-[0-9a-z]{6}$/;
