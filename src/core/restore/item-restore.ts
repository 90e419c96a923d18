import path from "node:path";
import { PortalError, PortalNotFoundError } from "../arcgis/portal-errors.js";
import type { ExportedFile } from "../backup/export-item.js";
import { VERSION_FILES } from "../backup/layout.js";
import type { ManifestItem } from "../backup/manifest.js";
import { type PortalItem, portalItemSchema } from "../backup/portal-types.js";
import { mapWithConcurrency } from "../concurrency.js";
import { AppError, errorMessage } from "../errors.js";
import { isSystemicFailure } from "../failures.js";
import { BackupIntegrityError, BUFFERED_FILE_MAX, parts } from "./backup-files.js";
import { errorCode, type ItemJob, note, type RestoreContext, remapTableFor, writeOnce } from "./context.js";
import { itemFields, marker, restoredKeywords, sideFiles } from "./item-fields.js";
import { HUB_SITE_TYPES, notRestorableNotes } from "./item-types.js";
import type { ItemProgress, PlanItem } from "./model.js";
import { isJsonName } from "./plan.js";
import { type RemapTable, remapText, wouldRemap } from "./references.js";
import { restoreService } from "./service-restore.js";
import { findByKeyword } from "./target.js";

/**
 * Restores one planned item, resuming from its progress row: a step that already happened is not
 * repeated, an item created just before a crash is found again (by a marker typeKeyword) instead
 * of being created twice. Item failures are recorded in the row; systemic ones (an outage, our
 * sign-in refused) are thrown for the batch to deal with (see failures.ts).
 */
export async function restoreItem(ctx: RestoreContext, plan: PlanItem): Promise<ItemProgress> {
  const existing = await ctx.progress.getItem(ctx.restoreId, plan.itemId);
  const row: ItemProgress = existing ?? {
    itemId: plan.itemId,
    status: plan.action === "skip" ? "skipped" : "creating",
    action: plan.action,
    steps: {},
    notes: [],
    updatedAt: new Date().toISOString(),
  };
  if (row.status === "done" || row.status === "failed" || row.status === "skipped") return row;
  const manifest = ctx.manifestItems.get(plan.itemId);
  const log = ctx.log.child({ restoreId: ctx.restoreId, itemId: plan.itemId });
  const save = () => ctx.progress.putItem(ctx.restoreId, row);
  try {
    if (!manifest)
      throw new AppError("The item is not in the run's manifest", { code: "ERR_NOT_IN_RUN", status: 400 });
    const item = await readItemJson(ctx, manifest);
    const job: ItemJob = {
      ctx,
      plan,
      manifest,
      item,
      row,
      save,
      file: (p) => manifest.files.find((f) => f.path === p),
      filesOfKind: (kind) => manifest.files.filter((f) => f.kind === kind),
    };
    if (!row.newId) await verifyBeforeWriting(job);
    if (plan.kind === "item") await restorePlainItem(job);
    else await restoreService(job);
    await restoreResources(job);
    await finishItem(job);
    await noteWhatStaysBehind(job);
    await shareItem(job);
    await addRelationships(job);
    row.status = "done";
    await save();
    log.info("Item restored", { newId: row.newId ?? null, action: row.action });
    return row;
  } catch (error) {
    if (isSystemicFailure(error)) {
      await save().catch(() => {});
      throw error;
    }
    row.status = "failed";
    row.error = { code: errorCode(error), message: errorMessage(error) };
    if (error instanceof BackupIntegrityError && row.action === "create" && row.newId && row.owner) {
      // A file did not match while it streamed: the half-made item goes again.
      await deleteItem(ctx, row.owner, row.newId).then(
        () => {
          note(row, `The item created from a corrupt backup (${row.newId}) was deleted`);
          delete row.newId;
          delete row.newUrl;
        },
        (cause: unknown) =>
          note(row, `Could not delete the incomplete item ${row.newId}: ${errorMessage(cause)}`),
      );
    } else if (row.newId && row.action === "create") {
      note(row, `The item ${row.newId} was created but is incomplete`);
    }
    await save();
    log.warn("Item restore failed", { errorCode: row.error.code, reason: row.error.message });
    return row;
  }
}

/** What the item's type keeps outside the item (a Hub site's domain, notebook schedules). */
async function noteWhatStaysBehind(job: ItemJob): Promise<void> {
  // Put back in place, the item keeps them.
  if (job.row.action !== "create") return;
  const dataFile = job.file(VERSION_FILES.data);
  const needsData = HUB_SITE_TYPES.has(job.item.type) && dataFile && dataFile.size <= BUFFERED_FILE_MAX;
  const dataText = needsData ? await job.ctx.files.text(dataFile) : undefined;
  for (const text of notRestorableNotes(job.item, dataText)) note(job.row, text);
}

/**
 * Files are checked against the manifest before anything is written to the target: every file
 * when an existing item is overwritten (it must not be left half replaced); for a new item the
 * small ones — features, attachments and big files are checked as they stream, and a mismatch
 * there deletes the new item again.
 */
async function verifyBeforeWriting(job: ItemJob): Promise<void> {
  const streamed = new Set(["features", "attachments-index", "attachment"]);
  const wanted =
    job.plan.action === "overwrite"
      ? job.manifest.files
      : job.manifest.files.filter((f) => f.size <= BUFFERED_FILE_MAX && !streamed.has(f.kind));
  await mapWithConcurrency(wanted, 4, (file) => job.ctx.files.verify(file));
}

async function deleteItem(ctx: RestoreContext, owner: string, itemId: string): Promise<void> {
  await ctx.portal.json(`content/users/${encodeURIComponent(owner)}/items/${itemId}/delete`, {
    permanentDelete: true,
  });
}

function userPath(owner: string, folderId?: string | null): string {
  return `content/users/${encodeURIComponent(owner)}${folderId ? `/${folderId}` : ""}`;
}

/** An item that is not a hosted service: created (new) or updated in place (overwrite). */
async function restorePlainItem(job: ItemJob): Promise<void> {
  const { ctx, plan, item, row } = job;
  const { table, pending } = await remapTableFor(ctx, plan);
  const dataFile = job.filesOfKind("data")[0];
  if (plan.action === "overwrite") {
    if (row.steps.item) return;
    // What had no new id yet when the content was written waits for the last pass.
    row.pendingRefs = pending;
    row.newId = plan.itemId;
    row.owner = plan.owner;
    const params: Record<string, unknown> = {
      ...itemFields(item, table, { clearEmpty: true }),
      ...(await sideFiles(job)),
    };
    const data = await dataParams(job, dataFile, table);
    if (data.multipart) throw tooLargeToOverwrite(dataFile as ExportedFile);
    Object.assign(params, data.params);
    await ctx.portal.json(`${userPath(plan.owner)}/items/${plan.itemId}/update`, params);
    row.steps.item = true;
    await job.save();
    return;
  }
  row.owner = plan.owner;
  if (row.newId) {
    await completeMultipart(job, dataFile, row.newId);
    return;
  }
  row.folderId = await ctx.folders.ensure(ctx.portal, plan.owner, plan.folder);
  const tag = marker(ctx.restoreId, plan.itemId);
  if (row.marker) {
    // A previous attempt may have created the item just before it stopped.
    const found = await findByKeyword(ctx.portal, plan.owner, row.folderId, row.marker);
    if (found) {
      row.newId = found.id;
      row.status = "created";
      note(row, "Found the item a previous attempt had created");
      await job.save();
      await completeMultipart(job, dataFile, found.id);
      return;
    }
  }
  row.marker = tag;
  row.status = "creating";
  row.pendingRefs = pending;
  await job.save();
  const fields = itemFields(item, table, { clearEmpty: false });
  fields.typeKeywords = [...restoredKeywords(item, table), tag].join(",");
  const data = await dataParams(job, dataFile, table);
  const params = { ...fields, ...(await sideFiles(job)), ...data.params };
  const created = await addItem(job, params);
  row.newId = created;
  row.status = "created";
  await job.save();
  await completeMultipart(job, dataFile, created);
}

function tooLargeToOverwrite(file: ExportedFile): AppError {
  return new AppError(
    `The item's file (${file.size} bytes) is too large to replace in one request; restore it as a new item`,
    { code: "ERR_RESTORE_FILE_TOO_LARGE", status: 422 },
  );
}

/** addItem; a file name already taken in the folder gets a "(restored)" suffix. */
async function addItem(job: ItemJob, params: Record<string, unknown>): Promise<string> {
  const { ctx, plan, row } = job;
  for (let attempt = 0; ; attempt++) {
    try {
      const response = await writeOnce<{ id?: string; success?: boolean }>(
        (options) =>
          ctx.portal.json<{ id?: string; success?: boolean }>(
            `${userPath(plan.owner, row.folderId)}/addItem`,
            params,
            options,
          ),
        async () => {
          // The answer was lost: the item may exist all the same.
          const found = row.marker
            ? await findByKeyword(ctx.portal, plan.owner, row.folderId, row.marker)
            : undefined;
          return found ? { id: found.id } : undefined;
        },
      );
      if (!response.id)
        throw new AppError("addItem answered without an id", { code: "ERR_PORTAL_REQUEST", status: 502 });
      return response.id;
    } catch (error) {
      const taken =
        error instanceof PortalError && (error.messageCode === "CONT_0027" || error.arcgisCode === 409);
      if (!taken || attempt >= 3 || typeof params.filename !== "string") throw error;
      const name = params.filename;
      const extension = path.posix.extname(name);
      const base = name.slice(0, name.length - extension.length).replace(/ \(restored(?: \d+)?\)$/, "");
      params.filename = `${base} (restored${attempt > 0 ? ` ${attempt + 1}` : ""})${extension}`;
      if (params.file instanceof File) {
        params.file = new File([params.file], params.filename as string, { type: params.file.type });
      }
      note(
        row,
        `A file named ${name} already exists in the target folder; the file is named ${params.filename}`,
      );
    }
  }
}

/** The data as parameters: JSON text (remapped), a file, or the start of a multipart upload. */
async function dataParams(
  job: ItemJob,
  file: ExportedFile | undefined,
  table: RemapTable,
): Promise<{ params: Record<string, unknown>; multipart: boolean }> {
  if (!file) return { params: {}, multipart: false };
  if (file.path === VERSION_FILES.data) {
    const text = await job.ctx.files.text(file);
    const remapped = remapText(text, table);
    job.row.remapped = { ids: remapped.ids, urls: remapped.urls };
    return { params: { text: remapped.text }, multipart: false };
  }
  const name = path.posix.basename(file.originalName ?? file.path);
  if (file.size > job.ctx.limits.singleUploadMax) {
    return { params: { multipart: true, filename: name }, multipart: true };
  }
  const bytes = await job.ctx.files.read(file);
  return {
    params: { file: new File([bytes], name, { type: file.contentType }), filename: name },
    multipart: false,
  };
}

/** Uploads a large file in parts (each streamed from the backup and checked), then commits. */
async function completeMultipart(
  job: ItemJob,
  file: ExportedFile | undefined,
  itemId: string,
): Promise<void> {
  if (!file || file.path === VERSION_FILES.data || file.size <= job.ctx.limits.singleUploadMax) return;
  if (job.row.steps.data) return;
  const { ctx, plan } = job;
  const base = `${userPath(plan.owner)}/items/${itemId}`;
  const name = path.posix.basename(file.originalName ?? file.path);
  let partNum = 0;
  for await (const part of parts(ctx.files.stream(file), ctx.limits.partSize)) {
    partNum++;
    await ctx.portal.json(`${base}/addPart`, { file: new File([part], name), partNum });
  }
  // Every part matched the manifest (the stream checks the hash at its end): commit.
  const committed = async () => {
    const status = await ctx.portal.json<{ status?: string }>(`${base}/status`, {}, { method: "GET" });
    return status.status === "completed" || status.status === "processing" ? {} : undefined;
  };
  if (!(await committed())) {
    await writeOnce(
      (options) => ctx.portal.json(`${base}/commit`, { type: job.item.type, title: job.item.title }, options),
      committed,
    );
  }
  for (let poll = 0; poll < 120; poll++) {
    const status = await ctx.portal.json<{ status?: string; statusMessage?: string }>(
      `${base}/status`,
      {},
      { method: "GET" },
    );
    if (status.status === "completed" || status.status === undefined) break;
    if (status.status === "failed") {
      throw new AppError(`The upload of ${name} failed: ${status.statusMessage ?? "no reason given"}`, {
        code: "ERR_UPLOAD_FAILED",
        status: 502,
      });
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  job.row.steps.data = true;
  await job.save();
}

/**
 * Resources with their original paths (prefix + file name); JSON ones remapped. In overwrite mode
 * the item's resources are replaced: all removed first, then the backup's added.
 */
async function restoreResources(job: ItemJob): Promise<void> {
  const { ctx, plan, row } = job;
  if (row.steps.resources === "done" || !row.newId || !row.owner) return;
  const resources = job.filesOfKind("resource");
  const resumed = row.steps.resources === "started";
  const base = `${userPath(row.owner)}/items/${row.newId}`;
  if (!resumed) {
    if (plan.action === "overwrite") {
      await ctx.portal.json(`${base}/removeResources`, { deleteAll: true }).catch((error: unknown) => {
        if (isSystemicFailure(error)) throw error;
        note(row, `Existing resources could not be removed: ${errorMessage(error)}`);
      });
    }
    row.steps.resources = "started";
    await job.save();
  }
  if (resources.length > 0) {
    const { table, pending } = await remapTableFor(ctx, plan, {
      oldId: plan.itemId,
      newId: row.newId,
      oldUrl: plan.sourceUrl ?? null,
      ...(row.newUrl ? { newUrl: row.newUrl } : {}),
      ...(row.layerIds ? { layers: row.layerIds } : {}),
    });
    const stillPending = new Set(row.pendingRefs ?? []);
    for (const id of pending) stillPending.add(id);
    row.pendingRefs = [...stillPending];
    await mapWithConcurrency(resources, 3, async (file) => {
      const original = file.originalName ?? file.path.replace(/^resources\//, "");
      const fileName = path.posix.basename(original);
      const prefix = path.posix.dirname(original);
      let bytes = await ctx.files.read(file);
      if (isJsonName(file) && bytes.length <= 4 * 1024 * 1024) {
        const text = bytes.toString("utf8");
        if (wouldRemap(text, table)) bytes = Buffer.from(remapText(text, table).text);
      }
      const params = {
        file: new File([bytes], fileName, { type: file.contentType }),
        fileName,
        ...(prefix && prefix !== "." ? { resourcesPrefix: prefix } : {}),
        access: "inherit",
      };
      try {
        await ctx.portal.json(`${base}/addResources`, params);
      } catch (error) {
        if (isSystemicFailure(error) || !resumed) throw error;
        // Already there from the attempt before: replace it.
        await ctx.portal.json(`${base}/updateResources`, params);
      }
    });
  }
  row.steps.resources = "done";
  await job.save();
}

/**
 * Last touches after the content is in: the marker keyword goes, and references to the item
 * itself (an app URL with its own id, say) get the new id.
 */
async function finishItem(job: ItemJob): Promise<void> {
  const { ctx, plan, item, row } = job;
  if (!row.newId || !row.owner || row.action !== "create" || plan.kind !== "item" || row.steps.item) return;
  const self = {
    oldId: plan.itemId,
    newId: row.newId,
    oldUrl: plan.sourceUrl ?? null,
    ...(row.newUrl ? { newUrl: row.newUrl } : {}),
    ...(row.layerIds ? { layers: row.layerIds } : {}),
  };
  const { table } = await remapTableFor(ctx, plan, self);
  const keywords = restoredKeywords(item, table);
  // The marker keyword goes (an item without keywords of its own needs the clear flag for that).
  const params: Record<string, unknown> = {
    typeKeywords: keywords.join(","),
    ...(keywords.length === 0 ? { clearEmptyFields: true } : {}),
  };
  const selfOnly: RemapTable = { ids: new Map([[plan.itemId, row.newId]]), urls: [] };
  const fields = itemFields(item, table, { clearEmpty: false });
  for (const key of ["url", "properties", "description", "snippet"] as const) {
    const original =
      key === "properties" ? (item.properties ? JSON.stringify(item.properties) : undefined) : item[key];
    if (typeof original === "string" && wouldRemap(original, selfOnly)) params[key] = fields[key];
  }
  const dataFile = job.file(VERSION_FILES.data);
  if (dataFile) {
    const text = await ctx.files.text(dataFile);
    if (wouldRemap(text, selfOnly)) params.text = remapText(text, table).text;
  }
  await ctx.portal.json(`${userPath(row.owner)}/items/${row.newId}/update`, params);
  row.steps.item = true;
  await job.save();
}

/** Access (org/public/private) and the target groups matched by title; what failed is reported. */
async function shareItem(job: ItemJob): Promise<void> {
  const { ctx, plan, row } = job;
  if (row.steps.sharing || !row.newId || !row.owner) return;
  const access = plan.access;
  const everyone = access === "public";
  const org = access === "org" || access === "public";
  const sharing = {
    access,
    groups: plan.groups,
    missingGroups: plan.missingGroups,
    notSharedWith: [] as string[],
  };
  for (const title of plan.missingGroups)
    note(row, `Not shared with group "${title}": no such group in the target`);
  const needed = plan.action === "overwrite" || everyone || org || plan.groups.length > 0;
  if (needed) {
    const response = await ctx.portal.json<{ notSharedWith?: string[] }>(
      `${userPath(row.owner)}/items/${row.newId}/share`,
      { everyone, org, groups: plan.groups.join(","), confirmItemControl: true },
    );
    sharing.notSharedWith = response.notSharedWith ?? [];
    for (const group of sharing.notSharedWith)
      note(row, `Not shared with group ${group}: the target refused it`);
  }
  row.sharing = sharing;
  await assignCategories(job);
  row.steps.sharing = true;
  await job.save();
}

/** The item's content categories (a scope with categories: the org's schema is restored first). */
async function assignCategories(job: ItemJob): Promise<void> {
  const { ctx, plan, row } = job;
  if (!plan.categories?.length || !row.newId) return;
  const answer = await ctx.portal.json<{
    results?: Array<{ success?: boolean; error?: { message?: string } }>;
  }>("content/updateItems", { items: JSON.stringify([{ [row.newId]: { categories: plan.categories } }]) });
  const result = answer.results?.[0];
  if (result?.success) note(row, `Categories assigned: ${plan.categories.join(", ")}`);
  else note(row, `Categories not assigned: ${result?.error?.message ?? "the target refused them"}`);
}

/**
 * Relationships whose other end exists now: restored already (its new id), or — into the same
 * org — an item that was not part of this restore. The rest wait for the last pass.
 */
export async function addRelationships(job: Pick<ItemJob, "ctx" | "plan" | "row" | "save">): Promise<void> {
  const { ctx, plan, row } = job;
  if (row.steps.relationships || !row.newId) return;
  const pendingRelationships: NonNullable<ItemProgress["pendingRelationships"]> = [];
  for (const rel of plan.relationships) {
    const ends = await Promise.all(
      [rel.origin, rel.dest].map(async (id) => {
        if (id === plan.itemId) return row.newId;
        const other = ctx.planItems.get(id);
        if (other && other.action !== "skip") {
          const otherRow = await ctx.progress.getItem(ctx.restoreId, id);
          if (otherRow?.status === "failed") return null;
          return otherRow?.newId && otherRow.status !== "creating" ? otherRow.newId : undefined;
        }
        return ctx.plan.target.sameOrg ? id : null;
      }),
    );
    const [origin, dest] = ends;
    if (origin === undefined || dest === undefined) {
      pendingRelationships.push(rel);
      continue;
    }
    if (origin === null || dest === null) {
      note(
        row,
        `Relationship ${rel.type} ${rel.origin} → ${rel.dest} not restored: the other item is not in the target`,
      );
      continue;
    }
    try {
      await ctx.portal.json(`content/users/${encodeURIComponent(ctx.plan.target.username)}/addRelationship`, {
        originItemId: origin,
        destinationItemId: dest,
        relationshipType: rel.type,
      });
    } catch (error) {
      if (isSystemicFailure(error)) throw error;
      if (error instanceof PortalNotFoundError || error instanceof PortalError) {
        note(row, `Relationship ${rel.type} ${origin} → ${dest} not added: ${errorMessage(error)}`);
      } else throw error;
    }
  }
  row.pendingRelationships = pendingRelationships;
  row.steps.relationships = true;
  await job.save();
}

/**
 * The last pass: items written while something they refer to had no new id yet (items that
 * refer to each other) get their references rewritten, and relationships still waiting are added.
 */
export async function relinkItem(ctx: RestoreContext, row: ItemProgress): Promise<ItemProgress> {
  const plan = ctx.planItems.get(row.itemId);
  const manifest = ctx.manifestItems.get(row.itemId);
  if (!plan || !manifest || !row.newId || !row.owner || row.status !== "done") return row;
  const save = () => ctx.progress.putItem(ctx.restoreId, row);
  try {
    if ((row.pendingRefs?.length ?? 0) > 0) {
      const self = {
        oldId: plan.itemId,
        newId: row.newId,
        oldUrl: plan.sourceUrl ?? null,
        ...(row.newUrl ? { newUrl: row.newUrl } : {}),
      };
      const { table, pending } = await remapTableFor(ctx, plan, self);
      const resolved = (row.pendingRefs ?? []).filter((id) => !pending.includes(id));
      if (resolved.length > 0) {
        const item = await readItemJson(ctx, manifest);
        const params: Record<string, unknown> = {};
        const fields = itemFields(item, table, { clearEmpty: false });
        for (const key of ["url", "properties", "description"] as const)
          if (fields[key] !== undefined) params[key] = fields[key];
        if ((item.typeKeywords ?? []).some((k) => wouldRemap(k, table)))
          params.typeKeywords = fields.typeKeywords;
        const dataFile = manifest.files.find((f) => f.path === VERSION_FILES.data);
        if (dataFile) params.text = remapText(await ctx.files.text(dataFile), table).text;
        await ctx.portal.json(`${userPath(row.owner)}/items/${row.newId}/update`, params);
        for (const file of manifest.files.filter((f) => f.kind === "resource" && isJsonName(f))) {
          const text = await ctx.files.text(file);
          if (!wouldRemap(text, table)) continue;
          const original = file.originalName ?? file.path.replace(/^resources\//, "");
          const prefix = path.posix.dirname(original);
          await ctx.portal.json(`${userPath(row.owner)}/items/${row.newId}/updateResources`, {
            file: new File([remapText(text, table).text], path.posix.basename(original), {
              type: file.contentType,
            }),
            fileName: path.posix.basename(original),
            ...(prefix && prefix !== "." ? { resourcesPrefix: prefix } : {}),
          });
        }
      }
      for (const id of pending) note(row, `Reference to ${id} left unchanged: that item was not restored`);
      row.pendingRefs = [];
      await save();
    }
    if ((row.pendingRelationships?.length ?? 0) > 0) {
      row.steps.relationships = false;
      const waiting = row.pendingRelationships ?? [];
      await addRelationships({ ctx, plan: { ...plan, relationships: waiting }, row, save });
      for (const rel of row.pendingRelationships ?? []) {
        note(
          row,
          `Relationship ${rel.type} ${rel.origin} → ${rel.dest} not restored: the other item was not restored`,
        );
      }
      row.pendingRelationships = [];
      await save();
    }
  } catch (error) {
    if (isSystemicFailure(error)) throw error;
    note(row, `References could not be rewritten in the last pass: ${errorMessage(error)}`);
    await save();
  }
  return row;
}

/** The item's item.json, checked against the manifest and validated (a mismatch fails the item). */
async function readItemJson(ctx: RestoreContext, manifest: ManifestItem): Promise<PortalItem> {
  const itemFile = manifest.files.find((f) => f.path === VERSION_FILES.item);
  if (!itemFile) {
    throw new AppError("The backup holds no item.json", { code: "ERR_BACKUP_INCOMPLETE", status: 422 });
  }
  return ctx.files.json(itemFile, portalItemSchema);
}
