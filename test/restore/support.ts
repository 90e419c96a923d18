import { createHash } from "node:crypto";
import { expect } from "vitest";
import { BackupRunner } from "../../src/core/backup/backup-runner.js";
import { createFeatureDataExporter } from "../../src/core/backup/feature-export.js";
import { newRunId } from "../../src/core/backup/layout.js";
import type { Manifest, ManifestItem } from "../../src/core/backup/manifest.js";
import { newRunRecord } from "../../src/core/backup/runs.js";
import { silentLogger } from "../../src/core/log.js";
import type { RestoreReport } from "../../src/core/restore/model.js";
import { getServices } from "../../src/core/services.js";
import type { PortalSim } from "../portal-sim/index.js";
import type { AppHarness } from "../support/app-harness.js";

export const sha256 = (data: Buffer | string) => createHash("sha256").update(data).digest("hex");

/** Registers an identity for a simulated org (the harness's own or another one). */
export async function identityFor(
  app: AppHarness,
  sim: PortalSim,
  user = sim.admin,
): Promise<{ id: string; container: string }> {
  const container = await app.container();
  const created = await app.call("POST", "/api/identities", {
    name: `Org ${sim.orgId}`,
    kind: "arcgis-online",
    portalUrl: sim.orgUrl,
    auth: { type: "builtin", username: user.username, password: user.password },
    storage: {
      type: "azure-blob",
      container: container.containerName,
      connectionString: app.storageConnectionString,
    },
  });
  expect(created.status, created.text).toBe(201);
  return { id: created.body.id as string, container: container.containerName };
}

/**
 * A full backup with hosted feature data (features and attachments), run through the backup's own
 * runner in this process: the app's backup endpoint leaves feature export to its wiring.
 */
export async function backupWithFeatures(
  app: AppHarness,
  identity: { id: string; container: string },
): Promise<Manifest> {
  const services = await getServices();
  const runner = new BackupRunner({
    identities: services.identities,
    runs: services.runs,
    portalFor: (i) => services.portalFor(i),
    openStore: (i) => services.openStore(i),
    serviceDataFor: (portal) => createFeatureDataExporter(portal),
    cacheMaxBytes: services.config.cacheMaxBytes,
    log: silentLogger,
  });
  const runId = newRunId("b");
  await services.runs.create(
    newRunRecord({ runId, identityId: identity.id, name: "restore test", trigger: "manual" }),
  );
  const inventory = await runner.inventory({ runId, identityId: identity.id });
  if (!inventory.ok) throw new Error(`inventory failed: ${inventory.error.message}`);
  for (let chunk = 0; chunk < inventory.chunkCount; chunk++) {
    const items = Math.min(inventory.chunkSize, inventory.itemCount - chunk * inventory.chunkSize);
    for (let batch = 0; batch < Math.ceil(items / inventory.batchSize); batch++) {
      await runner.exportBatch({ runId, identityId: identity.id, chunkIndex: chunk, batchIndex: batch });
    }
  }
  const run = await runner.finalize({ runId, identityId: identity.id, outcome: "completed" });
  expect(run.status, JSON.stringify(run)).toBe("completed");
  return readManifest(app, identity, runId);
}

export async function readManifest(
  app: AppHarness,
  identity: { id: string; container: string },
  runId: string,
): Promise<Manifest> {
  const blob = (await app.container(identity.container)).getBlobClient(
    `${identity.id}/runs/${runId}/manifest.json`,
  );
  return JSON.parse((await blob.downloadToBuffer()).toString("utf8")) as Manifest;
}

export async function readBlob(
  app: AppHarness,
  identity: { id: string; container: string },
  relative: string,
): Promise<Buffer> {
  return (await app.container(identity.container))
    .getBlobClient(`${identity.id}/${relative}`)
    .downloadToBuffer();
}

/** Starts a restore and waits for its end; answers the final GET (record + report). */
export async function runRestore(
  app: AppHarness,
  identityId: string,
  body: unknown,
  timeoutMs = 60_000,
): Promise<{ restoreId: string; report: RestoreReport; record: Record<string, unknown> }> {
  const started = await app.call("POST", `/api/identities/${identityId}/restores`, body);
  expect(started.status, started.text).toBe(202);
  const restoreId = started.body.restoreId as string;
  expect(started.headers.get("location")).toBe(`/api/restores/${restoreId}`);
  const early = await app.call("GET", `/api/restores/${restoreId}`);
  expect(early.status).toBe(200);
  expect(early.body.restoreId).toBe(restoreId);
  if (early.body.status === "running") expect(early.body.report).toBeUndefined();
  const final = await app.host.waitForInstance(restoreId, { timeoutMs });
  expect(final.runtimeStatus, JSON.stringify(final)).toBe("Completed");
  const got = await app.call("GET", `/api/restores/${restoreId}`);
  expect(got.status).toBe(200);
  return { restoreId, report: got.body.report as RestoreReport, record: got.body };
}

/** Every line of an NDJSON file of an item version. */
export async function ndjson<T>(
  app: AppHarness,
  identity: { id: string; container: string },
  item: ManifestItem,
  path: string,
): Promise<T[]> {
  const file = item.files.find((f) => f.path === path);
  if (!file) return [];
  return (await readBlob(app, identity, file.blob))
    .toString("utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as T);
}

/** The source text with the restore's id and URL remaps applied by plain substitution. */
export function expectedText(text: string, report: RestoreReport): string {
  let out = text;
  const urls = Object.entries(report.urlMap).sort((a, b) => b[0].length - a[0].length);
  for (const [from, to] of urls) out = out.split(from).join(to);
  for (const [from, to] of Object.entries(report.idMap)) out = out.split(from).join(to);
  return out;
}

export const EDITOR_FIELDS = ["created_user", "created_date", "last_edited_user", "last_edited_date"];

/** A feature without the fields the target stamps itself (editor tracking). */
export function comparable(feature: { attributes: Record<string, unknown>; geometry?: unknown }) {
  const attributes = { ...feature.attributes };
  for (const field of EDITOR_FIELDS) delete attributes[field];
  return { attributes, geometry: feature.geometry ?? null };
}
