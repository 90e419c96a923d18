/**
 * References between items, found and rewritten in text (JSON data, item URLs, properties, JSON
 * resources, descriptions). The text is rewritten in place — never parsed and serialised again —
 * so a document without references keeps its exact bytes.
 *
 * - An item id is a 32-character hex token (not part of a longer hex run). Ids of the restore set
 *   become the new ids; others stay and are reported.
 * - A service URL (`…/FeatureServer`, optionally `/<layerId>`) of a restored service becomes the new
 *   service's URL, scheme-insensitively and case-insensitively; layer ids follow the new service's
 *   ids when they changed.
 */

const ID_TOKEN = /(?<![0-9a-fA-F])[0-9a-fA-F]{32}(?![0-9a-fA-F])/g;

export interface UrlMapping {
  from: string;
  to: string;
  /** Old layer id → new layer id, when they differ. */
  layers?: Record<string, number>;
}

export interface RemapTable {
  /** Old id (lowercase) → new id. */
  ids: ReadonlyMap<string, string>;
  urls: readonly UrlMapping[];
}

export interface RemapResult {
  text: string;
  ids: number;
  urls: number;
  /** Id tokens (lowercase) left as they were. */
  unmapped: Set<string>;
}

/** Every 32-hex token of a text, lowercased. */
export function idTokens(text: string): Set<string> {
  const out = new Set<string>();
  for (const match of text.matchAll(ID_TOKEN)) out.add(match[0].toLowerCase());
  return out;
}

/** A service URL reduced to what identifies it: no scheme, no trailing slash, lowercase. */
export function normalizeServiceUrl(url: string): string {
  return url
    .trim()
    .replace(/^[a-z]+:/i, "")
    .replace(/^\/\//, "")
    .replace(/\/+$/, "")
    .toLowerCase();
}

function urlPattern(from: string): RegExp {
  const body = normalizeServiceUrl(from).replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  // Optional scheme, the URL, then an optional layer id; never the start of a longer name.
  return new RegExp(`(?:https?:)?//${body}(?:/(\\d+))?(?![\\w-])`, "gi");
}

/** The service URLs (from `candidates`) that occur in the text. */
export function urlsIn(text: string, candidates: Iterable<string>): string[] {
  const found: string[] = [];
  for (const candidate of candidates) {
    const pattern = urlPattern(candidate);
    if (pattern.test(text)) found.push(candidate);
  }
  return found;
}

/** Rewrites service URLs, then item ids. */
export function remapText(text: string, table: RemapTable): RemapResult {
  let urls = 0;
  let out = text;
  for (const mapping of table.urls) {
    const to = mapping.to.replace(/\/+$/, "");
    out = out.replace(urlPattern(mapping.from), (_match, layer: string | undefined) => {
      urls++;
      if (layer === undefined) return to;
      const mapped = mapping.layers?.[layer];
      return `${to}/${mapped ?? layer}`;
    });
  }
  let ids = 0;
  const unmapped = new Set<string>();
  out = out.replace(ID_TOKEN, (token) => {
    const next = table.ids.get(token.toLowerCase());
    if (next === undefined) {
      unmapped.add(token.toLowerCase());
      return token;
    }
    ids++;
    return next;
  });
  return { text: out, ids, urls, unmapped };
}

/** True when the text holds a reference that the table would rewrite. */
export function wouldRemap(text: string, table: RemapTable): boolean {
  for (const token of idTokens(text)) if (table.ids.has(token)) return true;
  return table.urls.some((m) => urlPattern(m.from).test(text));
}

/** The service URL of a layer or service URL: everything up to `…/FeatureServer`. */
export function serviceRootOf(url: string): string | null {
  const match = /^(.*?\/(?:FeatureServer|MapServer))(?:\/.*)?$/i.exec(url.trim());
  return match?.[1] ?? null;
}

/** The service name in a hosted service URL (`…/services/<name>/FeatureServer`). */
export function serviceNameOf(url: string): string | null {
  const match = /\/services\/(?:Hosted\/)?([^/]+)\/(?:FeatureServer|MapServer|VectorTileServer)\/?$/i.exec(
    serviceRootOf(url) ?? url,
  );
  return match?.[1] ? decodeURIComponent(match[1]) : null;
}
