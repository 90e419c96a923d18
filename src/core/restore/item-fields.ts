import path from "node:path";
import { VERSION_FILES } from "../backup/layout.js";
import type { PortalItem } from "../backup/portal-types.js";
import type { ItemJob } from "./context.js";
import { type RemapTable, remapText } from "./references.js";

/** Fields of item.json as addItem/update parameters; references in text fields remapped. */
export function itemFields(
  item: PortalItem,
  table: RemapTable,
  options: { clearEmpty: boolean },
): Record<string, unknown> {
  const text = (value: unknown): string | undefined => {
    if (typeof value === "string") return remapText(value, table).text;
    return options.clearEmpty ? "" : undefined;
  };
  const params: Record<string, unknown> = {
    title: item.title,
    type: item.type,
    typeKeywords: restoredKeywords(item, table).join(","),
    tags: (item.tags ?? []).join(","),
    snippet: text(item.snippet),
    description: text(item.description),
    accessInformation: text(item.accessInformation),
    licenseInfo: text(item.licenseInfo),
    culture: typeof item.culture === "string" ? item.culture : undefined,
    spatialReference: typeof item.spatialReference === "string" ? item.spatialReference : undefined,
  };
  const extent = extentParam(item.extent);
  if (extent !== undefined) params.extent = extent;
  else if (options.clearEmpty) params.extent = "";
  if (item.properties && typeof item.properties === "object") {
    params.properties = remapText(JSON.stringify(item.properties), table).text;
  } else if (options.clearEmpty) params.properties = "";
  if (typeof item.url === "string" && item.url) params.url = remapText(item.url, table).text;
  if (options.clearEmpty) params.clearEmptyFields = true;
  return Object.fromEntries(Object.entries(params).filter(([, v]) => v !== undefined));
}

/**
 * The item's typeKeywords with their references remapped: some apps link items by keyword (a Hub
 * page names its site as `hubSiteId|<id>`).
 */
export function restoredKeywords(item: Pick<PortalItem, "typeKeywords">, table: RemapTable): string[] {
  return (item.typeKeywords ?? []).map((keyword) => remapText(keyword, table).text);
}

function extentParam(extent: unknown): string | undefined {
  if (!Array.isArray(extent) || extent.length !== 2) return undefined;
  const [a, b] = extent as unknown[];
  if (!Array.isArray(a) || !Array.isArray(b)) return undefined;
  const values = [a[0], a[1], b[0], b[1]];
  return values.every((v) => typeof v === "number" && Number.isFinite(v)) ? values.join(",") : undefined;
}

export function marker(restoreId: string, itemId: string): string {
  return `orgbackup-restore-${restoreId}-${itemId}`;
}

/** The item's metadata and thumbnail as files for addItem/update. */
export async function sideFiles(job: ItemJob): Promise<Record<string, File>> {
  const out: Record<string, File> = {};
  const metadata = job.file(VERSION_FILES.metadata);
  if (metadata) {
    out.metadata = new File([await job.ctx.files.read(metadata)], "metadata.xml", {
      type: "application/xml",
    });
  }
  const thumbnail = job.filesOfKind("thumbnail")[0];
  if (thumbnail) {
    const name = path.posix.basename(thumbnail.originalName ?? thumbnail.path);
    out.thumbnail = new File([await job.ctx.files.read(thumbnail)], name, { type: thumbnail.contentType });
  }
  return out;
}
