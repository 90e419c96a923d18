import "./require-node.js";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { BlobServiceClient } from "@azure/storage-blob";
import { startPortalSim } from "../test/portal-sim/index.js";
import { startAzurite } from "./azurite.js";
import { startLocalHost } from "./local-host/index.js";

/**
 * `npm run demo`: everything locally, nothing to configure. Starts an in-memory storage
 * emulator, the portal simulator with a small org, and the function app on the local host;
 * registers an identity, checks its storage, verifies it, runs a backup and prints what landed
 * where. Add --keep to leave it all running afterwards.
 */
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const keep = process.argv.includes("--keep");
const say = (line = "") => process.stdout.write(`${line}\n`);

const workDir = await mkdtemp(path.join(os.tmpdir(), "arcgis-org-backup-demo-"));
const azurite = await startAzurite();
const sim = await startPortalSim({ size: "small", seed: 1, latencyMs: 5 });
const functions = (await readdir(path.join(repoRoot, "src/functions")))
  .filter((f) => f.endsWith(".ts"))
  .map((f) => path.join(repoRoot, "src/functions", f));
const host = await startLocalHost({
  appRoot: repoRoot,
  entryPoints: [path.join(repoRoot, "src/index.ts"), ...functions],
  port: 0,
  storageConnectionString: azurite.connectionString,
  timers: false,
  log: () => {},
  env: {
    AzureWebJobsStorage: azurite.connectionString,
    SECRET_STORE: "file",
    FILE_SECRET_STORE_PATH: path.join(workDir, "secrets.json"),
    ALLOW_INSECURE_LOOPBACK: "true",
    CACHE_ROOT: path.join(workDir, "cache"),
    LOG_LEVEL: "warn",
  },
});

async function call(method: string, route: string, body?: unknown) {
  const response = await fetch(`${host.baseUrl}${route}`, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  // biome-ignore lint/suspicious/noExplicitAny: the demo prints free-form API answers
  const json = (await response.json()) as Record<string, any>;
  if (response.status >= 400)
    throw new Error(`${method} ${route} → ${response.status} ${JSON.stringify(json)}`);
  return json;
}

try {
  say(`Portal simulator: ${sim.orgUrl} (org ${sim.orgId}, ${sim.model.itemCount()} items)`);
  say(`Storage emulator: ${azurite.blobEndpoint}`);
  say(`Function app:     ${host.baseUrl}/api`);
  say();
  const storage = {
    type: "azure-blob",
    container: "org-backups",
    connectionString: azurite.connectionString,
  };
  const check = await call("POST", "/api/storage/check", { ...storage, createIfMissing: true });
  say(
    `Check Azure Credentials → ok=${check.ok}, container ${check.container} (created: ${check.containerCreated})`,
  );
  const identity = await call("POST", "/api/identities", {
    name: "Demo org",
    kind: "arcgis-online",
    portalUrl: sim.orgUrl,
    auth: { type: "builtin", username: sim.admin.username, password: sim.admin.password },
    storage,
  });
  say(`Saved identity ${identity.id} (secrets stored: ${Object.keys(identity.secrets).join(", ")})`);
  const verified = await call("POST", `/api/identities/${identity.id}/verify`);
  say(
    `Save and Verify → ok=${verified.ok}, signed in as ${verified.user?.username} (${verified.user?.role})`,
  );

  const started = await call("POST", `/api/identities/${identity.id}/backups`, { name: "demo" });
  say(`Backup ${started.runId} started…`);
  let run = await call("GET", `/api/backups/${started.runId}`);
  while (run.status === "running") {
    const p = run.progress ?? {};
    say(
      `  ${p.phase ?? "starting"}: ${p.itemsDone ?? 0}/${p.itemsTotal ?? "?"} items, ${p.bytes ?? 0} bytes`,
    );
    await new Promise((resolve) => setTimeout(resolve, 1000));
    run = await call("GET", `/api/backups/${started.runId}`);
  }
  say(
    `Backup ${run.status}: ${run.itemsExported} exported, ${run.itemsUnchanged} unchanged, ${run.itemsFailed} failed, ${run.bytes} bytes`,
  );
  const container = BlobServiceClient.fromConnectionString(azurite.connectionString).getContainerClient(
    "org-backups",
  );
  const counts = new Map<string, number>();
  for await (const blob of container.listBlobsFlat({ prefix: `${identity.id}/` })) {
    const top = blob.name.split("/").slice(0, 2).join("/");
    counts.set(top, (counts.get(top) ?? 0) + 1);
  }
  say();
  say(`What landed in container org-backups:`);
  for (const [prefix, n] of counts) say(`  ${prefix}/… ${n} blobs`);
  say(`  manifest: ${run.manifest}`);
  if (keep) {
    say();
    say("Still running (--keep); press Ctrl-C to stop.");
    await new Promise<void>((resolve) => process.once("SIGINT", () => resolve()));
  }
} finally {
  await host.close();
  await sim.close();
  await azurite.stop();
  await rm(workDir, { recursive: true, force: true });
}
