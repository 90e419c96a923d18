/** What one response tells about the org's request-unit meter (ArcGIS Online feature services). */
export interface OrgUnitsHeader {
  /** Units the whole org spent in the meter's last minute. */
  usage: number;
  /** The org's budget per minute. */
  max: number;
}

export const ORG_UNITS_HEADER = "x-esri-org-request-units-per-min";
export const QUERY_UNITS_HEADER = "x-esri-query-request-units";

/** Parses `usage=<n>;max=<m>` (separators `;` or `,`, any case, spaces allowed). */
export function parseOrgUnits(value: string | null | undefined): OrgUnitsHeader | undefined {
  if (!value) return undefined;
  let usage: number | undefined;
  let max: number | undefined;
  for (const part of value.split(/[;,]/)) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    const key = part.slice(0, eq).trim().toLowerCase();
    const number = Number(part.slice(eq + 1).trim());
    if (!Number.isFinite(number) || number < 0) continue;
    if (key === "usage") usage = number;
    else if (key === "max") max = number;
  }
  if (usage === undefined || max === undefined || max <= 0) return undefined;
  return { usage, max };
}

/** Parses the units one request cost; undefined when absent or not a number. */
export function parseQueryUnits(value: string | null | undefined): number | undefined {
  if (value === null || value === undefined || value.trim() === "") return undefined;
  const number = Number(value.trim());
  return Number.isFinite(number) && number >= 0 ? number : undefined;
}

/**
 * Whether the org meters this URL: feature services and other ArcGIS Server resources
 * (`…/rest/services/…`). Sharing REST calls are not metered.
 */
export function isMeteredUrl(url: string): boolean {
  const path = url.replace(/^[a-z]+:\/\/[^/]+/i, "").split(/[?#]/, 1)[0] ?? "";
  return /\/rest\/services(\/|$)/i.test(path);
}

/**
 * The key costs are learned under: the kind of request, not the one URL — the host, the path
 * with the service's name and every number (layer, object and attachment ids) generalised, and
 * for queries their shape (a count, ids, statistics, or a page of about so many records, with or
 * without geometry). So a first page of a new layer is priced like the pages before it, instead
 * of many new layers going out at once at a guessed price.
 */
export function costKey(url: string, params?: Record<string, unknown>): string {
  const base = generalPath(url);
  if (!params || !/\/query$/i.test(base)) return base;
  const shape = queryShape(params);
  if (shape.kind !== "features") return `${base}#${shape.kind}`;
  return `${base}#features-${shape.records ?? "any"}${shape.geometry ? "" : "-nogeometry"}`;
}

/**
 * A first price for a query of a kind not priced yet, from what it asks; undefined for other
 * requests (metadata, attachments, edits: their parameters do not tell). On the high side on
 * purpose: the part of a reservation the answer did not use is handed back at once, while a
 * price too low lets the request overshoot our share. About 1 unit a request (a count), plus 1
 * per 40 records of attributes, twice that with geometry (most of a feature's bytes), or 1 per
 * 4,000 ids; a query that does not say how many records is taken as 2,000 (the usual
 * maxRecordCount of hosted layers), statistics as such a page (the server reads the rows).
 */
export function firstCostEstimate(url: string, params?: Record<string, unknown>): number | undefined {
  if (!params || !/\/query$/i.test(generalPath(url))) return undefined;
  const shape = queryShape(params);
  const records = shape.records ?? 2_000;
  switch (shape.kind) {
    case "count":
      return 1;
    case "ids":
      return Math.ceil(1 + records / 4_000);
    case "statistics":
      return Math.ceil(1 + records / 40);
    case "features":
      return Math.ceil(1 + (records / 40) * (shape.geometry ? 2 : 1));
  }
}

function generalPath(url: string): string {
  const bare = url.split(/[?#]/, 1)[0] ?? url;
  return bare
    .replace(/^([a-z]+:\/\/[^/]+)/i, (origin) => origin.toLowerCase())
    .replace(
      /(\/rest\/services\/)(.+?)(\/(?:FeatureServer|MapServer|ImageServer|VectorTileServer)\b)/i,
      "$1*$3",
    )
    .replace(/\/\d+(?=\/|$)/g, "/:n");
}

interface QueryShape {
  kind: "count" | "ids" | "statistics" | "features";
  /** About how many records it asks for (rounded up to a power of two), when it says. */
  records: number | undefined;
  geometry: boolean;
}

function queryShape(params: Record<string, unknown>): QueryShape {
  const flag = (name: string) => String(params[name] ?? "").toLowerCase() === "true";
  const records = recordBucket(params);
  const geometry = String(params.returnGeometry ?? "true").toLowerCase() !== "false";
  if (flag("returnCountOnly")) return { kind: "count", records, geometry: false };
  if (flag("returnIdsOnly")) return { kind: "ids", records, geometry: false };
  if (params.outStatistics) return { kind: "statistics", records, geometry: false };
  return { kind: "features", records, geometry };
}

/** About how many records a query asks for, rounded up to a power of two. */
function recordBucket(params: Record<string, unknown>): number | undefined {
  let records: number | undefined;
  if (params.resultRecordCount !== undefined) records = Number(params.resultRecordCount);
  else if (typeof params.objectIds === "string") records = params.objectIds.split(",").length;
  else if (Array.isArray(params.objectIds)) records = params.objectIds.length;
  else if (typeof params.where === "string") {
    const range = /(\w+)\s*>=\s*(\d+)\s+AND\s+\1\s*<=\s*(\d+)/i.exec(params.where);
    if (range) records = Number(range[3]) - Number(range[2]) + 1;
  }
  if (records === undefined || !Number.isFinite(records) || records < 1) return undefined;
  return 2 ** Math.ceil(Math.log2(records));
}
