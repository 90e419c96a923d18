import { randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import type { AccessToken, TokenCredential } from "@azure/identity";
import { testTls } from "./tls.js";

/**
 * A test-only Key Vault: an in-memory HTTPS server that speaks the part of the secrets REST API
 * that the real `SecretClient` uses (facts in /work/shared/reference/local-azure.md):
 * challenge auth (401 + WWW-Authenticate, then Bearer), PUT/GET/list with nextLink paging,
 * DELETE (soft delete), deletedsecrets get/list/recover/purge, 404 SecretNotFound, 409 Conflict
 * when setting a deleted-but-not-purged name. `forbidden = true` answers 403 to every
 * authenticated call. Every request is logged (method, full URL, whether it carried a token).
 */

/** api-version values the fake accepts: the ones the SDK versions we run send or may be pinned to. */
export const TESTED_API_VERSIONS: ReadonlySet<string> = new Set([
  "7.4",
  "7.5",
  "7.6",
  "2025-07-01",
  "2026-04-01",
]);

export const FAKE_TENANT = "00000000-0000-0000-0000-000000000000";

export interface LoggedRequest {
  method: string;
  /** Path and query as received. */
  url: string;
  authorized: boolean;
  status: number;
}

interface Version {
  id: string;
  value: string;
  tags: Record<string, string> | undefined;
  contentType: string | undefined;
  created: number;
  updated: number;
}

interface DeletedEntry {
  versions: Version[];
  deletedDate: number;
}

export interface FakeKeyVaultOptions {
  /** The bearer token the vault accepts; anything else gets 401. */
  token?: string;
  /** Items per list page (small values exercise nextLink paging). */
  pageSize?: number;
}

export class FakeKeyVault {
  readonly token: string;
  readonly requests: LoggedRequest[] = [];
  /** Answer 403 Forbidden (as with no data-plane role) to every authenticated request. */
  forbidden = false;
  /** The innererror code of those 403s: ForbiddenByRbac (no role) or ForbiddenByFirewall. */
  forbiddenReason: "ForbiddenByRbac" | "ForbiddenByFirewall" = "ForbiddenByRbac";
  /** Answer 503 Service Unavailable (a vault that is down for a moment) to every authenticated request. */
  unavailable = false;
  readonly pageSize: number;
  private readonly secrets = new Map<string, Version[]>();
  private readonly deleted = new Map<string, DeletedEntry>();
  private server: Server | undefined;
  private origin = "";

  constructor(options: FakeKeyVaultOptions = {}) {
    this.token = options.token ?? `test-token-${randomBytes(8).toString("hex")}`;
    this.pageSize = options.pageSize ?? 25;
  }

  /** https://127.0.0.1:<port> (the certificate also names localhost), once started. */
  get url(): string {
    return this.origin;
  }

  /** A credential that always returns the token this vault accepts. */
  credential(): TokenCredential & { calls: number } {
    const token = this.token;
    const credential = {
      calls: 0,
      async getToken(): Promise<AccessToken> {
        credential.calls++;
        return { token, expiresOnTimestamp: Date.now() + 3_600_000 };
      },
    };
    return credential;
  }

  /** Names of live (not deleted) secrets. */
  liveNames(): string[] {
    return [...this.secrets.keys()].sort();
  }

  deletedNames(): string[] {
    return [...this.deleted.keys()].sort();
  }

  async start(): Promise<this> {
    const tls = await testTls();
    const server = createServer({ cert: tls.cert, key: tls.key }, (req, res) => {
      this.handle(req, res).catch((failure: unknown) => {
        this.send(req, res, error(500, "InternalError", String(failure)));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    this.server = server;
    this.origin = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req);
    const url = new URL(req.url ?? "/", this.origin);
    if (req.headers.authorization !== `Bearer ${this.token}`) {
      res.setHeader(
        "WWW-Authenticate",
        `Bearer authorization="https://login.microsoftonline.com/${FAKE_TENANT}", resource="https://vault.azure.net"`,
      );
      this.send(req, res, error(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token."));
      return;
    }
    this.send(req, res, this.route(req.method ?? "GET", url, body));
  }

  private route(method: string, url: URL, body: string): Reply {
    const apiVersion = url.searchParams.get("api-version");
    if (!apiVersion || !TESTED_API_VERSIONS.has(apiVersion)) {
      return error(400, "BadParameter", `The specified version (${apiVersion}) is not recognized.`);
    }
    if (this.unavailable) return error(503, "ServiceUnavailable", "The service is temporarily unavailable.");
    if (this.forbidden) {
      return {
        status: 403,
        body: {
          error: {
            code: "Forbidden",
            message:
              "Caller is not authorized to perform action on resource. Action: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'",
            innererror: { code: this.forbiddenReason },
          },
        },
      };
    }
    // "/secrets/a/" splits to ["secrets", "a", ""]: the empty version means "latest".
    const [collection, name, third, fourth] = url.pathname.split("/").slice(1);

    if (collection === "secrets") {
      if (!name) {
        if (method === "GET") return this.list(url, this.liveItems());
      } else if (third === undefined && method === "PUT") {
        return this.put(name, body);
      } else if (third === undefined && method === "DELETE") {
        return this.remove(name);
      } else if (third === "versions" && fourth === undefined && method === "GET") {
        const versions = this.secrets.get(name);
        if (!versions) return notFound(name);
        return this.list(
          url,
          versions.map((v) => this.item(name, v, true)),
        );
      } else if (third !== undefined && fourth === undefined && method === "GET") {
        const versions = this.secrets.get(name);
        const version = third === "" ? versions?.at(-1) : versions?.find((v) => v.id === third);
        if (!version) return notFound(name);
        return { status: 200, body: this.bundle(name, version) };
      }
    } else if (collection === "deletedsecrets") {
      if (!name) {
        if (method === "GET") {
          const items = [...this.deleted].map(([n, entry]) => ({
            ...this.item(n, entry.versions.at(-1)!),
            ...this.deletedFields(n, entry),
          }));
          return this.list(url, items);
        }
      } else if (third === undefined && method === "GET") {
        const entry = this.deleted.get(name);
        if (!entry) return deletedNotFound(name);
        return { status: 200, body: this.deletedBundle(name, entry) };
      } else if (third === undefined && method === "DELETE") {
        if (!this.deleted.delete(name)) return deletedNotFound(name);
        return { status: 204, body: undefined };
      } else if (third === "recover" && fourth === undefined && method === "POST") {
        const entry = this.deleted.get(name);
        if (!entry) return deletedNotFound(name);
        this.deleted.delete(name);
        this.secrets.set(name, entry.versions);
        return { status: 200, body: this.bundle(name, entry.versions.at(-1)!) };
      }
    }
    return error(400, "BadParameter", "Unsupported route.");
  }

  private put(name: string, body: string): Reply {
    if (!/^[0-9a-zA-Z-]{1,127}$/.test(name)) return error(400, "BadParameter", "Invalid secret name.");
    if (this.deleted.has(name)) {
      return error(
        409,
        "Conflict",
        `Secret ${name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the secret can only be recovered or purged.`,
      );
    }
    let parsed: { value?: unknown; tags?: Record<string, string>; contentType?: string };
    try {
      parsed = JSON.parse(body) as typeof parsed;
    } catch {
      return error(400, "BadParameter", "Body is not JSON.");
    }
    if (typeof parsed.value !== "string") return error(400, "BadParameter", "value is required.");
    const now = Math.floor(Date.now() / 1000);
    const version: Version = {
      id: randomBytes(16).toString("hex"),
      value: parsed.value,
      tags: parsed.tags,
      contentType: parsed.contentType,
      created: now,
      updated: now,
    };
    const versions = this.secrets.get(name) ?? [];
    versions.push(version);
    this.secrets.set(name, versions);
    return { status: 200, body: this.bundle(name, version) };
  }

  private remove(name: string): Reply {
    const versions = this.secrets.get(name);
    if (!versions) return notFound(name);
    this.secrets.delete(name);
    const entry: DeletedEntry = { versions, deletedDate: Math.floor(Date.now() / 1000) };
    this.deleted.set(name, entry);
    return { status: 200, body: this.deletedBundle(name, entry) };
  }

  private list(url: URL, items: object[]): Reply {
    const skip = Number(url.searchParams.get("$skiptoken") ?? "0") || 0;
    const max = Math.min(Number(url.searchParams.get("maxresults")) || this.pageSize, this.pageSize);
    const page = items.slice(skip, skip + max);
    let nextLink: string | null = null;
    if (skip + max < items.length) {
      const next = new URL(url.pathname, this.origin);
      next.searchParams.set("api-version", url.searchParams.get("api-version") ?? "");
      next.searchParams.set("$skiptoken", String(skip + max));
      next.searchParams.set("maxresults", String(max));
      nextLink = next.toString();
    }
    return { status: 200, body: { value: page, nextLink } };
  }

  private liveItems(): object[] {
    return [...this.secrets].map(([name, versions]) => this.item(name, versions.at(-1)!));
  }

  private attributes(version: Version) {
    return {
      enabled: true,
      created: version.created,
      updated: version.updated,
      recoveryLevel: "Recoverable",
      recoverableDays: 90,
    };
  }

  /** A list item: the bundle without its value; `withVersion` for /versions listings. */
  private item(name: string, version: Version, withVersion = false): object {
    return {
      id: `${this.origin}/secrets/${name}${withVersion ? `/${version.id}` : ""}`,
      attributes: this.attributes(version),
      ...(version.tags ? { tags: version.tags } : {}),
      ...(version.contentType ? { contentType: version.contentType } : {}),
    };
  }

  private bundle(name: string, version: Version): object {
    return {
      value: version.value,
      id: `${this.origin}/secrets/${name}/${version.id}`,
      attributes: this.attributes(version),
      ...(version.tags ? { tags: version.tags } : {}),
      ...(version.contentType ? { contentType: version.contentType } : {}),
    };
  }

  private deletedFields(name: string, entry: DeletedEntry) {
    return {
      recoveryId: `${this.origin}/deletedsecrets/${name}`,
      deletedDate: entry.deletedDate,
      scheduledPurgeDate: entry.deletedDate + 90 * 86_400,
    };
  }

  private deletedBundle(name: string, entry: DeletedEntry): object {
    return { ...this.bundle(name, entry.versions.at(-1)!), ...this.deletedFields(name, entry) };
  }

  private send(req: IncomingMessage, res: ServerResponse, reply: Reply): void {
    this.requests.push({
      method: req.method ?? "GET",
      url: req.url ?? "",
      authorized: req.headers.authorization !== undefined,
      status: reply.status,
    });
    if (reply.body === undefined) {
      res.writeHead(reply.status).end();
      return;
    }
    res
      .writeHead(reply.status, { "Content-Type": "application/json; charset=utf-8" })
      .end(JSON.stringify(reply.body));
  }
}

interface Reply {
  status: number;
  body: unknown;
}

function error(status: number, code: string, message: string): Reply {
  return { status, body: { error: { code, message } } };
}

function notFound(name: string): Reply {
  return error(404, "SecretNotFound", `A secret with (name/id) ${name} was not found in this key vault.`);
}

function deletedNotFound(name: string): Reply {
  return error(404, "SecretNotFound", `Deleted Secret not found: ${name}`);
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

/** Starts a fake vault on a free loopback port. */
export function startFakeKeyVault(options?: FakeKeyVaultOptions): Promise<FakeKeyVault> {
  return new FakeKeyVault(options).start();
}
