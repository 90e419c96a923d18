import type { PortalClient } from "../arcgis/portal-client.js";
import { PortalError } from "../arcgis/portal-errors.js";
import { errorMessage } from "../errors.js";
import type { Identity, VerificationResult } from "./identity.js";

/** What a full-org backup needs to see every member's content, users and groups. */
export const BACKUP_PRIVILEGES = [
  "portal:admin:viewItems",
  "portal:admin:viewUsers",
  "portal:admin:viewGroups",
];
/** What restoring content into the org needs. */
export const RESTORE_PRIVILEGES = ["portal:user:createItem", "portal:publisher:publishFeatures"];

interface PortalSelf {
  id?: string;
  name?: string;
  urlKey?: string;
  isPortal?: boolean;
}

interface CommunitySelf {
  username?: string;
  role?: string;
  privileges?: string[];
}

/**
 * "Save and Verify": signs in, reads the org (portals/self) and the user (community/self), and
 * warns about anything that would make a full-org backup or a restore incomplete.
 */
export async function verifyPortalAccess(
  identity: Identity,
  client: PortalClient,
): Promise<VerificationResult> {
  const at = new Date().toISOString();
  const warnings: string[] = [];
  try {
    const portal = await client.json<PortalSelf>("portals/self", {}, { method: "GET" });
    const result: VerificationResult = {
      ok: true,
      at,
      portal: {
        id: portal.id ?? "",
        name: portal.name ?? "",
        ...(portal.urlKey ? { urlKey: portal.urlKey } : {}),
        isPortal: portal.isPortal === true,
      },
      warnings,
    };
    if (identity.kind === "arcgis-online" && portal.isPortal) {
      warnings.push(
        "The portal reports isPortal=true: it is ArcGIS Enterprise, but the identity's kind is arcgis-online",
      );
    }
    if (identity.kind === "arcgis-enterprise" && portal.isPortal === false) {
      warnings.push(
        "The portal reports isPortal=false: it is ArcGIS Online, but the identity's kind is arcgis-enterprise",
      );
    }
    if (identity.auth.type === "oauth2-app") {
      warnings.push(
        "oauth2-app tokens act as the app, not as an administrator: they cannot list members' private content, users or groups. Use builtin or oauth2-user sign-in of an administrator for a full-org backup.",
      );
    }
    try {
      const user = await client.json<CommunitySelf>("community/self", {}, { method: "GET" });
      const privileges = user.privileges ?? [];
      result.user = { username: user.username ?? "", role: user.role ?? "", privileges };
      const missing = BACKUP_PRIVILEGES.filter((p) => !privileges.includes(p));
      if (missing.length > 0) {
        warnings.push(
          `A full-org backup needs the privileges ${missing.join(", ")}; without them only visible content is backed up`,
        );
      }
      const missingRestore = RESTORE_PRIVILEGES.filter((p) => !privileges.includes(p));
      if (missingRestore.length > 0)
        warnings.push(`Restoring content needs the privileges ${missingRestore.join(", ")}`);
    } catch (error) {
      if (identity.auth.type !== "oauth2-app") throw error;
    }
    return result;
  } catch (error) {
    return {
      ok: false,
      at,
      warnings,
      error: {
        code: error instanceof PortalError ? error.code : "ERR_PORTAL_UNREACHABLE",
        message: errorMessage(error),
      },
    };
  }
}
