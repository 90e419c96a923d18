/**
 * What a run through faults must still have produced, checked against ground truth: the
 * simulator's model for a backup, the backup's manifest and the target org for a restore.
 * Blob is read directly from Azurite here, never through a fault proxy.
 */
import { expect } from "vitest";
import type { Manifest, ManifestItem } from "../../src/core/backup/manifest.js";
import type { RestoreReport } from "../../src/core/restore/model.js";
import type { PortalSim } from "../portal-sim/index.js";
import { readBlob, sha256 } from "../restore/support.js";
import type { AppHarness } from "../support/app-harness.js";
import type { Identity } from "./rig.js";

/**
 * Every item of the org is in the manifest exactly once; each is exported, or failed with the
 * code `failures` names for it; every file of an exported item is in Blob with the size and
 * hash the manifest gives, and data, metadata, resources and features match the org.
 */
export async function expectBackupMatchesOrg(
  app: AppHarness,
  sim: PortalSim,
  identity: Identity,
  manifest: Manifest,
  failures: Record<string, string> = {},
): Promise<void> {
  const ids = manifest.items.map((i) => i.itemId);
  expect(new Set(ids).size, "an item listed twice").toBe(ids.length);
  const orgItems = [...sim.model.items()];
  expect([...ids].sort()).toEqual(orgItems.map((i) => i.id).sort());
  const byId = new Map(manifest.items.map((i) => [i.itemId, i]));
  for (const item of orgItems) {
    const entry = byId.get(item.id) as ManifestItem;
    const label = `${item.type} ${item.id}`;
    const code = failures[item.id];
    if (code) {
      expect({ status: entry.status, code: entry.error?.code }, label).toEqual({ status: "failed", code });
      continue;
    }
    const why = entry.error ? `: ${entry.error.code} ${entry.error.message}` : "";
    expect(entry.status, `${label} is ${entry.status}${why}`).toBe("exported");
    await expectFilesInBlob(app, identity, entry);
    expectContentOfOrg(sim, entry);
  }
  expect(manifest.totals).toMatchObject({
    items: orgItems.length,
    exported: orgItems.length - Object.keys(failures).length,
    failed: Object.keys(failures).length,
  });
}

/** Each file the manifest lists, read back from Blob: its size and hash as recorded. */
async function expectFilesInBlob(app: AppHarness, identity: Identity, entry: ManifestItem): Promise<void> {
  for (const file of entry.files) {
    const bytes = await readBlob(app, identity, file.blob);
    const label = `${entry.type} ${entry.itemId} ${file.path}`;
    expect({ size: bytes.length, sha256: sha256(bytes) }, label).toEqual({
      size: file.size,
      sha256: file.sha256,
    });
  }
}

/** Data, metadata, resources and feature counts as the org holds them: nothing left out. */
function expectContentOfOrg(sim: PortalSim, entry: ManifestItem): void {
  const id = entry.itemId;
  const label = `${entry.type} ${id}`;
  const hashOf = (kind: string) => entry.files.find((f) => f.kind === kind)?.sha256;
  const data = sim.model.itemDataBuffer(id);
  expect(hashOf("data"), `${label} data`).toBe(data && data.length > 0 ? sha256(data) : undefined);
  const metadata = sim.model.metadata(id);
  expect(hashOf("metadata"), `${label} metadata`).toBe(metadata ? sha256(metadata) : undefined);
  const thumbnail = sim.model.thumbnail(id);
  expect(hashOf("thumbnail"), `${label} thumbnail`).toBe(thumbnail ? sha256(thumbnail) : undefined);
  for (const resource of sim.model.resources(id)) {
    const file = entry.files.find((f) => f.kind === "resource" && f.originalName === resource.resource);
    const bytes = sim.model.resourceBuffer(id, resource.resource) as Buffer;
    expect(file?.sha256, `${label} resource ${resource.resource}`).toBe(sha256(bytes));
  }
  for (const [key, count] of Object.entries(entry.counts ?? {})) {
    if (!key.startsWith("features:")) continue;
    const layerId = Number(key.slice("features:".length));
    expect(count, `${label} ${key}`).toBe([...sim.model.features(id, layerId)].length);
  }
}

/**
 * Every restorable item of the backup is restored once into `target` and nothing else is there;
 * file data arrives byte for byte; each layer holds its rows and attachments exactly once.
 * (Hosted vector tile services are the items a backup cannot bring back.)
 */
export function expectRestoreMatchesBackup(
  target: PortalSim,
  manifest: Manifest,
  report: RestoreReport,
): void {
  const notRestorable = manifest.items.filter((i) => i.type === "Vector Tile Service").map((i) => i.itemId);
  const unexpected = report.failures.filter((f) => !notRestorable.includes(f.itemId));
  const example = unexpected[0] && `${unexpected[0].code}: ${unexpected[0].message}`;
  expect(unexpected, `${unexpected.length} items not restored, e.g. ${example}`).toEqual([]);
  expect(report.failures.map((f) => `${f.code} ${f.itemId}`).sort()).toEqual(
    notRestorable.map((id) => `ERR_NOT_RESTORABLE ${id}`).sort(),
  );
  const restored = report.items.filter((i) => i.status === "restored");
  expect(restored).toHaveLength(manifest.items.length - notRestorable.length);
  const inTarget = [...target.model.items()];
  expect(inTarget.map((i) => i.id).sort(), "items in the target org").toEqual(
    restored.map((i) => i.newId as string).sort(),
  );
  for (const entry of restored) {
    const source = manifest.items.find((i) => i.itemId === entry.itemId) as ManifestItem;
    const newId = entry.newId as string;
    const data = source.files.find((f) => f.kind === "data");
    if (data && data.path !== "data.json") {
      const bytes = target.model.itemDataBuffer(newId);
      expect(bytes && sha256(bytes), `${source.type} ${source.itemId} data`).toBe(data.sha256);
    }
    expectRowsOnce(target, newId, source);
  }
}

function expectRowsOnce(target: PortalSim, newId: string, source: ManifestItem): void {
  for (const [key, count] of Object.entries(source.counts ?? {})) {
    if (!key.startsWith("features:")) continue;
    const layerId = Number(key.slice("features:".length));
    const rows = [...target.model.features(newId, layerId)];
    expect(rows, `${source.itemId} ${key}`).toHaveLength(count);
    expect(new Set(rows.map((r) => r.attributes.GlobalID)).size, `${source.itemId} ${key} GlobalIDs`).toBe(
      count,
    );
    const attachments = source.counts?.[`attachments:${layerId}`];
    if (attachments === undefined) continue;
    const stored = rows.flatMap((r) =>
      target.model.attachments(newId, layerId, Number(r.attributes.OBJECTID)),
    );
    expect(stored, `${source.itemId} attachments:${layerId}`).toHaveLength(attachments);
  }
}
