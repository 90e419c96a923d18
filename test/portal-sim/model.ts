import { Readable } from "node:stream";
import {
  type AttachmentRec,
  type Feature,
  FeatureStore,
  type GenContext,
  type GeometryType,
  genAttachments,
  genLayerFeature,
  genTableRow,
  type LayerSpec,
  layerFields,
  tableFields,
  uuidOf,
} from "./features.js";
import { makePng } from "./png.js";
import {
  type ByteSource,
  bufferSource,
  hash32,
  hex8,
  pick,
  prngSource,
  Rng,
  sourceBuffer,
  sourceStream,
  unit,
} from "./prng.js";
import { ITEM_KINDS, type ItemKind, KINDS, type OrgShape } from "./shape.js";

export const BASE_EPOCH = Date.UTC(2019, 0, 1);
const SPAN_MS = 5 * 365 * 86_400_000;
const DAY = 86_400_000;

export type Role = "org_admin" | "org_publisher" | "org_user";
export type Access = "private" | "shared" | "org" | "public";

export const ADMIN_PRIVILEGES = [
  "features:user:edit",
  "portal:admin:assignToGroups",
  "portal:admin:categorizeItems",
  "portal:admin:changeUserRoles",
  "portal:admin:createUpdateCapableGroup",
  "portal:admin:deleteGroups",
  "portal:admin:deleteItems",
  "portal:admin:deleteUsers",
  "portal:admin:disableUsers",
  "portal:admin:inviteUsers",
  "portal:admin:manageCredits",
  "portal:admin:manageEnterpriseGroups",
  "portal:admin:manageLicenses",
  "portal:admin:manageRoles",
  "portal:admin:manageSecurity",
  "portal:admin:manageServers",
  "portal:admin:manageUtilityServices",
  "portal:admin:manageWebhooks",
  "portal:admin:reassignGroups",
  "portal:admin:reassignItems",
  "portal:admin:reassignUsers",
  "portal:admin:shareToGroup",
  "portal:admin:shareToOrg",
  "portal:admin:shareToPublic",
  "portal:admin:updateGroups",
  "portal:admin:updateItemCategorySchema",
  "portal:admin:updateItems",
  "portal:admin:updateMemberCategorySchema",
  "portal:admin:updateUsers",
  "portal:admin:viewGroups",
  "portal:admin:viewItems",
  "portal:admin:viewUsers",
  "portal:publisher:publishFeatures",
  "portal:publisher:publishTiles",
  "portal:publisher:publishVectorTiles",
  "portal:user:createGroup",
  "portal:user:createItem",
  "portal:user:joinGroup",
  "portal:user:shareGroupToOrg",
  "portal:user:shareToGroup",
  "portal:user:shareToOrg",
  "portal:user:shareToPublic",
  "portal:user:viewOrgGroups",
  "portal:user:viewOrgItems",
  "portal:user:viewOrgUsers",
];
const PUBLISHER_PRIVILEGES = ADMIN_PRIVILEGES.filter((p) => !p.startsWith("portal:admin:"));
const CREATOR_PRIVILEGES = PUBLISHER_PRIVILEGES.filter((p) => !p.startsWith("portal:publisher:"));
const VIEWER_PRIVILEGES = [
  "portal:user:joinGroup",
  "portal:user:viewOrgGroups",
  "portal:user:viewOrgItems",
  "portal:user:viewOrgUsers",
];

/** What a member of a built-in role and user type may do. */
function privilegesOf(role: Role, userType: "creatorUT" | "viewerUT"): string[] {
  if (role === "org_admin") return ADMIN_PRIVILEGES;
  if (role === "org_publisher") return PUBLISHER_PRIVILEGES;
  return userType === "viewerUT" ? VIEWER_PRIVILEGES : CREATOR_PRIVILEGES;
}

export interface SimUser {
  username: string;
  password: string;
  fullName: string;
  firstName: string;
  lastName: string;
  email: string;
  role: Role;
  userType: "creatorUT" | "viewerUT";
  privileges: string[];
  created: number;
  modified: number;
  lastLogin: number;
  description: string | null;
  tags: string[];
  /** Can own content (viewers cannot). */
  canOwn: boolean;
  canPublish: boolean;
}

/** An invitation to join the org (`portals/self/invite`), pending until accepted. */
export interface SimInvitation {
  id: string;
  username: string;
  email: string;
  role: string;
  userLicenseType: string;
  fullname: string;
  created: number;
  expiration: number;
}

export interface SimFolder {
  id: string;
  title: string;
  username: string;
  created: number;
}

export interface SimGroup {
  id: string;
  title: string;
  owner: string;
  description: string;
  snippet: string;
  tags: string[];
  access: "private" | "org" | "public";
  created: number;
  modified: number;
  isInvitationOnly: boolean;
  isViewOnly: boolean;
  /** username → memberType */
  members: Map<string, "owner" | "admin" | "member">;
  /** Settings a generated group leaves at the portal's defaults (createGroup/update set them). */
  sortField?: string;
  sortOrder?: "asc" | "desc";
  autoJoin?: boolean;
  membershipAccess?: "org" | "collaboration" | "none";
  capabilities?: string[];
  protected?: boolean;
  /** The group's thumbnail (served at community/groups/{id}/info/<name>). */
  thumbnail?: { name: string; data: Buffer } | null;
  /** The group's own content category schema (community/groups/{id}/categorySchema). */
  categorySchema?: CategoryNode[];
}

/** A custom role of the org (portals/self/roles). */
export interface SimRole {
  id: string;
  name: string;
  description: string;
  created: number;
  modified: number;
  privileges: string[];
}

/** A node of a category schema: a tree of titled categories. */
export interface CategoryNode {
  title: string;
  description?: string;
  categories?: CategoryNode[];
}

export interface SimItem {
  index: number;
  kind: ItemKind | null;
  id: string;
  owner: string;
  orgId: string;
  created: number;
  modified: number;
  name: string | null;
  title: string;
  type: string;
  typeKeywords: string[];
  description: string | null;
  tags: string[];
  snippet: string | null;
  thumbnail: string | null;
  extent: number[][];
  spatialReference: string | null;
  accessInformation: string | null;
  licenseInfo: string | null;
  culture: string;
  properties: Record<string, unknown> | null;
  url: string | null;
  access: Access;
  groups: string[];
  size: number;
  folderId: string | null;
  protected: boolean;
  numViews: number;
  categories: string[];
}

export type ItemData =
  | { kind: "none" }
  | { kind: "json"; text: string }
  | { kind: "file"; source: ByteSource; filename: string; contentType: string };

export interface ResourceEntry {
  resource: string;
  created: number;
  size: number;
  access: "inherit" | "private";
  source: ByteSource;
}

export interface Relationship {
  type: string;
  origin: number;
  dest: number;
}

export interface ServiceDef {
  itemIndex: number;
  name: string;
  kind: "FeatureServer" | "MapServer" | "VectorTileServer";
  isView: boolean;
  sourceIndex: number | null;
  layers: LayerSpec[];
  tables: LayerSpec[];
  relationships: Record<string, unknown>[];
  maxRecordCount: number;
  capabilities: string;
  syncEnabled: boolean;
  description: string;
  spatialReference: Record<string, unknown>;
  extent: Record<string, unknown>;
  created: number;
  /** Parameters from createService, kept verbatim. */
  extra: Record<string, unknown>;
}

const WORDS = [
  "Harbor",
  "Riverside",
  "Northgate",
  "Lakeview",
  "Summit",
  "Westfield",
  "Cedar",
  "Granite",
  "Meadow",
  "Pinecrest",
  "Stonebridge",
  "Willow",
  "Eastside",
  "Highland",
  "Bayfront",
  "Oakridge",
];
const TOPICS = [
  "Parks",
  "Water",
  "Streets",
  "Parcels",
  "Zoning",
  "Trees",
  "Hydrants",
  "Bridges",
  "Trails",
  "Schools",
  "Permits",
  "Wetlands",
];
const FIRST = [
  "Ada",
  "Bo",
  "Chen",
  "Dana",
  "Eli",
  "Fatima",
  "Gus",
  "Hana",
  "Ivo",
  "Jo",
  "Kai",
  "Lena",
  "Mo",
  "Nia",
];
const LAST = [
  "Park",
  "Silva",
  "Novak",
  "Okafor",
  "Lindqvist",
  "Moreau",
  "Tanaka",
  "Reyes",
  "Kowalski",
  "Haddad",
];

/** Awkward resource names a backup must round-trip. */
const AWKWARD_RESOURCES = [
  "images/photo 1.jpg",
  "données/carte été.json",
  "图片/地图.png",
  "config/..settings.json",
  "weird/..%2Fnot-a-parent.txt",
  "weird/.. /dots.txt",
  `long/${"very-long-resource-name-".repeat(9)}end.txt`,
  "a/b/c/d/deep nested file.txt",
];

export interface OrgInit {
  seed: number;
  urlKey: string;
  orgId: string;
  shape: OrgShape;
  kind: "online" | "enterprise";
  /** Base URL of hosted services (e.g. http://127.0.0.1:7090/<orgId>/arcgis/rest/services). */
  servicesUrl: string;
  /** Base URL of non-hosted (external) services. */
  externalServicesUrl: string;
}

interface Counts {
  offsets: Record<ItemKind, number>;
  counts: Record<ItemKind, number>;
  total: number;
}

const SERVICE_KINDS: ItemKind[] = ["featureService", "view", "mapService", "vectorTile"];

/**
 * The org's ground truth. Base items are a pure function of (seed, index) with a compact index
 * in typed arrays for search; anything edited or added is kept as a full record.
 */
export class SimOrg {
  readonly seed: number;
  readonly urlKey: string;
  readonly orgId: string;
  readonly shape: OrgShape;
  readonly kind: "online" | "enterprise";
  readonly servicesUrl: string;
  readonly externalServicesUrl: string;
  readonly users: SimUser[] = [];
  readonly folders: SimFolder[] = [];
  readonly groups: SimGroup[] = [];
  /** Custom roles; none are generated (tests add them). */
  readonly roles: SimRole[] = [];
  /** The org's content category schema; empty unless a test or assignCategorySchema sets it. */
  categorySchema: CategoryNode[] = [];
  readonly admin: SimUser;
  /** Invitations sent and not yet accepted (an Online org's `portals/self/invite`). */
  readonly invitations: SimInvitation[] = [];
  /** Bumped on every change; caches key on it. */
  version = 0;

  private readonly key: number;
  private readonly layout: Counts;
  readonly baseCount: number;
  // compact index of base items
  private readonly kindArr: Uint8Array;
  private readonly ownerArr: Uint16Array;
  private readonly folderArr: Int16Array;
  private readonly accessArr: Uint8Array;
  private readonly createdArr: Float64Array;
  private readonly modifiedArr: Float64Array;
  private readonly groupArr: Int16Array; // 2 per item, -1 = none
  // overlays
  private readonly records = new Map<number, SimItem>();
  private readonly deleted = new Set<number>();
  private readonly addedIds = new Map<string, number>();
  private nextIndex: number;
  private readonly dataOverride = new Map<number, ItemData>();
  private readonly metadataOverride = new Map<number, string | null>();
  private readonly thumbOverride = new Map<number, Buffer | null>();
  private readonly resourceOverride = new Map<number, ResourceEntry[]>();
  readonly relationships: Relationship[] = [];
  private readonly relByIndex = new Map<number, Relationship[]>();
  private readonly pinnedServices = new Map<number, ServiceDef>();
  private readonly serviceCache = new Map<number, ServiceDef>();
  private readonly createdServiceNames = new Map<string, number>();
  private readonly rng: Rng;
  private readonly userByName = new Map<string, number>();
  private readonly groupById = new Map<string, SimGroup>();
  private readonly folderById = new Map<string, SimFolder>();
  private readonly userGroupsCache = new Map<string, string[]>();
  private readonly foldersByUser = new Map<string, SimFolder[]>();

  constructor(init: OrgInit) {
    this.seed = init.seed;
    this.urlKey = init.urlKey;
    this.orgId = init.orgId;
    this.shape = init.shape;
    this.kind = init.kind;
    this.servicesUrl = init.servicesUrl;
    this.externalServicesUrl = init.externalServicesUrl;
    this.key = hash32(init.seed, init.urlKey);
    this.rng = new Rng(hash32(this.key, "writes"));
    this.genUsers();
    this.admin = this.users[0] as SimUser;
    this.genGroups();

    const counts = {} as Record<ItemKind, number>;
    const offsets = {} as Record<ItemKind, number>;
    let total = 0;
    for (const k of ITEM_KINDS) {
      offsets[k] = total;
      counts[k] = Math.max(0, Math.floor(init.shape.items[k] ?? 0));
      total += counts[k];
    }
    this.layout = { counts, offsets, total };
    this.baseCount = total;
    this.nextIndex = total;
    this.kindArr = new Uint8Array(total);
    this.ownerArr = new Uint16Array(total);
    this.folderArr = new Int16Array(total);
    this.accessArr = new Uint8Array(total);
    this.createdArr = new Float64Array(total);
    this.modifiedArr = new Float64Array(total);
    this.groupArr = new Int16Array(total * 2);
    this.genIndex();
    this.genRelationships();
  }

  // -------------------------------------------------------------------------------------------
  // generation

  private genUsers(): void {
    const mk = (username: string, role: Role, userType: "creatorUT" | "viewerUT", n: number): SimUser => {
      const first = FIRST[pick(FIRST.length, this.key, n, "f")] ?? "Ada";
      const last = LAST[pick(LAST.length, this.key, n, "l")] ?? "Park";
      const created = BASE_EPOCH - DAY * (30 + pick(300, this.key, n, "uc"));
      const privileges = privilegesOf(role, userType);
      return {
        username,
        password: `pw-${username}`,
        fullName: `${first} ${last}`,
        firstName: first,
        lastName: last,
        email: `${username}@example.invalid`,
        role,
        userType,
        privileges,
        created,
        modified: created + DAY,
        lastLogin: BASE_EPOCH + SPAN_MS - pick(100, this.key, n, "ll") * DAY,
        description: n % 2 === 0 ? null : `Member ${n} of ${this.urlKey}`,
        tags: [],
        canOwn: userType === "creatorUT",
        canPublish: role !== "org_user",
      };
    };
    this.users.push(mk(`admin_${this.urlKey}`, "org_admin", "creatorUT", 0));
    for (let p = 1; p <= this.shape.publishers; p++)
      this.users.push(mk(`publisher${p}_${this.urlKey}`, "org_publisher", "creatorUT", p));
    for (let v = 1; v <= this.shape.viewers; v++) {
      const creator = v % 2 === 0;
      this.users.push(
        mk(
          `${creator ? "creator" : "viewer"}${v}_${this.urlKey}`,
          "org_user",
          creator ? "creatorUT" : "viewerUT",
          1000 + v,
        ),
      );
    }
    this.users.forEach((u, i) => {
      this.userByName.set(u.username.toLowerCase(), i);
      if (!u.canOwn) return;
      for (let f = 0; f < this.shape.foldersPerUser; f++) {
        const folder: SimFolder = {
          id:
            hex8(hash32(this.key, i, f, 1)) +
            hex8(hash32(this.key, i, f, 2)) +
            hex8(hash32(this.key, i, f, 3)) +
            hex8(hash32(this.key, i, f, 4)),
          title: f === 1 ? `Données été ${f}` : `${TOPICS[pick(TOPICS.length, this.key, i, f)]} ${f}`,
          username: u.username,
          created: u.created + DAY * (f + 1),
        };
        this.folders.push(folder);
        this.folderById.set(folder.id, folder);
      }
    });
  }

  private genGroups(): void {
    const owners = this.users.filter((u) => u.canPublish);
    for (let g = 0; g < this.shape.groups; g++) {
      const owner = owners[pick(owners.length, this.key, g, "go")] ?? this.users[0];
      if (!owner) break;
      const members = new Map<string, "owner" | "admin" | "member">();
      members.set(owner.username, "owner");
      this.users.forEach((u, i) => {
        if (u === owner) return;
        const r = unit(this.key, g, i, "gm");
        if (r < 0.45 || (i === 0 && g % 2 === 0)) members.set(u.username, r < 0.08 ? "admin" : "member");
      });
      const created = BASE_EPOCH + pick(200, this.key, g, "gc") * DAY;
      const group: SimGroup = {
        id: this.idFor(hash32(this.key, g, "group")),
        title: `${WORDS[g % WORDS.length]} ${TOPICS[pick(TOPICS.length, this.key, g, "gt")]} Group ${g + 1}`,
        owner: owner.username,
        description: `Group ${g + 1} of ${this.urlKey}`,
        snippet: `Sharing group ${g + 1}`,
        tags: ["sim", TOPICS[g % TOPICS.length] ?? "x"],
        access: (["private", "org", "public"] as const)[g % 3] ?? "org",
        created,
        modified: created + DAY,
        isInvitationOnly: g % 2 === 0,
        isViewOnly: g % 4 === 3,
        members,
      };
      this.groups.push(group);
      this.groupById.set(group.id, group);
    }
  }

  private idFor(h: number): string {
    return hex8(h) + hex8(fmixPair(h, 1)) + hex8(fmixPair(h, 2)) + hex8(fmixPair(h, 3));
  }

  private genIndex(): void {
    const owners = this.users.map((u, i) => ({ u, i })).filter((x) => x.u.canOwn);
    const publishers = owners.filter((x) => x.u.canPublish);
    const foldersByUser = new Map<string, number>();
    for (const f of this.folders) foldersByUser.set(f.username, (foldersByUser.get(f.username) ?? 0) + 1);
    const groupsOf = new Map<string, number[]>();
    this.groups.forEach((g, gi) => {
      for (const name of g.members.keys()) {
        const list = groupsOf.get(name) ?? [];
        list.push(gi);
        groupsOf.set(name, list);
      }
    });
    for (let k = 0; k < ITEM_KINDS.length; k++) {
      const kind = ITEM_KINDS[k] as ItemKind;
      const off = this.layout.offsets[kind];
      const pool = SERVICE_KINDS.includes(kind) ? publishers : owners;
      for (let j = 0; j < this.layout.counts[kind]; j++) {
        const i = off + j;
        const h = hash32(this.key, i, "item");
        this.kindArr[i] = k;
        const owner = pool[h % pool.length] ?? owners[0];
        this.ownerArr[i] = owner?.i ?? 0;
        const nf = foldersByUser.get(owner?.u.username ?? "") ?? 0;
        this.folderArr[i] = nf > 0 && (h >>> 4) % 2 === 0 ? (h >>> 5) % nf : -1;
        const created = BASE_EPOCH + Math.floor(unit(this.key, i, "created") * SPAN_MS * 0.9);
        this.createdArr[i] = created;
        this.modifiedArr[i] = Math.min(
          BASE_EPOCH + SPAN_MS,
          created + Math.floor(unit(this.key, i, "mod") * 200 * DAY),
        );
        const ownerGroups = groupsOf.get(owner?.u.username ?? "") ?? [];
        const a = (h >>> 8) % 10;
        let access: Access = a < 3 ? "private" : a < 5 ? "shared" : a < 8 ? "org" : "public";
        if (access === "shared" && ownerGroups.length === 0) access = "private";
        this.accessArr[i] = ACCESS.indexOf(access);
        let g1 = -1;
        let g2 = -1;
        if (ownerGroups.length > 0 && (access === "shared" || (h >>> 12) % 4 === 0)) {
          g1 = ownerGroups[(h >>> 14) % ownerGroups.length] ?? -1;
          if ((h >>> 20) % 3 === 0) {
            const other = ownerGroups[(h >>> 22) % ownerGroups.length] ?? -1;
            if (other !== g1) g2 = other;
          }
        }
        this.groupArr[2 * i] = g1;
        this.groupArr[2 * i + 1] = g2;
      }
    }
  }

  private nth(kind: ItemKind, j: number): number | null {
    const n = this.layout.counts[kind];
    if (n === 0) return null;
    return this.layout.offsets[kind] + (((j % n) + n) % n);
  }

  private genRelationships(): void {
    const c = this.layout.counts;
    for (let j = 0; j < c.form; j++) {
      const fs = this.nth("featureService", j);
      if (fs !== null) this.addRel("Survey2Service", this.nth("form", j) as number, fs);
    }
    for (let j = 0; j < c.featureService; j++) {
      const src = j % 2 === 0 ? this.nth("csv", j) : this.nth("fgdb", j);
      if (src !== null) this.addRel("Service2Data", this.nth("featureService", j) as number, src);
    }
    for (let j = 0; j < c.view; j++) {
      const fs = this.nth("featureService", j);
      if (fs !== null) this.addRel("Service2Service", fs, this.nth("view", j) as number);
    }
    for (let j = 0; j < c.webMap; j += 3) {
      const ms = this.nth("mapService", j);
      if (ms !== null) this.addRel("Map2Service", this.nth("webMap", j) as number, ms);
    }
    for (let j = 0; j < c.webApp; j += 2) {
      const code = this.nth("code", j);
      if (code !== null) this.addRel("WMA2Code", this.nth("webApp", j) as number, code);
    }
  }

  private addRel(type: string, origin: number, dest: number): Relationship {
    const r = { type, origin, dest };
    this.relationships.push(r);
    for (const i of [origin, dest]) {
      const list = this.relByIndex.get(i) ?? [];
      list.push(r);
      this.relByIndex.set(i, list);
    }
    return r;
  }

  // -------------------------------------------------------------------------------------------
  // lookups

  user(username: string): SimUser | undefined {
    const i = this.userByName.get(username.toLowerCase());
    return i === undefined ? undefined : this.users[i];
  }

  group(id: string): SimGroup | undefined {
    return this.groupById.get(id);
  }

  folder(id: string): SimFolder | undefined {
    return this.folderById.get(id);
  }

  foldersOf(username: string): SimFolder[] {
    let list = this.foldersByUser.get(username);
    if (!list) {
      list = this.folders.filter((f) => f.username === username);
      this.foldersByUser.set(username, list);
    }
    return list;
  }

  folderIdAt(i: number): string | null {
    const rec = this.records.get(i);
    if (rec) return rec.folderId;
    const n = this.folderArr[i] ?? -1;
    if (n < 0) return null;
    return this.foldersOf(this.users[this.ownerArr[i] ?? 0]?.username ?? "")[n]?.id ?? null;
  }

  /** Group ids the user belongs to. */
  groupsOfUser(username: string): string[] {
    const cached = this.userGroupsCache.get(username);
    if (cached) return cached;
    const list = this.groups.filter((g) => g.members.has(username)).map((g) => g.id);
    this.userGroupsCache.set(username, list);
    return list;
  }

  baseIdOf(i: number): string {
    const a = hash32(this.key, i, "id1");
    const b = hash32(this.key, i, "id2");
    const c = hash32(this.key, i, "id3");
    const mask = hash32(this.key, a, b, c);
    return hex8(a) + hex8(b) + hex8(c) + hex8((i ^ mask) >>> 0);
  }

  indexOf(id: string): number | null {
    if (!/^[0-9a-f]{32}$/.test(id)) return null;
    const added = this.addedIds.get(id);
    if (added !== undefined) return this.deleted.has(added) ? null : added;
    const a = Number.parseInt(id.slice(0, 8), 16);
    const b = Number.parseInt(id.slice(8, 16), 16);
    const c = Number.parseInt(id.slice(16, 24), 16);
    const i = (Number.parseInt(id.slice(24), 16) ^ hash32(this.key, a, b, c)) >>> 0;
    if (i >= this.baseCount || this.deleted.has(i) || this.baseIdOf(i) !== id) return null;
    return i;
  }

  /** Number of live items. */
  itemCount(): number {
    return this.nextIndex - this.deleted.size;
  }

  /** Live item indices, base items first, then added ones. */
  *indices(): Generator<number> {
    for (let i = 0; i < this.nextIndex; i++) {
      if (this.deleted.has(i)) continue;
      if (i >= this.baseCount && !this.records.has(i)) continue;
      yield i;
    }
  }

  *items(): Generator<SimItem> {
    for (const i of this.indices()) yield this.itemAt(i);
  }

  item(id: string): SimItem | undefined {
    const i = this.indexOf(id);
    return i === null ? undefined : this.itemAt(i);
  }

  kindAt(i: number): ItemKind | null {
    const rec = this.records.get(i);
    if (rec) return rec.kind;
    return ITEM_KINDS[this.kindArr[i] ?? 0] ?? null;
  }

  /** Fast fields for search without materialising the item. */
  fast(i: number): {
    owner: string;
    created: number;
    modified: number;
    access: Access;
    kind: ItemKind | null;
  } {
    const rec = this.records.get(i);
    if (rec)
      return {
        owner: rec.owner,
        created: rec.created,
        modified: rec.modified,
        access: rec.access,
        kind: rec.kind,
      };
    return {
      owner: this.users[this.ownerArr[i] ?? 0]?.username ?? "",
      created: this.createdArr[i] ?? 0,
      modified: this.modifiedArr[i] ?? 0,
      access: ACCESS[this.accessArr[i] ?? 0] ?? "private",
      kind: ITEM_KINDS[this.kindArr[i] ?? 0] ?? null,
    };
  }

  groupsAt(i: number): string[] {
    const rec = this.records.get(i);
    if (rec) return rec.groups;
    const out: string[] = [];
    for (const g of [this.groupArr[2 * i], this.groupArr[2 * i + 1]]) {
      if (g !== undefined && g >= 0) {
        const id = this.groups[g]?.id;
        if (id) out.push(id);
      }
    }
    return out;
  }

  itemAt(i: number): SimItem {
    const rec = this.records.get(i);
    if (rec) return rec;
    return this.buildBase(i);
  }

  private titleOf(i: number, kind: ItemKind): string {
    const info = KINDS[kind];
    const w = WORDS[pick(WORDS.length, this.key, i, "t1")];
    const t = TOPICS[pick(TOPICS.length, this.key, i, "t2")];
    const s = info.titleWords[pick(info.titleWords.length, this.key, i, "t3")];
    return `${w} ${t} ${s} ${i + 1}`;
  }

  serviceNameOf(i: number, kind: ItemKind): string {
    const w = WORDS[pick(WORDS.length, this.key, i, "t1")];
    const t = TOPICS[pick(TOPICS.length, this.key, i, "t2")];
    return `${w}_${t}_${kind === "view" ? "view_" : ""}${i}`;
  }

  private serviceUrlOf(i: number, kind: ItemKind): string | null {
    if (kind === "featureService" || kind === "view")
      return `${this.servicesUrl}/${this.serviceNameOf(i, kind)}/FeatureServer`;
    if (kind === "vectorTile") return `${this.servicesUrl}/${this.serviceNameOf(i, kind)}/VectorTileServer`;
    if (kind === "mapService") return `${this.externalServicesUrl}/${this.serviceNameOf(i, kind)}/MapServer`;
    return null;
  }

  /** j-th item of its kind. */
  private ordinal(i: number, kind: ItemKind): number {
    return i - this.layout.offsets[kind];
  }

  fileSizeOf(i: number, kind: ItemKind): number {
    if (KINDS[kind].data !== "file") return 0;
    if (this.shape.bigFileBytes > 0 && i === this.bigFileIndex()) return this.shape.bigFileBytes;
    const max = Math.max(64, this.shape.fileBytes);
    return 64 + pick(max - 63, this.key, i, "size");
  }

  bigFileIndex(): number | null {
    return this.nth("fgdb", 0) ?? this.nth("pdf", 0);
  }

  private buildBase(i: number): SimItem {
    const kind = ITEM_KINDS[this.kindArr[i] ?? 0] as ItemKind;
    const info = KINDS[kind];
    const h = hash32(this.key, i, "item");
    const title = this.titleOf(i, kind);
    const owner = this.users[this.ownerArr[i] ?? 0]?.username ?? "";
    const folderN = this.folderArr[i] ?? -1;
    const folderId = folderN >= 0 ? (this.foldersOf(owner)[folderN]?.id ?? null) : null;
    const j = this.ordinal(i, kind);
    const typeKeywords = [...info.typeKeywords];
    if (kind === "featureService") {
      typeKeywords.push(this.layerCountOf(i) > 1 ? "Multilayer" : "Singlelayer");
      if (j % 3 === 0) typeKeywords.push("Sync");
    }
    if (kind === "view") typeKeywords.push("Singlelayer");
    if (kind === "form") typeKeywords.push(`Survey123 Connect v3.${j % 20}`);
    const url = this.serviceUrlOf(i, kind);
    let name: string | null = null;
    if (url) name = this.serviceNameOf(i, kind);
    else if (info.data === "file") name = this.fileNameOf(i, kind);
    let size = -1;
    if (info.data === "file") size = this.fileSizeOf(i, kind);
    else if (info.data === "json") {
      const d = this.baseData(i, kind);
      size = d.kind === "json" ? Buffer.byteLength(d.text) : 0;
    }
    const cx = -122 + unit(this.key, i, "cx") * 10;
    const cy = 37 + unit(this.key, i, "cy") * 5;
    const thumbStyle = h % 7;
    return {
      index: i,
      kind,
      id: this.baseIdOf(i),
      owner,
      orgId: this.orgId,
      created: this.createdArr[i] ?? 0,
      modified: this.modifiedArr[i] ?? 0,
      name,
      title,
      type: info.type,
      typeKeywords,
      description: h % 4 === 0 ? null : `<div>Description of <b>${title}</b> — “${kind}” ✓</div>`,
      tags: [TOPICS[h % TOPICS.length] ?? "x", WORDS[(h >>> 3) % WORDS.length] ?? "y", "sim"],
      snippet: h % 5 === 0 ? null : `Summary of ${title}`,
      thumbnail:
        thumbStyle === 0
          ? null
          : thumbStyle === 1
            ? "thumbnail/ago_downloaded.png"
            : "thumbnail/thumbnail.png",
      extent:
        kind === "pdf" || kind === "code"
          ? []
          : [
              [Math.round(cx * 1e4) / 1e4, Math.round(cy * 1e4) / 1e4],
              [Math.round((cx + 0.5) * 1e4) / 1e4, Math.round((cy + 0.4) * 1e4) / 1e4],
            ],
      spatialReference: url ? "102100" : null,
      accessInformation: h % 3 === 0 ? null : `© ${this.urlKey}`,
      licenseInfo: h % 3 === 1 ? null : "<p>CC BY 4.0</p>",
      culture: "en-us",
      properties: kind === "webApp" ? { source: "instant-apps" } : null,
      url,
      access: ACCESS[this.accessArr[i] ?? 0] ?? "private",
      groups: this.groupsAt(i),
      size,
      folderId,
      protected: h % 11 === 0,
      numViews: h % 5000,
      categories: [],
    };
  }

  private fileNameOf(i: number, kind: ItemKind): string {
    const info = KINDS[kind];
    const base = this.titleOf(i, kind).replace(/\s+/g, "_");
    return `${base}.${info.ext ?? "bin"}`;
  }

  // -------------------------------------------------------------------------------------------
  // item content

  private layerCountOf(i: number): number {
    return 1 + pick(3, this.key, i, "layers");
  }

  private baseData(i: number, kind: ItemKind): ItemData {
    const info = KINDS[kind];
    const j = this.ordinal(i, kind);
    const ref = (k: ItemKind, n: number) => {
      const x = this.nth(k, n);
      return x === null ? null : this.baseIdOf(x);
    };
    if (info.data === "file") {
      const size = this.fileSizeOf(i, kind);
      const filename = this.fileNameOf(i, kind);
      const source =
        kind === "csv"
          ? csvSource(hash32(this.key, i, "csv"), size)
          : prngSource(hash32(this.key, i, "data"), size, Buffer.from(info.magic ?? "", "latin1"));
      return { kind: "file", source, filename, contentType: info.contentType ?? "application/octet-stream" };
    }
    if (info.data === "none") return { kind: "none" };
    let obj: unknown;
    switch (kind) {
      case "webMap": {
        const layers: unknown[] = [];
        const n = 1 + pick(3, this.key, i, "wm");
        for (let k = 0; k < n; k++) {
          const fs = this.nth("featureService", j * 3 + k);
          if (fs === null) break;
          const url = this.serviceUrlOf(fs, "featureService");
          layers.push({
            id: `layer-${hex8(hash32(this.key, i, k))}`,
            title: this.titleOf(fs, "featureService"),
            url: `${url}/0`,
            itemId: this.baseIdOf(fs),
            layerType: "ArcGISFeatureLayer",
            visibility: true,
            opacity: 1,
            popupInfo: { title: "{name}", fieldInfos: [{ fieldName: "name", label: "Name", visible: true }] },
          });
        }
        const ms = j % 3 === 0 ? this.nth("mapService", j) : null;
        if (ms !== null)
          layers.push({
            id: `ms-${hex8(hash32(this.key, i, "ms"))}`,
            title: this.titleOf(ms, "mapService"),
            url: this.serviceUrlOf(ms, "mapService"),
            itemId: this.baseIdOf(ms),
            layerType: "ArcGISMapServiceLayer",
            visibility: true,
            opacity: 0.8,
          });
        obj = {
          operationalLayers: layers,
          baseMap: {
            baseMapLayers: [
              {
                id: "World_Topo_Map",
                layerType: "ArcGISTiledMapServiceLayer",
                url: "https://services.arcgisonline.com/ArcGIS/rest/services/World_Topo_Map/MapServer",
                visibility: true,
                opacity: 1,
              },
            ],
            title: "Topographic",
          },
          spatialReference: { wkid: 102100, latestWkid: 3857 },
          authoringApp: "ArcGISMapViewer",
          authoringAppVersion: "2024.1",
          version: "2.31",
        };
        break;
      }
      case "webApp":
        obj = {
          source: "0123456789abcdef0123456789abcdef",
          folderId: null,
          values: { webmap: ref("webMap", j), title: this.titleOf(i, kind), theme: "light" },
        };
        break;
      case "dashboard":
        obj = {
          version: 27,
          widgets: [
            { type: "mapWidget", id: "w1", itemId: ref("webMap", j), mapTools: [{ type: "legendTool" }] },
            {
              type: "indicatorWidget",
              id: "w2",
              datasets: [
                {
                  type: "serviceDataset",
                  dataSource: {
                    type: "featureServiceDataSource",
                    itemId: ref("featureService", j),
                    layerId: 0,
                  },
                },
              ],
            },
          ],
          headerPanel: { type: "headerPanel", title: this.titleOf(i, kind) },
          theme: "dark",
        };
        break;
      case "storyMap": {
        const root = `n-${hex8(hash32(this.key, i, "root")).slice(0, 6)}`;
        obj = {
          root,
          nodes: {
            [root]: { type: "story", data: { storyTheme: "r-theme" }, children: ["n-cover", "n-map"] },
            "n-cover": { type: "storycover", data: { type: "minimal", title: this.titleOf(i, kind) } },
            "n-map": { type: "webmap", data: { map: "r-map" } },
          },
          resources: {
            "r-map": {
              type: "webmap",
              data: { itemId: ref("webMap", j), itemType: "Web Map", type: "default" },
            },
            "r-theme": { type: "story-theme", data: { themeId: "summit" } },
            "r-img": { type: "image", data: { resourceId: "images/photo 1.jpg", provider: "item-resource" } },
          },
        };
        break;
      }
      case "featureService":
        if (j % 2 === 1) return { kind: "none" };
        obj = {
          layers: Array.from({ length: this.layerCountOf(i) }, (_, id) => ({
            id,
            popupInfo: {
              title: "{name}",
              fieldInfos: [{ fieldName: "condition", label: "Condition", visible: true }],
            },
            layerDefinition: { defaultVisibility: true },
          })),
        };
        break;
      default:
        return { kind: "none" };
    }
    return { kind: "json", text: JSON.stringify(obj) };
  }

  itemData(i: number): ItemData {
    const over = this.dataOverride.get(i);
    if (over) return over;
    const kind = this.kindAt(i);
    if (i >= this.baseCount || !kind) return { kind: "none" };
    return this.baseData(i, kind);
  }

  /** Ground truth of an item's data as bytes (null when it has none). */
  itemDataBuffer(id: string): Buffer | null {
    const i = this.indexOf(id);
    if (i === null) return null;
    const d = this.itemData(i);
    if (d.kind === "none") return null;
    if (d.kind === "json") return Buffer.from(d.text);
    return sourceBuffer(d.source);
  }

  itemDataStream(id: string): Readable | null {
    const i = this.indexOf(id);
    if (i === null) return null;
    const d = this.itemData(i);
    if (d.kind === "none") return null;
    if (d.kind === "json") return Readable.from([Buffer.from(d.text)]);
    return sourceStream(d.source);
  }

  metadataAt(i: number): string | null {
    if (this.metadataOverride.has(i)) return this.metadataOverride.get(i) ?? null;
    if (i >= this.baseCount) return null;
    if (hash32(this.key, i, "meta") % 5 === 0) return null;
    const it = this.itemAt(i);
    return `<?xml version="1.0" encoding="UTF-8"?>\n<metadata xml:lang="en"><Esri><CreaDate>${new Date(it.created).toISOString().slice(0, 10).replace(/-/g, "")}</CreaDate><ArcGISFormat>1.0</ArcGISFormat><ArcGISProfile>ISO19139</ArcGISProfile></Esri><dataIdInfo><idCitation><resTitle>${escapeXml(it.title)}</resTitle></idCitation><idAbs>${escapeXml(it.snippet ?? "")}</idAbs><searchKeys>${it.tags.map((t) => `<keyword>${escapeXml(t)}</keyword>`).join("")}</searchKeys></dataIdInfo><mdFileID>${it.id}</mdFileID></metadata>\n`;
  }

  metadata(id: string): string | null {
    const i = this.indexOf(id);
    return i === null ? null : this.metadataAt(i);
  }

  thumbnailAt(i: number): Buffer | null {
    if (this.thumbOverride.has(i)) return this.thumbOverride.get(i) ?? null;
    if (!this.itemAt(i).thumbnail) return null;
    return makePng(hash32(this.key, i, "thumb"), 8 + (i % 3) * 8);
  }

  thumbnail(id: string): Buffer | null {
    const i = this.indexOf(id);
    return i === null ? null : this.thumbnailAt(i);
  }

  resourcesAt(i: number): ResourceEntry[] {
    const over = this.resourceOverride.get(i);
    if (over) return over;
    if (i >= this.baseCount) return [];
    const kind = this.kindAt(i);
    const h = hash32(this.key, i, "res");
    const max = this.shape.resourcesPerItem;
    if (max <= 0 || !kind) return [];
    const has =
      kind === "storyMap" ||
      kind === "vectorTile" ||
      kind === "dashboard" ||
      (kind === "webApp" && h % 2 === 0) ||
      h % 10 === 0;
    if (!has) return [];
    const names: string[] = [];
    if (kind === "storyMap") names.push("draft.json", "published_data.json");
    if (kind === "vectorTile") names.push("styles/root.json", "info/root.json");
    if (kind === "webApp") names.push("config/settings.json");
    const n = 1 + (h % max);
    for (let k = 0; names.length < n + 1 && k < AWKWARD_RESOURCES.length * 2; k++) {
      const pickName = AWKWARD_RESOURCES[(h + k * 3) % AWKWARD_RESOURCES.length] ?? "x.txt";
      if (!names.includes(pickName)) names.push(pickName);
    }
    const created = this.createdArr[i] ?? BASE_EPOCH;
    return names.slice(0, Math.max(n, 1)).map((resource, k) => {
      const rh = hash32(this.key, i, resource);
      const isJson = resource.endsWith(".json");
      const size = isJson ? 0 : 16 + (rh % 30_000);
      const source: ByteSource = isJson
        ? bufferSource(
            Buffer.from(JSON.stringify({ resource, item: this.baseIdOf(i), n: rh % 1000, note: "été ✓" })),
          )
        : prngSource(rh, size, Buffer.from(resource.endsWith(".png") ? "\x89PNG" : "", "latin1"));
      return { resource, created: created + k * 1000, size: source.size, access: "inherit" as const, source };
    });
  }

  resources(id: string): ResourceEntry[] {
    const i = this.indexOf(id);
    return i === null ? [] : this.resourcesAt(i);
  }

  resourceBuffer(id: string, path: string): Buffer | null {
    const r = this.resources(id).find((x) => x.resource === path);
    return r ? sourceBuffer(r.source) : null;
  }

  relationshipsOf(i: number): Relationship[] {
    return (this.relByIndex.get(i) ?? []).filter(
      (r) => !this.deleted.has(r.origin) && !this.deleted.has(r.dest),
    );
  }

  /** Relationships as ids, for tests. */
  relatedItems(id: string): { type: string; originId: string; destId: string }[] {
    const i = this.indexOf(id);
    if (i === null) return [];
    return this.relationshipsOf(i).map((r) => ({
      type: r.type,
      originId: this.itemAt(r.origin).id,
      destId: this.itemAt(r.dest).id,
    }));
  }

  // -------------------------------------------------------------------------------------------
  // services

  /** Item index of the service with this name and server type. */
  serviceIndex(name: string, server: string): number | null {
    const created = this.createdServiceNames.get(name.toLowerCase());
    if (created !== undefined) return this.deleted.has(created) ? null : created;
    const m = /_(\d+)$/.exec(name);
    if (!m) return null;
    const i = Number(m[1]);
    if (i >= this.baseCount || this.deleted.has(i)) return null;
    const kind = this.kindAt(i);
    if (!kind || this.serviceNameOf(i, kind) !== name) return null;
    const expected =
      kind === "featureService" || kind === "view"
        ? "FeatureServer"
        : kind === "mapService"
          ? "MapServer"
          : kind === "vectorTile"
            ? "VectorTileServer"
            : "";
    return expected === server ? i : null;
  }

  service(i: number): ServiceDef | null {
    const pinned = this.pinnedServices.get(i);
    if (pinned) return pinned;
    const kind = this.kindAt(i);
    if (i >= this.baseCount || !kind) return null;
    if (kind === "view") return this.buildView(i);
    const cached = this.serviceCache.get(i);
    if (cached) {
      this.serviceCache.delete(i);
      this.serviceCache.set(i, cached);
      return cached;
    }
    const def = this.buildService(i, kind);
    if (!def) return null;
    this.serviceCache.set(i, def);
    if (this.serviceCache.size > 300) {
      const oldest = this.serviceCache.keys().next().value;
      if (oldest !== undefined) this.serviceCache.delete(oldest);
    }
    return def;
  }

  /** Keeps a service's definition and rows alive (it is about to be edited). */
  pinService(i: number): ServiceDef | null {
    const def = this.service(i);
    if (!def) return null;
    if (def.isView && def.sourceIndex !== null) {
      this.pinService(def.sourceIndex);
      return def;
    }
    this.pinnedServices.set(i, def);
    this.serviceCache.delete(i);
    return def;
  }

  private buildService(i: number, kind: ItemKind): ServiceDef | null {
    if (kind !== "featureService" && kind !== "mapService" && kind !== "vectorTile") return null;
    const item = this.itemAt(i);
    const j = this.ordinal(i, kind);
    const h = hash32(this.key, i, "svc");
    const sr = { wkid: 102100, latestWkid: 3857 };
    const x0 = -13_600_000 + unit(this.key, i, "x0") * 500_000;
    const y0 = 4_500_000 + unit(this.key, i, "y0") * 400_000;
    const span = 20_000 + unit(this.key, i, "span") * 50_000;
    const extent = { xmin: x0, ymin: y0, xmax: x0 + span, ymax: y0 + span, spatialReference: sr };
    const base: Omit<ServiceDef, "layers" | "tables" | "relationships"> = {
      itemIndex: i,
      name: this.serviceNameOf(i, kind),
      kind:
        kind === "featureService"
          ? "FeatureServer"
          : kind === "mapService"
            ? "MapServer"
            : "VectorTileServer",
      isView: false,
      sourceIndex: null,
      maxRecordCount: kind === "featureService" ? (j === 0 || j % 2 === 1 ? 1000 : 2000) : 1000,
      capabilities:
        kind === "featureService"
          ? j % 3 === 0
            ? "Create,Delete,Query,Update,Editing,Sync,Extract"
            : "Create,Delete,Query,Update,Editing"
          : kind === "mapService"
            ? "Map,Query,Data"
            : "TilesOnly",
      syncEnabled: kind === "featureService" && j % 3 === 0,
      description: `Service for ${item.title}`,
      spatialReference: sr,
      extent,
      created: item.created,
      extra: {},
    };
    if (kind !== "featureService") return { ...base, layers: [], tables: [], relationships: [] };
    const nLayers = this.layerCountOf(i);
    const nTables = j === 0 || h % 3 === 0 ? 1 : 0;
    const hasZ = h % 5 === 1;
    const hasM = h % 7 === 2;
    const supportsPagination = j % 6 !== 1;
    const layers: LayerSpec[] = [];
    const geomTypes: GeometryType[] = ["esriGeometryPoint", "esriGeometryPolyline", "esriGeometryPolygon"];
    for (let l = 0; l < nLayers; l++) {
      const gtype = geomTypes[(h + l) % 3] ?? "esriGeometryPoint";
      const lkey = hash32(this.key, i, l, "layer");
      const count =
        l === 0 && j === 0 && this.shape.bigLayerFeatures > 0
          ? this.shape.bigLayerFeatures
          : pick(this.shape.featuresPerLayer + 1, lkey, "count");
      const ctx: GenContext = { key: lkey, created: item.created, owner: item.owner, x0, y0, span };
      const hasAttachments = l === 0 && (j === 0 || h % 2 === 0);
      const store = new FeatureStore(
        count,
        (oid) => genLayerFeature(ctx, gtype, hasZ, hasM, oid),
        (oid) => (hasAttachments ? genAttachments(lkey, oid, this.shape.attachmentsPerFeature) : []),
        item.created,
      );
      layers.push({
        id: l,
        name: `${TOPICS[(h + l) % TOPICS.length]}_${gtype.replace("esriGeometry", "")}`,
        type: "Feature Layer",
        geometryType: gtype,
        hasZ,
        hasM,
        hasAttachments,
        supportsPagination,
        maxRecordCount: base.maxRecordCount,
        objectIdField: "OBJECTID",
        globalIdField: "GlobalID",
        fields: SHARED_LAYER_FIELDS,
        relationships: [],
        extra: {},
        store,
      });
    }
    const tables: LayerSpec[] = [];
    const relationships: Record<string, unknown>[] = [];
    for (let t = 0; t < nTables; t++) {
      const id = nLayers + t;
      const tkey = hash32(this.key, i, id, "table");
      const parent = layers[0] as LayerSpec;
      const count = pick(Math.floor(this.shape.featuresPerLayer / 2) + 1, tkey, "count");
      const ctx: GenContext = { key: tkey, created: item.created, owner: item.owner, x0, y0, span };
      const parentKey = hash32(this.key, i, 0, "layer");
      const parentCount = parent.store.baseCount;
      const store = new FeatureStore(
        count,
        (oid) => genTableRow(ctx, parentKey, parentCount, oid),
        () => [],
        item.created,
      );
      const relId = t;
      parent.relationships.push({
        id: relId,
        name: `${parent.name}_readings`,
        relatedTableId: id,
        cardinality: "esriRelCardinalityOneToMany",
        role: "esriRelRoleOrigin",
        keyField: "GlobalID",
        composite: true,
      });
      tables.push({
        id,
        name: "Readings",
        type: "Table",
        geometryType: null,
        hasZ: false,
        hasM: false,
        hasAttachments: false,
        supportsPagination,
        maxRecordCount: base.maxRecordCount,
        objectIdField: "OBJECTID",
        globalIdField: "GlobalID",
        fields: SHARED_TABLE_FIELDS,
        relationships: [
          {
            id: relId,
            name: `${parent.name}_readings`,
            relatedTableId: parent.id,
            cardinality: "esriRelCardinalityOneToMany",
            role: "esriRelRoleDestination",
            keyField: "parent_guid",
            composite: true,
          },
        ],
        extra: {},
        store,
      });
      relationships.push({ id: relId, name: `${parent.name}_readings` });
    }
    return { ...base, layers, tables, relationships };
  }

  private buildView(i: number): ServiceDef | null {
    const j = this.ordinal(i, "view");
    const src = this.nth("featureService", j);
    if (src === null || this.deleted.has(src)) return null;
    const source = this.service(src);
    if (!source) return null;
    const item = this.itemAt(i);
    // a view exposes the source's first layer, same rows, maybe fewer fields
    const l0 = source.layers[0];
    if (!l0) return null;
    const restrict = j % 2 === 1;
    const layer: LayerSpec = {
      ...l0,
      fields: restrict ? l0.fields.filter((f) => !["notes", "measure"].includes(f.name)) : l0.fields,
      relationships: [],
      extra: { ...l0.extra, viewDefinitionQuery: restrict ? "condition > 10" : "" },
    };
    return {
      ...source,
      itemIndex: i,
      name: this.serviceNameOf(i, "view"),
      isView: true,
      sourceIndex: src,
      layers: [layer],
      tables: [],
      relationships: [],
      capabilities: "Query",
      syncEnabled: false,
      description: `View of ${this.itemAt(src).title}`,
      created: item.created,
    };
  }

  layer(i: number, layerId: number): LayerSpec | null {
    const def = this.service(i);
    if (!def) return null;
    return [...def.layers, ...def.tables].find((l) => l.id === layerId) ?? null;
  }

  /** Live features of a layer in object-id order (ground truth). */
  *features(serviceItemId: string, layerId: number): Generator<Feature> {
    const i = this.indexOf(serviceItemId);
    if (i === null) return;
    const l = this.layer(i, layerId);
    if (!l) return;
    for (const oid of l.store.oids()) {
      const f = l.store.get(oid);
      if (f) yield f;
    }
  }

  attachments(serviceItemId: string, layerId: number, oid: number): AttachmentRec[] {
    const i = this.indexOf(serviceItemId);
    if (i === null) return [];
    return this.layer(i, layerId)?.store.attachments(oid) ?? [];
  }

  // -------------------------------------------------------------------------------------------
  // writes

  newId(): string {
    let id: string;
    do id = this.rng.hex(32);
    while (this.indexOf(id) !== null || this.addedIds.has(id));
    return id;
  }

  /** Materialises an item into an editable record. */
  editable(i: number): SimItem {
    let rec = this.records.get(i);
    if (!rec) {
      rec = this.buildBase(i);
      this.records.set(i, rec);
      if (!this.dataOverride.has(i) && rec.kind) this.dataOverride.set(i, this.baseData(i, rec.kind));
    }
    this.version++;
    return rec;
  }

  touch(i: number, when = Date.now()): void {
    const rec = this.editable(i);
    rec.modified = Math.max(when, rec.modified + 1);
    if (i < this.baseCount) this.modifiedArr[i] = rec.modified;
  }

  addItemRecord(fields: Partial<SimItem> & { owner: string; title: string; type: string }): SimItem {
    const i = this.nextIndex++;
    const id = fields.id ?? this.newId();
    const now = Date.now();
    const rec: SimItem = {
      index: i,
      kind: null,
      id,
      orgId: this.orgId,
      created: now,
      modified: now,
      name: null,
      typeKeywords: [],
      description: null,
      tags: [],
      snippet: null,
      thumbnail: null,
      extent: [],
      spatialReference: null,
      accessInformation: null,
      licenseInfo: null,
      culture: "en-us",
      properties: null,
      url: null,
      access: "private",
      groups: [],
      size: 0,
      folderId: null,
      protected: false,
      numViews: 0,
      categories: [],
      ...fields,
    };
    rec.index = i;
    rec.id = id;
    this.records.set(i, rec);
    this.addedIds.set(id, i);
    this.version++;
    return rec;
  }

  setItemData(i: number, data: ItemData): void {
    this.editable(i);
    this.dataOverride.set(i, data);
    const rec = this.editable(i);
    rec.size =
      data.kind === "json"
        ? Buffer.byteLength(data.text)
        : data.kind === "file"
          ? data.source.size
          : rec.size;
  }

  setMetadata(i: number, xml: string | null): void {
    this.editable(i);
    this.metadataOverride.set(i, xml);
  }

  setThumbnail(i: number, png: Buffer | null, name = "thumbnail/thumbnail.png"): void {
    const rec = this.editable(i);
    this.thumbOverride.set(i, png);
    rec.thumbnail = png ? name : null;
  }

  putResource(i: number, path: string, data: Buffer, access: "inherit" | "private" = "inherit"): void {
    const list = [...this.resourcesAt(i)].filter((r) => r.resource !== path);
    list.push({ resource: path, created: Date.now(), size: data.length, access, source: bufferSource(data) });
    this.resourceOverride.set(i, list);
    this.editable(i);
  }

  removeResource(i: number, path: string): boolean {
    const list = this.resourcesAt(i);
    const next = list.filter((r) => r.resource !== path);
    this.resourceOverride.set(i, next);
    this.editable(i);
    return next.length !== list.length;
  }

  deleteIndex(i: number): void {
    this.deleted.add(i);
    this.pinnedServices.delete(i);
    this.serviceCache.delete(i);
    this.version++;
  }

  addRelationship(type: string, origin: number, dest: number): void {
    if (this.relationshipsOf(origin).some((r) => r.type === type && r.origin === origin && r.dest === dest))
      return;
    this.addRel(type, origin, dest);
    this.version++;
  }

  /** A new group owned by `owner` (its owner is its first member). */
  addGroup(fields: Omit<SimGroup, "id" | "created" | "modified" | "members">): SimGroup {
    const now = Date.now();
    const group: SimGroup = {
      ...fields,
      id: this.newId(),
      created: now,
      modified: now,
      members: new Map([[fields.owner, "owner"]]),
    };
    this.groups.push(group);
    this.groupById.set(group.id, group);
    this.userGroupsCache.clear();
    this.version++;
    return group;
  }

  /** A group's member list changed: caches of who sees what are stale. */
  membersChanged(): void {
    this.userGroupsCache.clear();
    this.version++;
  }

  /** A new member of the org (an accepted invitation, an account an Enterprise admin adds). */
  addMember(spec: {
    username: string;
    email: string;
    fullName: string;
    role: string;
    userType: string;
  }): SimUser {
    const role: Role = ["org_admin", "org_publisher"].includes(spec.role) ? (spec.role as Role) : "org_user";
    const userType: SimUser["userType"] = spec.userType === "viewerUT" ? "viewerUT" : "creatorUT";
    const [firstName = spec.fullName, ...rest] = spec.fullName.split(" ");
    const now = Date.now();
    const user: SimUser = {
      username: spec.username,
      password: `pw-${spec.username}`,
      fullName: spec.fullName,
      firstName,
      lastName: rest.join(" "),
      email: spec.email,
      role,
      userType,
      privileges: privilegesOf(role, userType),
      created: now,
      modified: now,
      lastLogin: now,
      description: null,
      tags: [],
      canOwn: userType === "creatorUT",
      canPublish: role !== "org_user",
    };
    this.users.push(user);
    this.userByName.set(user.username.toLowerCase(), this.users.length - 1);
    this.version++;
    return user;
  }

  /** Tests: the invitee accepts; they become a member under the invited username. */
  acceptInvitation(username: string): SimUser {
    const index = this.invitations.findIndex((i) => i.username.toLowerCase() === username.toLowerCase());
    const invitation = this.invitations[index];
    if (!invitation) throw new Error(`no pending invitation for ${username}`);
    this.invitations.splice(index, 1);
    return this.addMember({
      username: invitation.username,
      email: invitation.email,
      fullName: invitation.fullname,
      role: invitation.role,
      userType: invitation.userLicenseType,
    });
  }

  addRole(name: string, description: string, privileges: string[] = []): SimRole {
    const now = Date.now();
    const role: SimRole = {
      id: this.newId().slice(0, 16),
      name,
      description,
      created: now,
      modified: now,
      privileges,
    };
    this.roles.push(role);
    this.version++;
    return role;
  }

  createFolder(username: string, title: string): SimFolder {
    const folder: SimFolder = { id: this.newId(), title, username, created: Date.now() };
    this.folders.push(folder);
    this.folderById.set(folder.id, folder);
    this.foldersByUser.delete(username);
    this.version++;
    return folder;
  }

  isServiceNameTaken(name: string): boolean {
    const lower = name.toLowerCase();
    if (this.createdServiceNames.has(lower)) return true;
    const m = /_(\d+)$/.exec(name);
    if (!m) return false;
    const i = Number(m[1]);
    const kind = i < this.baseCount ? this.kindAt(i) : null;
    return !!kind && !this.deleted.has(i) && this.serviceNameOf(i, kind).toLowerCase() === lower;
  }

  registerService(i: number, def: ServiceDef): void {
    this.pinnedServices.set(i, def);
    this.createdServiceNames.set(def.name.toLowerCase(), i);
    this.version++;
  }

  /**
   * Turns change tracking on or off for a hosted feature service (its `ChangeTracking` capability,
   * as the ArcGIS Online setting "Keep track of changes to the data" does).
   */
  setChangeTracking(i: number, on: boolean): void {
    const def = this.pinService(i);
    if (!def) throw new Error(`no service at index ${i}`);
    const others = def.capabilities.split(",").filter((c) => c.trim() && c.trim() !== "ChangeTracking");
    def.capabilities = [...others, ...(on ? ["ChangeTracking"] : [])].join(",");
  }

  newStore(created = Date.now()): FeatureStore {
    return new FeatureStore(
      0,
      () => ({ attributes: {} }),
      () => [],
      created,
    );
  }

  newGlobalId(): string {
    return uuidOf(hash32(this.key, "gid"), Math.floor(this.rng.next() * 2 ** 31));
  }

  nextRandom(): number {
    return this.rng.next();
  }
}

const ACCESS: Access[] = ["private", "shared", "org", "public"];
const SHARED_LAYER_FIELDS = layerFields();
const SHARED_TABLE_FIELDS = tableFields();

function fmixPair(h: number, n: number): number {
  return hash32(h, n, "id");
}

function escapeXml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** CSV bytes with fixed-width rows so any byte range can be produced directly. */
function csvSource(key: number, size: number): ByteSource {
  const header = Buffer.from("id,name,x,y\n");
  const ROW = 48;
  const row = (r: number): Buffer => {
    const h = hash32(key, r);
    const x = (-122 + (h % 100000) / 10000).toFixed(4);
    const y = (37 + ((h >>> 8) % 100000) / 20000).toFixed(4);
    const line = `${String(r + 1).padStart(8, "0")},site_${hex8(h)},${x},${y}`;
    return Buffer.from(`${line.padEnd(ROW - 1, " ")}\n`);
  };
  return {
    size,
    read(offset, out) {
      for (let k = 0; k < out.length; ) {
        const pos = offset + k;
        if (pos < header.length) {
          out[k++] = header[pos] ?? 0;
          continue;
        }
        const r = Math.floor((pos - header.length) / ROW);
        const within = (pos - header.length) % ROW;
        const line = row(r);
        const n = Math.min(ROW - within, out.length - k);
        line.copy(out, k, within, within + n);
        k += n;
      }
    },
  };
}
