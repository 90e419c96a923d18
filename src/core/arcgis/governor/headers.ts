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
 * for queries their shape (a count, ids, or a page of about so many records, with or without
 * geometry). So a first page of a new layer is priced like the pages before it, instead of many
 * new layers going out at once at a guessed price.
 */
export function costKey(url: string, params?: Record<string, unknown>): string {
  const bare = url.split(/[?#]/, 1)[0] ?? url;
  const base = bare
    .replace(/^([a-z]+:\/\/[^/]+)/i, (origin) => origin.toLowerCase())
    .replace(
      /(\/rest\/services\/)(.+?)(\/(?:FeatureServer|MapServer|ImageServer|VectorTileServer)\b)/i,
      "$1*$3",
    )
    .replace(/\/\d+(?=\/|$)/g, "/:n");
  return params && /\/query$/i.test(base) ? `${base}#${queryShape(params)}` : base;
}

function queryShape(params: Record<string, unknown>): string {
  const flag = (name: string) => String(params[name] ?? "").toLowerCase() === "true";
  if (flag("returnCountOnly")) return "count";
  if (flag("returnIdsOnly")) return "ids";
  const geometry = String(params.returnGeometry ?? "true").toLowerCase() !== "false";
  return `features-${recordBucket(params)}${geometry ? "" : "-nogeometry"}`;
}

/** About how many records a query asks for, rounded up to a power of two. */
function recordBucket(params: Record<string, unknown>): number | "any" {
  let records: number | undefined;
  if (params.resultRecordCount !== undefined) records = Number(params.resultRecordCount);
  else if (typeof params.objectIds === "string") records = params.objectIds.split(",").length;
  else if (Array.isArray(params.objectIds)) records = params.objectIds.length;
  else if (typeof params.where === "string") {
    const range = /(\w+)\s*>=\s*(\d+)\s+AND\s+\1\s*<=\s*(\d+)/i.exec(params.where);
    if (range) records = Number(range[3]) - Number(range[2]) + 1;
  }
  if (records === undefined || !Number.isFinite(records) || records < 1) return "any";
  return 2 ** Math.ceil(Math.log2(records));
}
