import { ValidationError } from "../errors.js";

export type PortalKind = "arcgis-online" | "arcgis-enterprise";

const LOOPBACK_HOSTS = new Set(["127.0.0.1", "localhost", "[::1]", "::1"]);

export function isLoopbackHost(hostname: string): boolean {
  return LOOPBACK_HOSTS.has(hostname.toLowerCase());
}

/**
 * Checks that a URL is https, or http on loopback when the development setting allows it.
 * The error names the field.
 */
export function parseSecureUrl(value: string, field: string, allowInsecureLoopback: boolean): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ValidationError(`${field} must be an absolute URL`, field);
  }
  if (url.username || url.password) throw new ValidationError(`${field} must not contain credentials`, field);
  if (url.protocol === "https:") return url;
  if (url.protocol === "http:" && allowInsecureLoopback && isLoopbackHost(url.hostname)) return url;
  throw new ValidationError(
    allowInsecureLoopback
      ? `${field} must use https (http is allowed only on loopback)`
      : `${field} must use https (http on loopback needs ALLOW_INSECURE_LOOPBACK=true)`,
    field,
  );
}

/**
 * Normalizes what an admin types (an Online org URL such as https://myorg.maps.arcgis.com, an
 * Enterprise portal such as https://host/portal, or either with /home or /sharing/rest) to the
 * Sharing REST root.
 */
export function toSharingUrl(kind: PortalKind, portalUrl: string, allowInsecureLoopback: boolean): string {
  const url = parseSecureUrl(portalUrl.trim(), "portalUrl", allowInsecureLoopback);
  if (url.search || url.hash)
    throw new ValidationError("portalUrl must not have a query or fragment", "portalUrl");
  let path = url.pathname.replace(/\/+$/, "");
  path = path.replace(/\/(home(\/.*)?|sharing(\/rest(\/.*)?)?)$/i, "");
  if (kind === "arcgis-online" && path !== "" && !isLoopbackHost(url.hostname)) {
    throw new ValidationError(
      "portalUrl of an ArcGIS Online org is its org URL, such as https://myorg.maps.arcgis.com",
      "portalUrl",
    );
  }
  if (kind === "arcgis-enterprise" && path === "" && !isLoopbackHost(url.hostname)) {
    throw new ValidationError(
      "portalUrl of ArcGIS Enterprise includes the web adaptor, such as https://gis.example.com/portal",
      "portalUrl",
    );
  }
  return `${url.origin}${path}/sharing/rest`;
}
