import { type ByteSource, hash32, hex8, pick, prngSource, unit } from "./prng.js";
import { type Expr, evalWhere, fieldsOf, oidBounds, parseWhere, type Value, WhereError } from "./where.js";

export type GeometryType = "esriGeometryPoint" | "esriGeometryPolyline" | "esriGeometryPolygon";
export type Geometry = Record<string, unknown>;
export interface Feature {
  attributes: Record<string, unknown>;
  geometry?: Geometry | null;
}

export interface FieldDef {
  name: string;
  type: string;
  alias: string;
  sqlType: string;
  nullable: boolean;
  editable: boolean;
  length?: number;
  domain: Record<string, unknown> | null;
  defaultValue: unknown;
}

export interface AttachmentRec {
  id: number;
  globalId: string;
  name: string;
  contentType: string;
  size: number;
  keywords: string;
  source: ByteSource;
}

/** One layer or table: its definition (as served) plus where its rows live. */
export interface LayerSpec {
  id: number;
  name: string;
  type: "Feature Layer" | "Table";
  geometryType: GeometryType | null;
  hasZ: boolean;
  hasM: boolean;
  hasAttachments: boolean;
  supportsPagination: boolean;
  maxRecordCount: number;
  objectIdField: string;
  globalIdField: string;
  fields: FieldDef[];
  relationships: Record<string, unknown>[];
  /** Anything else the definition carries (types, templates, drawingInfo, or what addToDefinition sent). */
  extra: Record<string, unknown>;
  store: FeatureStore;
}

export const uuidOf = (key: number, n: number): string => {
  const a = hex8(hash32(key, n, 1));
  const b = hex8(hash32(key, n, 2));
  const c = hex8(hash32(key, n, 3));
  const d = hex8(hash32(key, n, 4));
  return `${a}-${b.slice(0, 4)}-4${b.slice(5, 8)}-${((Number.parseInt(c[0] ?? "8", 16) & 3) | 8).toString(16)}${c.slice(1, 4)}-${c.slice(4)}${d}`;
};

/** A map that tells its owner which key an edit touched (the store's change tracking). */
class TrackedMap<V> extends Map<number, V> {
  constructor(private readonly onEdit?: (key: number, kind: "set" | "delete", isNew: boolean) => void) {
    super();
  }
  override set(key: number, value: V): this {
    const isNew = !this.has(key);
    super.set(key, value);
    this.onEdit?.(key, "set", isNew);
    return this;
  }
  override delete(key: number): boolean {
    const had = super.delete(key);
    if (had) this.onEdit?.(key, "delete", false);
    return had;
  }
}

class TrackedSet extends Set<number> {
  constructor(private readonly onAdd?: (key: number) => void) {
    super();
  }
  override add(key: number): this {
    const isNew = !this.has(key);
    super.add(key);
    if (isNew) this.onAdd?.(key);
    return this;
  }
}

/** Which rows and attachments changed after a generation, as extractChanges reports them. */
export interface LayerChanges {
  inserts: number[];
  updates: number[];
  deletes: number[];
  attachmentAdds: Array<{ parentObjectId: number; attachment: AttachmentRec }>;
  attachmentDeletes: number[];
}

/**
 * Rows of a layer: generated ones (oid 1..baseCount) overlaid with edits. Every edit (however it
 * comes: applyEdits, addAttachment or a test's mutate) advances the layer's `serverGen` and is
 * remembered per row and per attachment, which is what change tracking answers from; changes at
 * or before `minServerGen` are no longer answerable (a test moves it to expire old generations).
 */
export class FeatureStore {
  /** The generation of the latest edit; minServerGen: the oldest one extractChanges still answers from. */
  serverGen = 1;
  minServerGen = 1;
  /** Rows and attachment rows written by edits since the counters were last reset (tests read them). */
  readonly editCounts = {
    rowInserts: 0,
    rowUpdates: 0,
    rowDeletes: 0,
    attachmentAdds: 0,
    attachmentDeletes: 0,
  };
  private readonly rowGen = new Map<number, number>();
  private readonly insertGen = new Map<number, number>();
  private readonly attachmentAddGen = new Map<number, { gen: number; oid: number }>();
  private readonly attachmentDeleteGen = new Map<number, { gen: number; oid: number }>();
  readonly deleted = new TrackedSet((oid) => {
    this.rowGen.set(oid, ++this.serverGen);
    this.editCounts.rowDeletes++;
  });
  readonly updated = new TrackedMap<Feature>((oid, kind) => {
    if (kind === "set") {
      this.rowGen.set(oid, ++this.serverGen);
      this.editCounts.rowUpdates++;
    }
  });
  readonly added = new TrackedMap<Feature>((oid, kind, isNew) => {
    this.rowGen.set(oid, ++this.serverGen);
    if (kind === "set" && isNew) {
      this.insertGen.set(oid, this.serverGen);
      this.editCounts.rowInserts++;
    } else if (kind === "set") this.editCounts.rowUpdates++;
    else this.editCounts.rowDeletes++;
  });
  private readonly attOverlay = new Map<number, AttachmentRec[]>();
  nextOid: number;
  nextAttachmentId = 1_000_000_000;
  lastEditDate: number;

  constructor(
    readonly baseCount: number,
    private readonly gen: (oid: number) => Feature,
    private readonly attGen: (oid: number) => AttachmentRec[],
    created: number,
  ) {
    this.nextOid = baseCount + 1;
    this.lastEditDate = created;
  }

  /** What changed after generation `since`: rows inserted, updated, deleted; attachments added, deleted. */
  changesSince(since: number): LayerChanges {
    const out: LayerChanges = {
      inserts: [],
      updates: [],
      deletes: [],
      attachmentAdds: [],
      attachmentDeletes: [],
    };
    for (const [oid, gen] of this.rowGen) {
      if (gen <= since) continue;
      const insertedAfter = (this.insertGen.get(oid) ?? 0) > since;
      if (this.has(oid)) (insertedAfter ? out.inserts : out.updates).push(oid);
      else if (!insertedAfter) out.deletes.push(oid);
    }
    for (const [id, { gen, oid }] of this.attachmentAddGen) {
      if (gen <= since) continue;
      const attachment = this.attachments(oid).find((a) => a.id === id);
      if (attachment) out.attachmentAdds.push({ parentObjectId: oid, attachment });
    }
    for (const [id, { gen }] of this.attachmentDeleteGen) {
      if (gen > since && (this.attachmentAddGen.get(id)?.gen ?? 0) <= since) out.attachmentDeletes.push(id);
    }
    for (const list of [out.inserts, out.updates, out.deletes, out.attachmentDeletes])
      list.sort((a, b) => a - b);
    return out;
  }

  count(): number {
    return this.baseCount - this.deleted.size + this.added.size;
  }

  has(oid: number): boolean {
    if (this.added.has(oid)) return true;
    return Number.isInteger(oid) && oid >= 1 && oid <= this.baseCount && !this.deleted.has(oid);
  }

  get(oid: number): Feature | undefined {
    if (!this.has(oid)) return undefined;
    return this.added.get(oid) ?? this.updated.get(oid) ?? this.gen(oid);
  }

  /** Object ids in ascending order within [lo, hi]. */
  *oids(lo = 1, hi = Number.POSITIVE_INFINITY): Generator<number> {
    const top = Math.min(hi, this.baseCount);
    for (let oid = Math.max(1, lo); oid <= top; oid++) if (!this.deleted.has(oid)) yield oid;
    if (this.added.size > 0) {
      const extra = [...this.added.keys()].filter((o) => o >= lo && o <= hi).sort((a, b) => a - b);
      yield* extra;
    }
  }

  attachments(oid: number): AttachmentRec[] {
    if (!this.has(oid)) return [];
    const over = this.attOverlay.get(oid);
    if (over) return over;
    return oid <= this.baseCount ? this.attGen(oid) : [];
  }

  setAttachments(oid: number, list: AttachmentRec[]): void {
    const before = this.attachments(oid);
    for (const a of list) {
      if (before.some((b) => b.id === a.id)) continue;
      this.attachmentAddGen.set(a.id, { gen: ++this.serverGen, oid });
      this.editCounts.attachmentAdds++;
    }
    for (const b of before) {
      if (list.some((a) => a.id === b.id)) continue;
      this.attachmentDeleteGen.set(b.id, { gen: ++this.serverGen, oid });
      this.editCounts.attachmentDeletes++;
    }
    this.attOverlay.set(oid, list);
  }

  resetEditCounts(): void {
    for (const key of Object.keys(this.editCounts) as Array<keyof FeatureStore["editCounts"]>) {
      this.editCounts[key] = 0;
    }
  }

  touch(now = Date.now()): void {
    this.lastEditDate = Math.max(now, this.lastEditDate + 1);
  }
}

// ---------------------------------------------------------------------------------------------
// Generated layer definitions

const CATEGORY_NAMES = ["Unknown", "Hydrant", "Valve", "Meter", "Manhole", "Station"];
const STREETS = ["Oak", "Maple", "Cedar", "Pine", "Elm", "Birch", "Harbor", "Mill", "River", "Summit"];

function field(name: string, type: string, opts: Partial<FieldDef> = {}): FieldDef {
  const sqlType =
    type === "esriFieldTypeString"
      ? "sqlTypeNVarchar"
      : type === "esriFieldTypeDouble"
        ? "sqlTypeFloat"
        : "sqlTypeOther";
  return {
    name,
    type,
    alias: opts.alias ?? name.replace(/_/g, " ").replace(/\b\w/g, (c) => c.toUpperCase()),
    sqlType,
    nullable: opts.nullable ?? true,
    editable: opts.editable ?? true,
    ...(opts.length !== undefined ? { length: opts.length } : {}),
    domain: opts.domain ?? null,
    defaultValue: opts.defaultValue ?? null,
  };
}

export function layerFields(): FieldDef[] {
  return [
    field("OBJECTID", "esriFieldTypeOID", { nullable: false, editable: false, alias: "OBJECTID" }),
    field("GlobalID", "esriFieldTypeGlobalID", {
      nullable: false,
      editable: false,
      length: 38,
      alias: "GlobalID",
    }),
    field("name", "esriFieldTypeString", { length: 100 }),
    field("category", "esriFieldTypeSmallInteger", {
      domain: {
        type: "codedValue",
        name: "AssetCategory",
        codedValues: CATEGORY_NAMES.map((name, code) => ({ name, code })),
        mergePolicy: "esriMPTDefaultValue",
        splitPolicy: "esriSPTDefaultValue",
      },
      defaultValue: 0,
    }),
    field("condition", "esriFieldTypeInteger", {
      domain: { type: "range", name: "ConditionScore", range: [0, 100] },
    }),
    field("measure", "esriFieldTypeDouble"),
    field("inspected", "esriFieldTypeDate", { length: 8 }),
    field("notes", "esriFieldTypeString", { length: 1000 }),
    field("created_user", "esriFieldTypeString", { length: 255, editable: false }),
    field("created_date", "esriFieldTypeDate", { length: 8, editable: false }),
    field("last_edited_user", "esriFieldTypeString", { length: 255, editable: false }),
    field("last_edited_date", "esriFieldTypeDate", { length: 8, editable: false }),
  ];
}

export function tableFields(): FieldDef[] {
  return [
    field("OBJECTID", "esriFieldTypeOID", { nullable: false, editable: false, alias: "OBJECTID" }),
    field("GlobalID", "esriFieldTypeGlobalID", {
      nullable: false,
      editable: false,
      length: 38,
      alias: "GlobalID",
    }),
    field("parent_guid", "esriFieldTypeGUID", { length: 38 }),
    field("reading", "esriFieldTypeDouble"),
    field("reading_date", "esriFieldTypeDate", { length: 8 }),
    field("remarks", "esriFieldTypeString", { length: 500 }),
  ];
}

export interface GenContext {
  key: number;
  created: number;
  owner: string;
  /** Extent in web mercator. */
  x0: number;
  y0: number;
  span: number;
}

function round(v: number, d = 2): number {
  const f = 10 ** d;
  return Math.round(v * f) / f;
}

export function genGeometry(
  ctx: GenContext,
  type: GeometryType,
  hasZ: boolean,
  hasM: boolean,
  oid: number,
): Geometry {
  const pt = (j: number): number[] => {
    const x = round(ctx.x0 + unit(ctx.key, oid, j, "x") * ctx.span);
    const y = round(ctx.y0 + unit(ctx.key, oid, j, "y") * ctx.span);
    const out = [x, y];
    if (hasZ) out.push(round(unit(ctx.key, oid, j, "z") * 500, 1));
    if (hasM) out.push(j);
    return out;
  };
  if (type === "esriGeometryPoint") {
    const [x, y, z, m] = pt(0);
    const g: Geometry = { x, y };
    if (hasZ) g.z = z;
    if (hasM) g.m = hasZ ? m : z;
    return g;
  }
  if (type === "esriGeometryPolyline") {
    const n = 2 + pick(3, ctx.key, oid, "n");
    return { paths: [Array.from({ length: n }, (_, j) => pt(j))] };
  }
  const c = pt(0);
  const r = 20 + unit(ctx.key, oid, "r") * 200;
  const cx = c[0] ?? 0;
  const cy = c[1] ?? 0;
  const extra = (j: number) => [...(hasZ ? [c[2] ?? 0] : []), ...(hasM ? [j] : [])];
  const ring = [
    [round(cx - r), round(cy - r), ...extra(0)],
    [round(cx - r), round(cy + r), ...extra(1)],
    [round(cx + r), round(cy + r), ...extra(2)],
    [round(cx + r), round(cy - r), ...extra(3)],
    [round(cx - r), round(cy - r), ...extra(4)],
  ];
  return { rings: [ring] };
}

export function genLayerFeature(
  ctx: GenContext,
  type: GeometryType,
  hasZ: boolean,
  hasM: boolean,
  oid: number,
): Feature {
  const h = hash32(ctx.key, oid);
  const created = ctx.created + (h % 86_400_000) * 3;
  return {
    attributes: {
      OBJECTID: oid,
      GlobalID: uuidOf(ctx.key, oid),
      name: `${STREETS[h % STREETS.length]} ${CATEGORY_NAMES[(h >>> 4) % 6]} ${oid}`,
      category: (h >>> 8) % 6,
      condition: (h >>> 12) % 101,
      measure: round(unit(ctx.key, oid, "m") * 10_000, 3),
      inspected: h % 5 === 0 ? null : created + ((h >>> 3) % 1000) * 86_400_000,
      notes: h % 3 === 0 ? null : `Note ${hex8(h)} — “checked” ✓`,
      created_user: ctx.owner,
      created_date: created,
      last_edited_user: ctx.owner,
      last_edited_date: created,
    },
    geometry: genGeometry(ctx, type, hasZ, hasM, oid),
  };
}

export function genTableRow(ctx: GenContext, parentKey: number, parentCount: number, oid: number): Feature {
  const h = hash32(ctx.key, oid);
  return {
    attributes: {
      OBJECTID: oid,
      GlobalID: uuidOf(ctx.key, oid),
      parent_guid:
        parentCount > 0 ? `{${uuidOf(parentKey, ((oid * 7) % parentCount) + 1).toUpperCase()}}` : null,
      reading: round(unit(ctx.key, oid, "r") * 100, 2),
      reading_date: ctx.created + (h % 10_000) * 60_000,
      remarks: h % 4 === 0 ? null : `Reading ${oid}`,
    },
  };
}

export function genAttachments(key: number, oid: number, maxPerFeature: number): AttachmentRec[] {
  const n = pick(maxPerFeature + 1, key, oid, "att");
  const out: AttachmentRec[] = [];
  for (let j = 0; j < n; j++) {
    const id = (oid - 1) * 8 + j + 1;
    const h = hash32(key, id, "a");
    const pdf = h % 5 === 0;
    const size = h % 41 === 0 ? 0 : h % 53 === 0 ? 3_000_000 + (h % 1000) : 200 + (h % 40_000);
    out.push({
      id,
      globalId: uuidOf(key ^ 0x5a5a, id),
      name: pdf ? `inspection-${oid}-${j}.pdf` : `photo ${oid}_${j}.jpg`,
      contentType: pdf ? "application/pdf" : "image/jpeg",
      size,
      keywords: "",
      source: prngSource(
        hash32(key, id, "bytes"),
        size,
        Buffer.from(pdf ? "%PDF-1.5\n" : "\xff\xd8\xff\xe0", "latin1"),
      ),
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Query

export class QueryError extends Error {
  constructor(
    message: string,
    readonly details: string[] = [],
    readonly code = 400,
  ) {
    super(message);
  }
}

export type Params = Record<string, string | undefined>;

const truthy = (v: string | undefined, dflt: boolean): boolean =>
  v === undefined || v === "" ? dflt : v.toLowerCase() === "true";

function parseOrder(spec: string, layer: LayerSpec): { field: string; desc: boolean }[] {
  return spec
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => {
      const [name = "", dir = "ASC"] = s.split(/\s+/);
      const f = layer.fields.find((x) => x.name.toUpperCase() === name.toUpperCase());
      if (!f)
        throw new QueryError("Unable to complete operation.", [
          `'${name}' is not a valid field for orderByFields.`,
        ]);
      return { field: f.name, desc: dir.toUpperCase() === "DESC" };
    });
}

function getAttr(f: Feature, name: string): Value {
  const direct = f.attributes[name];
  if (direct !== undefined) return direct as Value;
  const up = name.toUpperCase();
  for (const [k, v] of Object.entries(f.attributes)) if (k.toUpperCase() === up) return v as Value;
  return null;
}

/** Object ids that satisfy where + objectIds, in ascending order. */
export function matchOids(layer: LayerSpec, params: Params): number[] {
  const store = layer.store;
  const oidField = layer.objectIdField.toUpperCase();
  let expr: Expr;
  const where = params.where?.trim() || "1=1";
  try {
    expr = parseWhere(where);
  } catch (e) {
    if (e instanceof WhereError)
      throw new QueryError("Unable to complete operation.", ["Invalid query", e.message]);
    throw e;
  }
  const fields = fieldsOf(expr);
  for (const f of fields) {
    if (!layer.fields.some((x) => x.name.toUpperCase() === f))
      throw new QueryError("Unable to complete operation.", [`Invalid field: ${f}`]);
  }
  const onlyOid = [...fields].every((f) => f === oidField);
  const { lo, hi } = oidBounds(expr, oidField);
  let ids: Iterable<number>;
  if (params.objectIds?.trim()) {
    ids = [
      ...new Set(
        params.objectIds
          .split(",")
          .map((s) => Number(s.trim()))
          .filter((n) => Number.isFinite(n)),
      ),
    ]
      .filter((o) => o >= lo && o <= hi && store.has(o))
      .sort((a, b) => a - b);
  } else {
    ids = store.oids(lo, hi);
  }
  const out: number[] = [];
  const trivial = where === "1=1" || where === "1 = 1";
  for (const oid of ids) {
    if (trivial) {
      out.push(oid);
      continue;
    }
    if (onlyOid) {
      if (evalWhere(expr, () => oid)) out.push(oid);
      continue;
    }
    const f = store.get(oid);
    if (f && evalWhere(expr, (name) => getAttr(f, name))) out.push(oid);
  }
  return out;
}

export interface QueryOutcome {
  body: unknown;
  /** Records returned, for request-unit cost. */
  records: number;
  kind: "count" | "ids" | "features";
  geometry: boolean;
}

export function runQuery(
  layer: LayerSpec,
  params: Params,
  spatialReference: Record<string, unknown>,
): QueryOutcome {
  const oids = matchOids(layer, params);
  if (truthy(params.returnCountOnly, false)) {
    return { body: { count: oids.length }, records: 0, kind: "count", geometry: false };
  }
  if (truthy(params.returnIdsOnly, false)) {
    return {
      body: { objectIdFieldName: layer.objectIdField, objectIds: oids },
      records: oids.length,
      kind: "ids",
      geometry: false,
    };
  }
  const store = layer.store;
  const wantsPaging = params.resultOffset !== undefined || params.resultRecordCount !== undefined;
  if (wantsPaging && !layer.supportsPagination) {
    throw new QueryError("Unable to complete operation.", ["Pagination is not supported."]);
  }
  const offset = Math.max(0, Number(params.resultOffset ?? 0) || 0);
  const requested = Number(params.resultRecordCount ?? 0) || layer.maxRecordCount;
  const cap = Math.min(requested, layer.maxRecordCount);
  let ordered = oids;
  if (params.orderByFields?.trim()) {
    const order = parseOrder(params.orderByFields, layer);
    const plain = order.length === 1 && order[0]?.field === layer.objectIdField && !order[0].desc;
    if (!plain) {
      const rows = oids.map((oid) => ({ oid, f: store.get(oid) as Feature }));
      rows.sort((a, b) => {
        for (const o of order) {
          const av = getAttr(a.f, o.field);
          const bv = getAttr(b.f, o.field);
          if (av === bv) continue;
          const c = av === null ? -1 : bv === null ? 1 : av < bv ? -1 : 1;
          return o.desc ? -c : c;
        }
        return a.oid - b.oid;
      });
      ordered = rows.map((r) => r.oid);
    }
  }
  const page = ordered.slice(offset, offset + cap);
  const exceeded = offset + page.length < ordered.length;
  const returnGeometry = layer.geometryType !== null && truthy(params.returnGeometry, true);
  const outFields = (params.outFields ?? "").trim();
  let fieldList: FieldDef[];
  if (outFields === "*") fieldList = layer.fields;
  else if (outFields === "") fieldList = layer.fields.filter((f) => f.name === layer.objectIdField);
  else {
    const wanted = outFields.split(",").map((s) => s.trim().toUpperCase());
    for (const w of wanted) {
      if (!layer.fields.some((f) => f.name.toUpperCase() === w))
        throw new QueryError("Unable to complete operation.", [`Invalid field: ${w}`]);
    }
    fieldList = layer.fields.filter((f) => wanted.includes(f.name.toUpperCase()));
  }
  const features = page.map((oid) => {
    const f = store.get(oid) as Feature;
    const attributes: Record<string, unknown> = {};
    for (const fd of fieldList) attributes[fd.name] = getAttr(f, fd.name);
    return returnGeometry ? { attributes, geometry: f.geometry ?? null } : { attributes };
  });
  const body: Record<string, unknown> = {
    objectIdFieldName: layer.objectIdField,
    uniqueIdField: { name: layer.objectIdField, isSystemMaintained: true },
    globalIdFieldName: layer.globalIdField,
  };
  if (layer.geometryType) {
    body.geometryType = layer.geometryType;
    body.spatialReference = spatialReference;
    if (layer.hasZ) body.hasZ = true;
    if (layer.hasM) body.hasM = true;
  }
  body.fields = fieldList.map((f) => ({
    name: f.name,
    type: f.type,
    alias: f.alias,
    sqlType: f.sqlType,
    ...(f.length !== undefined ? { length: f.length } : {}),
    domain: f.domain,
    defaultValue: f.defaultValue,
  }));
  if (exceeded) body.exceededTransferLimit = true;
  body.features = features;
  return { body, records: features.length, kind: "features", geometry: returnGeometry };
}

export function attachmentInfoJson(a: AttachmentRec, parentGlobalId?: string): Record<string, unknown> {
  return {
    id: a.id,
    globalId: a.globalId,
    ...(parentGlobalId ? { parentGlobalId } : {}),
    name: a.name,
    contentType: a.contentType,
    size: a.size,
    keywords: a.keywords,
    exifInfo: null,
  };
}

/** A row as a query with `outFields=*` answers it (extractChanges sends the same). */
export function featureJson(layer: LayerSpec, oid: number): Record<string, unknown> | undefined {
  const feature = layer.store.get(oid);
  if (!feature) return undefined;
  const attributes: Record<string, unknown> = {};
  for (const field of layer.fields) attributes[field.name] = getAttr(feature, field.name);
  return layer.geometryType ? { attributes, geometry: feature.geometry ?? null } : { attributes };
}
