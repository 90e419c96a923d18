import type { PortalClient } from "../arcgis/portal-client.js";
import { PortalError } from "../arcgis/portal-errors.js";
import { isSystemicFailure } from "../failures.js";

/** The parts of a feature layer or table definition (`…/FeatureServer/{id}`) the export reads. */
export interface LayerDefinition {
  id: number;
  name?: string;
  type?: string;
  geometryType?: string | null;
  objectIdField?: string;
  globalIdField?: string;
  hasZ?: boolean;
  hasM?: boolean;
  hasAttachments?: boolean;
  maxRecordCount?: number;
  capabilities?: string;
  supportsQueryAttachments?: boolean;
  allowTrueCurvesUpdates?: boolean;
  advancedQueryCapabilities?: {
    supportsPagination?: boolean;
    supportsOrderBy?: boolean;
    supportsQueryAttachments?: boolean;
  };
  editingInfo?: { lastEditDate?: number; dataLastEditDate?: number };
  fields?: Array<{ name: string; type: string }>;
}

export interface ServiceRoot {
  maxRecordCount?: number;
  capabilities?: string;
  /** With the ChangeTracking capability: what extractChanges can return. */
  extractChangesCapabilities?: {
    supportsReturnIdsOnly?: boolean;
    supportsReturnAttachments?: boolean;
    supportsReturnFeature?: boolean;
    supportsServerGens?: boolean;
  };
  /** Each layer's current generation, and the oldest one extractChanges still answers from. */
  changeTrackingInfo?: { layerServerGens?: Array<{ id: number; serverGen?: number; minServerGen?: number }> };
  layers?: Array<{ id: number; name?: string; type?: string }>;
  tables?: Array<{ id: number; name?: string; type?: string }>;
}

export interface ServiceLayers {
  root: ServiceRoot;
  /** Layers then tables, each once, in id order within their kind. */
  layers: LayerDefinition[];
}

/**
 * Reads the service root and every layer and table definition: one `…/layers` call where the
 * service answers it, one call per layer otherwise.
 */
export async function loadServiceLayers(portal: PortalClient, serviceUrl: string): Promise<ServiceLayers> {
  const root = await portal.json<ServiceRoot>(serviceUrl, {}, { method: "GET" });
  const wanted = [...(root.layers ?? []), ...(root.tables ?? [])];
  if (wanted.length === 0) return { root, layers: [] };
  let all: LayerDefinition[] | undefined;
  try {
    const response = await portal.json<{ layers?: LayerDefinition[]; tables?: LayerDefinition[] }>(
      `${serviceUrl}/layers`,
      {},
      { method: "GET" },
    );
    all = [...(response.layers ?? []), ...(response.tables ?? [])];
  } catch (error) {
    if (isSystemicFailure(error) || !(error instanceof PortalError)) throw error;
    all = undefined;
  }
  const byId = new Map((all ?? []).map((layer) => [layer.id, layer]));
  const layers: LayerDefinition[] = [];
  for (const entry of wanted) {
    if (layers.some((l) => l.id === entry.id)) continue;
    const known = byId.get(entry.id);
    layers.push(
      known ?? (await portal.json<LayerDefinition>(`${serviceUrl}/${entry.id}`, {}, { method: "GET" })),
    );
  }
  return { root, layers };
}

/** The latest edit of a layer's data (or schema), in epoch ms. */
export function lastEditOf(layer: LayerDefinition): number | undefined {
  const info = layer.editingInfo;
  const value = info?.lastEditDate ?? info?.dataLastEditDate;
  return typeof value === "number" && Number.isFinite(value) ? value : undefined;
}

export function objectIdFieldOf(layer: LayerDefinition): string {
  return layer.objectIdField ?? layer.fields?.find((f) => f.type === "esriFieldTypeOID")?.name ?? "OBJECTID";
}

/** A feature as a query or extractChanges answers it. */
export interface FeatureJson {
  attributes?: Record<string, unknown>;
  geometry?: unknown;
}

/** A feature's attribute, its field named exactly or else in another case (field names ignore case). */
export function attributeOf(feature: FeatureJson, field: string): unknown {
  const attributes = feature.attributes ?? {};
  if (field in attributes) return attributes[field];
  const upper = field.toUpperCase();
  const key = Object.keys(attributes).find((k) => k.toUpperCase() === upper);
  return key === undefined ? undefined : attributes[key];
}

export function hasGeometry(layer: LayerDefinition): boolean {
  return typeof layer.geometryType === "string" && layer.geometryType.length > 0 && layer.type !== "Table";
}

export function supportsQueryAttachments(layer: LayerDefinition): boolean {
  return (
    layer.supportsQueryAttachments === true ||
    layer.advancedQueryCapabilities?.supportsQueryAttachments === true
  );
}

export function advertisesQuery(layer: LayerDefinition, root: ServiceRoot): boolean {
  const capabilities = layer.capabilities ?? root.capabilities;
  if (capabilities === undefined) return true;
  return listsCapability(capabilities, "query");
}

/** Whether a `capabilities` list ("Query,Create,…", as services give it) names `name`, ignoring case. */
export function listsCapability(capabilities: string, name: string): boolean {
  return capabilities
    .split(",")
    .map((c) => c.trim().toLowerCase())
    .includes(name.toLowerCase());
}

/** Layer kinds that hold rows (group layers and the like hold none). */
export function holdsFeatures(layer: LayerDefinition): boolean {
  return layer.type === undefined || layer.type === "Feature Layer" || layer.type === "Table";
}

export function layerLabel(layer: LayerDefinition): string {
  return layer.name ? `${layer.id} "${layer.name}"` : String(layer.id);
}
