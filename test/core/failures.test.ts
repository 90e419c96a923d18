import { readFile } from "node:fs/promises";
import {
  createServer,
  get as httpGet,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { PassThrough, type Readable } from "node:stream";
import { text } from "node:stream/consumers";
import { pipeline } from "node:stream/promises";
import { RestError } from "@azure/core-rest-pipeline";
import { TableClient } from "@azure/data-tables";
import { AnonymousCredential, ContainerClient } from "@azure/storage-blob";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { PortalClient } from "../../src/core/arcgis/portal-client.js";
import {
  classifyPortalBody,
  PortalSignInError,
  portalHttpError,
} from "../../src/core/arcgis/portal-errors.js";
import { UsernamePasswordTokenProvider } from "../../src/core/arcgis/token-providers.js";
import {
  classifyFailure,
  type FailureKind,
  isRetryableFailure,
  isSystemicFailure,
  kindOfStatus,
} from "../../src/core/failures.js";
import { BlobBackupStore } from "../../src/core/storage/blob-backup-store.js";
import { openBlobContainer } from "../../src/core/storage/blob-container.js";
import { DEV_ACCOUNT_KEY, DEV_ACCOUNT_NAME } from "../../tools/azurite.js";
import type { FaultRule } from "../portal-sim/faults.js";
import { ERR, errorBody } from "../portal-sim/http.js";
import { type PortalSim, startPortalSim } from "../portal-sim/index.js";

// Every shape here is made by the code that makes it in production: Node's sockets and file
// system, undici's fetch, the Azure SDKs against a server that answers like Azure, the portal
// client against the simulator. Constructed by hand only where nothing can provoke it (EMFILE).

let sim: PortalSim;
/** Answers what each request's path asks for: a status with Azure's error header, a cut body… */
let azureLike: Server;
let azureUrl: string;
/** A port nothing listens on. */
let closedPort: number;

beforeAll(async () => {
  sim = await startPortalSim({ size: "tiny", seed: 5 });
  azureLike = createServer((req, res) => {
    const [, status, code] = /\/(\d{3})-([A-Za-z]+)/.exec(req.url ?? "") ?? [];
    if (req.url?.includes("hang-up")) return req.socket.destroy();
    if (req.url?.includes("cut-blob") || req.url?.includes("stalled-blob")) return blobBody(req, res);
    if (req.url?.includes("cut-body")) {
      res.writeHead(200, { "content-length": "1000" });
      res.write("partial");
      setTimeout(() => res.socket?.destroy(), 20);
      return;
    }
    // Blob answers its errors in XML, Table in JSON; both name the code in a header too.
    const errorCode = code ?? "InternalError";
    const headers = { "x-ms-error-code": errorCode };
    if (req.url?.startsWith("/table/")) {
      res.writeHead(Number(status ?? 500), { ...headers, "content-type": "application/json" });
      res.end(JSON.stringify({ "odata.error": { code: errorCode, message: { lang: "en-US", value: "" } } }));
    } else {
      res.writeHead(Number(status ?? 500), { ...headers, "content-type": "application/xml" });
      res.end(`<?xml version="1.0" encoding="utf-8"?><Error><Code>${errorCode}</Code><Message/></Error>`);
    }
  });
  azureUrl = await listen(azureLike);
  const probe = createServer();
  await listen(probe);
  closedPort = (probe.address() as AddressInfo).port;
  await new Promise((resolve) => probe.close(resolve));
});

afterAll(async () => {
  await sim?.close();
  await new Promise((resolve) => azureLike?.close(resolve));
});

/**
 * A blob of 1,000 bytes (or the range asked for), answered with half of it: then the connection
 * is cut (`cut-blob`, every time, re-reads too) or stalls (`stalled-blob`).
 */
function blobBody(req: IncomingMessage, res: ServerResponse): void {
  const [, from = "0", to = "999"] = /bytes=(\d+)-(\d*)/.exec(String(req.headers["x-ms-range"] ?? "")) ?? [];
  const length = Number(to || 999) - Number(from) + 1;
  res.writeHead(req.headers["x-ms-range"] ? 206 : 200, {
    "content-length": String(length),
    "content-range": `bytes ${from}-${Number(to || 999)}/1000`,
    etag: '"0x8DC0000000000001"',
  });
  res.write(Buffer.alloc(Math.floor(length / 2), 1));
  if (req.url?.includes("cut-blob")) setTimeout(() => res.socket?.destroy(), 20);
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** What a promise rejected with (the test fails when it did not). */
async function failureOf(run: () => unknown): Promise<unknown> {
  try {
    await run();
  } catch (error) {
    return error;
  }
  throw new Error("expected a failure");
}

/** An HTTP GET's failure, before or during the body. */
function httpFailure(url: string): Promise<unknown> {
  return new Promise((resolve) => {
    httpGet(url, (res) => {
      res.on("error", resolve);
      res.resume();
    }).on("error", resolve);
  });
}

/** A blob client on the Azure-like server, without the SDK's own retries. */
function blobAt(pathName: string) {
  const container = new ContainerClient(`${azureUrl}/blob/box`, new AnonymousCredential(), {
    retryOptions: { maxTries: 1 },
  });
  return container.getBlobClient(pathName);
}

/** The app's own Blob client for a container of the Azure-like server (without the SDK's retries). */
function appContainer(container = "box") {
  const connectionString = `AccountName=${DEV_ACCOUNT_NAME};AccountKey=${DEV_ACCOUNT_KEY};BlobEndpoint=${azureUrl}/blob`;
  return openBlobContainer(
    { type: "azure-blob", container, connectionString },
    { allowInsecureLoopback: true, retryOptions: { maxTries: 1 } },
  );
}

/** A download through the app's client that our own abort signal stops mid-body. */
async function stoppedDownload(): Promise<unknown> {
  const stop = new AbortController();
  const response = await appContainer().getBlobClient("stalled-blob").download(0, undefined, {
    abortSignal: stop.signal,
    maxRetryRequests: 3,
  });
  stop.abort();
  return failureOf(() => text(response.readableStreamBody as Readable));
}

/** A portal client for the simulator's admin that does not retry: the first failure is thrown. */
function portal(): PortalClient {
  const base = { sharingUrl: sim.sharingUrl, maxRetries: 0 };
  const tokens = new UsernamePasswordTokenProvider(new PortalClient(base), {
    ...sim.admin,
    referer: "arcgis-org-backup",
  });
  return new PortalClient({ ...base, tokens });
}

/** community/self answered with `fault` (sign-in goes through untouched). */
async function portalFailure(fault: Omit<FaultRule, "match">): Promise<unknown> {
  sim.setFaults([{ match: "sharing/community/self", ...fault }]);
  try {
    return await failureOf(() => portal().json("community/self", {}, { method: "GET" }));
  } finally {
    sim.setFaults([]);
  }
}

function bodyError(body: unknown): unknown {
  try {
    classifyPortalBody(body, `${sim?.sharingUrl ?? "https://example.com"}/content/items/x`);
  } catch (error) {
    return error;
  }
  throw new Error("not an error body");
}

/** [what, how it is made, what it is]. */
const cases: Array<[string, () => unknown, FailureKind]> = [
  // The portal: ArcGIS error bodies in HTTP 200 answers, as the simulator sends them.
  ["ArcGIS 498 Invalid token", () => bodyError(ERR.invalidToken().json), "auth"],
  ["ArcGIS 499 Token Required", () => bodyError(ERR.tokenRequired().json), "auth"],
  ["ArcGIS 429 in a 200 body", () => bodyError(errorBody(429, "Too many requests.")), "throttled"],
  ["ArcGIS 500 in a 200 body", () => bodyError(errorBody(500, "An error occurred.")), "transient"],
  ["ArcGIS 504 in a 200 body", () => bodyError(errorBody(504, "Gateway timeout.")), "transient"],
  ["ArcGIS CONT_0001 (no such item)", () => bodyError(ERR.noItem().json), "permanent"],
  ["ArcGIS 403 GWM_0003", () => bodyError(ERR.forbidden().json), "permanent"],
  ["ArcGIS 400 bad parameter", () => bodyError(ERR.badParam("where").json), "permanent"],
  ["ArcGIS job failed", () => bodyError({ status: "failed", statusMessage: "no" }), "permanent"],
  // The portal: HTTP statuses and the network, through the portal client against the simulator.
  ["HTTP 503", () => portalFailure({ action: "status", status: 503 }), "transient"],
  ["HTTP 502", () => portalFailure({ action: "status", status: 502 }), "transient"],
  ["HTTP 429", () => portalFailure({ action: "status", status: 429 }), "throttled"],
  ["HTTP 404", () => portalFailure({ action: "status", status: 404 }), "permanent"],
  ["HTTP 501", () => portalHttpError(501, "https://example.com/x"), "permanent"],
  ["HTTP 401", () => portalHttpError(401, "https://example.com/x"), "auth"],
  ["a connection reset", () => portalFailure({ action: "reset" }), "transient"],
  ["a body cut short", () => portalFailure({ action: "truncate" }), "transient"],
  [
    "a sign-in refused (wrong password)",
    () =>
      failureOf(() =>
        new UsernamePasswordTokenProvider(new PortalClient({ sharingUrl: sim.sharingUrl }), {
          username: sim.admin.username,
          password: "wrong",
          referer: "arcgis-org-backup",
        }).getToken(),
      ),
    "auth",
  ],
  [
    "a sign-in that could not reach the portal",
    () =>
      new PortalSignInError("Sign-in failed", {
        code: "ERR_PORTAL_SIGN_IN",
        status: 401,
        cause: portalHttpError(503, "https://example.com/sharing/rest/generateToken"),
      }),
    "transient",
  ],
  // Blob and Table: the real SDKs' RestErrors, from a server that answers as Azure does.
  ["Blob 503 ServerBusy", () => failureOf(() => blobAt("503-ServerBusy").download()), "throttled"],
  [
    "Blob 500 OperationTimedOut",
    () => failureOf(() => blobAt("500-OperationTimedOut").download()),
    "transient",
  ],
  [
    "Blob 503 ServiceUnavailable",
    () => failureOf(() => blobAt("503-ServiceUnavailable").download()),
    "transient",
  ],
  ["Blob 404 BlobNotFound", () => failureOf(() => blobAt("404-BlobNotFound").download()), "permanent"],
  [
    "Blob 403 AuthorizationPermissionMismatch",
    () => failureOf(() => blobAt("403-AuthorizationPermissionMismatch").download()),
    "permanent",
  ],
  ["Blob 409 LeaseIdMissing", () => failureOf(() => blobAt("409-LeaseIdMissing").download()), "permanent"],
  [
    "Blob: nothing listening",
    () =>
      failureOf(() =>
        new ContainerClient(
          `http://127.0.0.1:${closedPort}/devstoreaccount1/box`,
          new AnonymousCredential(),
          {
            retryOptions: { maxTries: 1 },
          },
        ).getProperties(),
      ),
    "transient",
  ],
  [
    "Table 503 ServerBusy",
    () =>
      failureOf(() =>
        new TableClient(`${azureUrl}/table`, "503-ServerBusy", {
          allowInsecureConnection: true,
          retryOptions: { maxRetries: 0 },
        }).getEntity("p", "r"),
      ),
    "throttled",
  ],
  [
    "Table 404 ResourceNotFound (Azurite)",
    () =>
      failureOf(() =>
        TableClient.fromConnectionString(inject("azurite").connectionString, "nosuchtable", {
          allowInsecureConnection: true,
          retryOptions: { maxRetries: 0 },
        }).getEntity("p", "r"),
      ),
    "permanent",
  ],
  // Blob bodies cut short, through the app's own client and store (which read a cut download on).
  [
    "Blob: a download still cut short after its re-reads",
    () => failureOf(async () => text(await new BlobBackupStore(appContainer(), "id").openRead("cut-blob"))),
    "transient",
  ],
  [
    "Blob: a listing cut short",
    () => failureOf(() => new BlobBackupStore(appContainer("cut-body"), "id").list("").next()),
    "transient",
  ],
  ["Blob: a download our abort signal stopped mid-body", () => stoppedDownload(), "permanent"],
  ["RestError 429", () => new RestError("Too many requests", { statusCode: 429 }), "throttled"],
  [
    "RestError REQUEST_SEND_ERROR",
    () => new RestError("send", { code: RestError.REQUEST_SEND_ERROR }),
    "transient",
  ],
  // Node's sockets and undici's fetch.
  ["ECONNREFUSED", () => httpFailure(`http://127.0.0.1:${closedPort}/`), "transient"],
  ["socket hang up", () => httpFailure(`${azureUrl}/hang-up`), "transient"],
  ["a response aborted mid-body", () => httpFailure(`${azureUrl}/cut-body`), "transient"],
  ["fetch failed (refused)", () => failureOf(() => fetch(`http://127.0.0.1:${closedPort}/`)), "transient"],
  [
    "fetch body terminated",
    () => failureOf(async () => (await fetch(`${azureUrl}/cut-body`)).text()),
    "transient",
  ],
  [
    "a stream closed early",
    () =>
      failureOf(() => {
        const source = new PassThrough();
        const done = pipeline(source, new PassThrough());
        source.destroy();
        return done;
      }),
    "transient",
  ],
  ["a timeout signal", () => timeoutReason(), "transient"],
  ["an abort (a cancelled run)", () => abortReason(), "permanent"],
  // The file system.
  ["ENOENT", () => failureOf(() => readFile(path.join(import.meta.dirname, "no-such-file"))), "permanent"],
  ["EISDIR", () => failureOf(() => readFile(import.meta.dirname)), "permanent"],
  [
    "EMFILE (as Node shapes it)",
    () =>
      Object.assign(new Error("EMFILE: too many open files, open 'x'"), {
        errno: -24,
        code: "EMFILE",
        syscall: "open",
      }),
    "transient",
  ],
  // Bugs are never retried.
  ["a TypeError of our own", () => failureOf(() => (undefined as unknown as { x(): void }).x()), "permanent"],
  ["a SyntaxError", () => failureOf(() => JSON.parse("{")), "permanent"],
  ["a plain Error", () => new Error("boom"), "permanent"],
  ["not an Error at all", () => "boom", "permanent"],
];

function abortReason(): unknown {
  const controller = new AbortController();
  controller.abort();
  return controller.signal.reason;
}

async function timeoutReason(): Promise<unknown> {
  const signal = AbortSignal.timeout(1);
  await new Promise((resolve) => signal.addEventListener("abort", resolve));
  return signal.reason;
}

describe("the one classifier of failures", () => {
  test.each(cases.map(([what, make, kind]) => [what, kind, make] as const))(
    "%s is %s",
    async (_, kind, make) => {
      const error = await make();
      expect(classifyFailure(error), String((error as Error)?.stack ?? error)).toBe(kind);
      expect(isRetryableFailure(error)).toBe(kind === "transient" || kind === "throttled");
      expect(isSystemicFailure(error)).toBe(kind !== "permanent");
    },
  );

  test("HTTP statuses and ArcGIS codes share one table", () => {
    const kinds = Object.fromEntries(
      [200, 400, 401, 403, 404, 408, 409, 429, 498, 499, 500, 501, 502, 503, 504, 505, 520].map((s) => [
        s,
        kindOfStatus(s),
      ]),
    );
    expect(kinds).toEqual({
      200: "permanent",
      400: "permanent",
      401: "auth",
      403: "permanent",
      404: "permanent",
      408: "transient",
      409: "permanent",
      429: "throttled",
      498: "auth",
      499: "auth",
      500: "transient",
      501: "permanent",
      502: "transient",
      503: "transient",
      504: "transient",
      505: "permanent",
      520: "transient",
    });
  });
});
