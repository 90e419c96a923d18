import { type Caller, canEditItem, type Handler, isAdmin, type SimContext } from "./context.js";
import type { FilePart, ParsedRequest, Reply } from "./http.js";
import { ERR, err, truthy } from "./http.js";
import type { ItemData, ServiceDef, SimItem, SimUser } from "./model.js";
import { bufferSource } from "./prng.js";
import { ITEM_KINDS, type ItemKind, KINDS } from "./shape.js";

/** Checks the owner in the path and that the caller may act for them. */
function actor(
  ctx: SimContext,
  caller: Caller,
  m: string[],
): { owner: SimUser; folderId: string | null } | Reply {
  if (!caller.user) return caller.token ? ERR.forbidden() : ERR.tokenRequired();
  const owner = ctx.org.user(decodeURIComponent(m[1] ?? ""));
  if (!owner) return err(400, "User not found", [], "COM_0019");
  if (owner.username !== caller.user.username && !caller.user.privileges.includes("portal:admin:updateItems"))
    return ERR.forbidden();
  const folderId = m[2] ? decodeURIComponent(m[2]) : null;
  if (folderId) {
    const f = ctx.org.folder(folderId);
    if (!f || f.username !== owner.username) return err(400, "Folder does not exist.", [], "CONT_0005");
  }
  return { owner, folderId };
}

function ownedItem(
  ctx: SimContext,
  caller: Caller,
  owner: SimUser,
  id: string,
): { i: number; item: SimItem } | Reply {
  const i = ctx.org.indexOf(id);
  if (i === null) return ERR.noItem();
  const item = ctx.org.itemAt(i);
  if (item.owner !== owner.username || !canEditItem(caller, item)) return ERR.noItem();
  return { i, item };
}

const list = (v: string | undefined): string[] =>
  (v ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);

function kindOf(type: string, typeKeywords: string[]): ItemKind | null {
  if (type === "Feature Service" && typeKeywords.includes("View Service")) return "view";
  return ITEM_KINDS.find((k) => KINDS[k].type === type && k !== "view") ?? null;
}

function parseExtent(v: string): number[][] | null {
  const t = v.trim();
  if (!t) return [];
  if (t.startsWith("[")) return JSON.parse(t) as number[][];
  const n = t.split(",").map(Number);
  if (n.length !== 4 || n.some((x) => !Number.isFinite(x))) return null;
  return [
    [n[0] ?? 0, n[1] ?? 0],
    [n[2] ?? 0, n[3] ?? 0],
  ];
}

/** Applies item fields present in params (clearEmptyFields clears those sent empty). */
function applyFields(item: SimItem, p: Record<string, string>, clear: boolean): Reply | null {
  const str = (k: keyof SimItem, name = k as string) => {
    const v = p[name];
    if (v === undefined) return;
    (item as unknown as Record<string, unknown>)[k] = v === "" ? (clear ? null : item[k]) : v;
  };
  if (p.title !== undefined && p.title !== "") {
    if (p.title.length > 256) return err(400, "Unable to update item.", ["Title exceeds 256 characters."]);
    item.title = p.title;
  }
  if (p.snippet !== undefined && p.snippet.length > 2048)
    return err(400, "Unable to update item.", ["Snippet exceeds 2048 characters."]);
  str("snippet");
  str("description");
  str("accessInformation");
  str("licenseInfo");
  str("spatialReference");
  str("url");
  if (p.culture) item.culture = p.culture;
  if (p.typeKeywords !== undefined) item.typeKeywords = list(p.typeKeywords);
  if (p.tags !== undefined) item.tags = list(p.tags);
  if (p.categories !== undefined) item.categories = list(p.categories);
  if (p.name !== undefined && p.name !== "") item.name = p.name;
  if (p.extent !== undefined) {
    try {
      const e = parseExtent(p.extent);
      if (e === null) return err(400, "Unable to update item.", ["Invalid extent."]);
      item.extent = e;
    } catch {
      return err(400, "Unable to update item.", ["Invalid extent."]);
    }
  }
  if (p.properties !== undefined) {
    try {
      item.properties = p.properties === "" ? null : (JSON.parse(p.properties) as Record<string, unknown>);
    } catch {
      return err(400, "Unable to update item.", ["Invalid properties."]);
    }
  }
  return null;
}

function dataFrom(
  p: Record<string, string>,
  files: Record<string, FilePart>,
  item: SimItem,
): ItemData | null {
  const file = files.file;
  if (file)
    return {
      kind: "file",
      source: bufferSource(file.data),
      filename: p.filename || file.filename,
      contentType: file.contentType,
    };
  if (p.text !== undefined) return { kind: "json", text: p.text };
  if (item.type === "Feature Service" || item.url) return null;
  return null;
}

function sideFiles(ctx: SimContext, i: number, p: ParsedRequest): void {
  const thumb = p.files.thumbnail;
  if (thumb) ctx.org.setThumbnail(i, thumb.data, `thumbnail/${thumb.filename}`);
  const meta = p.files.metadata;
  if (meta) ctx.org.setMetadata(i, meta.data.toString("utf8"));
}

export const addItem: Handler = (ctx, req, caller, m) => {
  const a = actor(ctx, caller, m);
  if (!("owner" in a)) return a;
  const p = req.params;
  if (!p.title || !p.type) return err(400, "Unable to add item.", ["'title' and 'type' must be specified."]);
  if (p.title.length > 256) return err(400, "Unable to add item.", ["Title exceeds 256 characters."]);
  const typeKeywords = list(p.typeKeywords);
  const file = req.files.file;
  const filename = p.filename || file?.filename || null;
  if (filename && (file || truthy(p.multipart))) {
    for (const i of ctx.org.indices()) {
      const f = ctx.org.fast(i);
      if (f.owner !== a.owner.username) continue;
      const it = ctx.org.itemAt(i);
      if (it.folderId === a.folderId && it.name === filename && !truthy(p.overwrite))
        return err(409, "Item with this filename already exists.", [], "CONT_0027");
    }
  }
  const item = ctx.org.addItemRecord({
    owner: a.owner.username,
    title: p.title,
    type: p.type,
    typeKeywords,
    kind: kindOf(p.type, typeKeywords),
    folderId: a.folderId,
    name: filename,
    size: 0,
  });
  const bad = applyFields(item, p, false);
  if (bad) {
    ctx.org.deleteIndex(item.index);
    return bad;
  }
  if (truthy(p.multipart)) {
    uploads.set(item.id, { parts: new Map(), filename: filename ?? "upload.bin" });
  } else {
    const d = dataFrom(p, req.files, item);
    if (d) ctx.org.setItemData(item.index, d);
  }
  sideFiles(ctx, item.index, req);
  const origin = p.originItemId;
  const dest = p.destinationItemId;
  const relType = p.relationshipType ?? p.relationshipTypes;
  if (relType && (origin || dest)) {
    const other = ctx.org.indexOf(origin ?? dest ?? "");
    if (other !== null)
      ctx.org.addRelationship(relType, origin ? other : item.index, origin ? item.index : other);
  }
  return { json: { success: true, id: item.id, folder: a.folderId ?? "" } };
};

const uploads = new Map<string, { parts: Map<number, Buffer>; filename: string }>();

export const addPart: Handler = (ctx, req, caller, m) => {
  const a = actor(ctx, caller, m);
  if (!("owner" in a)) return a;
  const o = ownedItem(ctx, caller, a.owner, m[3] ?? "");
  if (!("item" in o)) return o;
  const up = uploads.get(o.item.id);
  if (!up) return err(400, "Unable to add part.", ["Item is not a multipart upload."]);
  const n = Number(req.params.partNum);
  const file = req.files.file;
  if (!Number.isInteger(n) || n < 1 || n > 10_000 || !file)
    return err(400, "Unable to add part.", ["'partNum' (1..10000) and 'file' must be specified."]);
  up.parts.set(n, file.data);
  return { json: { success: true, id: o.item.id, partNum: n } };
};

export const commitUpload: Handler = (ctx, req, caller, m) => {
  const a = actor(ctx, caller, m);
  if (!("owner" in a)) return a;
  const o = ownedItem(ctx, caller, a.owner, m[3] ?? "");
  if (!("item" in o)) return o;
  const up = uploads.get(o.item.id);
  if (!up) return err(400, "Unable to commit.", ["Item is not a multipart upload."]);
  const nums = [...up.parts.keys()].sort((x, y) => x - y);
  const data = Buffer.concat(nums.map((n) => up.parts.get(n) as Buffer));
  uploads.delete(o.item.id);
  ctx.org.setItemData(o.i, {
    kind: "file",
    source: bufferSource(data),
    filename: up.filename,
    contentType: "application/octet-stream",
  });
  const bad = applyFields(ctx.org.editable(o.i), req.params, false);
  if (bad) return bad;
  return { json: { success: true, id: o.item.id } };
};

export const itemStatus: Handler = (ctx, _req, caller, m) => {
  const a = actor(ctx, caller, m);
  if (!("owner" in a)) return a;
  const o = ownedItem(ctx, caller, a.owner, m[3] ?? "");
  if (!("item" in o)) return o;
  return {
    json: { itemId: o.item.id, status: uploads.has(o.item.id) ? "partial" : "completed", statusMessage: "" },
  };
};

export const updateItem: Handler = (ctx, req, caller, m) => {
  const a = actor(ctx, caller, m);
  if (!("owner" in a)) return a;
  const o = ownedItem(ctx, caller, a.owner, m[3] ?? "");
  if (!("item" in o)) return o;
  if (a.folderId && o.item.folderId !== a.folderId)
    return err(400, "Item does not exist in folder.", [], "CONT_0005");
  const rec = ctx.org.editable(o.i);
  const bad = applyFields(rec, req.params, truthy(req.params.clearEmptyFields));
  if (bad) return bad;
  const d = dataFrom(req.params, req.files, rec);
  if (d) ctx.org.setItemData(o.i, d);
  if (d?.kind === "file") rec.name = d.filename;
  sideFiles(ctx, o.i, req);
  ctx.org.touch(o.i);
  return { json: { success: true, id: rec.id } };
};

export const deleteItem: Handler = (ctx, _req, caller, m) => {
  const a = actor(ctx, caller, m);
  if (!("owner" in a)) return a;
  const o = ownedItem(ctx, caller, a.owner, m[3] ?? "");
  if (!("item" in o)) return o;
  if (o.item.protected)
    return err(400, "Unable to delete item. Delete protection is turned on.", [], "CONT_0048");
  ctx.org.deleteIndex(o.i);
  return { json: { success: true, itemId: o.item.id } };
};

function applyShare(
  ctx: SimContext,
  caller: Caller,
  i: number,
  p: Record<string, string>,
): { notSharedWith: string[]; itemId: string } {
  const rec = ctx.org.editable(i);
  const notSharedWith: string[] = [];
  for (const gid of list(p.groups)) {
    const g = ctx.org.group(gid);
    const u = caller.user;
    if (!g || !u || (!g.members.has(u.username) && !isAdmin(u))) {
      notSharedWith.push(gid);
      continue;
    }
    if (!rec.groups.includes(gid)) rec.groups = [...rec.groups, gid];
  }
  if (truthy(p.everyone)) rec.access = "public";
  else if (truthy(p.org)) rec.access = "org";
  else if (p.everyone !== undefined || p.org !== undefined)
    rec.access = rec.groups.length > 0 ? "shared" : "private";
  else if (rec.access === "private" && rec.groups.length > 0) rec.access = "shared";
  ctx.org.version++;
  return { notSharedWith, itemId: rec.id };
}

export const shareItem: Handler = (ctx, req, caller, m) => {
  const a = actor(ctx, caller, m);
  if (!("owner" in a)) return a;
  const o = ownedItem(ctx, caller, a.owner, m[3] ?? "");
  if (!("item" in o)) return o;
  return { json: applyShare(ctx, caller, o.i, req.params) };
};

export const unshareItem: Handler = (ctx, req, caller, m) => {
  const a = actor(ctx, caller, m);
  if (!("owner" in a)) return a;
  const o = ownedItem(ctx, caller, a.owner, m[3] ?? "");
  if (!("item" in o)) return o;
  const rec = ctx.org.editable(o.i);
  const drop = list(req.params.groups);
  rec.groups = rec.groups.filter((g) => !drop.includes(g));
  if (rec.access === "shared" && rec.groups.length === 0) rec.access = "private";
  return { json: { notUnsharedFrom: [], itemId: rec.id } };
};

export const shareItems: Handler = (ctx, req, caller, m) => {
  const a = actor(ctx, caller, m);
  if (!("owner" in a)) return a;
  const results = list(req.params.items).map((id) => {
    const o = ownedItem(ctx, caller, a.owner, id);
    if (!("item" in o))
      return { itemId: id, success: false, notSharedWith: [], error: (o.json as { error: unknown }).error };
    const r = applyShare(ctx, caller, o.i, req.params);
    return { itemId: id, success: true, notSharedWith: r.notSharedWith };
  });
  return { json: { results } };
};

export const createFolder: Handler = (ctx, req, caller, m) => {
  const a = actor(ctx, caller, m);
  if (!("owner" in a)) return a;
  const title = (req.params.title ?? "").trim();
  if (!title) return err(400, "Unable to create folder.", ["'title' must be specified."]);
  if (ctx.org.foldersOf(a.owner.username).some((f) => f.title.toLowerCase() === title.toLowerCase()))
    return err(400, "Unable to create folder.", [`Folder title '${title}' not available.`]);
  const f = ctx.org.createFolder(a.owner.username, title);
  return { json: { success: true, folder: { username: f.username, id: f.id, title: f.title } } };
};

export const addRelationship: Handler = (ctx, req, caller, m) => {
  const a = actor(ctx, caller, m);
  if (!("owner" in a)) return a;
  const type = req.params.relationshipType ?? req.params.relationshipTypes;
  const o = ctx.org.indexOf(req.params.originItemId ?? "");
  const d = ctx.org.indexOf(req.params.destinationItemId ?? "");
  if (!type || o === null || d === null)
    return err(400, "Unable to add relationship.", [
      "Invalid originItemId, destinationItemId or relationshipType.",
    ]);
  ctx.org.addRelationship(type, o, d);
  return { json: { success: true } };
};

export const addResources: Handler = (ctx, req, caller, m) => {
  const a = actor(ctx, caller, m);
  if (!("owner" in a)) return a;
  const o = ownedItem(ctx, caller, a.owner, m[3] ?? "");
  if (!("item" in o)) return o;
  const p = req.params;
  const prefix = (p.resourcesPrefix ?? "").replace(/^\/+|\/+$/g, "");
  const file = req.files.file;
  let name = p.fileName || file?.filename;
  let data: Buffer | null = file?.data ?? null;
  if (!data && p.text !== undefined) data = Buffer.from(p.text);
  if (!name || !data)
    return err(400, "Unable to add resources.", ["'file' or 'text' with 'fileName' must be specified."]);
  if (data.length > 50 * 1024 * 1024)
    return err(400, "Unable to add resources.", ["Resource exceeds 50 MB."]);
  name = prefix ? `${prefix}/${name}` : name;
  if (ctx.org.resourcesAt(o.i).length >= 1000 && !ctx.org.resourcesAt(o.i).some((r) => r.resource === name))
    return err(400, "Unable to add resources.", ["An item can have at most 1000 resources."]);
  ctx.org.putResource(o.i, name, data, p.access === "private" ? "private" : "inherit");
  return { json: { success: true, itemId: o.item.id, owner: o.item.owner, folder: o.item.folderId ?? "" } };
};

export const removeResources: Handler = (ctx, req, caller, m) => {
  const a = actor(ctx, caller, m);
  if (!("owner" in a)) return a;
  const o = ownedItem(ctx, caller, a.owner, m[3] ?? "");
  if (!("item" in o)) return o;
  if (truthy(req.params.deleteAll)) {
    for (const r of ctx.org.resourcesAt(o.i)) ctx.org.removeResource(o.i, r.resource);
  } else if (!ctx.org.removeResource(o.i, req.params.resource ?? ""))
    return err(404, "Resource does not exist or is inaccessible.", [], "CONT_0004");
  return { json: { success: true } };
};

export const updateInfo: Handler = (ctx, req, caller, m) => {
  const a = actor(ctx, caller, m);
  if (!("owner" in a)) return a;
  const o = ownedItem(ctx, caller, a.owner, m[3] ?? "");
  if (!("item" in o)) return o;
  const file = req.files.file;
  if (!file) return err(400, "Unable to update item info.", ["'file' must be specified."]);
  if (file.data.length > 100 * 1024)
    return err(400, "Unable to update item info.", ["Info file exceeds 100 KB."]);
  const folder = req.params.folderName ?? "";
  if (folder === "metadata" || file.filename === "metadata.xml")
    ctx.org.setMetadata(o.i, file.data.toString("utf8"));
  else if (/\.(png|jpe?g|gif)$/i.test(file.filename))
    ctx.org.setThumbnail(o.i, file.data, `thumbnail/${file.filename}`);
  return { json: { success: true, itemId: o.item.id, owner: o.item.owner, folder: o.item.folderId ?? "" } };
};

export const isServiceNameAvailable: Handler = (ctx, req, caller) => {
  if (!caller.user) return caller.token ? ERR.forbidden() : ERR.tokenRequired();
  const name = req.params.name ?? "";
  if (!name) return err(400, "Unable to check name.", ["'name' must be specified."]);
  return { json: { available: !ctx.org.isServiceNameTaken(name) } };
};

export const createService: Handler = (ctx, req, caller, m) => {
  const a = actor(ctx, caller, m);
  if (!("owner" in a)) return a;
  if (!a.owner.canPublish) return ERR.forbidden();
  if ((req.params.outputType ?? "featureService") !== "featureService")
    return err(400, "Unable to create service.", ["Only outputType=featureService is simulated."]);
  let cp: Record<string, unknown>;
  try {
    cp = JSON.parse(req.params.createParameters ?? "{}") as Record<string, unknown>;
  } catch {
    return err(400, "Unable to create service.", ["Invalid createParameters."]);
  }
  const name = String(cp.name ?? "").trim();
  if (!name || !/^[A-Za-z0-9_]+$/.test(name))
    return err(400, "Unable to create service.", [
      "Service name must contain only letters, digits and underscores.",
    ]);
  if (ctx.org.isServiceNameTaken(name))
    return err(409, "Unable to create service.", [
      `Service name '${name}' already exists for '${ctx.org.orgId}'`,
    ]);
  const url = `${ctx.org.servicesUrl}/${name}/FeatureServer`;
  const isView = truthy(req.params.isView);
  const item = ctx.org.addItemRecord({
    owner: a.owner.username,
    title: name.replace(/_/g, " "),
    type: "Feature Service",
    typeKeywords: [
      "ArcGIS Server",
      "Data",
      "Feature Access",
      "Feature Service",
      "Service",
      "Hosted Service",
      ...(isView ? ["View Service"] : []),
    ],
    kind: isView ? "view" : "featureService",
    folderId: a.folderId,
    name,
    url,
    size: -1,
    spatialReference: "102100",
  });
  const sr = (cp.spatialReference as Record<string, unknown> | undefined) ?? {
    wkid: 102100,
    latestWkid: 3857,
  };
  const extent = (cp.initialExtent as Record<string, unknown> | undefined) ?? {
    xmin: -20037508,
    ymin: -20037508,
    xmax: 20037508,
    ymax: 20037508,
    spatialReference: sr,
  };
  const {
    name: _n,
    maxRecordCount,
    capabilities,
    serviceDescription,
    spatialReference: _s,
    initialExtent: _i,
    ...extra
  } = cp;
  const def: ServiceDef = {
    itemIndex: item.index,
    name,
    kind: "FeatureServer",
    isView,
    sourceIndex: null,
    layers: [],
    tables: [],
    relationships: [],
    maxRecordCount: typeof maxRecordCount === "number" ? maxRecordCount : 1000,
    capabilities: typeof capabilities === "string" ? capabilities : "Create,Delete,Query,Update,Editing",
    syncEnabled: typeof capabilities === "string" && capabilities.includes("Sync"),
    description: typeof serviceDescription === "string" ? serviceDescription : "",
    spatialReference: sr,
    extent,
    created: item.created,
    extra,
  };
  ctx.org.registerService(item.index, def);
  return {
    json: {
      encodedServiceURL: url,
      serviceurl: url,
      itemId: item.id,
      serviceItemId: item.id,
      name,
      size: -1,
      success: true,
      type: "Feature Service",
      isView,
    },
  };
};
