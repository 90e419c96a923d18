import { type Caller, canEditItem, canSeeIndex, type Handler, type SimContext } from "./context.js";
import {
  type AttachmentRec,
  attachmentInfoJson,
  type Feature,
  type FieldDef,
  featureJson,
  type LayerSpec,
  matchOids,
  QueryError,
  runQuery,
  tableFields,
} from "./features.js";
import { err, type Reply, truthy } from "./http.js";
import type { ServiceDef } from "./model.js";
import { bufferSource } from "./prng.js";
import { requestCost } from "./request-units.js";

const CURRENT_VERSION = 11.3;

export const serverInfo: Handler = (ctx, _req, _caller, m) => {
  const external = m[0]?.startsWith("/ext/");
  if (external)
    return {
      json: {
        currentVersion: CURRENT_VERSION,
        fullVersion: "11.3.0",
        authInfo: { isTokenBasedSecurity: false },
      },
    };
  return {
    json: {
      currentVersion: CURRENT_VERSION,
      fullVersion: "11.3.0",
      owningSystemUrl: ctx.orgUrl,
      owningTenant: ctx.kind === "online" ? ctx.org.orgId : undefined,
      authInfo: {
        isTokenBasedSecurity: true,
        tokenServicesUrl: `${ctx.sharingUrl}/generateToken`,
        shortLivedTokenValidity: 60,
      },
    },
    cost: requestCost("meta"),
  };
};

const notFound = (): Reply => err(404, "Service not found or not started.", []);
const layerNotFound = (): Reply => err(400, "Invalid URL", ["Invalid URL"]);

/** Resolves the service in the route and checks the caller may use it. */
function resolve(
  ctx: SimContext,
  caller: Caller,
  name: string,
  server: string,
  external: boolean,
): { i: number; def: ServiceDef } | Reply {
  const i = ctx.org.serviceIndex(decodeURIComponent(name), server);
  if (i === null) return notFound();
  const kind = ctx.org.kindAt(i);
  if (external !== (kind === "mapService")) return notFound();
  const def = ctx.org.service(i);
  if (!def) return notFound();
  if (!external && !canSeeIndex(ctx, caller, i)) {
    return caller.token
      ? err(403, "You do not have permissions to access this resource or perform this operation.", [])
      : err(499, "Token Required", []);
  }
  return { i, def };
}

function extentOf(def: ServiceDef) {
  return def.extent;
}

function serviceJson(ctx: SimContext, def: ServiceDef): Record<string, unknown> {
  const item = ctx.org.itemAt(def.itemIndex);
  if (def.kind === "MapServer") {
    return {
      currentVersion: CURRENT_VERSION,
      serviceDescription: def.description,
      mapName: "Layers",
      description: def.description,
      copyrightText: "",
      supportsDynamicLayers: false,
      layers: [
        {
          id: 0,
          name: "Features",
          parentLayerId: -1,
          defaultVisibility: true,
          subLayerIds: null,
          minScale: 0,
          maxScale: 0,
          type: "Feature Layer",
          geometryType: "esriGeometryPolygon",
        },
      ],
      tables: [],
      spatialReference: def.spatialReference,
      singleFusedMapCache: false,
      initialExtent: extentOf(def),
      fullExtent: extentOf(def),
      units: "esriMeters",
      supportedImageFormatTypes: "PNG32,PNG24,PNG,JPG",
      capabilities: def.capabilities,
      maxRecordCount: def.maxRecordCount,
      maxImageHeight: 4096,
      maxImageWidth: 4096,
    };
  }
  if (def.kind === "VectorTileServer") {
    return {
      currentVersion: CURRENT_VERSION,
      name: def.name,
      capabilities: "TilesOnly",
      type: "indexedVector",
      defaultStyles: "resources/styles",
      tiles: ["tile/{z}/{y}/{x}.pbf"],
      exportTilesAllowed: false,
      maxzoom: 15,
      initialExtent: extentOf(def),
      fullExtent: extentOf(def),
      minScale: 0,
      maxScale: 0,
      tileInfo: { rows: 512, cols: 512, format: "pbf", spatialReference: def.spatialReference, lods: [] },
      serviceItemId: item.id,
    };
  }
  const supportsPagination = [...def.layers, ...def.tables].every((l) => l.supportsPagination);
  return {
    currentVersion: CURRENT_VERSION,
    serviceItemId: item.id,
    isView: def.isView,
    isUpdatableView: def.isView ? false : undefined,
    sourceSchemaChangesAllowed: true,
    serviceDescription: def.description,
    hasVersionedData: false,
    supportsDisconnectedEditing: false,
    hasStaticData: false,
    hasSharedDomains: false,
    maxRecordCount: def.maxRecordCount,
    supportedQueryFormats: "JSON",
    supportsVCSProjection: false,
    supportedExportFormats: "csv,shapefile,filegdb,geojson,sqlite",
    capabilities: def.capabilities,
    description: def.description,
    copyrightText: "",
    spatialReference: def.spatialReference,
    initialExtent: extentOf(def),
    fullExtent: extentOf(def),
    allowGeometryUpdates: true,
    units: "esriMeters",
    supportsAppend: true,
    supportsSharedDomains: true,
    supportsApplyEditsWithGlobalIds: true,
    supportsLayerOverrides: true,
    supportsTilesAndBasicQueriesMode: true,
    supportsQueryContingentValues: true,
    supportedContingentValuesFormats: "JSON, PBF",
    syncEnabled: def.syncEnabled,
    ...(def.syncEnabled
      ? {
          syncCapabilities: {
            supportsAsync: true,
            supportsRegisteringExistingData: true,
            supportsSyncDirectionControl: true,
            supportsPerLayerSync: true,
            supportsPerReplicaSync: false,
            supportsSyncModelNone: true,
            supportsRollbackOnFailure: false,
            supportsAttachmentsSyncDirection: true,
            supportsBiDirectionalSyncForServer: true,
          },
        }
      : {}),
    editorTrackingInfo: {
      enableEditorTracking: true,
      enableOwnershipAccessControl: false,
      allowOthersToQuery: true,
      allowOthersToUpdate: true,
      allowOthersToDelete: true,
      allowAnonymousToQuery: true,
      allowAnonymousToUpdate: true,
      allowAnonymousToDelete: true,
    },
    xssPreventionInfo: {
      xssPreventionEnabled: true,
      xssPreventionRule: "InputOnly",
      xssInputRule: "rejectInvalid",
    },
    layers: def.layers.map((l) => ({
      id: l.id,
      name: l.name,
      parentLayerId: -1,
      defaultVisibility: true,
      subLayerIds: null,
      minScale: 0,
      maxScale: 0,
      geometryType: l.geometryType,
    })),
    tables: def.tables.map((t) => ({
      id: t.id,
      name: t.name,
      parentLayerId: -1,
      defaultVisibility: true,
      subLayerIds: null,
      minScale: 0,
      maxScale: 0,
    })),
    relationships: def.relationships,
    ...changeTrackingJson(def),
    enableZDefaults: def.layers.some((l) => l.hasZ),
    allowUpdateWithoutMValues: true,
    supportsPagination,
    ...def.extra,
  };
}

/** Whether the service tracks changes (the `ChangeTracking` capability, as ArcGIS Online shows it). */
export function tracksChanges(def: ServiceDef): boolean {
  return def.capabilities
    .split(",")
    .map((c) => c.trim().toLowerCase())
    .includes("changetracking");
}

/** `extractChangesCapabilities` and `changeTrackingInfo` of a service with change tracking. */
function changeTrackingJson(def: ServiceDef): Record<string, unknown> {
  if (!tracksChanges(def)) return {};
  return {
    extractChangesCapabilities: {
      supportsReturnIdsOnly: true,
      supportsReturnExtentOnly: false,
      supportsReturnAttachments: true,
      supportsLayerQueries: false,
      supportsGeometry: false,
      supportsReturnFeature: true,
      supportsReturnHasGeometryUpdates: false,
      supportsFieldsToCompare: false,
      supportsServerGens: true,
    },
    changeTrackingInfo: {
      lastSyncDate: Math.max(...[...def.layers, ...def.tables].map((l) => l.store.lastEditDate), def.created),
      layerServerGens: [...def.layers, ...def.tables].map((l) => ({
        id: l.id,
        minServerGen: l.store.minServerGen,
        serverGen: l.store.serverGen,
      })),
    },
  };
}

function fieldJson(f: FieldDef): Record<string, unknown> {
  return {
    name: f.name,
    type: f.type,
    alias: f.alias,
    sqlType: f.sqlType,
    nullable: f.nullable,
    editable: f.editable,
    ...(f.length !== undefined ? { length: f.length } : {}),
    domain: f.domain,
    defaultValue: f.defaultValue,
  };
}

function layerJson(ctx: SimContext, def: ServiceDef, l: LayerSpec): Record<string, unknown> {
  const item = ctx.org.itemAt(def.itemIndex);
  const isTable = l.type === "Table";
  const catField = l.fields.find((f) => f.name === "category");
  const codes = (catField?.domain?.codedValues as { name: string; code: number }[] | undefined) ?? [];
  const types = codes.map((c) => ({
    id: c.code,
    name: c.name,
    domains: {},
    templates: [
      {
        name: c.name,
        description: "",
        drawingTool: isTable ? "esriFeatureEditToolNone" : "esriFeatureEditToolPoint",
        prototype: { attributes: { category: c.code } },
      },
    ],
  }));
  const base: Record<string, unknown> = {
    ...l.extra,
    currentVersion: CURRENT_VERSION,
    cimVersion: "3.1.0",
    id: l.id,
    name: l.name,
    type: l.type,
    serviceItemId: item.id,
    isView: def.isView,
    isUpdatableView: false,
    sourceSchemaChangesAllowed: true,
    displayField: l.fields.some((f) => f.name === "name") ? "name" : l.objectIdField,
    description: "",
    copyrightText: "",
    defaultVisibility: true,
    editingInfo: {
      lastEditDate: l.store.lastEditDate,
      schemaLastEditDate: def.created,
      dataLastEditDate: l.store.lastEditDate,
    },
    relationships: l.relationships,
    isDataVersioned: false,
    hasContingentValuesDefinition: false,
    supportsAppend: true,
    supportsCalculate: true,
    supportsASyncCalculate: true,
    supportsTruncate: !def.isView,
    supportsAttachmentsByUploadId: true,
    supportsAttachmentKeywords: true,
    supportsExceedsLimitStatistics: true,
    supportsRollbackOnFailureParameter: true,
    supportsStatistics: true,
    supportsAdvancedQueries: true,
    supportsValidateSql: true,
    supportsCoordinatesQuantization: true,
    supportsApplyEditsWithGlobalIds: true,
    supportsQueryAttachments: l.hasAttachments,
    advancedQueryCapabilities: {
      supportsPagination: l.supportsPagination,
      supportsPaginationOnAggregatedQueries: l.supportsPagination,
      supportsQueryRelatedPagination: l.supportsPagination,
      supportsQueryWithDistance: true,
      supportsReturningQueryExtent: true,
      supportsStatistics: true,
      supportsOrderBy: true,
      supportsDistinct: true,
      supportsQueryWithResultType: true,
      supportsSqlExpression: true,
      supportsAdvancedQueryRelated: true,
      supportsCountDistinct: true,
      supportsReturningGeometryCentroid: false,
      supportsQueryWithDatumTransformation: true,
      supportsHavingClause: true,
      supportsOutFieldSQLExpression: true,
      supportsMaxRecordCountFactor: true,
      supportsTopFeaturesQuery: true,
      supportsDisjointSpatialRel: true,
      supportsQueryWithCacheHint: true,
      supportsQueryAttachments: l.hasAttachments,
      supportsQueryAttachmentsWithReturnUrl: l.hasAttachments,
      supportsQueryAttachmentsCountOnly: l.hasAttachments,
    },
    useStandardizedQueries: true,
    allowGeometryUpdates: !isTable,
    hasAttachments: l.hasAttachments,
    ...(l.hasAttachments
      ? {
          attachmentProperties: [
            { name: "name", isEnabled: true },
            { name: "size", isEnabled: true },
            { name: "contentType", isEnabled: true },
            { name: "keywords", isEnabled: true },
          ],
        }
      : {}),
    htmlPopupType: "esriServerHTMLPopupTypeNone",
    hasMetadata: true,
    hasM: l.hasM,
    hasZ: l.hasZ,
    objectIdField: l.objectIdField,
    uniqueIdField: { name: l.objectIdField, isSystemMaintained: true },
    globalIdField: l.globalIdField,
    typeIdField: types.length > 0 ? "category" : "",
    dateFieldsTimeReference: { timeZone: "UTC", respectsDaylightSaving: false },
    fields: l.fields.map(fieldJson),
    geometryField: isTable ? undefined : { name: "Shape", type: "esriFieldTypeGeometry", alias: "Shape" },
    indexes: [],
    types,
    templates: [],
    maxRecordCount: l.maxRecordCount,
    standardMaxRecordCount: l.maxRecordCount * 2,
    tileMaxRecordCount: l.maxRecordCount * 4,
    maxRecordCountFactor: 1,
    supportedQueryFormats: "JSON, geoJSON, PBF",
    capabilities: def.capabilities,
    editFieldsInfo: l.fields.some((f) => f.name === "created_user")
      ? {
          creationDateField: "created_date",
          creatorField: "created_user",
          editDateField: "last_edited_date",
          editorField: "last_edited_user",
        }
      : null,
  };
  if (!isTable) {
    base.geometryType = l.geometryType;
    base.minScale = 0;
    base.maxScale = 0;
    base.extent = def.extent;
    base.drawingInfo = l.extra.drawingInfo ?? {
      renderer: {
        type: "uniqueValue",
        field1: "category",
        uniqueValueInfos: codes.map((c) => ({
          value: String(c.code),
          label: c.name,
          symbol:
            l.geometryType === "esriGeometryPoint"
              ? { type: "esriSMS", style: "esriSMSCircle", color: [c.code * 40, 120, 200, 255], size: 6 }
              : l.geometryType === "esriGeometryPolyline"
                ? { type: "esriSLS", style: "esriSLSSolid", color: [c.code * 40, 80, 80, 255], width: 1.5 }
                : {
                    type: "esriSFS",
                    style: "esriSFSSolid",
                    color: [c.code * 40, 160, 90, 120],
                    outline: { type: "esriSLS", style: "esriSLSSolid", color: [0, 0, 0, 255], width: 0.5 },
                  },
        })),
      },
      transparency: 0,
    };
  }
  return base;
}

function layerOf(def: ServiceDef, id: string | undefined): LayerSpec | null {
  const n = Number(id);
  if (!Number.isInteger(n)) return null;
  return [...def.layers, ...def.tables].find((l) => l.id === n) ?? null;
}

// route groups: m[1] = name, m[2] = server type, m[3..] = rest
export const serviceRoot: Handler = (ctx, _req, caller, m) => {
  const r = resolve(ctx, caller, m[1] ?? "", m[2] ?? "", !!m[0]?.startsWith("/ext/"));
  if ("json" in r || "status" in r) return r as Reply;
  const { def } = r as { def: ServiceDef };
  return { json: serviceJson(ctx, def), cost: requestCost("meta") };
};

export const serviceLayers: Handler = (ctx, _req, caller, m) => {
  const r = resolve(ctx, caller, m[1] ?? "", "FeatureServer", false);
  if (!("def" in r)) return r;
  return {
    json: {
      layers: r.def.layers.map((l) => layerJson(ctx, r.def, l)),
      tables: r.def.tables.map((l) => layerJson(ctx, r.def, l)),
    },
    cost: requestCost("meta"),
  };
};

export const layerRoot: Handler = (ctx, _req, caller, m) => {
  const r = resolve(ctx, caller, m[1] ?? "", "FeatureServer", false);
  if (!("def" in r)) return r;
  const l = layerOf(r.def, m[2]);
  if (!l) return layerNotFound();
  return { json: layerJson(ctx, r.def, l), cost: requestCost("meta") };
};

export const layerQuery: Handler = (ctx, req, caller, m) => {
  const r = resolve(ctx, caller, m[1] ?? "", "FeatureServer", false);
  if (!("def" in r)) return r;
  const l = layerOf(r.def, m[2]);
  if (!l) return layerNotFound();
  try {
    const out = runQuery(l, req.params, r.def.spatialReference);
    return { json: out.body, cost: requestCost(out.kind, out.records, out.geometry) };
  } catch (e) {
    if (e instanceof QueryError) return { ...err(e.code, e.message, e.details), cost: 1 };
    throw e;
  }
};

export const queryAttachments: Handler = (ctx, req, caller, m) => {
  const r = resolve(ctx, caller, m[1] ?? "", "FeatureServer", false);
  if (!("def" in r)) return r;
  const l = layerOf(r.def, m[2]);
  if (!l) return layerNotFound();
  if (!l.hasAttachments)
    return err(400, "Unable to complete operation.", ["Layer does not support attachments."]);
  const p = req.params;
  if (!p.objectIds && !p.globalIds && !p.definitionExpression)
    return err(400, "Unable to complete operation.", [
      "'objectIds', 'globalIds' or 'definitionExpression' must be specified.",
    ]);
  let oids: number[];
  try {
    oids = matchOids(l, { where: p.definitionExpression || "1=1", objectIds: p.objectIds });
  } catch (e) {
    if (e instanceof QueryError) return err(e.code, e.message, e.details);
    throw e;
  }
  if (p.globalIds) {
    const wanted = new Set(p.globalIds.split(",").map((s) => s.trim().replace(/[{}]/g, "").toLowerCase()));
    oids = oids.filter((o) => wanted.has(String(l.store.get(o)?.attributes.GlobalID ?? "").toLowerCase()));
  }
  const groups: unknown[] = [];
  let count = 0;
  for (const oid of oids) {
    const atts = l.store.attachments(oid);
    if (atts.length === 0) continue;
    const gid = String(l.store.get(oid)?.attributes[l.globalIdField] ?? "");
    count += atts.length;
    if (truthy(p.returnCountOnly)) continue;
    groups.push({
      parentObjectId: oid,
      parentGlobalId: gid,
      attachmentInfos: atts.map((a) => attachmentInfoJson(a)),
    });
  }
  if (truthy(p.returnCountOnly)) return { json: { attachmentGroups: [], count }, cost: requestCost("count") };
  return {
    json: {
      fields: [
        { name: "AttachmentId", type: "esriFieldTypeOID", alias: "AttachmentId" },
        { name: "GlobalID", type: "esriFieldTypeGlobalID", alias: "GlobalID", length: 38 },
        { name: "REL_OBJECTID", type: "esriFieldTypeInteger", alias: "REL_OBJECTID" },
        { name: "REL_GLOBALID", type: "esriFieldTypeGUID", alias: "REL_GLOBALID", length: 38 },
        { name: "CONTENT_TYPE", type: "esriFieldTypeString", alias: "CONTENT_TYPE", length: 150 },
        { name: "ATT_NAME", type: "esriFieldTypeString", alias: "ATT_NAME", length: 250 },
        { name: "DATA_SIZE", type: "esriFieldTypeInteger", alias: "DATA_SIZE" },
        { name: "KEYWORDS", type: "esriFieldTypeString", alias: "KEYWORDS", length: 250 },
      ],
      attachmentGroups: groups,
    },
    cost: requestCost("features", count, false),
  };
};

export const featureAttachments: Handler = (ctx, _req, caller, m) => {
  const r = resolve(ctx, caller, m[1] ?? "", "FeatureServer", false);
  if (!("def" in r)) return r;
  const l = layerOf(r.def, m[2]);
  if (!l) return layerNotFound();
  if (!l.hasAttachments)
    return err(400, "Unable to complete operation.", ["Layer does not support attachments."]);
  const oid = Number(m[3]);
  if (!l.store.has(oid)) return err(404, "Feature not found.", [`Object ID ${m[3]} does not exist.`]);
  const gid = String(l.store.get(oid)?.attributes[l.globalIdField] ?? "");
  return {
    json: { attachmentInfos: l.store.attachments(oid).map((a) => attachmentInfoJson(a, gid)) },
    cost: requestCost("meta"),
  };
};

export const attachmentData: Handler = (ctx, _req, caller, m) => {
  const r = resolve(ctx, caller, m[1] ?? "", "FeatureServer", false);
  if (!("def" in r)) return r;
  const l = layerOf(r.def, m[2]);
  if (!l) return layerNotFound();
  const a = l.store.attachments(Number(m[3])).find((x) => x.id === Number(m[4]));
  if (!a) return err(404, "Attachment not found.", []);
  return {
    source: { src: a.source },
    headers: {
      "content-type": a.contentType,
      "content-disposition": `inline; filename="${encodeURIComponent(a.name)}"; filename*=UTF-8''${encodeURIComponent(a.name)}`,
    },
    cost: requestCost("attachment"),
  };
};

// ---------------------------------------------------------------------------------------------
// writes

function parseJsonParam<T>(v: string | undefined, dflt: T): T {
  if (v === undefined || v.trim() === "") return dflt;
  return JSON.parse(v) as T;
}

interface EditResult {
  objectId: number | null;
  globalId: string | null;
  success: boolean;
  error?: { code: number; description: string };
}

function applyLayerEdits(
  ctx: SimContext,
  l: LayerSpec,
  editor: string,
  adds: Feature[],
  updates: Feature[],
  deletes: (number | string)[],
  useGlobalIds: boolean,
): { addResults: EditResult[]; updateResults: EditResult[]; deleteResults: EditResult[] } {
  const store = l.store;
  const now = Date.now();
  const oidF = l.objectIdField;
  const gidF = l.globalIdField;
  const hasField = (n: string) => l.fields.some((f) => f.name === n);
  const findOid = (f: Feature | string | number): number | null => {
    if (typeof f === "number") return store.has(f) ? f : null;
    if (typeof f === "string" || useGlobalIds) {
      const g = (typeof f === "string" ? f : String(f.attributes[gidF] ?? ""))
        .replace(/[{}]/g, "")
        .toLowerCase();
      for (const oid of store.oids()) {
        if (String(store.get(oid)?.attributes[gidF] ?? "").toLowerCase() === g) return oid;
      }
      return null;
    }
    const oid = Number(f.attributes[oidF]);
    return store.has(oid) ? oid : null;
  };
  const addResults: EditResult[] = adds.map((f) => {
    const oid = store.nextOid++;
    const given = useGlobalIds ? String(f.attributes?.[gidF] ?? "").replace(/[{}]/g, "") : "";
    const globalId = given || ctx.org.newGlobalId();
    const attributes: Record<string, unknown> = {};
    for (const fd of l.fields) attributes[fd.name] = f.attributes?.[fd.name] ?? null;
    attributes[oidF] = oid;
    if (gidF) attributes[gidF] = globalId;
    if (hasField("created_user")) {
      attributes.created_user = editor;
      attributes.created_date = now;
      attributes.last_edited_user = editor;
      attributes.last_edited_date = now;
    }
    store.added.set(oid, { attributes, geometry: l.geometryType ? (f.geometry ?? null) : undefined });
    return { objectId: oid, globalId: `{${globalId.toUpperCase()}}`, success: true };
  });
  const updateResults: EditResult[] = updates.map((f) => {
    const oid = findOid(f);
    if (oid === null)
      return {
        objectId: Number(f.attributes?.[oidF] ?? null),
        globalId: null,
        success: false,
        error: { code: 1019, description: "Object is missing." },
      };
    const cur = store.get(oid) as Feature;
    const attributes = { ...cur.attributes };
    for (const [k, v] of Object.entries(f.attributes ?? {})) if (k !== oidF && k !== gidF) attributes[k] = v;
    if (hasField("last_edited_user")) {
      attributes.last_edited_user = editor;
      attributes.last_edited_date = now;
    }
    const next: Feature = { attributes, geometry: f.geometry !== undefined ? f.geometry : cur.geometry };
    if (store.added.has(oid)) store.added.set(oid, next);
    else store.updated.set(oid, next);
    return { objectId: oid, globalId: String(attributes[gidF] ?? ""), success: true };
  });
  const deleteResults: EditResult[] = deletes.map((d) => {
    const oid = findOid(d);
    if (oid === null)
      return {
        objectId: typeof d === "number" ? d : null,
        globalId: typeof d === "string" ? d : null,
        success: false,
        error: { code: 1019, description: "Object is missing." },
      };
    const gid = String(store.get(oid)?.attributes[gidF] ?? "");
    if (store.added.has(oid)) store.added.delete(oid);
    else {
      store.deleted.add(oid);
      store.updated.delete(oid);
    }
    return { objectId: oid, globalId: gid, success: true };
  });
  if (adds.length + updates.length + deletes.length > 0) store.touch(now);
  return { addResults, updateResults, deleteResults };
}

function parseDeletes(v: string | undefined): (number | string)[] {
  if (!v?.trim()) return [];
  const t = v.trim();
  if (t.startsWith("[")) return JSON.parse(t) as (number | string)[];
  return t.split(",").map((s) => {
    const x = s.trim();
    return /^\d+$/.test(x) ? Number(x) : x;
  });
}

function editable(ctx: SimContext, caller: Caller, m: string[]): { def: ServiceDef; i: number } | Reply {
  const r = resolve(ctx, caller, m[1] ?? "", "FeatureServer", false);
  if (!("def" in r)) return r;
  if (!canEditItem(caller, ctx.org.itemAt(r.i)))
    return err(403, "You do not have permissions to access this resource or perform this operation.", []);
  const def = ctx.org.pinService(r.i) ?? r.def;
  return { def, i: r.i };
}

export const layerApplyEdits: Handler = (ctx, req, caller, m) => {
  const r = editable(ctx, caller, m);
  if (!("def" in r)) return r;
  const l = layerOf(r.def, m[2]);
  if (!l) return layerNotFound();
  try {
    const adds = parseJsonParam<Feature[]>(req.params.adds, []);
    const updates = parseJsonParam<Feature[]>(req.params.updates, []);
    const deletes = parseDeletes(req.params.deletes);
    const out = applyLayerEdits(
      ctx,
      l,
      caller.user?.username ?? "",
      adds,
      updates,
      deletes,
      truthy(req.params.useGlobalIds),
    );
    return { json: out, cost: requestCost("edit", adds.length + updates.length + deletes.length) };
  } catch (e) {
    if (e instanceof SyntaxError)
      return err(400, "Unable to complete operation.", ["Invalid JSON in edits."]);
    throw e;
  }
};

export const serviceApplyEdits: Handler = (ctx, req, caller, m) => {
  const r = editable(ctx, caller, m);
  if (!("def" in r)) return r;
  try {
    const edits = parseJsonParam<
      { id: number; adds?: Feature[]; updates?: Feature[]; deletes?: (number | string)[] | string }[]
    >(req.params.edits, []);
    let n = 0;
    const out: unknown[] = [];
    for (const e of edits) {
      const l = layerOf(r.def, String(e.id));
      if (!l) return layerNotFound();
      const deletes = typeof e.deletes === "string" ? parseDeletes(e.deletes) : (e.deletes ?? []);
      const res = applyLayerEdits(
        ctx,
        l,
        caller.user?.username ?? "",
        e.adds ?? [],
        e.updates ?? [],
        deletes,
        truthy(req.params.useGlobalIds),
      );
      n += (e.adds?.length ?? 0) + (e.updates?.length ?? 0) + deletes.length;
      out.push({ id: e.id, ...res });
    }
    return { json: out, cost: requestCost("edit", n) };
  } catch (e) {
    if (e instanceof SyntaxError)
      return err(400, "Unable to complete operation.", ["Invalid JSON in edits."]);
    throw e;
  }
};

export const addAttachment: Handler = (ctx, req, caller, m) => {
  const r = editable(ctx, caller, m);
  if (!("def" in r)) return r;
  const l = layerOf(r.def, m[2]);
  if (!l) return layerNotFound();
  if (!l.hasAttachments)
    return err(400, "Unable to complete operation.", ["Layer does not support attachments."]);
  const oid = Number(m[3]);
  if (!l.store.has(oid)) return err(404, "Feature not found.", []);
  const file = req.files.attachment;
  if (!file) return err(400, "Unable to add attachment.", ["'attachment' must be specified."]);
  const gid =
    (truthy(req.params.useGlobalIds) && req.params.globalId?.replace(/[{}]/g, "")) || ctx.org.newGlobalId();
  const rec: AttachmentRec = {
    id: l.store.nextAttachmentId++,
    globalId: gid,
    name: file.filename,
    contentType: file.contentType,
    size: file.data.length,
    keywords: req.params.keywords ?? "",
    source: bufferSource(file.data),
  };
  l.store.setAttachments(oid, [...l.store.attachments(oid), rec]);
  l.store.touch();
  return {
    json: { addAttachmentResult: { objectId: rec.id, globalId: `{${gid.toUpperCase()}}`, success: true } },
    cost: requestCost("edit", 1),
  };
};

/** Admin addToDefinition: adds layers/tables (full layer JSON) to a hosted feature service. */
export const addToDefinition: Handler = (ctx, req, caller, m) => {
  const r = editable(ctx, caller, m);
  if (!("def" in r)) return r;
  let body: { layers?: Record<string, unknown>[]; tables?: Record<string, unknown>[] };
  try {
    body = parseJsonParam(req.params.addToDefinition, {});
  } catch {
    return err(400, "Unable to add feature service definition.", ["Invalid JSON in addToDefinition."]);
  }
  const def = r.def;
  const added: { name: string; id: number }[] = [];
  const used = new Set([...def.layers, ...def.tables].map((l) => l.id));
  const add = (j: Record<string, unknown>, isTable: boolean) => {
    let id = typeof j.id === "number" ? j.id : -1;
    if (id < 0 || used.has(id)) {
      id = 0;
      while (used.has(id)) id++;
    }
    used.add(id);
    const fieldsIn = (j.fields as Record<string, unknown>[] | undefined) ?? [];
    const fields: FieldDef[] = fieldsIn.map((f) => ({
      name: String(f.name),
      type: String(f.type),
      alias: String(f.alias ?? f.name),
      sqlType: String(f.sqlType ?? "sqlTypeOther"),
      nullable: f.nullable !== false,
      editable: f.editable !== false,
      ...(typeof f.length === "number" ? { length: f.length } : {}),
      domain: (f.domain as Record<string, unknown> | null) ?? null,
      defaultValue: f.defaultValue ?? null,
    }));
    const oidField =
      (j.objectIdField as string | undefined) ??
      fields.find((f) => f.type === "esriFieldTypeOID")?.name ??
      "OBJECTID";
    if (!fields.some((f) => f.name === oidField))
      fields.unshift({ ...(tableFields()[0] as FieldDef), name: oidField });
    const gidField =
      (j.globalIdField as string | undefined) ??
      fields.find((f) => f.type === "esriFieldTypeGlobalID")?.name ??
      "";
    const {
      fields: _f,
      id: _id,
      name: _n,
      type: _t,
      relationships: _r,
      hasAttachments: _h,
      geometryType: _g,
      hasZ: _z,
      hasM: _m,
      maxRecordCount: _mr,
      objectIdField: _o,
      globalIdField: _gi,
      advancedQueryCapabilities: _a,
      editingInfo: _e,
      ...extra
    } = j;
    const layer: LayerSpec = {
      id,
      name: String(j.name ?? `Layer ${id}`),
      type: isTable || j.type === "Table" ? "Table" : "Feature Layer",
      geometryType: isTable ? null : ((j.geometryType as LayerSpec["geometryType"]) ?? "esriGeometryPoint"),
      hasZ: j.hasZ === true,
      hasM: j.hasM === true,
      hasAttachments: j.hasAttachments === true,
      supportsPagination: true,
      maxRecordCount: typeof j.maxRecordCount === "number" ? j.maxRecordCount : def.maxRecordCount,
      objectIdField: oidField,
      globalIdField: gidField,
      fields,
      relationships: (j.relationships as Record<string, unknown>[] | undefined) ?? [],
      extra,
      store: ctx.org.newStore(),
    };
    if (layer.type === "Table") def.tables.push(layer);
    else def.layers.push(layer);
    added.push({ name: layer.name, id });
  };
  for (const l of body.layers ?? []) add(l, false);
  for (const t of body.tables ?? []) add(t, true);
  def.layers.sort((a, b) => a.id - b.id);
  def.tables.sort((a, b) => a.id - b.id);
  ctx.org.version++;
  return { json: { success: true, layers: added } };
};

// ---------------------------------------------------------------------------------------------
// change tracking

interface ServerGen {
  id: number;
  serverGen: number;
}

function parseLayerIds(v: string | undefined): number[] {
  const text = (v ?? "").trim();
  if (text === "") return [];
  const list = text.startsWith("[") ? (JSON.parse(text) as unknown[]) : text.split(",");
  return list.map((x) => Number(typeof x === "string" ? x.trim() : x)).filter((n) => Number.isInteger(n));
}

function attachmentChangeJson(layer: LayerSpec, oid: number, a: AttachmentRec, url: string) {
  return {
    ...attachmentInfoJson(a, String(layer.store.get(oid)?.attributes[layer.globalIdField] ?? "")),
    url: `${url}/${layer.id}/${oid}/attachments/${a.id}`,
  };
}

/** One layer's edits after `since`: full rows (or ids only) and, when asked, attachment changes. */
function layerEditsJson(layer: LayerSpec, since: number, p: Record<string, string | undefined>, url: string) {
  const changes = layer.store.changesSince(since);
  const want = (name: string) => truthy(p[name]);
  const inserts = want("returnInserts") ? changes.inserts : [];
  const updates = want("returnUpdates") ? changes.updates : [];
  const deletes = want("returnDeletes") ? changes.deletes : [];
  const edits: Record<string, unknown> = { id: layer.id };
  let records = inserts.length + updates.length + deletes.length;
  if (truthy(p.returnIdsOnly)) {
    edits.objectIds = { adds: inserts, updates, deletes };
  } else {
    const rows = (oids: number[]) =>
      oids.map((oid) => featureJson(layer, oid)).filter((f) => f !== undefined);
    edits.features = { adds: rows(inserts), updates: rows(updates), deleteIds: deletes };
  }
  if (want("returnAttachments") && layer.hasAttachments) {
    records += changes.attachmentAdds.length + changes.attachmentDeletes.length;
    edits.attachments = {
      adds: changes.attachmentAdds.map((c) =>
        attachmentChangeJson(layer, c.parentObjectId, c.attachment, url),
      ),
      updates: [],
      deleteIds: changes.attachmentDeletes,
    };
  }
  return { edits, records };
}

/**
 * `FeatureServer/extractChanges` (synchronous, `dataFormat=json` only): the edits of each layer
 * after the generation given in `layerServerGens`, and the generations reached. A generation older
 * than the layer's `minServerGen` is refused, as is a service without the ChangeTracking capability.
 */
export const extractChanges: Handler = (ctx, req, caller, m) => {
  const r = resolve(ctx, caller, m[1] ?? "", "FeatureServer", false);
  if (!("def" in r)) return r;
  const { def } = r;
  const p = req.params;
  if (!tracksChanges(def))
    return err(400, "Unable to extract changes.", ["Change tracking is not enabled on this service."]);
  if (truthy(p.async) || (p.dataFormat && p.dataFormat.toLowerCase() !== "json"))
    return err(400, "Unable to extract changes.", [
      "The simulator answers dataFormat=json synchronously only.",
    ]);
  let ids: number[];
  let gens: ServerGen[];
  try {
    ids = parseLayerIds(p.layers);
    gens = JSON.parse(p.layerServerGens?.trim() || "[]") as ServerGen[];
  } catch {
    return err(400, "Unable to extract changes.", ["Invalid 'layers' or 'layerServerGens'."]);
  }
  const url = `${ctx.org.servicesUrl}/${def.name}/FeatureServer`;
  const edits: unknown[] = [];
  let records = 0;
  for (const id of ids) {
    const layer = layerOf(def, String(id));
    if (!layer) return layerNotFound();
    const since = gens.find((g) => g.id === id)?.serverGen;
    if (typeof since !== "number")
      return err(400, "Unable to extract changes.", [`No layerServerGens entry for layer ${id}.`]);
    if (since < layer.store.minServerGen)
      return err(400, "Unable to extract changes.", [
        `The server generation ${since} of layer ${id} is older than its minServerGen ${layer.store.minServerGen}.`,
      ]);
    const out = layerEditsJson(layer, since, p, url);
    edits.push(out.edits);
    records += out.records;
  }
  const layerServerGens = ids.map((id) => ({
    id,
    serverGen: layerOf(def, String(id))?.store.serverGen ?? 0,
  }));
  return {
    json: {
      transportType: "esriTransportTypeEmbedded",
      responseType: "esriDataChanges",
      layerServerGens,
      edits,
    },
    cost: truthy(p.returnIdsOnly) ? requestCost("ids", records) : requestCost("features", records, true),
  };
};

/** `…/{layer}/{oid}/deleteAttachments` with `attachmentIds` (comma-separated). */
export const deleteAttachments: Handler = (ctx, req, caller, m) => {
  const r = editable(ctx, caller, m);
  if (!("def" in r)) return r;
  const l = layerOf(r.def, m[2]);
  if (!l) return layerNotFound();
  const oid = Number(m[3]);
  if (!l.store.has(oid)) return err(404, "Feature not found.", []);
  const wanted = (req.params.attachmentIds ?? "")
    .split(",")
    .map((s) => Number(s.trim()))
    .filter((n) => Number.isInteger(n));
  const current = l.store.attachments(oid);
  const results = wanted.map((id) => {
    const found = current.find((a) => a.id === id);
    return found
      ? { objectId: id, globalId: `{${found.globalId.toUpperCase()}}`, success: true }
      : {
          objectId: id,
          globalId: null,
          success: false,
          error: { code: 1018, description: "Attachment not found." },
        };
  });
  if (results.some((x) => x.success)) {
    l.store.setAttachments(
      oid,
      current.filter((a) => !wanted.includes(a.id)),
    );
    l.store.touch();
  }
  return { json: { deleteAttachmentResults: results }, cost: requestCost("edit", wanted.length) };
};
