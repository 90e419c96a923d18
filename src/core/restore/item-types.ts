import { z } from "zod";
import type { PortalItem } from "../backup/portal-types.js";

/**
 * What a restore cannot bring back for the item types whose apps keep state outside the item.
 * Their item, data and resources are restored (and their references remapped) like any other
 * item; these notes say what is left to do by hand in the target.
 */

export const HUB_SITE_TYPES = new Set(["Hub Site Application", "Site Application"]);
export const NOTEBOOK_TYPE = "Notebook";

// A site's domain as its data records it; anything else in `values` is restored as it is.
const hubSiteDataSchema = z.object({
  values: z
    .object({
      subdomain: z.string().optional(),
      defaultHostname: z.string().optional(),
      customHostname: z.string().optional(),
      clientId: z.string().optional(),
    })
    .passthrough(),
});

/** Notes on what the item's type keeps outside the item; none for ordinary items. */
export function notRestorableNotes(item: Pick<PortalItem, "type">, dataText: string | undefined): string[] {
  if (HUB_SITE_TYPES.has(item.type)) return [hubSiteNote(dataText)];
  if (item.type === NOTEBOOK_TYPE) {
    return [
      "Notebook schedules (tasks) are not restored: they belong to the owner's account, not to the item; schedule the notebook again in the target",
    ];
  }
  return [];
}

function hubSiteNote(dataText: string | undefined): string {
  const parsed = hubSiteDataSchema.safeParse(parseJson(dataText));
  const values = parsed.success ? parsed.data.values : {};
  const names = [
    values.subdomain ? `subdomain "${values.subdomain}"` : null,
    values.defaultHostname ? `hostname ${values.defaultHostname}` : null,
    values.customHostname ? `custom hostname ${values.customHostname}` : null,
  ].filter((n): n is string => n !== null);
  const domain = names.length > 0 ? names.join(", ") : "its domain";
  // The Hub domain service, not the item, owns the domain and the site's OAuth app registration.
  return `Hub site domain not restored (${domain}): the site item keeps the backup's values, but the domain and the site's app registration live in ArcGIS Hub; set the site's domain again in the target's Hub`;
}

function parseJson(text: string | undefined): unknown {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
