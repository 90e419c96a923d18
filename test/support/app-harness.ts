import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { BlobServiceClient, type ContainerClient } from "@azure/storage-blob";
import { inject } from "vitest";
import { type LocalHost, startLocalHost } from "../../tools/local-host/index.js";
import { type PortalSim, type PortalSimOptions, startPortalSim } from "../portal-sim/index.js";

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** The product's own function files, loaded from source (vitest transpiles them). */
export async function productEntryPoints(): Promise<string[]> {
  const functions = (await readdir(path.join(REPO_ROOT, "src/functions")))
    .filter((f) => f.endsWith(".ts"))
    .map((f) => path.join(REPO_ROOT, "src/functions", f));
  return [path.join(REPO_ROOT, "src/index.ts"), ...functions];
}

export interface AppHarness {
  host: LocalHost;
  sim: PortalSim;
  workDir: string;
  /** Connection string of the test storage account (Azurite). */
  storageConnectionString: string;
  logs: string[];
  call(method: string, route: string, body?: unknown, headers?: Record<string, string>): Promise<ApiResponse>;
  /** A fresh container in the test storage account. */
  container(name?: string): Promise<ContainerClient>;
  /** Registers an identity for the simulator's admin with backups into `container`. */
  createIdentity(options?: { container?: string; extra?: Record<string, unknown> }): Promise<ApiResponse>;
  close(): Promise<void>;
}

export interface ApiResponse {
  status: number;
  headers: Headers;
  // biome-ignore lint/suspicious/noExplicitAny: API responses are free-form JSON in tests
  body: any;
  text: string;
}

export async function startAppHarness(
  options: { sim?: PortalSimOptions; env?: Record<string, string> } = {},
): Promise<AppHarness> {
  const { connectionString } = inject("azurite");
  const workDir = await mkdtemp(path.join(os.tmpdir(), "app-harness-"));
  const suffix = randomBytes(4).toString("hex");
  const sim = await startPortalSim({ size: "tiny", ...options.sim });
  const logs: string[] = [];
  const host = await startLocalHost({
    appRoot: REPO_ROOT,
    entryPoints: await productEntryPoints(),
    port: 0,
    storageConnectionString: connectionString,
    taskHub: `Hub${suffix}`,
    timers: false,
    log: (line) => logs.push(line),
    env: {
      AzureWebJobsStorage: connectionString,
      IDENTITIES_TABLE: `identities${suffix}`,
      RUNS_TABLE: `runs${suffix}`,
      SECRET_STORE: "file",
      FILE_SECRET_STORE_PATH: path.join(workDir, "secrets.json"),
      ALLOW_INSECURE_LOOPBACK: "true",
      CACHE_ROOT: path.join(workDir, "cache"),
      LOG_LEVEL: "error",
      ...options.env,
    },
  });
  const service = BlobServiceClient.fromConnectionString(connectionString);
  const call = async (
    method: string,
    route: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ) => {
    const response = await fetch(`${host.baseUrl}${route}`, {
      method,
      headers: { ...(body === undefined ? {} : { "content-type": "application/json" }), ...headers },
      ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) }),
    });
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // not JSON
    }
    return { status: response.status, headers: response.headers, body: parsed, text };
  };
  const container = async (name = `backups-${randomBytes(4).toString("hex")}`) => {
    const client = service.getContainerClient(name);
    await client.createIfNotExists();
    return client;
  };
  return {
    host,
    sim,
    workDir,
    storageConnectionString: connectionString,
    logs,
    call,
    container,
    async createIdentity({ container: containerName, extra = {} } = {}) {
      const target = await container(containerName);
      return call("POST", "/api/identities", {
        name: "Simulated org",
        kind: "arcgis-online",
        portalUrl: sim.orgUrl,
        auth: { type: "builtin", username: sim.admin.username, password: sim.admin.password },
        storage: { type: "azure-blob", container: target.containerName, connectionString },
        ...extra,
      });
    },
    async close() {
      await host.close();
      await sim.close();
      await rm(workDir, { recursive: true, force: true });
    },
  };
}
