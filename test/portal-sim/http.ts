import type { IncomingMessage } from "node:http";
import type { ByteSource } from "./prng.js";

export interface FilePart {
  filename: string;
  contentType: string;
  data: Buffer;
}

export interface ParsedRequest {
  method: string;
  path: string;
  params: Record<string, string>;
  files: Record<string, FilePart>;
  headers: IncomingMessage["headers"];
}

/** What a handler answers; the server turns it into bytes (and applies faults on the way). */
export interface Reply {
  status?: number;
  headers?: Record<string, string>;
  json?: unknown;
  body?: Buffer | string;
  source?: { src: ByteSource; start?: number; end?: number };
  /** Request units this call costs (feature services). */
  cost?: number;
}

export const MAX_BODY = 3 * 1024 * 1024 * 1024;

export async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    const b = c as Buffer;
    size += b.length;
    if (size > MAX_BODY) throw new Error("body too large");
    chunks.push(b);
  }
  return Buffer.concat(chunks);
}

export async function parseRequest(req: IncomingMessage, url: URL): Promise<ParsedRequest> {
  const params: Record<string, string> = {};
  const files: Record<string, FilePart> = {};
  for (const [k, v] of url.searchParams) params[k] = v;
  const method = (req.method ?? "GET").toUpperCase();
  if (method === "POST" || method === "PUT") {
    const body = await readBody(req);
    const ct = String(req.headers["content-type"] ?? "");
    if (ct.startsWith("multipart/form-data")) {
      const form = await new Response(body, { headers: { "content-type": ct } }).formData();
      for (const [k, v] of form) {
        if (typeof v === "string") params[k] = v;
        else {
          const blob = v as File;
          files[k] = {
            filename: blob.name || k,
            contentType: blob.type || "application/octet-stream",
            data: Buffer.from(await blob.arrayBuffer()),
          };
        }
      }
    } else if (body.length > 0) {
      for (const [k, v] of new URLSearchParams(body.toString("utf8"))) params[k] = v;
    }
  }
  return { method, path: url.pathname, params, files, headers: req.headers };
}

export function errorBody(
  code: number,
  message: string,
  details: string[] = [],
  messageCode?: string,
): unknown {
  return { error: { code, ...(messageCode ? { messageCode } : {}), message, details } };
}

export const err = (code: number, message: string, details: string[] = [], messageCode?: string): Reply => ({
  json: errorBody(code, message, details, messageCode),
});

export const ERR = {
  invalidToken: () => err(498, "Invalid token.", ["Invalid token."]),
  tokenRequired: () => err(499, "Token Required", [], "GWM_0003"),
  forbidden: () =>
    err(
      403,
      "You do not have permissions to access this resource or perform this operation.",
      [],
      "GWM_0003",
    ),
  noItem: () => err(400, "Item does not exist or is inaccessible.", [], "CONT_0001"),
  notFound: (what = "Requested resource does not exist.") => err(404, what, []),
  badParam: (details: string) => err(400, "Invalid or missing input parameters.", [details]),
};

/** Sharing API paging: 1-based start, num capped. */
export function pageOf<T>(
  list: readonly T[],
  params: Record<string, string>,
  maxNum = 100,
  defNum = 10,
): { total: number; start: number; num: number; nextStart: number; page: T[] } {
  const start = Math.max(1, Math.floor(Number(params.start ?? 1)) || 1);
  const rawNum = params.num === undefined || params.num === "" ? defNum : Math.floor(Number(params.num));
  const num = Math.max(0, Math.min(maxNum, Number.isFinite(rawNum) ? rawNum : defNum));
  const page = list.slice(start - 1, start - 1 + num);
  const nextStart = start - 1 + num < list.length && num > 0 ? start + num : -1;
  return { total: list.length, start, num, nextStart, page };
}

/** The paging fields of a Sharing REST list answer, in the order the portal writes them. */
export function pagingFields(p: { total: number; start: number; num: number; nextStart: number }) {
  return { total: p.total, start: p.start, num: p.num, nextStart: p.nextStart };
}

export function contentTypeOf(name: string): string {
  const ext = name.toLowerCase().split(".").pop() ?? "";
  return (
    {
      json: "application/json",
      png: "image/png",
      jpg: "image/jpeg",
      jpeg: "image/jpeg",
      gif: "image/gif",
      txt: "text/plain",
      xml: "application/xml",
      pdf: "application/pdf",
      zip: "application/zip",
      csv: "text/csv",
      html: "text/html",
    }[ext] ?? "application/octet-stream"
  );
}

export const truthy = (v: string | undefined): boolean => v !== undefined && /^(true|1|yes)$/i.test(v);
