import type { PortalClient } from "../arcgis/portal-client.js";
import { PortalError, PortalTransientError } from "../arcgis/portal-errors.js";
import type { AttachmentRecord } from "../backup/feature-attachments.js";
import type { FeatureJson } from "../backup/feature-layers.js";
import { normalGuid } from "../backup/layer-changes.js";
import { type LayerFiles, layerAttachments, layerRows, layersOf } from "../backup/layer-version-rows.js";
import { layerDefinitionPath, VERSION_FILES } from "../backup/layout.js";
import type { PortalItem } from "../backup/portal-types.js";
import { mapWithConcurrency } from "../concurrency.js";
import { AppError } from "../errors.js";
import { isSystemicFailure } from "../failures.js";
import { type ItemJob, note, remapTableFor, writeOnce } from "./context.js";
import { itemFields, sideFiles } from "./item-fields.js";
import { remapText, serviceNameOf } from "./references.js";
import { addAttachment, attachmentKey, restoreAttachmentsInPlace } from "./row-attachments.js";
import { attachmentFilesOf, EDITED_SINCE_LISTED, restoreRowsInPlace, targetLayerOf } from "./row-restore.js";
import { findServiceItem } from "./target.js";

interface LayerJson {
  id: number;
  name?: string;
  type?: string;
  objectIdField?: string;
  globalIdField?: string;
  hasAttachments?: boolean;
  fields?: Array<{ name: string; type: string; alias?: string }>;
  [key: string]: unknown;
}

interface ServiceRoot {
  layers?: Array<{ id: number; name?: string }>;
  tables?: Array<{ id: number; name?: string }>;
}

interface EditResult {
  objectId?: number | null;
  globalId?: string | null;
  success?: boolean;
  error?: { code?: number; description?: string };
}

/** Parameters of the service root that createService takes (`name` aside). */
const CREATE_KEYS = [
  "serviceDescription",
  "description",
  "copyrightText",
  "hasStaticData",
  "maxRecordCount",
  "supportedQueryFormats",
  "capabilities",
  "spatialReference",
  "initialExtent",
  "allowGeometryUpdates",
  "units",
  "xssPreventionInfo",
  "editorTrackingInfo",
];

/** Read-only parts of a saved layer definition that addToDefinition must not get back. */
const LAYER_READ_ONLY = [
  "currentVersion",
  "cimVersion",
  "serviceItemId",
  "editingInfo",
  "isView",
  "isUpdatableView",
  "sourceSchemaChangesAllowed",
  "hasMetadata",
  "supportsAttachmentsByUploadId",
];

/**
 * A hosted feature layer or view. New: createService with the saved definition (a unique name),
 * addToDefinition with the saved layers and tables, the item's fields, data, metadata and
 * thumbnail, then (not for views) the features in applyEdits batches keeping their GlobalIDs, and
 * the attachments; counts are checked against the manifest. Overwrite: the existing service keeps
 * its schema (layers missing from it are added), its rows are replaced by the backup's.
 */
export async function restoreService(job: ItemJob): Promise<void> {
  const { ctx, plan, row } = job;
  row.owner = plan.owner;
  if (plan.action === "overwrite") {
    if (!row.newId) {
      const existing = await ctx.portal.json<PortalItem>(
        `content/items/${plan.itemId}`,
        {},
        { method: "GET" },
      );
      row.newId = existing.id;
      row.newUrl = trimUrl(String(existing.url ?? ""));
      row.status = "created";
      await job.save();
    }
  } else if (!row.newId) {
    await createService(job);
  }
  if (!row.steps.definition) {
    await addDefinition(job);
    row.steps.definition = true;
    await job.save();
  }
  if (!row.steps.item) {
    await updateServiceItem(job);
    row.steps.item = true;
    await job.save();
  }
  if (plan.kind === "feature-service") {
    await restoreFeatures(job);
    await restoreAttachments(job);
  }
}

async function createService(job: ItemJob): Promise<void> {
  const { ctx, plan, row } = job;
  row.folderId = await ctx.folders.ensure(ctx.portal, plan.owner, plan.folder);
  const owner = encodeURIComponent(plan.owner);
  if (row.serviceName) {
    // A previous attempt chose this name and may have created the service already.
    const available = await nameAvailable(ctx.portal, row.serviceName);
    if (!available) {
      const found = await findServiceItem(ctx.portal, plan.owner, row.folderId, row.serviceName);
      if (found?.url) {
        row.newId = found.id;
        row.newUrl = trimUrl(found.url);
        row.status = "created";
        note(row, "Found the service a previous attempt had created");
        await job.save();
        return;
      }
      delete row.serviceName;
    }
  }
  const name = row.serviceName ?? (await uniqueName(ctx.portal, plan.serviceName ?? "restored_service"));
  if (name !== plan.serviceName)
    note(row, `The service name ${plan.serviceName} is taken; the service is named ${name}`);
  row.serviceName = name;
  row.status = "creating";
  await job.save();
  const root = await readJson<Record<string, unknown>>(job, VERSION_FILES.service);
  const createParameters: Record<string, unknown> = { name };
  for (const key of CREATE_KEYS)
    if (root[key] !== undefined && root[key] !== null) createParameters[key] = root[key];
  type Created = { serviceItemId?: string; itemId?: string; serviceurl?: string; encodedServiceURL?: string };
  const response = await writeOnce<Created>(
    (options) =>
      ctx.portal.json<Created>(
        `content/users/${owner}${row.folderId ? `/${row.folderId}` : ""}/createService`,
        {
          outputType: "featureService",
          createParameters: JSON.stringify(createParameters),
          ...(plan.kind === "view" ? { isView: true } : {}),
        },
        options,
      ),
    async () => {
      // The answer was lost: the service may exist all the same.
      if (await nameAvailable(ctx.portal, name)) return undefined;
      const found = await findServiceItem(ctx.portal, plan.owner, row.folderId, name);
      return found?.url ? { serviceItemId: found.id, serviceurl: found.url } : undefined;
    },
  );
  const id = response.serviceItemId ?? response.itemId;
  const url = response.serviceurl ?? response.encodedServiceURL;
  if (!id || !url) {
    throw new AppError("createService answered without an item id or URL", {
      code: "ERR_PORTAL_REQUEST",
      status: 502,
    });
  }
  row.newId = id;
  row.newUrl = trimUrl(url);
  row.status = "created";
  await job.save();
}

async function nameAvailable(portal: PortalClient, name: string): Promise<boolean> {
  const response = await portal.json<{ available?: boolean }>(
    "portals/self/isServiceNameAvailable",
    { name, type: "Feature Service" },
    { method: "GET" },
  );
  return response.available === true;
}

/** The wanted name, else `<name>_restored`, `<name>_restored_2`, … (the first one free). */
async function uniqueName(portal: PortalClient, wanted: string): Promise<string> {
  const base = wanted.replace(/[^A-Za-z0-9_]+/g, "_") || "restored_service";
  for (let n = 0; n < 50; n++) {
    const name = n === 0 ? base : n === 1 ? `${base}_restored` : `${base}_restored_${n}`;
    if (await nameAvailable(portal, name)) return name;
  }
  throw new AppError(`No free service name near ${base}`, { code: "ERR_SERVICE_NAME", status: 409 });
}

async function readJson<T>(job: ItemJob, path: string): Promise<T> {
  const file = job.file(path);
  if (!file)
    throw new AppError(`The backup holds no ${path}`, { code: "ERR_BACKUP_INCOMPLETE", status: 422 });
  return JSON.parse(await job.ctx.files.text(file)) as T;
}

async function savedLayers(job: ItemJob): Promise<LayerJson[]> {
  const layers: LayerJson[] = [];
  for (const file of job.filesOfKind("layer")) {
    layers.push(JSON.parse(await job.ctx.files.text(file)) as LayerJson);
  }
  return layers.sort((a, b) => a.id - b.id);
}

function adminUrl(serviceUrl: string): string {
  return `${serviceUrl.replace(/\/rest\/services\//i, "/rest/admin/services/")}/addToDefinition`;
}

/**
 * The saved layers and tables go in with their ids; a layer the service gave another id is
 * recorded so URLs to it are remapped. A re-run that finds the layers there already skips this.
 */
async function addDefinition(job: ItemJob): Promise<void> {
  const { ctx, plan, row } = job;
  const url = row.newUrl as string;
  const current = await ctx.portal.json<{
    layers?: Array<{ id: number; name?: string }>;
    tables?: Array<{ id: number; name?: string }>;
  }>(url, {}, { method: "GET" });
  const present = [...(current.layers ?? []), ...(current.tables ?? [])];
  const saved = await savedLayers(job);
  const missing = saved.filter(
    (layer) => !present.some((p) => p.id === layer.id || (layer.name !== undefined && p.name === layer.name)),
  );
  const layerIds: Record<string, number> = { ...(row.layerIds ?? {}) };
  for (const layer of saved) {
    const match = present.find((p) => p.name === layer.name) ?? present.find((p) => p.id === layer.id);
    if (match && match.id !== layer.id) layerIds[String(layer.id)] = match.id;
  }
  if (missing.length > 0) {
    if (plan.action === "overwrite") {
      note(row, `Layers added to the existing service: ${missing.map((l) => l.name ?? l.id).join(", ")}`);
    }
    const source = plan.kind === "view" ? await viewSourceOf(job) : undefined;
    const prepared = missing.map((layer) => prepareLayer(layer, source));
    const definition = {
      layers: prepared.filter((l) => l.type !== "Table"),
      tables: prepared.filter((l) => l.type === "Table"),
    };
    type Added = { success?: boolean; layers?: Array<{ id: number; name?: string }> };
    const response = await writeOnce<Added>(
      (options) =>
        ctx.portal.json<Added>(adminUrl(url), { addToDefinition: JSON.stringify(definition) }, options),
      async () => {
        // The answer was lost: the service's layers say whether the definition went in.
        const now = await ctx.portal.json<ServiceRoot>(url, {}, { method: "GET" });
        const there = [...(now.layers ?? []), ...(now.tables ?? [])];
        const all = missing.every((layer) => there.some((p) => p.name === layer.name));
        return all
          ? { success: true, layers: there.filter((p) => missing.some((l) => l.name === p.name)) }
          : undefined;
      },
    );
    if (response.success === false) {
      throw new AppError("addToDefinition did not succeed", { code: "ERR_ADD_TO_DEFINITION", status: 502 });
    }
    for (const added of response.layers ?? []) {
      const wanted = missing.find((l) => l.name === added.name);
      if (wanted && wanted.id !== added.id) layerIds[String(wanted.id)] = added.id;
    }
  }
  if (Object.keys(layerIds).length > 0) row.layerIds = layerIds;
}

/** The service a view reads from: the source restored now (its new name and layer ids), or the existing one. */
async function viewSourceOf(
  job: ItemJob,
): Promise<{ name: string; layers: Record<string, number> } | undefined> {
  const source = job.plan.viewSource;
  if (!source) return undefined;
  if (!source.restored) return source.name ? { name: source.name, layers: {} } : undefined;
  const row = await job.ctx.progress.getItem(job.ctx.restoreId, source.itemId);
  const name = row?.serviceName ?? (row?.newUrl ? serviceNameOf(row.newUrl) : null);
  if (!row?.newId || row.status === "failed" || !name) {
    throw new AppError(`The view's source service ${source.itemId} was not restored`, {
      code: "ERR_VIEW_SOURCE_MISSING",
      status: 422,
    });
  }
  return { name, layers: row.layerIds ?? {} };
}

function prepareLayer(
  layer: LayerJson,
  source?: { name: string; layers: Record<string, number> },
): LayerJson {
  const out: LayerJson = { ...layer };
  for (const key of LAYER_READ_ONLY) delete out[key];
  if (source) {
    out.adminLayerInfo = {
      viewLayerDefinition: {
        sourceServiceName: source.name,
        sourceLayerId: source.layers[String(layer.id)] ?? layer.id,
        sourceLayerFields: (layer.fields ?? []).map((f) => ({
          name: f.name,
          alias: f.alias ?? f.name,
          source: f.name,
        })),
      },
    };
  }
  return out;
}

/** Title, tags, description…, the data (popup settings), metadata and thumbnail of the new item. */
async function updateServiceItem(job: ItemJob): Promise<void> {
  const { ctx, plan, row, item } = job;
  const { table, pending } = await remapTableFor(ctx, plan, {
    oldId: plan.itemId,
    newId: row.newId as string,
    oldUrl: plan.sourceUrl ?? null,
    ...(row.newUrl ? { newUrl: row.newUrl } : {}),
    ...(row.layerIds ? { layers: row.layerIds } : {}),
  });
  row.pendingRefs = pending;
  const fields = itemFields(item, table, { clearEmpty: plan.action === "overwrite" });
  // The URL and type belong to the new service.
  delete fields.url;
  delete fields.type;
  const params: Record<string, unknown> = { ...fields, ...(await sideFiles(job)) };
  const data = job.file(VERSION_FILES.data);
  if (data) params.text = remapText(await ctx.files.text(data), table).text;
  await ctx.portal.json(
    `content/users/${encodeURIComponent(row.owner as string)}/items/${row.newId}/update`,
    params,
  );
}

function layerUrlOf(job: ItemJob, layerId: number): string {
  const mapped = job.row.layerIds?.[String(layerId)];
  return `${job.row.newUrl}/${mapped ?? layerId}`;
}

async function layerDefinition(job: ItemJob, layerId: number): Promise<LayerJson> {
  const file = job.file(layerDefinitionPath(layerId));
  if (!file) return { id: layerId };
  return JSON.parse(await job.ctx.files.text(file)) as LayerJson;
}

async function countRows(portal: PortalClient, layerUrl: string): Promise<number> {
  const response = await portal.json<{ count?: number }>(`${layerUrl}/query`, {
    where: "1=1",
    returnCountOnly: true,
  });
  return typeof response.count === "number" ? response.count : 0;
}

/**
 * Features of every layer and table: rows read as the version holds them whole (a full export,
 * or one with its change sets applied). In place (overwrite), a layer with GlobalIDs gets only
 * the difference (restoreRowsInPlace) unless the restore asks for `rows: "replace"`; otherwise
 * the layer is emptied and every row added. The target layer then only ever holds rows this
 * restore added, so its count says how many lines are in already: a re-run continues from there.
 */
async function restoreFeatures(job: ItemJob): Promise<void> {
  const { ctx, plan, row } = job;
  for (const layer of layersOf(job.manifest.files)) {
    const layerId = layer.layerId;
    const key = String(layerId);
    row.steps.features ??= {};
    const steps = row.steps.features;
    if (steps[key] === "done") continue;
    const layerUrl = layerUrlOf(job, layerId);
    const definition = await layerDefinition(job, layerId);
    if (plan.action === "overwrite" && (await restoreLayerInPlace(job, layer, layerUrl, definition)))
      continue;
    if (plan.action === "overwrite" && steps[key] !== "cleared") {
      await clearLayer(job, layerUrl);
      steps[key] = "cleared";
      await job.save();
    }
    const objectIdField = definition.objectIdField ?? "OBJECTID";
    const globalIdField = definition.globalIdField ?? "";
    const already = await countRows(ctx.portal, layerUrl);
    let index = 0;
    let added = already;
    const failures: string[] = [];
    let batch: FeatureJson[] = [];
    const flush = async () => {
      if (batch.length === 0) return;
      const useGlobalIds = globalIdField !== "" && batch.some((f) => f.attributes?.[globalIdField]);
      const sent = batch;
      const before = added;
      const response = await writeOnce<{ addResults?: EditResult[] }>(
        (options) =>
          ctx.portal.json<{ addResults?: EditResult[] }>(
            `${layerUrl}/applyEdits`,
            { adds: JSON.stringify(sent), useGlobalIds, rollbackOnFailure: true },
            options,
          ),
        async () => {
          // The answer was lost: the row count says whether the batch went in.
          const now = await countRows(ctx.portal, layerUrl);
          if (now === before + sent.length) return { addResults: sent.map(() => ({ success: true })) };
          if (now === before) return undefined;
          throw new PortalTransientError(
            `Layer ${layerId}: a lost applyEdits answer left ${now - before} of ${sent.length} rows; resuming from the count`,
            { code: "ERR_PORTAL_UNAVAILABLE", status: 502 },
          );
        },
      );
      const results = response.addResults ?? [];
      for (const result of results) {
        if (result.success) added++;
        else if (failures.length < 5) failures.push(result.error?.description ?? "no reason given");
      }
      if (results.length !== batch.length) failures.push(`${batch.length} sent, ${results.length} results`);
      batch = [];
    };
    for await (const line of layerRows(ctx.files, layer, objectIdField)) {
      index++;
      if (index <= already) continue;
      const feature = JSON.parse(line) as FeatureJson;
      const attributes = { ...(feature.attributes ?? {}) };
      delete attributes[objectIdField];
      batch.push({ attributes, ...(feature.geometry !== undefined ? { geometry: feature.geometry } : {}) });
      if (batch.length >= ctx.limits.featuresPerEdit) await flush();
    }
    await flush();
    if (already > index) note(row, `Layer ${layerId}: the target held ${already} rows, the backup ${index}`);
    if (failures.length > 0) {
      throw new AppError(
        `Layer ${layerId}: ${index - added} features were not added (${failures.join("; ")})`,
        {
          code: "ERR_FEATURES_NOT_ADDED",
          status: 502,
        },
      );
    }
    await checkRowCount(job, layerId, layerUrl, index);
    steps[key] = "done";
    await job.save();
  }
}

/** Deletes every row of a layer (overwrite mode), in batches. */
async function clearLayer(job: ItemJob, layerUrl: string): Promise<void> {
  const { ctx } = job;
  for (let round = 0; round < 10_000; round++) {
    const response = await ctx.portal.json<{ objectIds?: number[] | null }>(`${layerUrl}/query`, {
      where: "1=1",
      returnIdsOnly: true,
    });
    const ids = response.objectIds ?? [];
    if (ids.length === 0) return;
    for (let i = 0; i < ids.length; i += 500) {
      await ctx.portal.json(`${layerUrl}/applyEdits`, {
        deletes: ids.slice(i, i + 500).join(","),
        rollbackOnFailure: false,
      });
    }
  }
}

/**
 * Row-level restore of one layer in place, when the restore asks for it (the default) and both
 * the version and the target layer have GlobalIDs: only the rows (and attachments) that differ
 * are written, and the rows edited after the version are recorded for the report. False: the
 * layer is restored the old way (emptied, every row added).
 */
async function restoreLayerInPlace(
  job: ItemJob,
  layer: LayerFiles,
  layerUrl: string,
  definition: LayerJson,
): Promise<boolean> {
  const { ctx, row } = job;
  if (ctx.plan.target.rows === "replace" || !definition.globalIdField || !ctx.cache) return false;
  const target = await targetLayerOf(ctx.portal, layerUrl);
  if (!target) {
    note(row, `Layer ${layer.layerId}: the target layer has no GlobalIDs; its rows were replaced`);
    return false;
  }
  const rows = await restoreRowsInPlace({
    portal: ctx.portal,
    files: ctx.files,
    layer,
    storedObjectIdField: definition.objectIdField ?? "OBJECTID",
    target,
    cache: ctx.cache,
    batchSize: ctx.limits.featuresPerEdit,
    dryRun: false,
  });
  const key = String(layer.layerId);
  const counts: Record<string, number> = {
    [`rowsAdded:${key}`]: rows.adds,
    [`rowsUpdated:${key}`]: rows.updates,
    [`rowsDeleted:${key}`]: rows.deletes,
  };
  if (layer.attachmentsIndex && target.hasAttachments) {
    const attachments = await restoreAttachmentsInPlace({
      portal: ctx.portal,
      files: ctx.files,
      layer,
      target,
      attachmentFiles: attachmentFilesOf(job.manifest.files),
      cache: ctx.cache,
      concurrency: ctx.limits.attachmentsInParallel,
      dryRun: false,
    });
    counts[`attachments:${key}`] = attachments.expected;
    counts[`attachmentsAdded:${key}`] = attachments.added;
    counts[`attachmentsDeleted:${key}`] = attachments.deleted;
  }
  await checkRowCount(job, layer.layerId, layerUrl, rows.versionRows);
  row.counts = { ...(row.counts ?? {}), ...counts };
  const edited = rows.adds + rows.updates + rows.deletes;
  if (edited > 0) {
    row.editedSince = [
      ...(row.editedSince ?? []).filter((e) => e.layerId !== layer.layerId),
      ...rows.editedSince.map((e) => ({ layerId: layer.layerId, ...e })),
    ];
    const more = edited > EDITED_SINCE_LISTED ? ` (the first ${EDITED_SINCE_LISTED} are listed)` : "";
    note(row, `Layer ${layer.layerId}: ${edited} rows were edited after the version and put back${more}`);
  }
  row.steps.features = { ...(row.steps.features ?? {}), [key]: "done" };
  row.steps.attachmentsDone = [...new Set([...(row.steps.attachmentsDone ?? []), key])];
  await job.save();
  return true;
}

/**
 * The rows a layer's version holds: the count its backup took — but for a version stored as a
 * change set, what its rows read back to (its count was asked of the service after the changes
 * were read, and edits in between would make it differ from the rows stored).
 */
function expectedRows(manifest: ItemJob["manifest"], layerId: number, read: number): number {
  const storage = manifest.layerStorage?.find((layer) => layer.layerId === layerId)?.storage;
  if (storage === "changes") return read;
  return manifest.counts?.[`features:${layerId}`] ?? read;
}

/** The target holds the version's rows, as many as the backup counts. */
async function checkRowCount(job: ItemJob, layerId: number, layerUrl: string, read: number): Promise<void> {
  const expected = expectedRows(job.manifest, layerId, read);
  const actual = await countRows(job.ctx.portal, layerUrl);
  job.row.counts = { ...(job.row.counts ?? {}), [`features:${layerId}`]: actual };
  if (actual !== expected || read !== expected) {
    throw new AppError(
      `Layer ${layerId}: the backup counts ${expected} features, ${read} were read and the target holds ${actual}`,
      { code: "ERR_FEATURE_COUNT_MISMATCH", status: 502 },
    );
  }
}

/**
 * Attachments, layer by layer, from the backup's index: each file checked against the manifest,
 * added to the feature that has its parent's GlobalID (kept by the feature restore), with its own
 * GlobalID. Progress is saved every few attachments; after a crash the first unsaved ones are
 * compared with what the feature holds already, so none is added twice.
 */
async function restoreAttachments(job: ItemJob): Promise<void> {
  const { ctx, row } = job;
  const byPath = attachmentFilesOf(job.manifest.files);
  for (const layer of layersOf(job.manifest.files)) {
    if (!layer.attachmentsIndex) continue;
    const layerId = layer.layerId;
    const key = String(layerId);
    row.steps.attachmentsDone ??= [];
    row.steps.attachments ??= {};
    const done = row.steps.attachmentsDone;
    if (done.includes(key)) continue;
    const progress = row.steps.attachments;
    const resumed = progress[key] !== undefined;
    const start = progress[key] ?? 0;
    if (!resumed) {
      progress[key] = 0;
      await job.save();
    }
    const layerUrl = layerUrlOf(job, layerId);
    const definition = await layerDefinition(job, layerId);
    const globalIdField = definition.globalIdField || "GlobalID";
    let position = 0;
    let handled = start;
    let checkExisting = resumed;
    let chunk: AttachmentRecord[] = [];
    const flush = async () => {
      if (chunk.length === 0) return;
      const parents = await parentObjectIds(ctx.portal, layerUrl, globalIdField, chunk);
      const existing = checkExisting
        ? await existingAttachments(ctx.portal, layerUrl, chunk, parents)
        : undefined;
      await mapWithConcurrency(chunk, ctx.limits.attachmentsInParallel, async (record) => {
        const parent = record.parentGlobalId ? parents.get(normalGuid(record.parentGlobalId)) : undefined;
        if (parent === undefined) {
          throw new AppError(
            `Layer ${layerId}: attachment ${record.id} has no restored parent feature (${record.parentGlobalId ?? record.parentObjectId})`,
            { code: "ERR_ATTACHMENT_PARENT", status: 502 },
          );
        }
        if (existing?.has(`${parent}\n${attachmentKey(record)}`)) return;
        const file = byPath.get(record.path);
        if (!file) {
          throw new AppError(`Attachment file ${record.path} is not in the manifest`, {
            code: "ERR_BACKUP_INCOMPLETE",
            status: 422,
          });
        }
        const bytes = await ctx.files.read(file);
        const result = await addAttachment(ctx.portal, `${layerUrl}/${parent}`, record, bytes, async () => {
          // The answer was lost: the feature's attachments say whether this one went in.
          const there = await existingAttachments(ctx.portal, layerUrl, [record], parents);
          return there.has(`${parent}\n${attachmentKey(record)}`);
        });
        if (result?.success === false) {
          throw new AppError(
            `Layer ${layerId}: attachment ${record.name} was refused (${result.error?.description ?? "no reason"})`,
            { code: "ERR_ATTACHMENT_NOT_ADDED", status: 502 },
          );
        }
      });
      handled += chunk.length;
      progress[key] = handled;
      checkExisting = false;
      chunk = [];
      await job.save();
    };
    for await (const record of layerAttachments(ctx.files, layer)) {
      position++;
      if (position <= start) continue;
      chunk.push(record);
      if (chunk.length >= ctx.limits.attachmentsPerCheckpoint) await flush();
    }
    await flush();
    const expected = job.manifest.counts?.[`attachments:${layerId}`] ?? position;
    row.counts = { ...(row.counts ?? {}), [`attachments:${layerId}`]: handled };
    if (handled !== expected) {
      throw new AppError(
        `Layer ${layerId}: the backup counts ${expected} attachments, ${handled} were restored`,
        {
          code: "ERR_ATTACHMENT_COUNT_MISMATCH",
          status: 502,
        },
      );
    }
    done.push(key);
    await job.save();
  }
}

/** New object ids of the parents of these attachments, by their (kept) GlobalIDs. */
async function parentObjectIds(
  portal: PortalClient,
  layerUrl: string,
  globalIdField: string,
  records: AttachmentRecord[],
): Promise<Map<string, number>> {
  const wanted = [...new Set(records.map((r) => r.parentGlobalId).filter((g): g is string => !!g))];
  const out = new Map<string, number>();
  if (wanted.length === 0) return out;
  const where = `${globalIdField} IN (${wanted.map((g) => `'${g.replace(/'/g, "''")}'`).join(",")})`;
  const response = await portal.json<{ objectIdFieldName?: string; features?: FeatureJson[] }>(
    `${layerUrl}/query`,
    {
      where,
      outFields: "*",
      returnGeometry: false,
    },
  );
  for (const feature of response.features ?? []) {
    const attributes = feature.attributes ?? {};
    const oidName = response.objectIdFieldName ?? "OBJECTID";
    const oid = attributes[oidName];
    const gid = attributes[globalIdField];
    if (typeof oid === "number" && gid) out.set(normalGuid(gid), oid);
  }
  return out;
}

/** Attachments the parents hold already (a re-run after a crash), as parent + key. */
async function existingAttachments(
  portal: PortalClient,
  layerUrl: string,
  records: AttachmentRecord[],
  parents: Map<string, number>,
): Promise<Set<string>> {
  const out = new Set<string>();
  const oids = new Set<number>();
  for (const record of records) {
    const oid = record.parentGlobalId ? parents.get(normalGuid(record.parentGlobalId)) : undefined;
    if (oid !== undefined) oids.add(oid);
  }
  for (const oid of oids) {
    try {
      const response = await portal.json<{
        attachmentInfos?: Array<{ globalId?: string | null; name: string; size: number }>;
      }>(`${layerUrl}/${oid}/attachments`, {}, { method: "GET" });
      for (const info of response.attachmentInfos ?? []) out.add(`${oid}\n${attachmentKey(info)}`);
    } catch (error) {
      if (isSystemicFailure(error) || !(error instanceof PortalError)) throw error;
    }
  }
  return out;
}

function trimUrl(url: string): string {
  return url.replace(/\/+$/, "");
}
