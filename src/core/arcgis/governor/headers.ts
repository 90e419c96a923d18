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

/** The key costs are learned under: the URL without query string, host in lower case. */
export function costKey(url: string): string {
  const bare = url.split(/[?#]/, 1)[0] ?? url;
  return bare.replace(/^([a-z]+:\/\/[^/]+)/i, (origin) => origin.toLowerCase());
}
