import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Caller, Handler, SimContext } from "./context.js";
import { signStorage } from "./context.js";
import { type FaultRule, type Faults, globToRegExp } from "./faults.js";
import { contentTypeOf, ERR, errorBody, type ParsedRequest, parseRequest, type Reply } from "./http.js";
import { bearer, generateToken, oauthAuthorize, oauthToken } from "./oauth.js";
import * as os from "./org-structure.js";
import { sourceStream } from "./prng.js";
import type { RequestUnits } from "./request-units.js";
import * as svc from "./services.js";
import * as sh from "./sharing.js";
import * as wr from "./sharing-write.js";

interface Route {
  re: RegExp;
  /** Normalised name for stats and fault matching; `$n` is replaced by the n-th capture. */
  key: string;
  handler: Handler;
  /** Skip token validation (token endpoints). */
  noToken?: boolean;
  /** Feature/map service route: request units apply. */
  service?: boolean;
}

const ITEM_ACTIONS =
  "update|delete|share|unshare|addResources|updateResources|removeResources|updateinfo|addPart|commit|status";
const USER_ACTIONS = "addItem|createFolder|shareItems|addRelationship|createService";

function sharingRoutes(): Route[] {
  const r = (re: string, key: string, handler: Handler, extra: Partial<Route> = {}): Route => ({
    re: new RegExp(`^${re}$`),
    key: `sharing/${key}`,
    handler,
    ...extra,
  });
  const action: Record<string, Handler> = {
    update: wr.updateItem,
    delete: wr.deleteItem,
    share: wr.shareItem,
    unshare: wr.unshareItem,
    addResources: wr.addResources,
    updateResources: wr.addResources,
    removeResources: wr.removeResources,
    updateinfo: wr.updateInfo,
    addPart: wr.addPart,
    commit: wr.commitUpload,
    status: wr.itemStatus,
    addItem: wr.addItem,
    createFolder: wr.createFolder,
    shareItems: wr.shareItems,
    addRelationship: wr.addRelationship,
    createService: wr.createService,
  };
  const byAction =
    (idx: number): Handler =>
    (ctx, req, caller, m) => {
      const h = action[m[idx] ?? ""];
      return h ? h(ctx, req, caller, m) : ERR.notFound();
    };
  return [
    r("info", "info", sh.info, { noToken: true }),
    r("generateToken", "generateToken", generateToken, { noToken: true }),
    r("oauth2/token/?", "oauth2/token", oauthToken, { noToken: true }),
    r("oauth2/authorize/?", "oauth2/authorize", oauthAuthorize, { noToken: true }),
    r("portals/self/users/search", "portals/self/users/search", sh.portalUsersSearch),
    r("portals/self/users", "portals/self/users", sh.portalUsers),
    r(
      "portals/self/isServiceNameAvailable",
      "portals/self/isServiceNameAvailable",
      wr.isServiceNameAvailable,
    ),
    r("portals/self/roles", "portals/self/roles", os.listRoles),
    r("portals/self/roles/([^/]+)/privileges", "portals/self/roles/:id/privileges", os.rolePrivileges),
    r(
      "portals/self/roles/([^/]+)/setPrivileges",
      "portals/self/roles/:id/setPrivileges",
      os.setRolePrivileges,
    ),
    r("portals/self/createRole", "portals/self/createRole", os.createRole),
    r("portals/self/categorySchema", "portals/self/categorySchema", os.orgCategorySchema),
    r("portals/self/invite", "portals/self/invite", os.invite),
    r("portals/self/invitations", "portals/self/invitations", os.listInvitations),
    r("portals/self/assignCategorySchema", "portals/self/assignCategorySchema", os.assignOrgCategorySchema),
    r("portals/([^/]+)", "portals/self", sh.portalSelf),
    r("community/createGroup", "community/createGroup", os.createGroup),
    r("community/groups/([^/]+)/update", "community/groups/:id/update", os.updateGroup),
    r("community/groups/([^/]+)/addUsers", "community/groups/:id/addUsers", os.addUsers),
    r("community/groups/([^/]+)/info/(.+)", "community/groups/:id/info", os.groupThumbnail),
    r(
      "community/groups/([^/]+)/categorySchema",
      "community/groups/:id/categorySchema",
      os.groupCategorySchema,
    ),
    r(
      "community/groups/([^/]+)/assignCategorySchema",
      "community/groups/:id/assignCategorySchema",
      os.assignGroupCategorySchema,
    ),
    r("content/updateItems", "content/updateItems", os.updateItems),
    r("community/self", "community/self", sh.communitySelf),
    r("community/users", "community/users", sh.communityUsers),
    r("community/users/([^/]+)", "community/users/:u", sh.communityUser),
    r("community/groups", "community/groups", sh.communityGroups),
    r("community/groups/([^/]+)/users", "community/groups/:id/users", sh.communityGroupUsers),
    r("community/groups/([^/]+)", "community/groups/:id", sh.communityGroup),
    r("search", "search", sh.search),
    r("content/groups/([^/]+)(?:/search)?", "content/groups/:id", sh.groupContent),
    r("content/items/([0-9a-zA-Z]+)", "content/items/:id", sh.item),
    r("content/items/([0-9a-zA-Z]+)/data", "content/items/:id/data", sh.itemData),
    r("content/items/([0-9a-zA-Z]+)/info/(.+)", "content/items/:id/info", sh.itemInfo),
    r("content/items/([0-9a-zA-Z]+)/resources", "content/items/:id/resources", sh.itemResources),
    r("content/items/([0-9a-zA-Z]+)/resources/(.+)", "content/items/:id/resources/:path", sh.itemResource),
    r("content/items/([0-9a-zA-Z]+)/relatedItems", "content/items/:id/relatedItems", sh.relatedItems),
    r("content/items/([0-9a-zA-Z]+)/groups", "content/items/:id/groups", sh.itemGroups),
    r(
      `content/users/([^/]+)(?:/([^/]+))?/items/([0-9a-zA-Z]+)/(${ITEM_ACTIONS})`,
      "content/users/:u/items/:id/$4",
      byAction(4),
    ),
    r("content/users/([^/]+)(?:/([^/]+))?/items/([0-9a-zA-Z]+)", "content/users/:u/items/:id", sh.userItem),
    r(`content/users/([^/]+)(?:/([^/]+))?/(${USER_ACTIONS})`, "content/users/:u/$3", byAction(3)),
    r("content/users/([^/]+)/([^/]+)", "content/users/:u/:folder", sh.userContent),
    r("content/users/([^/]+)", "content/users/:u", sh.userContent),
  ];
}

function serviceRoutes(ctx: SimContext): Route[] {
  const online = ctx.kind === "online";
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const root = online ? `/${esc(ctx.org.orgId)}/arcgis/rest` : "/server/rest";
  const pre = online ? `${root}/services/` : `${root}/services/Hosted/`;
  const admin = online ? `${root}/admin/services/` : `${root}/admin/services/Hosted/`;
  const s = (re: string, key: string, handler: Handler): Route => ({
    re: new RegExp(`^${re}$`),
    key: `services/${key}`,
    handler,
    service: true,
  });
  const fs = `${pre}([^/]+)/FeatureServer`;
  return [
    s(`${root}/info`, "info", svc.serverInfo),
    s("/ext/arcgis/rest/info", "ext/info", svc.serverInfo),
    s("/ext/arcgis/rest/services/([^/]+)/(MapServer)/?", "ext/MapServer", svc.serviceRoot),
    s(`${pre}([^/]+)/(FeatureServer|VectorTileServer)/?`, "$2", svc.serviceRoot),
    s(`${fs}/layers`, "FeatureServer/layers", svc.serviceLayers),
    s(`${fs}/applyEdits`, "FeatureServer/applyEdits", svc.serviceApplyEdits),
    s(`${fs}/extractChanges`, "FeatureServer/extractChanges", svc.extractChanges),
    s(`${fs}/(\\d+)/?`, "FeatureServer/:layer", svc.layerRoot),
    s(`${fs}/(\\d+)/query`, "FeatureServer/:layer/query", svc.layerQuery),
    s(`${fs}/(\\d+)/queryAttachments`, "FeatureServer/:layer/queryAttachments", svc.queryAttachments),
    s(`${fs}/(\\d+)/applyEdits`, "FeatureServer/:layer/applyEdits", svc.layerApplyEdits),
    s(`${fs}/(\\d+)/(\\d+)/attachments/?`, "FeatureServer/:layer/:oid/attachments", svc.featureAttachments),
    s(
      `${fs}/(\\d+)/(\\d+)/attachments/(\\d+)`,
      "FeatureServer/:layer/:oid/attachments/:id",
      svc.attachmentData,
    ),
    s(`${fs}/(\\d+)/(\\d+)/addAttachment`, "FeatureServer/:layer/:oid/addAttachment", svc.addAttachment),
    s(
      `${fs}/(\\d+)/(\\d+)/deleteAttachments`,
      "FeatureServer/:layer/:oid/deleteAttachments",
      svc.deleteAttachments,
    ),
    s(
      `${admin}([^/]+)/FeatureServer/addToDefinition`,
      "admin/FeatureServer/addToDefinition",
      svc.addToDefinition,
    ),
  ];
}

export interface ServerOptions {
  latencyMs: number;
  faults: Faults;
  units: RequestUnits | null;
  port: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class Stats {
  private readonly counts = new Map<string, number>();
  record(key: string): void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  }
  count(pattern?: string | RegExp): number {
    if (pattern === undefined) return [...this.counts.values()].reduce((a, b) => a + b, 0);
    const re = typeof pattern === "string" ? globToRegExp(pattern) : pattern;
    let n = 0;
    for (const [k, v] of this.counts) if (re.test(k)) n += v;
    return n;
  }
  byRoute(): Record<string, number> {
    return Object.fromEntries([...this.counts.entries()].sort());
  }
  reset(): void {
    this.counts.clear();
  }
}

/** The portal + services server and the separate storage server of one simulated org. */
export class SimServers {
  private portal: Server | null = null;
  private storage: Server | null = null;
  private readonly sockets = new Set<Socket>();
  private sharingRoutes = sharingRoutes();
  private serviceRoutes: Route[] = [];
  readonly stats = new Stats();
  ctx!: SimContext;

  constructor(private readonly opts: ServerOptions) {}

  async listen(): Promise<{ port: number; storagePort: number }> {
    this.portal = createServer((req, res) => void this.handle(req, res, false));
    this.storage = createServer((req, res) => void this.handle(req, res, true));
    for (const s of [this.portal, this.storage]) {
      s.keepAliveTimeout = 5_000;
      s.on("connection", (sock) => {
        this.sockets.add(sock);
        sock.on("close", () => this.sockets.delete(sock));
      });
    }
    const port = await listenOn(this.portal, this.opts.port);
    const storagePort = await listenOn(this.storage, 0);
    return { port, storagePort };
  }

  attach(ctx: SimContext): void {
    this.ctx = ctx;
    this.serviceRoutes = serviceRoutes(ctx);
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await Promise.all(
      [this.portal, this.storage].map(
        (s) => new Promise<void>((resolve) => (s ? s.close(() => resolve()) : resolve())),
      ),
    );
  }

  private route(path: string): { route: Route; m: string[] } | null {
    const ctx = this.ctx;
    const sharingPrefix = ctx.kind === "online" ? "/sharing/rest/" : "/portal/sharing/rest/";
    if (path.startsWith(sharingPrefix)) {
      const sub = path.slice(sharingPrefix.length).replace(/\/+$/, "");
      for (const route of this.sharingRoutes) {
        const m = route.re.exec(sub);
        if (m) return { route, m: [...m].map((x) => x ?? "") as string[] };
      }
      return null;
    }
    for (const route of this.serviceRoutes) {
      const m = route.re.exec(path);
      if (m) return { route, m: [...m].map((x) => x ?? "") as string[] };
    }
    return null;
  }

  private async handle(req: IncomingMessage, res: ServerResponse, isStorage: boolean): Promise<void> {
    try {
      const ctx = this.ctx;
      const url = new URL(req.url ?? "/", "http://sim.invalid");
      const path = url.pathname;
      const found = isStorage ? null : this.route(path);
      const key = isStorage
        ? "storage/blob"
        : found
          ? found.route.key.replace(/\$(\d)/g, (_, n: string) => found.m[Number(n)] ?? "")
          : "unknown";
      this.stats.record(key);
      const method = (req.method ?? "GET").toUpperCase();
      const fired = this.opts.faults.evaluate(method, path, key);
      let delay = this.opts.latencyMs;
      for (const f of fired) if (f.action === "latency") delay += f.latencyMs ?? 1000;
      if (delay > 0) await sleep(delay);
      const fault = fired.find((f) => f.action !== "latency");
      if (fault?.action === "reset") {
        req.socket.destroy();
        return;
      }
      if (fault?.action === "status") {
        const status = fault.status ?? 503;
        const headers: Record<string, string> = { "content-type": "text/html" };
        if (fault.retryAfter !== undefined) headers["retry-after"] = String(fault.retryAfter);
        req.resume();
        res.writeHead(status, headers);
        res.end(`<html><body><h1>${status}</h1><p>Simulated failure.</p></body></html>`);
        return;
      }
      if (fault?.action === "bodyError") {
        const code = fault.status ?? 500;
        const headers: Record<string, string> = { "content-type": "application/json; charset=utf-8" };
        if (fault.retryAfter !== undefined) headers["retry-after"] = String(fault.retryAfter);
        req.resume();
        res.writeHead(200, headers);
        res.end(
          JSON.stringify(errorBody(code, code === 429 ? "Too many requests." : "An error occurred.", [])),
        );
        return;
      }
      const units = this.opts.units;
      if (!isStorage && units?.locked()) {
        req.resume();
        this.throttled(res, units);
        return;
      }
      const parsed = await parseRequest(req, url);
      let reply: Reply;
      if (isStorage) reply = this.storageReply(parsed);
      else if (!found) {
        reply =
          path.includes("/sharing/rest/") || path.includes("/rest/services/")
            ? { json: errorBody(400, "Invalid URL", ["Invalid URL"]) }
            : {
                status: 404,
                body: "<html><body>Not Found</body></html>",
                headers: { "content-type": "text/html" },
              };
      } else {
        const caller = this.caller(parsed, found.route.noToken === true);
        reply =
          "reply" in caller ? caller.reply : await found.route.handler(ctx, parsed, caller.caller, found.m);
      }
      if (found?.route.service && units && ctx.kind === "online") {
        const cost = reply.cost ?? 0;
        if (cost > 0 && !units.spend(cost)) {
          this.throttled(res, units);
          return;
        }
        const headers = { ...(reply.headers ?? {}) };
        headers["x-esri-org-request-units-per-min"] = `usage=${units.usage()};max=${units.max}`;
        headers["x-esri-query-request-units"] = String(cost);
        reply = { ...reply, headers };
      }
      await this.send(req, res, parsed, reply, fault);
    } catch (e) {
      if (!res.headersSent) {
        res.writeHead(500, { "content-type": "application/json" });
        res.end(JSON.stringify(errorBody(500, e instanceof Error ? e.message : String(e), [])));
      } else res.destroy();
    }
  }

  private throttled(res: ServerResponse, units: RequestUnits): void {
    const style = units.nextStyle();
    const headers: Record<string, string> = {
      "content-type": "application/json; charset=utf-8",
      "x-esri-org-request-units-per-min": `usage=${units.usage()};max=${units.max}`,
    };
    if (style.retryAfter) headers["retry-after"] = String(units.retryAfterSeconds());
    const body = JSON.stringify(
      errorBody(429, "Too many requests. The organization has exceeded its request units per minute.", [
        "Rate limit exceeded. Please try again later.",
      ]),
    );
    res.writeHead(style.http429 ? 429 : 200, headers);
    res.end(body);
  }

  private caller(req: ParsedRequest, noToken: boolean): { caller: Caller } | { reply: Reply } {
    const token = req.params.token || bearer(req.headers) || null;
    if (!token || noToken) return { caller: { user: null, token: null, app: false } };
    const check = this.ctx.auth.check(token);
    if (!check.ok) return { reply: ERR.invalidToken() };
    const username = check.entry.username;
    const user = username ? (this.ctx.org.user(username) ?? null) : null;
    return { caller: { user, token, app: username === null } };
  }

  private storageReply(req: ParsedRequest): Reply {
    const ctx = this.ctx;
    const xml = (status: number, code: string, message: string): Reply => ({
      status,
      headers: { "content-type": "application/xml" },
      body: `<?xml version="1.0" encoding="utf-8"?><Error><Code>${code}</Code><Message>${message}</Message></Error>`,
    });
    if (req.params.token !== undefined || req.headers.authorization || req.headers["x-esri-authorization"])
      return xml(
        400,
        "InvalidAuthenticationInfo",
        "Authentication information is not given in the correct format. A signed URL must not carry a token or an Authorization header.",
      );
    const exp = Number(req.params.se);
    const sig = req.params.sig ?? "";
    if (!sig || signStorage(ctx, req.path, exp) !== sig)
      return xml(403, "AuthenticationFailed", "Signature did not match.");
    if (!(exp > Date.now())) return xml(403, "AuthenticationFailed", "Signed expiry time has passed.");
    const m = /^\/blob\/([^/]+)\/([0-9a-f]{32})\/\d+\/(.+)$/.exec(req.path);
    if (!m || m[1] !== ctx.org.orgId) return xml(404, "BlobNotFound", "The specified blob does not exist.");
    const i = ctx.org.indexOf(m[2] ?? "");
    if (i === null) return xml(404, "BlobNotFound", "The specified blob does not exist.");
    const d = ctx.org.itemData(i);
    if (d.kind !== "file") return xml(404, "BlobNotFound", "The specified blob does not exist.");
    return {
      source: { src: d.source },
      headers: {
        "content-type": d.contentType || contentTypeOf(d.filename),
        "content-disposition": req.params.rscd ?? `attachment; filename="${d.filename}"`,
        "accept-ranges": "bytes",
      },
    };
  }

  private async send(
    req: IncomingMessage,
    res: ServerResponse,
    parsed: ParsedRequest,
    reply: Reply,
    fault: FaultRule | undefined,
  ): Promise<void> {
    const headers: Record<string, string> = { ...(reply.headers ?? {}) };
    let status = reply.status ?? 200;
    let stream: Readable | null = null;
    let length = 0;
    if (reply.source) {
      const src = reply.source.src;
      let start = reply.source.start ?? 0;
      let end = reply.source.end ?? src.size;
      const range = req.headers.range;
      const rm = range ? /^bytes=(\d*)-(\d*)$/.exec(range) : null;
      if (rm && status === 200) {
        const a = rm[1] ? Number(rm[1]) : null;
        const b = rm[2] ? Number(rm[2]) : null;
        if (a === null && b !== null) start = Math.max(0, src.size - b);
        else if (a !== null) {
          start = a;
          end = b !== null ? Math.min(src.size, b + 1) : src.size;
        }
        if (start >= src.size || start >= end) {
          res.writeHead(416, { "content-range": `bytes */${src.size}` });
          res.end();
          return;
        }
        status = 206;
        headers["content-range"] = `bytes ${start}-${end - 1}/${src.size}`;
      }
      length = end - start;
      stream = sourceStream(src, start, end);
    } else {
      let buf: Buffer;
      if (reply.json !== undefined) {
        buf = Buffer.from(JSON.stringify(reply.json));
        headers["content-type"] ??= "application/json; charset=utf-8";
      } else buf = Buffer.isBuffer(reply.body) ? reply.body : Buffer.from(reply.body ?? "");
      length = buf.length;
      stream = Readable.from(buf.length > 0 ? [buf] : []);
    }
    headers["content-length"] = String(length);
    headers["cache-control"] ??= "no-cache";
    res.writeHead(status, headers);
    if (parsed.method === "HEAD" || length === 0) {
      stream.destroy();
      res.end();
      return;
    }
    if (fault?.action === "truncate") {
      const cut = Math.max(1, Math.floor(length / 2));
      let sent = 0;
      for await (const chunk of stream) {
        const b = chunk as Buffer;
        const n = Math.min(b.length, cut - sent);
        if (n > 0) await writeAsync(res, b.subarray(0, n));
        sent += n;
        if (sent >= cut) break;
      }
      stream.destroy();
      res.socket?.destroy();
      return;
    }
    if (fault?.action === "trickle") {
      const total = fault.latencyMs ?? 2000;
      const pieces = Math.max(1, Math.min(20, length));
      const step = Math.ceil(length / pieces);
      const all: Buffer[] = [];
      for await (const chunk of stream) all.push(chunk as Buffer);
      const buf = Buffer.concat(all);
      for (let k = 0; k < buf.length; k += step) {
        if (res.destroyed) return;
        await writeAsync(res, buf.subarray(k, k + step));
        await sleep(total / pieces);
      }
      res.end();
      return;
    }
    // Flowing, chunk by chunk (an iterator would merge buffered chunks into copies); a client
    // that goes away ends it.
    await pipeline(stream, res).catch(() => undefined);
  }
}

function writeAsync(res: ServerResponse, chunk: Buffer): Promise<void> {
  return new Promise((resolve) => {
    if (res.write(chunk)) resolve();
    else {
      const done = () => {
        res.off("drain", done);
        res.off("close", done);
        resolve();
      };
      res.once("drain", done);
      res.once("close", done);
    }
  });
}

function listenOn(server: Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      server.off("error", reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}
