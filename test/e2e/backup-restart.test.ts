import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { BlobServiceClient } from "@azure/storage-blob";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import type { Manifest } from "../../src/core/backup/manifest.js";
import { type SpawnedHost, spawnLocalHost } from "../../tools/local-host/spawn.js";
import { ITEM_KINDS, type PortalSim, startPortalSim } from "../portal-sim/index.js";
import { REPO_ROOT } from "../support/app-harness.js";

let sim: PortalSim;
let workDir: string;
let env: Record<string, string>;
const children: ChildProcess[] = [];

/** The real app on the local host in its own process, as `npm start` runs it. */
async function startHostProcess(): Promise<SpawnedHost> {
  const host = await spawnLocalHost({
    args: [
      "--import",
      "tsx",
      "tools/local-host/main.ts",
      "--app-root",
      ".",
      "--entry",
      "src/index.ts",
      "--entry",
      "src/functions/*.ts",
      "--port",
      "0",
      "--no-timers",
    ],
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
  });
  children.push(host.child);
  return host;
}

async function call(baseUrl: string, method: string, route: string, body?: unknown) {
  const response = await fetch(`${baseUrl}${route}`, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  // biome-ignore lint/suspicious/noExplicitAny: API answers are free-form JSON in tests
  return { status: response.status, body: (await response.json()) as Record<string, any> };
}

beforeAll(async () => {
  const fourOfEach = Object.fromEntries(ITEM_KINDS.map((kind) => [kind, 8]));
  sim = await startPortalSim({ size: "tiny", seed: 41, latencyMs: 25, overrides: { items: fourOfEach } });
  workDir = await mkdtemp(path.join(os.tmpdir(), "restart-"));
  const suffix = randomBytes(4).toString("hex");
  env = {
    AzureWebJobsStorage: inject("azurite").connectionString,
    IDENTITIES_TABLE: `identities${suffix}`,
    RUNS_TABLE: `runs${suffix}`,
    SECRET_STORE: "file",
    FILE_SECRET_STORE_PATH: path.join(workDir, "secrets.json"),
    ALLOW_INSECURE_LOOPBACK: "true",
    CACHE_ROOT: path.join(workDir, "cache"),
    LOG_LEVEL: "error",
  };
});

afterAll(async () => {
  for (const child of children) child.kill("SIGKILL");
  await sim?.close();
  await rm(workDir, { recursive: true, force: true });
});

describe("a host killed in the middle of a backup", () => {
  test("resumes on restart: the run completes, every item once, finished work not redone", async () => {
    const container = `restart-${randomBytes(4).toString("hex")}`;
    const blobs = BlobServiceClient.fromConnectionString(
      inject("azurite").connectionString,
    ).getContainerClient(container);
    await blobs.create();
    let host = await startHostProcess();
    const identity = await call(host.baseUrl, "POST", "/api/identities", {
      name: "Restart",
      kind: "arcgis-online",
      portalUrl: sim.orgUrl,
      auth: { type: "builtin", username: sim.admin.username, password: sim.admin.password },
      storage: { type: "azure-blob", container, connectionString: inject("azurite").connectionString },
    });
    expect(identity.status).toBe(201);
    const started = await call(host.baseUrl, "POST", `/api/identities/${identity.body.id}/backups`, {});
    expect(started.status).toBe(202);
    const runId = started.body.runId as string;

    // Let it get part of the way, then pull the plug.
    const total = sim.model.itemCount();
    let doneAtKill = 0;
    for (let i = 0; i < 600 && doneAtKill < total / 4; i++) {
      const run = await call(host.baseUrl, "GET", `/api/backups/${runId}`);
      doneAtKill = run.body.progress?.itemsDone ?? 0;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    host.child.kill("SIGKILL");
    expect(doneAtKill).toBeGreaterThan(0);
    expect(doneAtKill).toBeLessThan(total);

    host = await startHostProcess();
    // biome-ignore lint/suspicious/noExplicitAny: API answers are free-form JSON in tests
    let run: Record<string, any> = {};
    for (let i = 0; i < 1200; i++) {
      run = (await call(host.baseUrl, "GET", `/api/backups/${runId}`)).body;
      if (run.status !== "running") break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(run.status).toBe("completed");
    const manifest = JSON.parse(
      (
        await blobs.getBlobClient(`${identity.body.id}/runs/${runId}/manifest.json`).downloadToBuffer()
      ).toString(),
    ) as Manifest;
    const ids = manifest.items.map((i) => i.itemId);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.length).toBe(total);
    // Items finished before the kill were not downloaded again; only those in flight were.
    expect(sim.stats.count("sharing/content/items/:id/data")).toBeLessThanOrEqual(2 * total - doneAtKill);
    host.child.kill("SIGTERM");
  }, 180_000);
});
