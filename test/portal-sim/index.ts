/**
 * ArcGIS portal simulator: one org (ArcGIS Online or Enterprise) served over http on loopback.
 *
 *   const sim = await startPortalSim({ size: "tiny", seed: 1 });
 *   sim.orgUrl / sim.sharingUrl            what an admin registers / the Sharing API root
 *   sim.admin, sim.oauthApp                credentials (generateToken, oauth2/token, oauth2/authorize)
 *   sim.model                              ground truth: users, folders, groups, items(), itemDataBuffer(id),
 *                                          metadata(id), thumbnail(id), resources(id), relatedItems(id),
 *                                          features(serviceItemId, layerId), attachments(...)
 *   sim.mutate                             edits that bump `modified` / editingInfo.lastEditDate
 *   sim.stats                              request counts per normalised route ("sharing/search",
 *                                          "services/FeatureServer/:layer/query", "storage/blob", …)
 *   sim.setFaults([...])                   see FaultRule in faults.ts
 *   sim.requestUnits(), sim.otherUsersLoad({ unitsPerMinute })   ArcGIS Online request-unit metering
 *   await sim.close()
 *
 * Layout: Online serves the Sharing API at <orgUrl>/sharing/rest and hosted services at
 * <origin>/<orgId>/arcgis/rest/services/<name>/FeatureServer; Enterprise serves the portal at
 * <origin>/portal/sharing/rest and hosted services at <origin>/server/rest/services/Hosted/<name>/…
 * (its portal id is the fixed "0123456789ABCDEF", as on real Enterprise). Non-hosted map services
 * live at <origin>/ext/arcgis/rest/services/<name>/MapServer. File item data answers 302 to a second
 * "storage" port with a signed, expiring URL that rejects any token or Authorization header.
 * Search pages beyond the 10,000th result fail (searchCeiling "error", default) or come back empty
 * with nextStart -1 ("empty").
 */
import { randomBytes } from "node:crypto";
import { AuthState } from "./auth.js";
import type { OAuthApp, SimContext } from "./context.js";
import { type FaultRule, Faults } from "./faults.js";
import type { Feature } from "./features.js";
import { type SimItem, SimOrg } from "./model.js";
import { bufferSource, hash32 } from "./prng.js";
import { RequestUnits, type RequestUnitsState } from "./request-units.js";
import { SimServers, type Stats } from "./server.js";
import { type OrgShape, resolveShape, type SimSize } from "./shape.js";

export type { FaultRule } from "./faults.js";
export type { Access, SimFolder, SimGroup, SimItem, SimOrg, SimUser } from "./model.js";
export type { ItemKind, OrgShape, SimSize } from "./shape.js";
export { ITEM_KINDS, KINDS, SIZES } from "./shape.js";

export interface PortalSimOptions {
  size?: SimSize;
  seed?: number;
  port?: number;
  kind?: "online" | "enterprise";
  tokenTtlSeconds?: number;
  latencyMs?: number;
  faults?: FaultRule[];
  requestUnitsPerMinute?: number;
  coolOffMs?: number;
  /** The metering window (default 60 s, as Online); tests shorten it with the app's own window. */
  requestUnitsWindowMs?: number;
  /** Counts for custom sizes; `items` replaces the size's item counts entirely. */
  overrides?: Partial<OrgShape>;
  /** Org url key (usernames end in `_<urlKey>`); default `sim<seed>`, `sim<seed>n2`, … per process. */
  urlKey?: string;
  /** What a search page past the 10,000th result does. Default "error". */
  searchCeiling?: "error" | "empty";
  /** Lifetime of signed storage URLs. Default 60 s. */
  storageUrlTtlMs?: number;
}

export interface ItemPatch {
  title?: string;
  snippet?: string | null;
  description?: string | null;
  tags?: string[];
  typeKeywords?: string[];
  access?: SimItem["access"];
  groups?: string[];
  properties?: Record<string, unknown> | null;
  /** New data: a string is JSON text, a Buffer becomes the file. */
  data?: string | Buffer;
  metadata?: string | null;
}

export interface PortalSimMutate {
  editItem(id: string, patch: ItemPatch): SimItem;
  deleteItem(id: string): void;
  setResource(id: string, path: string, data: Buffer | string): void;
  /** Adds n features (copies of the layer's first feature, new ids); returns their object ids. */
  addFeatures(serviceItemId: string, layerId: number, n: number): number[];
  updateFeatures(
    serviceItemId: string,
    layerId: number,
    objectIds: number[],
    attributes?: Record<string, unknown>,
  ): void;
  deleteFeatures(serviceItemId: string, layerId: number, objectIds: number[]): void;
}

export interface PortalSim {
  orgUrl: string;
  sharingUrl: string;
  /** http://127.0.0.1:<storagePort> */
  storageUrl: string;
  kind: "online" | "enterprise";
  admin: { username: string; password: string };
  oauthApp: OAuthApp;
  orgId: string;
  model: SimOrg;
  mutate: PortalSimMutate;
  stats: Pick<Stats, "count" | "byRoute" | "reset">;
  setFaults(rules: FaultRule[]): void;
  otherUsersLoad(options: { unitsPerMinute: number }): {
    stop(): void;
    results(): { ok: number; throttled: number };
  };
  requestUnits(): RequestUnitsState;
  /** Makes every issued access token expire now. */
  expireTokens(): void;
  close(): Promise<void>;
}

const perSeed = new Map<number, number>();

function orgIdFor(urlKey: string, seed: number): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  let s = "";
  for (let i = 0; i < 16; i++) s += alphabet[hash32(seed, urlKey, i) % alphabet.length];
  return s;
}

export async function startPortalSim(options: PortalSimOptions = {}): Promise<PortalSim> {
  const seed = options.seed ?? 1;
  const kind = options.kind ?? "online";
  const size = options.size ?? "small";
  const n = (perSeed.get(seed) ?? 0) + 1;
  perSeed.set(seed, n);
  const urlKey = options.urlKey ?? (n === 1 ? `sim${seed}` : `sim${seed}n${n}`);
  const orgId = kind === "enterprise" ? "0123456789ABCDEF" : orgIdFor(urlKey, seed);
  const faults = new Faults(hash32(seed, urlKey, "faults"));
  faults.set(options.faults ?? []);
  const units =
    kind === "online"
      ? new RequestUnits(
          options.requestUnitsPerMinute ?? 10_000,
          options.coolOffMs ?? 60_000,
          hash32(seed, urlKey, "ru"),
          options.requestUnitsWindowMs ?? 60_000,
        )
      : null;
  const servers = new SimServers({
    latencyMs: options.latencyMs ?? 0,
    faults,
    units,
    port: options.port ?? 0,
  });
  const { port, storagePort } = await servers.listen();
  const origin = `http://127.0.0.1:${port}`;
  const orgUrl = kind === "online" ? origin : `${origin}/portal`;
  const sharingUrl = `${orgUrl}/sharing/rest`;
  const org = new SimOrg({
    seed,
    urlKey,
    orgId,
    shape: resolveShape(size, options.overrides),
    kind,
    servicesUrl:
      kind === "online" ? `${origin}/${orgId}/arcgis/rest/services` : `${origin}/server/rest/services/Hosted`,
    externalServicesUrl: `${origin}/ext/arcgis/rest/services`,
  });
  const oauthApp: OAuthApp = {
    clientId: `simclient${hash32(seed, urlKey, "client").toString(36)}`,
    clientSecret: randomBytes(16).toString("hex"),
    redirectUris: [`${origin}/oauth-callback`],
  };
  const ctx: SimContext = {
    org,
    auth: new AuthState(`${kind === "online" ? "AAST" : "ENT"}${urlKey}.`, options.tokenTtlSeconds ?? 3600),
    kind,
    origin,
    orgUrl,
    sharingUrl,
    storageOrigin: `http://127.0.0.1:${storagePort}`,
    oauthApp,
    storageSecret: randomBytes(32),
    storageUrlTtlMs: options.storageUrlTtlMs ?? 60_000,
    searchCeiling: options.searchCeiling ?? "error",
    cache: new Map(),
  };
  servers.attach(ctx);

  const loads = new Set<NodeJS.Timeout>();

  const layerOf = (serviceItemId: string, layerId: number) => {
    const i = org.indexOf(serviceItemId);
    if (i === null) throw new Error(`no item ${serviceItemId}`);
    org.pinService(i);
    const l = org.layer(i, layerId);
    if (!l) throw new Error(`no layer ${layerId} in ${serviceItemId}`);
    return l;
  };

  const mutate: PortalSimMutate = {
    editItem(id, patch) {
      const i = org.indexOf(id);
      if (i === null) throw new Error(`no item ${id}`);
      const rec = org.editable(i);
      const { data, metadata, ...fields } = patch;
      Object.assign(rec, fields);
      if (patch.groups && rec.access === "private" && patch.groups.length > 0 && !patch.access)
        rec.access = "shared";
      if (typeof data === "string") org.setItemData(i, { kind: "json", text: data });
      else if (data) {
        const prev = org.itemData(i);
        org.setItemData(i, {
          kind: "file",
          source: bufferSource(data),
          filename: prev.kind === "file" ? prev.filename : (rec.name ?? "data.bin"),
          contentType: prev.kind === "file" ? prev.contentType : "application/octet-stream",
        });
      }
      if (metadata !== undefined) org.setMetadata(i, metadata);
      org.touch(i);
      return rec;
    },
    deleteItem(id) {
      const i = org.indexOf(id);
      if (i === null) throw new Error(`no item ${id}`);
      org.deleteIndex(i);
    },
    setResource(id, path, data) {
      const i = org.indexOf(id);
      if (i === null) throw new Error(`no item ${id}`);
      org.putResource(i, path, Buffer.isBuffer(data) ? data : Buffer.from(data));
      org.touch(i);
    },
    addFeatures(serviceItemId, layerId, count) {
      const l = layerOf(serviceItemId, layerId);
      const first = l.store.oids().next();
      const template: Feature | undefined = first.done ? undefined : l.store.get(first.value);
      const now = Date.now();
      const out: number[] = [];
      for (let k = 0; k < count; k++) {
        const oid = l.store.nextOid++;
        const attributes: Record<string, unknown> = { ...(template?.attributes ?? {}) };
        attributes[l.objectIdField] = oid;
        if (l.globalIdField) attributes[l.globalIdField] = org.newGlobalId();
        if ("name" in attributes) attributes.name = `Added ${oid}`;
        if ("created_date" in attributes) {
          attributes.created_date = now;
          attributes.last_edited_date = now;
        }
        l.store.added.set(oid, { attributes, geometry: template?.geometry ?? null });
        out.push(oid);
      }
      l.store.touch(now);
      return out;
    },
    updateFeatures(serviceItemId, layerId, objectIds, attributes = {}) {
      const l = layerOf(serviceItemId, layerId);
      const now = Date.now();
      for (const oid of objectIds) {
        const f = l.store.get(oid);
        if (!f) continue;
        const next: Feature = {
          attributes: {
            ...f.attributes,
            ...attributes,
            ...("last_edited_date" in f.attributes ? { last_edited_date: now } : {}),
          },
          geometry: f.geometry,
        };
        if (l.store.added.has(oid)) l.store.added.set(oid, next);
        else l.store.updated.set(oid, next);
      }
      l.store.touch(now);
    },
    deleteFeatures(serviceItemId, layerId, objectIds) {
      const l = layerOf(serviceItemId, layerId);
      for (const oid of objectIds) {
        if (l.store.added.has(oid)) l.store.added.delete(oid);
        else if (l.store.has(oid)) l.store.deleted.add(oid);
      }
      l.store.touch();
    },
  };

  return {
    orgUrl,
    sharingUrl,
    storageUrl: ctx.storageOrigin,
    kind,
    admin: { username: org.admin.username, password: org.admin.password },
    oauthApp,
    orgId,
    model: org,
    mutate,
    stats: servers.stats,
    setFaults: (rules) => faults.set(rules),
    otherUsersLoad({ unitsPerMinute }) {
      let ok = 0;
      let throttled = 0;
      const tick = 100;
      const per = unitsPerMinute / (60_000 / tick);
      let carry = 0;
      const timer = setInterval(() => {
        if (!units) return;
        carry += per;
        const spend = Math.floor(carry);
        if (spend <= 0) return;
        carry -= spend;
        if (units.spend(spend)) ok++;
        else throttled++;
      }, tick);
      timer.unref();
      loads.add(timer);
      return {
        stop() {
          clearInterval(timer);
          loads.delete(timer);
        },
        results: () => ({ ok, throttled }),
      };
    },
    requestUnits: () =>
      units?.state() ?? {
        usage: 0,
        max: Number.POSITIVE_INFINITY,
        lockedUntil: null,
        lockouts: 0,
        lockedMs: 0,
      },
    expireTokens: () => ctx.auth.expireAll(),
    async close() {
      for (const t of loads) clearInterval(t);
      loads.clear();
      await servers.close();
    },
  };
}
