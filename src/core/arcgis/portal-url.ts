import { ValidationError } from "../errors.js";
import { isLoopbackHost, parseSecureUrl } from "../net/host-policy.js";

export type PortalKind = "arcgis-online" | "arcgis-enterprise";

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
