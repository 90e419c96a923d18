import { type ExportedFile, type RelatedItems, relatedItemsSchema } from "../backup/export-item.js";
import { VERSION_FILES } from "../backup/layout.js";
import type { Manifest, ManifestItem } from "../backup/manifest.js";
import { type PortalItem, portalItemSchema } from "../backup/portal-types.js";
import { mapWithConcurrency } from "../concurrency.js";
import { AppError, errorMessage } from "../errors.js";
import { isSystemicFailure } from "../failures.js";
import type { BackupFiles } from "./backup-files.js";
import { levelsOf } from "./graph.js";
import { notRestorableNotes } from "./item-types.js";
import type { PlanItem, PlanKind, PlanReferences, RestoreMode, RestorePlan, RowMode } from "./model.js";
import { idTokens, normalizeServiceUrl, serviceNameOf, serviceRootOf, urlsIn } from "./references.js";
import { mapUsername, matchGroup } from "./structure-model.js";
import { canPublish, PRIVILEGES, type TargetSelf, type TargetUser } from "./target.js";

/** Other items of one batch activity (hosted services go alone). */
export const ITEMS_PER_BATCH = 8;
/** JSON resources up to this size are scanned (and rewritten) for references. */
export const JSON_RESOURCE_MAX = 4 * 1024 * 1024;

/** Relationship types whose destination depends on the origin (the others: origin on destination). */
const DESTINATION_DEPENDS = new Set(["Service2Service", "Map2Area"]);
/** Hosted services whose content (tiles, scene caches, rasters) a backup does not hold. */
const HOSTED_CONTENT_TYPES = new Set([
  "Vector Tile Service",
  "Map Service",
  "Image Service",
  "Scene Service",
  "Scene Layer",
  "Elevation Layer",
]);
const KIND_RANK: Record<PlanKind, number> = { "feature-service": 0, view: 1, item: 2 };

export interface PlanTarget {
  identityId: string;
  self: TargetSelf;
  orgId: string | null;
  sameOrg: boolean;
  mode: RestoreMode;
  owner?: string;
  folder?: string;
  rows?: RowMode;
  users: Map<string, TargetUser>;
  /** Source username → target username (orgs whose usernames differ). */
  usernameMap?: Record<string, string>;
  /** The restore's scope includes categories: each item gets its categories back. */
  assignCategories?: boolean;
  groups: {
    byId: Map<string, { id: string; title: string }>;
    byTitle: Map<string, { id: string; title: string }>;
  };
}

export interface PlanInput {
  restoreId: string | null;
  identityId: string;
  manifest: Manifest;
  itemIds?: string[];
  files: BackupFiles;
  /** Groups and folders of the backed-up org (from the run's org records). */
  sourceGroups: Map<string, { id: string; title: string }>;
  sourceFolders: Map<string, string>;
  target: PlanTarget;
  /** The target's item with this id, if any (overwrite mode, sources of views). */
  existing(itemId: string): Promise<PortalItem | undefined>;
}

/** What the plan reads of one item. */
export interface ItemContent {
  manifestItem: ManifestItem;
  item?: PortalItem;
  related: RelatedItems;
  /** Texts that may hold references: data, url, properties, description, JSON resources. */
  texts: string[];
  kind: PlanKind;
  skip?: { code: string; message: string };
  notes: string[];
  /** What the item's type keeps outside the item, reported when it is created anew. */
  typeNotes?: string[];
}

export function isHostedService(item: { type: string; typeKeywords?: string[] }): boolean {
  return (item.typeKeywords ?? []).includes("Hosted Service");
}

export function isViewItem(item: { type: string; typeKeywords?: string[] }): boolean {
  return item.type === "Feature Service" && (item.typeKeywords ?? []).includes("View Service");
}

export function fileOf(item: ManifestItem, path: string): ExportedFile | undefined {
  return item.files.find((f) => f.path === path);
}

/**
 * Reads what the plan needs of an item (checked against the manifest) and classifies it. An item
 * whose files cannot be used is skipped with the reason; an outage is thrown.
 */
export async function readItemContent(files: BackupFiles, manifestItem: ManifestItem): Promise<ItemContent> {
  const content: ItemContent = { manifestItem, related: [], texts: [], kind: "item", notes: [] };
  if (manifestItem.status === "failed" || !manifestItem.versionPath) {
    content.skip = {
      code: "ERR_BACKUP_FAILED",
      message: `The backup of this item failed: ${manifestItem.error?.message ?? "no content was captured"}`,
    };
    return content;
  }
  const itemFile = fileOf(manifestItem, VERSION_FILES.item);
  if (!itemFile) {
    content.skip = { code: "ERR_BACKUP_INCOMPLETE", message: "The backup holds no item.json for this item" };
    return content;
  }
  try {
    const item = await files.json(itemFile, portalItemSchema);
    content.item = item;
    const related = fileOf(manifestItem, VERSION_FILES.related);
    if (related) content.related = await files.json(related, relatedItemsSchema);
    const data = fileOf(manifestItem, VERSION_FILES.data);
    const dataText = data && data.size <= JSON_RESOURCE_MAX ? await files.text(data) : undefined;
    if (dataText !== undefined) content.texts.push(dataText);
    content.typeNotes = notRestorableNotes(item, dataText);
    if (typeof item.url === "string") content.texts.push(item.url);
    if (item.properties) content.texts.push(JSON.stringify(item.properties));
    if (item.typeKeywords?.length) content.texts.push(item.typeKeywords.join(","));
    if (typeof item.description === "string") content.texts.push(item.description);
    for (const resource of manifestItem.files) {
      if (resource.kind === "resource" && isJsonName(resource) && resource.size <= JSON_RESOURCE_MAX) {
        content.texts.push(await files.text(resource));
      }
    }
    const hostedFeatures = item.type === "Feature Service" && isHostedService(item);
    if (hostedFeatures) {
      if (!fileOf(manifestItem, VERSION_FILES.service)) {
        content.skip = {
          code: "ERR_BACKUP_INCOMPLETE",
          message: "The service definition of this hosted feature layer was not captured",
        };
      } else {
        content.kind = isViewItem(item) ? "view" : "feature-service";
        if (content.kind === "feature-service" && !manifestItem.counts) {
          content.notes.push("The backup holds no features for this service: only its schema is restored");
        }
      }
    } else if (HOSTED_CONTENT_TYPES.has(item.type) && isHostedService(item)) {
      content.skip = {
        code: "ERR_NOT_RESTORABLE",
        message: `A hosted ${item.type}: the backup holds its item and definition, not its tiles or cache; publish it again from its source data`,
      };
    }
  } catch (error) {
    // Not the item's fault (storage unreachable, a read cut short past its re-reads): the plan
    // step runs again (the activity's retries) rather than skip the item for good.
    if (isSystemicFailure(error)) throw error;
    if (error instanceof AppError) content.skip = { code: error.code, message: error.message };
    else content.skip = { code: "ERR_BACKUP_UNREADABLE", message: errorMessage(error) };
  }
  return content;
}

export function isJsonName(file: ExportedFile): boolean {
  return /\.json$/i.test(file.originalName ?? file.path);
}

/**
 * The plan of a restore: which items, in which order, into which owner and folder, shared with
 * which target groups, and which references are remapped or left as they are.
 */
export async function buildPlan(input: PlanInput): Promise<RestorePlan> {
  const { manifest, target } = input;
  const byId = new Map(manifest.items.map((i) => [i.itemId, i]));
  const selected = input.itemIds
    ? input.itemIds.map((id) => byId.get(id)).filter((i): i is ManifestItem => i !== undefined)
    : manifest.items;
  const contents = await mapWithConcurrency(selected, 8, (item) => readItemContent(input.files, item));
  const warnings: string[] = [];

  // Which items can be restored, and the services among them by URL.
  const restorable = new Map<string, ItemContent>();
  for (const content of contents) if (!content.skip) restorable.set(content.manifestItem.itemId, content);
  for (const content of contents) {
    if (content.skip || content.kind !== "view") continue;
    const source = content.related.find(
      (r) => r.relationshipType === "Service2Service" && r.direction === "reverse",
    )?.itemIds[0];
    const sourceContent = source ? restorable.get(source) : undefined;
    if (source && sourceContent?.kind === "feature-service") continue;
    let existing: PortalItem | undefined;
    if (source && target.sameOrg) existing = await input.existing(source);
    if (!existing?.url) {
      content.skip = {
        code: "ERR_VIEW_SOURCE_MISSING",
        message: source
          ? `A hosted view whose source service (${source}) is neither restored now nor present in the target`
          : "A hosted view whose source service the backup does not name",
      };
      restorable.delete(content.manifestItem.itemId);
    }
  }
  const serviceUrls = new Map<string, string>();
  for (const [id, content] of restorable) {
    if (content.kind !== "item" && typeof content.item?.url === "string") {
      serviceUrls.set(normalizeServiceUrl(serviceRootOf(content.item.url) ?? content.item.url), id);
    }
  }

  // Groups of the backed-up org → the target's, as items are shared: the same group (same org),
  // else one of the same title (created by the structure step, or there before).
  const targetGroupOf = (groupId: string) =>
    matchGroup(target.groups, target.sameOrg, { id: groupId, title: input.sourceGroups.get(groupId)?.title });
  const groupIds = new Map<string, string | null>();
  for (const groupId of input.sourceGroups.keys()) {
    groupIds.set(groupId.toLowerCase(), targetGroupOf(groupId)?.id ?? null);
  }

  // References and relationships → dependencies.
  const deps = new Map<string, string[]>();
  const references = new Map<string, PlanReferences>();
  const relationships = new Map<string, PlanItem["relationships"]>();
  const addDep = (from: string, on: string) => {
    if (from === on) return;
    const list = deps.get(from) ?? [];
    if (!list.includes(on)) list.push(on);
    deps.set(from, list);
  };
  for (const content of contents) {
    const id = content.manifestItem.itemId;
    const refs: PlanReferences = { remapped: [], urls: [], unchanged: [], unchangedUrls: [] };
    const text = content.texts.join("\n");
    const groups: string[] = [];
    for (const token of idTokens(text)) {
      if (token === id) continue;
      if (restorable.has(token)) refs.remapped.push(token);
      else if (groupIds.has(token)) {
        // A group id: rewritten to the target's group (the same one in the same org: nothing to do).
        const targetId = groupIds.get(token);
        if (!targetId) refs.unchanged.push({ id: token, reason: "group-not-in-target" });
        else if (targetId.toLowerCase() !== token) groups.push(token);
      } else refs.unchanged.push({ id: token, reason: byId.has(token) ? "not-restored" : "not-in-backup" });
    }
    if (groups.length > 0) refs.groups = groups;
    for (const url of urlsIn(text, serviceUrls.keys())) {
      const owner = serviceUrls.get(url) as string;
      if (owner === id) continue;
      refs.urls.push(url);
      if (!refs.remapped.includes(owner)) refs.remapped.push(owner);
    }
    const ownUrl = typeof content.item?.url === "string" ? normalizeServiceUrl(content.item.url) : null;
    for (const match of text.matchAll(
      /https?:\/\/[^\s"'<>]+?\/(?:FeatureServer|MapServer|ImageServer|VectorTileServer)(?![\w-])/gi,
    )) {
      const normalized = normalizeServiceUrl(match[0]);
      if (normalized === ownUrl || serviceUrls.has(normalized) || refs.unchangedUrls.includes(match[0]))
        continue;
      refs.unchangedUrls.push(match[0]);
    }
    references.set(id, refs);
    const rels: PlanItem["relationships"] = [];
    for (const entry of content.related) {
      for (const other of entry.itemIds) {
        const forward = entry.direction !== "reverse";
        const origin = forward ? id : other;
        const dest = forward ? other : id;
        if (!rels.some((r) => r.type === entry.relationshipType && r.origin === origin && r.dest === dest)) {
          rels.push({ type: entry.relationshipType, origin, dest });
        }
      }
    }
    relationships.set(id, rels);
    if (!restorable.has(id)) continue;
    for (const ref of refs.remapped) addDep(id, ref);
    for (const rel of rels) {
      const other = rel.origin === id ? rel.dest : rel.origin;
      if (!restorable.has(other)) continue;
      // The dependent end waits for the other one.
      const destinationWaits = DESTINATION_DEPENDS.has(rel.type);
      const dependent = destinationWaits ? rel.dest : rel.origin;
      const dependency = destinationWaits ? rel.origin : rel.dest;
      addDep(dependent, dependency);
    }
  }

  const { level, cyclic } = levelsOf([...restorable.keys()], deps);
  if (cyclic.size > 0) {
    warnings.push(
      `${cyclic.size} items refer to each other in a cycle; they are created on one level and their references written in a last pass`,
    );
  }

  // Owners, folders, groups, actions.
  const mayCreateForOthers = target.self.privileges.includes(PRIVILEGES.adminUpdateItems);
  const selfPublishes = target.self.privileges.includes(PRIVILEGES.publishFeatures);
  const missingGroups = new Map<string, string>();
  const items: PlanItem[] = [];
  const overwriteChecks = await mapWithConcurrency([...restorable.keys()], 8, async (id) =>
    target.mode === "overwrite" ? [id, await input.existing(id)] : [id, undefined],
  );
  const existingById = new Map(overwriteChecks as Array<[string, PortalItem | undefined]>);
  for (const content of contents) {
    const m = content.manifestItem;
    const item = content.item;
    const kind = content.kind;
    const skip = content.skip;
    let owner = target.owner ?? target.self.username;
    if (!target.owner) {
      const original = target.users.get(mapUsername(m.owner, target.usernameMap).toLowerCase());
      const isSelf = m.owner.toLowerCase() === target.self.username.toLowerCase();
      const publishes = kind === "item" || canPublish(original);
      if (original && publishes && (isSelf || mayCreateForOthers)) owner = original.username;
    }
    const sourceFolder = m.folderTitle ?? (m.folderId ? (input.sourceFolders.get(m.folderId) ?? null) : null);
    const groups: string[] = [];
    const missing: string[] = [];
    for (const groupId of m.groups) {
      const sourceGroup = input.sourceGroups.get(groupId);
      const match = targetGroupOf(groupId);
      if (match) groups.push(match.id);
      else {
        missing.push(sourceGroup?.title ?? groupId);
        missingGroups.set(groupId, sourceGroup?.title ?? groupId);
      }
    }
    const existing = existingById.get(m.itemId);
    let action: PlanItem["action"] = skip ? "skip" : existing ? "overwrite" : "create";
    let reason = skip;
    if (!skip && action === "create" && kind !== "item" && !selfPublishes && owner === target.self.username) {
      action = "skip";
      reason = {
        code: "ERR_TARGET_PRIVILEGES",
        message: `The target user ${target.self.username} may not publish hosted feature layers (${PRIVILEGES.publishFeatures})`,
      };
    }
    const viewSourceId =
      kind === "view"
        ? content.related.find((r) => r.relationshipType === "Service2Service" && r.direction === "reverse")
            ?.itemIds[0]
        : undefined;
    let viewSource: PlanItem["viewSource"];
    if (viewSourceId) {
      const sourceContent = restorable.get(viewSourceId);
      const url = sourceContent?.item?.url ?? (await input.existing(viewSourceId))?.url ?? null;
      viewSource = {
        itemId: viewSourceId,
        restored: sourceContent !== undefined,
        url: typeof url === "string" ? url : null,
        name: typeof url === "string" ? serviceNameOf(url) : null,
      };
    }
    const refs = references.get(m.itemId) as PlanReferences;
    items.push({
      itemId: m.itemId,
      title: m.title,
      type: m.type,
      kind,
      action,
      ...(reason ? { reason } : {}),
      level: action === "skip" ? -1 : (level.get(m.itemId) ?? 0),
      dependsOn: action === "skip" ? [] : (deps.get(m.itemId) ?? []),
      versionPath: m.versionPath,
      owner: existing ? existing.owner : owner,
      folder: existing ? null : (target.folder ?? sourceFolder),
      sourceOwner: m.owner,
      sourceFolder,
      access: m.access,
      groups,
      missingGroups: missing,
      references: refs,
      relationships: [],
      ...(kind !== "item" && item
        ? {
            serviceName:
              (typeof item.url === "string" ? serviceNameOf(item.url) : null) ?? safeServiceName(item),
            ...(typeof item.url === "string" ? { sourceUrl: serviceRootOf(item.url) ?? item.url } : {}),
          }
        : {}),
      ...(viewSource ? { viewSource } : {}),
      ...(target.assignCategories ? categoriesOf(item) : {}),
    });
    for (const note of content.notes) warnings.push(`${m.itemId}: ${note}`);
    // Put back in place, an item keeps what lives outside it (a site's domain, a notebook's schedules).
    if (action === "create")
      for (const note of content.typeNotes ?? []) warnings.push(`${m.itemId}: ${note}`);
  }

  // Items whose dependency is skipped for lack of privileges stay; their references stay unchanged.
  const planned = items.filter((i) => i.action !== "skip");
  const skippedNow = new Set(items.filter((i) => i.action === "skip").map((i) => i.itemId));
  for (const item of planned) {
    item.dependsOn = item.dependsOn.filter((d) => !skippedNow.has(d));
    const moved = item.references.remapped.filter((d) => skippedNow.has(d));
    if (moved.length > 0) {
      item.references.remapped = item.references.remapped.filter((d) => !skippedNow.has(d));
      for (const id of moved) item.references.unchanged.push({ id, reason: "not-restored" });
    }
  }
  // Each relationship is added once, by the end restored last (then the other end exists).
  const seen = new Set<string>();
  const plannedIds = new Map(planned.map((i) => [i.itemId, i]));
  for (const rels of relationships.values()) {
    for (const rel of rels) {
      const key = `${rel.type}\n${rel.origin}\n${rel.dest}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const origin = plannedIds.get(rel.origin);
      const dest = plannedIds.get(rel.dest);
      const holder = origin && dest ? (origin.level > dest.level ? origin : dest) : (origin ?? dest);
      holder?.relationships.push(rel);
    }
  }
  planned.sort(
    (a, b) =>
      a.level - b.level ||
      KIND_RANK[a.kind] - KIND_RANK[b.kind] ||
      a.title.localeCompare(b.title) ||
      a.itemId.localeCompare(b.itemId),
  );
  const levels: string[][] = [];
  for (const item of planned) {
    while (levels.length <= item.level) levels.push([]);
    levels[item.level]?.push(item.itemId);
  }
  const compact = levels.filter((l) => l.length > 0);
  const planById = new Map(planned.map((i) => [i.itemId, i]));
  compact.forEach((ids, index) => {
    for (const id of ids) (planById.get(id) as PlanItem).level = index;
  });
  const batches = compact.map((ids) => batchesOf(ids, planById));
  const skipped = items.filter((i) => i.action === "skip");
  const rewrittenGroups = [...groupIds].filter(
    (entry): entry is [string, string] => entry[1] !== null && entry[1].toLowerCase() !== entry[0],
  );
  return {
    schemaVersion: 1,
    restoreId: input.restoreId,
    runId: manifest.runId,
    identityId: input.identityId,
    source: { sharingUrl: manifest.portal.sharingUrl, orgId: manifest.portal.orgId },
    target: {
      identityId: target.identityId,
      orgId: target.orgId,
      username: target.self.username,
      sameOrg: target.sameOrg,
      mode: target.mode,
      ...(target.owner ? { owner: target.owner } : {}),
      ...(target.folder ? { folder: target.folder } : {}),
      ...(target.rows ? { rows: target.rows } : {}),
    },
    levels: compact,
    batches,
    items: [...planned, ...skipped],
    missingGroups: [...missingGroups].map(([id, title]) => ({ id, title })),
    ...(rewrittenGroups.length > 0 ? { groupIds: Object.fromEntries(rewrittenGroups) } : {}),
    warnings,
    totals: {
      items: items.length,
      create: planned.filter((i) => i.action === "create").length,
      overwrite: planned.filter((i) => i.action === "overwrite").length,
      skip: skipped.length,
    },
  };
}

function batchesOf(ids: string[], items: Map<string, PlanItem>): string[][] {
  const out: string[][] = [];
  let current: string[] = [];
  for (const id of ids) {
    if ((items.get(id) as PlanItem).kind !== "item") {
      out.push([id]);
      continue;
    }
    current.push(id);
    if (current.length >= ITEMS_PER_BATCH) {
      out.push(current);
      current = [];
    }
  }
  if (current.length > 0) out.push(current);
  return out;
}

/** A service name from an item's title when its URL says none: letters, digits, underscores. */
export function safeServiceName(item: { title: string; name?: string | null }): string {
  const base = (item.name ?? item.title).replace(/[^A-Za-z0-9_]+/g, "_").replace(/^_+|_+$/g, "");
  return base.length > 0 ? base.slice(0, 100) : "restored_service";
}

/** The item's content categories (`/Categories/Parks`), for a restore whose scope has categories. */
function categoriesOf(item: PortalItem | undefined): { categories?: string[] } {
  const list = Array.isArray(item?.categories) ? item.categories.filter((c) => typeof c === "string") : [];
  return list.length > 0 ? { categories: list } : {};
}
