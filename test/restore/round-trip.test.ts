import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { Manifest, ManifestItem } from "../../src/core/backup/manifest.js";
import { type PortalSim, startPortalSim } from "../portal-sim/index.js";
import { type AppHarness, startAppHarness } from "../support/app-harness.js";
import {
  backupWithFeatures,
  comparable,
  expectedText,
  identityFor,
  ndjson,
  readBlob,
  runRestore,
  sha256,
} from "./support.js";

let app: AppHarness;
let target: PortalSim;
let source: { id: string; container: string };
let manifest: Manifest;

beforeAll(async () => {
  app = await startAppHarness({ sim: { size: "tiny", seed: 31 } });
  target = await startPortalSim({ size: "empty", seed: 32 });
  source = await identityFor(app, app.sim);
  manifest = await backupWithFeatures(app, source);
});

afterAll(async () => {
  await target?.close();
  await app?.close();
});

const fileOf = (item: ManifestItem | undefined, path: string) => item?.files.find((f) => f.path === path);

describe("a restore into another, empty org", () => {
  test("every item comes back; a backup of the target matches the source item by item", async () => {
    const targetIdentity = await identityFor(app, target);
    const { report, record } = await runRestore(app, source.id, {
      runId: manifest.runId,
      target: { identityId: targetIdentity.id, mode: "new" },
    });
    expect(record.status).toBe("completed-with-failures");
    // The hosted vector tile service is the one item a backup cannot bring back (no tiles).
    const skipped = report.items.filter((i) => i.status === "skipped");
    expect(skipped.map((i) => i.type)).toEqual(["Vector Tile Service"]);
    expect(skipped[0]?.error?.code).toBe("ERR_NOT_RESTORABLE");
    const failed = report.items.filter((i) => i.status === "failed");
    expect(failed, JSON.stringify(failed, null, 2)).toEqual([]);
    const restored = report.items.filter((i) => i.status === "restored");
    expect(restored).toHaveLength(manifest.items.length - 1);
    // Items with groups the empty org does not have are reported, not silently dropped.
    expect(report.missingGroups.length).toBeGreaterThan(0);
    // Nothing extra was created in the target.
    expect([...target.model.items()]).toHaveLength(restored.length);

    const after = await backupWithFeatures(app, targetIdentity);
    const byNewId = new Map(after.items.map((i) => [i.itemId, i]));
    expect(after.items).toHaveLength(restored.length);
    const readSource = (relative: string) => readBlob(app, source, relative);
    const readTarget = (relative: string) => readBlob(app, targetIdentity, relative);

    for (const entry of restored) {
      const a = manifest.items.find((i) => i.itemId === entry.itemId) as ManifestItem;
      const b = byNewId.get(entry.newId as string);
      expect(b, `${a.type} ${a.title}`).toBeDefined();
      if (!b) continue;
      const label = `${a.type} ${a.itemId} → ${b.itemId}`;
      expect(b.type, label).toBe(a.type);
      expect(b.title, label).toBe(a.title);
      if (a.access !== "shared") expect(b.access, label).toBe(a.access);
      else expect(["private", "shared"]).toContain(b.access);

      // Item fields.
      const itemA = JSON.parse((await readSource(fileOf(a, "item.json")!.blob)).toString("utf8"));
      const itemB = JSON.parse((await readTarget(fileOf(b, "item.json")!.blob)).toString("utf8"));
      for (const field of ["tags", "snippet", "accessInformation", "licenseInfo", "extent", "culture"]) {
        expect(itemB[field], `${label} ${field}`).toEqual(itemA[field]);
      }
      expect(itemB.description, label).toBe(
        itemA.description === null ? null : expectedText(itemA.description, report),
      );
      expect([...itemB.typeKeywords].sort(), label).toEqual([...itemA.typeKeywords].sort());
      expect(JSON.stringify(itemB.properties), label).toBe(
        itemA.properties === null ? "null" : expectedText(JSON.stringify(itemA.properties), report),
      );

      // Data: JSON with ids and URLs remapped, files byte for byte.
      const dataA = a.files.find((f) => f.kind === "data");
      const dataB = b.files.find((f) => f.kind === "data");
      expect(Boolean(dataB), `${label} data`).toBe(Boolean(dataA));
      if (dataA && dataB) {
        if (dataA.path === "data.json") {
          const text = expectedText((await readSource(dataA.blob)).toString("utf8"), report);
          expect(dataB.sha256, `${label} data.json`).toBe(sha256(text));
        } else {
          expect(dataB.sha256, `${label} data file`).toBe(dataA.sha256);
          expect(dataB.originalName, label).toBe(dataA.originalName);
        }
      }
      for (const kind of ["metadata", "thumbnail"] as const) {
        expect(b.files.find((f) => f.kind === kind)?.sha256, `${label} ${kind}`).toBe(
          a.files.find((f) => f.kind === kind)?.sha256,
        );
      }
      // Resources under their original paths.
      const resourcesA = a.files.filter((f) => f.kind === "resource");
      const resourcesB = b.files.filter((f) => f.kind === "resource");
      expect(resourcesB.map((f) => f.originalName).sort(), label).toEqual(
        resourcesA.map((f) => f.originalName).sort(),
      );
      for (const resource of resourcesA) {
        const other = resourcesB.find((f) => f.originalName === resource.originalName);
        const bytes = await readSource(resource.blob);
        const wanted = resource.originalName?.endsWith(".json")
          ? sha256(expectedText(bytes.toString("utf8"), report))
          : resource.sha256;
        expect(other?.sha256, `${label} resource ${resource.originalName}`).toBe(wanted);
      }

      // Hosted features: same rows (editor tracking aside), same attachments.
      for (const features of a.files.filter((f) => f.kind === "features")) {
        const rowsA = (
          await ndjson<{ attributes: Record<string, unknown> }>(app, source, a, features.path)
        ).map(comparable);
        const rowsB = (
          await ndjson<{ attributes: Record<string, unknown> }>(app, targetIdentity, b, features.path)
        ).map(comparable);
        expect(rowsB, `${label} ${features.path}`).toEqual(rowsA);
      }
      expect(b.counts ?? {}, label).toEqual(a.counts ?? {});
      const attachments = (item: ManifestItem) =>
        item.files
          .filter((f) => f.kind === "attachment")
          .map((f) => `${f.detail?.layerId}/${f.originalName}/${f.sha256}`)
          .sort();
      expect(attachments(b), `${label} attachments`).toEqual(attachments(a));

      // Relationships point at the new items.
      const relatedA = fileOf(a, "related.json");
      if (relatedA) {
        const wanted = expectedText((await readSource(relatedA.blob)).toString("utf8"), report);
        const relatedB = fileOf(b, "related.json");
        expect(relatedB, label).toBeDefined();
        expect(JSON.parse((await readTarget(relatedB!.blob)).toString("utf8")), `${label} related`).toEqual(
          JSON.parse(wanted).filter((r: { itemIds: string[] }) =>
            r.itemIds.every((id) => Object.values(report.idMap).includes(id)),
          ),
        );
      }
    }

    // URLs and ids were remapped consistently: the web map points at the new layer.
    const mapEntry = restored.find((i) => i.type === "Web Map")!;
    const mapData = target.model.itemDataBuffer(mapEntry.newId as string)!.toString("utf8");
    const service = restored.find((i) => i.counts?.["features:0"] !== undefined)!;
    expect(Object.values(service.counts ?? {}).some((n) => n > 0)).toBe(true);
    expect(mapData).toContain(report.idMap[service.itemId]);
    for (const oldId of Object.keys(report.idMap)) expect(mapData).not.toContain(oldId);
    expect(Object.keys(report.urlMap).length).toBeGreaterThan(0);
    for (const [from, to] of Object.entries(report.urlMap)) {
      expect(from).not.toBe(to);
      expect(to.startsWith(`http://127.0.0.1:`)).toBe(true);
    }
  });

  test("a view without its source is not restorable into another org; the dry run says why", async () => {
    const targetIdentity = await identityFor(app, target);
    const view = [...app.sim.model.items()].find((i) => i.typeKeywords.includes("View Service"));
    const response = await app.call("POST", `/api/identities/${source.id}/restores`, {
      runId: manifest.runId,
      itemIds: [view?.id],
      target: { identityId: targetIdentity.id, mode: "new" },
      dryRun: true,
    });
    expect(response.status, response.text).toBe(200);
    expect(response.body.plan.items[0]).toMatchObject({
      action: "skip",
      reason: { code: "ERR_VIEW_SOURCE_MISSING" },
    });
  });

  test("lost answers and a failed activity mid-restore create nothing twice", {
    timeout: 120_000,
  }, async () => {
    const crashTarget = await startPortalSim({ size: "empty", seed: 33 });
    try {
      const identity = await identityFor(app, crashTarget);
      crashTarget.setFaults([
        // The portal did the write but the answer never arrived.
        { match: "sharing/content/users/:u/addItem", action: "truncate", after: 1, times: 1 },
        { match: "sharing/content/users/:u/createService", action: "truncate", times: 1 },
        { match: "services/FeatureServer/:layer/applyEdits", action: "truncate", after: 1, times: 1 },
        { match: "services/FeatureServer/:layer/:oid/addAttachment", action: "truncate", after: 2, times: 1 },
        // Sign-in keeps failing (three 401s in a row beat the client's token refreshes): the whole
        // activity fails and Durable Functions runs it again from the progress rows — after plain
        // items were created, after a layer's rows went in (its count check), mid-attachments.
        {
          match: "sharing/content/users/:u/items/:id/update",
          action: "status",
          status: 401,
          after: 2,
          times: 9,
        },
        { match: "services/FeatureServer/:layer/query", action: "status", status: 401, after: 1, times: 3 },
        {
          match: "services/FeatureServer/:layer/:oid/addAttachment",
          action: "status",
          status: 401,
          after: 8,
          times: 9,
        },
      ]);
      const { report, restoreId } = await runRestore(app, source.id, {
        runId: manifest.runId,
        target: { identityId: identity.id, mode: "new" },
      });
      crashTarget.setFaults([]);
      const status = await app.host.getStatus(restoreId, { showHistory: true });
      const events = (status?.historyEvents ?? []) as Array<{ EventType: string }>;
      expect(events.filter((e) => e.EventType === "TaskFailed").length).toBeGreaterThanOrEqual(2);
      const restored = report.items.filter((i) => i.status === "restored");
      expect(report.failures.map((f) => f.code)).toEqual(["ERR_NOT_RESTORABLE"]);
      expect(restored).toHaveLength(manifest.items.length - 1);
      // One item per restored item, no leftovers, no marker keywords left behind.
      const items = [...crashTarget.model.items()];
      expect(items).toHaveLength(restored.length);
      expect(new Set(items.map((i) => i.id))).toEqual(new Set(restored.map((i) => i.newId)));
      for (const item of items)
        expect(item.typeKeywords.some((k) => k.startsWith("orgbackup-restore-"))).toBe(false);
      // Features and attachments exactly once.
      const service = restored.find((i) => i.counts?.["features:0"] !== undefined)!;
      const entry = manifest.items.find((i) => i.itemId === service.itemId)!;
      for (const [key, count] of Object.entries(entry.counts ?? {})) {
        if (!key.startsWith("features:")) continue;
        const layerId = Number(key.slice("features:".length));
        const rows = [...crashTarget.model.features(service.newId as string, layerId)];
        expect(rows, key).toHaveLength(count);
        expect(new Set(rows.map((r) => r.attributes.GlobalID)).size, key).toBe(count);
        if (entry.counts?.[`attachments:${layerId}`] !== undefined) {
          const attachments = rows.flatMap((r) =>
            crashTarget.model.attachments(service.newId as string, layerId, Number(r.attributes.OBJECTID)),
          );
          expect(attachments, `attachments:${layerId}`).toHaveLength(
            entry.counts[`attachments:${layerId}`] ?? -1,
          );
        }
      }
      // Each create was sent once: a lost answer was looked up, not sent again.
      const services = restored.filter((i) => i.type === "Feature Service").length;
      expect(crashTarget.stats.count("sharing/content/users/:u/createService")).toBe(services);
      expect(crashTarget.stats.count("sharing/content/users/:u/addItem")).toBe(restored.length - services);
      expect(restored.some((i) => i.notes.length > 0)).toBe(true);
    } finally {
      await crashTarget.close();
    }
  });
});
