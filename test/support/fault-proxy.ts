/**
 * A fault-injecting HTTP proxy on loopback, put between the app and one of its dependencies
 * (Azurite's blob endpoint, the portal simulator, the simulator's file-storage host):
 *
 *   const proxy = await startFaultProxy({ target: blobOrigin, flavour: "blob", seed: 1 });
 *   proxy.setRules([{ methods: ["PUT"], share: 0.1, fault: { type: "status", status: 503 } }]);
 *   … point the app at proxy.origin …
 *   proxy.counts()   → requests received, forwarded, faults injected by type
 *
 * Each request is matched against the rules in order; the first rule whose method and path
 * match and whose seeded draw falls under its `share` applies its fault. Draws depend only on
 * the seed, the request's sequence number and the rule's index, so a scenario injects the same
 * share of faults on every run (which requests get them follows the app's own ordering). A
 * `oncePerUrl` rule faults each URL at most once, so every retry of a faulted request passes.
 * Bounded: it listens on 127.0.0.1 and forwards to loopback only, a forwarded request waits at
 * most two minutes, a stall only its `ms`, and a cut holds at most 64 MB of an answer.
 */
import {
  Agent,
  createServer,
  type IncomingMessage,
  request,
  type Server,
  type ServerResponse,
} from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { pipeline } from "node:stream/promises";
import { unit } from "../portal-sim/prng.js";

export type ProxyFault =
  /** An error answer in the target's own dialect (Storage XML, or an ArcGIS JSON error). */
  | { type: "status"; status: number; code?: string; inBody?: boolean }
  /**
   * The connection is destroyed without an answer: before the request reaches the target
   * ("request lost"), or after the target has done it ("answer lost").
   */
  | { type: "reset"; lost: "request" | "answer" }
  /** Nothing happens for `ms`; then the request goes on, or the connection is dropped. */
  | { type: "stall"; ms: number; outcome: "continue" | "drop" }
  /** The answer's headers announce the whole body; half of it is sent, then the connection is cut. */
  | { type: "cut" };

export type ProxyFaultType = ProxyFault["type"];

export interface ProxyFaultRule {
  /** Upper-case HTTP methods the rule applies to; every method when omitted. */
  methods?: readonly string[];
  /** Tested against the request path (without the query); every path when omitted. */
  path?: RegExp;
  /** Share of matching requests that get the fault, 0 to 1. */
  share: number;
  /** At most once per method and URL: the retry of a faulted request goes through. */
  oncePerUrl?: boolean;
  fault: ProxyFault;
}

export interface FaultProxyOptions {
  /** The origin forwarded to: http on loopback only. */
  target: string;
  /** The error dialect of `status` faults: Azure Storage XML, or ArcGIS JSON. */
  flavour: "blob" | "portal";
  seed?: number;
  rules?: ProxyFaultRule[];
  /** Redirect `Location` origins to rewrite, e.g. the simulator's storage host → its own proxy. */
  rewriteLocations?: Record<string, string>;
}

export interface FaultProxyCounts {
  /** Requests the app sent to the proxy. */
  received: number;
  /** Requests passed on to the target (an "answer lost" reset or a cut is forwarded too). */
  forwarded: number;
  injected: Record<ProxyFaultType, number>;
}

export interface FaultProxy {
  /** http://127.0.0.1:<port> */
  readonly origin: string;
  setRules(rules: ProxyFaultRule[]): void;
  counts(): FaultProxyCounts;
  /** Zeroes the counts and the draw sequence. */
  reset(): void;
  close(): Promise<void>;
}

/** A cut needs the whole answer in hand to announce its length; larger answers pass untouched. */
const MAX_CUT_BODY_BYTES = 64 * 1024 * 1024;
/** No forwarded request waits longer for the target than this. */
const UPSTREAM_TIMEOUT_MS = 120_000;
const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]"]);

export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const target = new URL(options.target);
  if (target.protocol !== "http:" || !LOOPBACK.has(target.hostname)) {
    throw new Error(`The fault proxy forwards to http on loopback only, not ${target.origin}`);
  }
  const proxy = new FaultInjectingProxy(options, target);
  await proxy.listen();
  return proxy;
}

class FaultInjectingProxy implements FaultProxy {
  origin = "";
  private rules: ProxyFaultRule[];
  private sequence = 0;
  /** Method and URL of requests a `oncePerUrl` rule has faulted. */
  private faulted = new Set<string>();
  private tally = emptyCounts();
  private readonly seed: number;
  private readonly agent = new Agent({ keepAlive: true });
  private readonly sockets = new Set<Socket>();
  private readonly stalls = new Set<NodeJS.Timeout>();
  private readonly server: Server;

  constructor(
    private readonly options: FaultProxyOptions,
    private readonly target: URL,
  ) {
    this.rules = options.rules ?? [];
    this.seed = options.seed ?? 1;
    this.server = createServer((req, res) => {
      this.handle(req, res).catch(() => {
        if (!res.headersSent) {
          res.writeHead(502, { "content-type": "text/plain" });
          res.end("fault proxy: the target did not answer");
        } else res.destroy();
      });
    });
    this.server.on("connection", (socket) => {
      this.sockets.add(socket);
      socket.on("close", () => this.sockets.delete(socket));
    });
  }

  async listen(): Promise<void> {
    const port = await new Promise<number>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(0, "127.0.0.1", () => resolve((this.server.address() as AddressInfo).port));
    });
    this.origin = `http://127.0.0.1:${port}`;
  }

  setRules(rules: ProxyFaultRule[]): void {
    this.rules = rules;
  }

  counts(): FaultProxyCounts {
    return { ...this.tally, injected: { ...this.tally.injected } };
  }

  reset(): void {
    this.tally = emptyCounts();
    this.sequence = 0;
    this.faulted.clear();
  }

  async close(): Promise<void> {
    for (const timer of this.stalls) clearTimeout(timer);
    this.stalls.clear();
    for (const socket of this.sockets) socket.destroy();
    this.agent.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private chooseRule(method: string, url: string): ProxyFaultRule | undefined {
    const draw = this.sequence++;
    const path = new URL(url, "http://proxy.invalid").pathname;
    return this.rules.find(
      (rule, index) =>
        (!rule.methods || rule.methods.includes(method)) &&
        (!rule.path || rule.path.test(path)) &&
        !(rule.oncePerUrl && this.faulted.has(`${method} ${url}`)) &&
        unit(this.seed, draw, index, "fault-proxy") < rule.share,
    );
  }

  /** Counts a fault that happened (and remembers its URL for `oncePerUrl`). */
  private injected(counts: FaultProxyCounts, rule: ProxyFaultRule, key: string): void {
    counts.injected[rule.fault.type]++;
    if (rule.oncePerUrl) this.faulted.add(key);
  }

  private stall(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.stalls.delete(timer);
        resolve();
      }, ms);
      this.stalls.add(timer);
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // A request counts where it arrived, even when the counts are reset while it is in flight.
    const counts = this.tally;
    counts.received++;
    const method = (req.method ?? "GET").toUpperCase();
    const key = `${method} ${req.url ?? "/"}`;
    const rule = this.chooseRule(method, req.url ?? "/");
    const fault = rule?.fault;
    // A cut counts once it happened: an empty or failed answer has nothing to cut.
    if (rule && fault?.type !== "cut") this.injected(counts, rule, key);
    if (fault?.type === "stall") {
      await this.stall(fault.ms);
      if (fault.outcome === "drop") return void req.socket.destroy();
    }
    if (fault?.type === "reset" && fault.lost === "request") return void req.socket.destroy();
    if (fault?.type === "status") {
      req.resume();
      return sendError(res, this.options.flavour, fault);
    }
    counts.forwarded++;
    const upstream = await forward(req, this.target, this.agent);
    rewriteLocation(upstream, this.options.rewriteLocations);
    if (fault?.type === "reset") {
      // The target did the work; the app never hears of it.
      upstream.resume();
      return void req.socket.destroy();
    }
    if (fault?.type === "cut") {
      const outcome = await cutShort(upstream, res);
      if (outcome === "cut" && rule) this.injected(counts, rule, key);
      if (outcome !== "not-cuttable") return;
    }
    res.writeHead(upstream.statusCode ?? 502, upstream.headers);
    // A client that goes away ends the answer (the target's connection is not kept).
    await pipeline(upstream, res).catch(() => undefined);
  }
}

function emptyCounts(): FaultProxyCounts {
  return { received: 0, forwarded: 0, injected: { status: 0, reset: 0, stall: 0, cut: 0 } };
}

/** Sends the request on to the target and resolves with its answer (headers in, body unread). */
function forward(req: IncomingMessage, target: URL, agent: Agent): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const outgoing = request(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: target.host },
        agent,
        timeout: UPSTREAM_TIMEOUT_MS,
      },
      resolve,
    );
    outgoing.on("timeout", () => outgoing.destroy(new Error("upstream timed out")));
    outgoing.on("error", reject);
    // A client that goes away mid-upload takes the forwarded request with it.
    req.on("close", () => {
      if (!req.complete) outgoing.destroy();
    });
    req.pipe(outgoing);
  });
}

function rewriteLocation(upstream: IncomingMessage, rewrites: Record<string, string> | undefined): void {
  const location = upstream.headers.location;
  if (!location || !rewrites) return;
  for (const [from, to] of Object.entries(rewrites)) {
    if (location.startsWith(from)) upstream.headers.location = to + location.slice(from.length);
  }
}

/**
 * Announces the whole body, sends half of it and cuts the connection. An error answer or one
 * too large to hold is left to the caller to pass on ("not-cuttable"); an empty one is sent
 * whole ("whole").
 */
async function cutShort(
  upstream: IncomingMessage,
  res: ServerResponse,
): Promise<"cut" | "whole" | "not-cuttable"> {
  const status = upstream.statusCode ?? 0;
  const declared = Number(upstream.headers["content-length"] ?? Number.NaN);
  if (status < 200 || status > 299 || declared > MAX_CUT_BODY_BYTES) return "not-cuttable";
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of upstream) {
    chunks.push(chunk as Buffer);
    size += (chunk as Buffer).length;
    // A chunked answer without a length: what is held is enough to cut (the rest is never sent).
    if (size > MAX_CUT_BODY_BYTES) break;
  }
  const body = Buffer.concat(chunks);
  if (body.length < 2) {
    res.writeHead(status, upstream.headers);
    res.end(body);
    return "whole";
  }
  const announced = Number.isFinite(declared) ? declared : body.length;
  const headers = { ...upstream.headers, "content-length": String(announced) };
  delete headers["transfer-encoding"];
  res.writeHead(status, headers);
  res.write(body.subarray(0, Math.floor(body.length / 2)), () => res.socket?.destroy());
  return "cut";
}

const STORAGE_ERRORS: Record<number, { code: string; message: string }> = {
  403: { code: "AuthorizationFailure", message: "This request is not authorized to perform this operation." },
  404: { code: "ContainerNotFound", message: "The specified container does not exist." },
  500: {
    code: "InternalError",
    message: "The server encountered an internal error. Please retry the request.",
  },
  503: {
    code: "ServerBusy",
    message: "The server is currently unable to receive requests. Please retry your request.",
  },
};

function sendError(
  res: ServerResponse,
  flavour: "blob" | "portal",
  fault: Extract<ProxyFault, { type: "status" }>,
) {
  if (flavour === "blob") {
    const known = STORAGE_ERRORS[fault.status] ?? { code: "InternalError", message: "Simulated failure." };
    const code = fault.code ?? known.code;
    const body = `<?xml version="1.0" encoding="utf-8"?><Error><Code>${code}</Code><Message>${known.message}</Message></Error>`;
    res.writeHead(fault.status, {
      "content-type": "application/xml",
      "content-length": String(Buffer.byteLength(body)),
      "x-ms-error-code": code,
    });
    return void res.end(body);
  }
  // ArcGIS reports errors in an HTTP 200 body (the Sharing API's way) or with the status itself
  // (gateways in front of it).
  const body = JSON.stringify({
    error: { code: fault.status, message: `Simulated failure ${fault.status}.`, details: [] },
  });
  res.writeHead(fault.inBody ? 200 : fault.status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": String(Buffer.byteLength(body)),
  });
  res.end(body);
}
