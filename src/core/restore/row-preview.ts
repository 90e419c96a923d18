import type { PortalClient } from "../arcgis/portal-client.js";
import type { CacheSpace } from "../backup/cache.js";
import { layersOf } from "../backup/layer-version-rows.js";
import { layerDefinitionPath } from "../backup/layout.js";
import type { ManifestItem } from "../backup/manifest.js";
import type { BackupFiles } from "./backup-files.js";
import type { RowMode, RowPreview } from "./model.js";
import { restoreAttachmentsInPlace } from "./row-attachments.js";
import { attachmentFilesOf, restoreRowsInPlace, targetLayerOf } from "./row-restore.js";

export interface RowPreviewInput {
  portal: PortalClient;
  files: BackupFiles;
  manifestItem: ManifestItem;
  /** The existing service's URL in the target (overwrite keeps it). */
  serviceUrl: string;
  cache: { directory: string; space: CacheSpace };
  rows: RowMode;
}

interface StoredLayer {
  objectIdField?: string;
  globalIdField?: string;
}

/**
 * What restoring a hosted layer in place would write, layer by layer, without writing anything:
 * the rows (and attachments) row-level restore would add, update and delete, and the first rows
 * edited after the version. A layer restored by replacing its rows (asked for, or without
 * GlobalIDs) shows every row deleted and every row of the version added.
 */
export async function previewRows(input: RowPreviewInput): Promise<RowPreview[]> {
  const out: RowPreview[] = [];
  for (const layer of layersOf(input.manifestItem.files)) {
    const layerUrl = `${input.serviceUrl.replace(/\/+$/, "")}/${layer.layerId}`;
    const definitionFile = input.manifestItem.files.find(
      (f) => f.path === layerDefinitionPath(layer.layerId),
    );
    const stored: StoredLayer = definitionFile
      ? (JSON.parse(await input.files.text(definitionFile)) as StoredLayer)
      : {};
    const target =
      input.rows === "diff" && stored.globalIdField ? await targetLayerOf(input.portal, layerUrl) : undefined;
    if (!target) {
      const current = await input.portal.json<{ count?: number }>(`${layerUrl}/query`, {
        where: "1=1",
        returnCountOnly: true,
      });
      out.push({
        layerId: layer.layerId,
        mode: "replace",
        adds: input.manifestItem.counts?.[`features:${layer.layerId}`] ?? 0,
        updates: 0,
        deletes: current.count ?? 0,
        editedSince: [],
      });
      continue;
    }
    const common = {
      portal: input.portal,
      files: input.files,
      layer,
      target,
      cache: input.cache,
      dryRun: true,
    };
    const rows = await restoreRowsInPlace({
      ...common,
      storedObjectIdField: stored.objectIdField ?? "OBJECTID",
      batchSize: 250,
    });
    const attachments =
      layer.attachmentsIndex && target.hasAttachments
        ? await restoreAttachmentsInPlace({
            ...common,
            attachmentFiles: attachmentFilesOf(input.manifestItem.files),
            concurrency: 1,
          })
        : undefined;
    out.push({
      layerId: layer.layerId,
      mode: "diff",
      adds: rows.adds,
      updates: rows.updates,
      deletes: rows.deletes,
      ...(attachments
        ? { attachmentsAdded: attachments.added, attachmentsDeleted: attachments.deleted }
        : {}),
      editedSince: rows.editedSince.map((e) => ({ layerId: layer.layerId, ...e })),
    });
  }
  return out;
}
