import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { Manifest } from "../../src/core/backup/manifest.js";
import { silentLogger } from "../../src/core/log.js";
import { newRestoreRecord, type RestorePlan } from "../../src/core/restore/model.js";
import { RestoreRunner } from "../../src/core/restore/restore-runner.js";
import { RestoreStore } from "../../src/core/restore/restore-store.js";
import { getServices } from "../../src/core/services.js";
import { openAppTable } from "../../src/core/tables/table-client.js";
import { type AppHarness, startAppHarness } from "../support/app-harness.js";
import { backupWithFeatures, identityFor, readBlob, runRestore, sha256 } from "./support.js";

let app: AppHarness;
let source: { id: string; container: string };
let manifest: Manifest;

beforeAll(async () => {
  app = await startAppHarness({ sim: { size: "tiny", seed: 41 } });
  source = await identityFor(app, app.sim);
  manifest = await backupWithFeatures(app, source);
});

afterAll(async () => {
  await app?.close();
});

const byType = (type: string, view?: boolean) => {
  const item = [...app.sim.model.items()].find(
    (i) => i.type === type && (view === undefined || i.typeKeywords.includes("View Service") === view),
  );
  if (!item) throw new Error(`no ${type}`);
  return item;
};

describe("restores into the original org", () => {
  test("a dry run answers the plan in dependency order and creates nothing", async () => {
    const before = app.sim.model.itemCount();
    const response = await app.call("POST", `/api/identities/${source.id}/restores`, {
      runId: manifest.runId,
      target: { mode: "new" },
      dryRun: true,
    });
    expect(response.status, response.text).toBe(200);
    const plan = response.body.plan as RestorePlan;
    expect(app.sim.model.itemCount()).toBe(before);
    const level = (type: string, view = false) =>
      plan.items.find((i) => i.type === type && (i.kind === "view") === view)?.level ?? -99;
    expect(level("Feature Service")).toBeLessThan(level("Web Map"));
    expect(level("Web Map")).toBeLessThan(level("Web Mapping Application"));
    expect(level("Web Map")).toBeLessThan(level("Dashboard"));
    expect(level("Feature Service")).toBeLessThan(level("Form"));
    expect(level("Feature Service")).toBeLessThan(level("Feature Service", true));
    expect(plan.items.every((i) => i.action === "create" || i.action === "skip")).toBe(true);
    const map = plan.items.find((i) => i.type === "Web Map");
    const service = plan.items.find((i) => i.kind === "feature-service");
    expect(map?.references.remapped).toContain(service?.itemId);
    expect(map?.references.urls.length).toBeGreaterThan(0);
    expect(plan.levels.flat()).toHaveLength(plan.totals.create);
    // Items appear in restore order: levels never go down.
    const levels = plan.items.filter((i) => i.action !== "skip").map((i) => i.level);
    expect(levels).toEqual([...levels].sort((a, b) => a - b));

    // One map alone: what it refers to stays, and the plan says so.
    const alone = await app.call("POST", `/api/identities/${source.id}/restores`, {
      runId: manifest.runId,
      itemIds: [map?.itemId],
      target: { mode: "new" },
      dryRun: true,
    });
    const single = alone.body.plan as RestorePlan;
    expect(single.items).toHaveLength(1);
    expect(single.items[0]?.references.remapped).toEqual([]);
    expect(single.items[0]?.references.unchanged.map((u) => u.id)).toContain(service?.itemId);
  });

  test("a deleted web map comes back as a new item with its original content, owner, folder and sharing", async () => {
    const map = byType("Web Map");
    const original = app.sim.model.itemDataBuffer(map.id) as Buffer;
    const related = app.sim.model.relatedItems(map.id);
    const snapshot = { ...map, groups: [...map.groups] };
    app.sim.mutate.deleteItem(map.id);
    const before = app.sim.model.itemCount();
    const { report } = await runRestore(app, source.id, {
      runId: manifest.runId,
      itemIds: [map.id],
      target: { mode: "new" },
    });
    expect(report.status).toBe("completed");
    expect(app.sim.model.itemCount()).toBe(before + 1);
    const newId = report.idMap[map.id] as string;
    expect(newId).toBeDefined();
    expect(newId).not.toBe(map.id);
    const restored = app.sim.model.item(newId);
    expect(restored).toMatchObject({
      title: snapshot.title,
      type: snapshot.type,
      owner: snapshot.owner,
      folderId: snapshot.folderId,
      snippet: snapshot.snippet,
      tags: snapshot.tags,
      typeKeywords: snapshot.typeKeywords,
      access: snapshot.access,
    });
    expect([...(restored?.groups ?? [])].sort()).toEqual([...snapshot.groups].sort());
    // Nothing it refers to was restored: its data is the original, byte for byte.
    expect(sha256(app.sim.model.itemDataBuffer(newId) as Buffer)).toBe(sha256(original));
    expect(app.sim.model.metadata(newId)).toBe(
      (
        await readBlob(
          app,
          source,
          manifest.items.find((i) => i.itemId === map.id)!.files.find((f) => f.kind === "metadata")!.blob,
        )
      ).toString("utf8"),
    );
    // Its relationship to the (still existing) map service is back.
    for (const rel of related) {
      const other = rel.originId === map.id ? rel.destId : rel.originId;
      expect(
        app.sim.model.relatedItems(newId).map((r) => (r.originId === newId ? r.destId : r.originId)),
      ).toContain(other);
    }
    expect(report.unchangedReferences.filter((r) => r.itemId === map.id).length).toBeGreaterThan(0);
  });

  test("overwrite puts an edited app and a changed feature layer back as they were, under the same ids", async () => {
    const appItem = byType("Web Mapping Application");
    const service = byType("Feature Service", false);
    const appData = app.sim.model.itemDataBuffer(appItem.id) as Buffer;
    const rows = () => [...app.sim.model.features(service.id, 0)];
    const globalIds = () =>
      rows()
        .map((f) => String(f.attributes.GlobalID))
        .sort();
    const originalIds = globalIds();
    const originalTitle = appItem.title;
    app.sim.mutate.editItem(appItem.id, {
      title: "Changed",
      data: JSON.stringify({ broken: true }),
      snippet: "x",
    });
    const first = rows()[0];
    if (first) app.sim.mutate.deleteFeatures(service.id, 0, [Number(first.attributes.OBJECTID)]);
    app.sim.mutate.addFeatures(service.id, 0, 3);
    expect(globalIds()).not.toEqual(originalIds);
    const before = app.sim.model.itemCount();

    const { report } = await runRestore(app, source.id, {
      runId: manifest.runId,
      itemIds: [appItem.id, service.id],
      target: { mode: "overwrite" },
    });
    expect(report.failures, JSON.stringify(report.failures)).toEqual([]);
    expect(report.items.map((i) => i.action)).toEqual(["overwrite", "overwrite"]);
    expect(report.idMap).toEqual({ [appItem.id]: appItem.id, [service.id]: service.id });
    expect(app.sim.model.itemCount()).toBe(before);
    expect(app.sim.model.item(appItem.id)?.title).toBe(originalTitle);
    expect(sha256(app.sim.model.itemDataBuffer(appItem.id) as Buffer)).toBe(sha256(appData));
    expect(globalIds()).toEqual(originalIds);
    const entry = manifest.items.find((i) => i.itemId === service.id);
    expect(rows()).toHaveLength(entry?.counts?.["features:0"] ?? -1);
  });

  test("a backup file that does not match the manifest refuses its item; the others are restored", async () => {
    const pdf = manifest.items.find((i) => i.type === "PDF")!;
    const csv = manifest.items.find((i) => i.type === "CSV")!;
    const data = pdf.files.find((f) => f.kind === "data")!;
    const container = await app.container(source.container);
    const blob = container.getBlockBlobClient(`${source.id}/${data.blob}`);
    const bytes = await blob.downloadToBuffer();
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 0xff;
    await blob.uploadData(bytes);
    const before = app.sim.model.itemCount();
    const { report } = await runRestore(app, source.id, {
      runId: manifest.runId,
      itemIds: [pdf.itemId, csv.itemId],
      target: { mode: "new" },
    });
    expect(report.status).toBe("completed-with-failures");
    const failed = report.items.find((i) => i.itemId === pdf.itemId);
    expect(failed?.status).toBe("failed");
    expect(failed?.error?.code).toBe("ERR_BACKUP_CORRUPT");
    expect(failed?.newId).toBeNull();
    expect(report.items.find((i) => i.itemId === csv.itemId)?.status).toBe("restored");
    expect(app.sim.model.itemCount()).toBe(before + 1);
  });

  test("a large file goes up in checked parts; a name taken in the folder gets a suffix", async () => {
    // The runner's activities driven directly, with limits small enough for the tiny org's files.
    const services = await getServices();
    const store = new RestoreStore(
      await openAppTable(services.config.appStorage, services.config.runsTable, services.credential),
    );
    const runner = new RestoreRunner({
      identities: services.identities,
      store,
      portalFor: (i) => services.portalFor(i),
      openStore: (i) => services.openStore(i),
      log: silentLogger,
      limits: { singleUploadMax: 1024, partSize: 700 },
    });
    const shapefile = manifest.items.find((i) => i.type === "Shapefile")!;
    const data = shapefile.files.find((f) => f.kind === "data")!;
    expect(data.size).toBeGreaterThan(1024);
    const started = newRestoreRecord({
      identityId: source.id,
      runId: manifest.runId,
      target: { identityId: source.id, mode: "new" },
      itemIds: [shapefile.itemId],
      itemsTotal: 1,
    });
    await store.create(started);
    const { restoreId } = started;
    const input = { restoreId, identityId: source.id };
    const summary = await runner.plan(input);
    expect(summary.batchesPerLevel).toEqual([1]);
    // Run twice: the second run finds the item done and sends nothing.
    await runner.restoreBatch({ ...input, level: 0, batch: 0 });
    const calls = app.sim.stats.count("sharing/content/users/:u/items/:id/addPart");
    expect(calls).toBe(Math.ceil(data.size / 700));
    await runner.restoreBatch({ ...input, level: 0, batch: 0 });
    expect(app.sim.stats.count("sharing/content/users/:u/items/:id/addPart")).toBe(calls);
    const record = await runner.finalize({ ...input, outcome: "completed" });
    expect(record.status).toBe("completed");
    const report = await runner.readReport(source.id, record.report as string);
    const newId = report?.idMap[shapefile.itemId] as string;
    expect(sha256(app.sim.model.itemDataBuffer(newId) as Buffer)).toBe(data.sha256);
    expect(app.sim.model.item(newId)?.name).toMatch(/ \(restored\)\.zip$/);
    expect(report?.items[0]?.notes.join(" ")).toContain("already exists");
  });

  test("a view is planned on its source: restored with it, or the existing one in the same org", async () => {
    const view = manifest.items.find(
      (i) => i.type === "Feature Service" && i.files.some((f) => f.kind === "layer") && !i.counts,
    )!;
    const response = await app.call("POST", `/api/identities/${source.id}/restores`, {
      runId: manifest.runId,
      itemIds: [view.itemId],
      target: { mode: "new" },
      dryRun: true,
    });
    const planned = (response.body.plan as RestorePlan).items[0];
    expect(planned?.kind).toBe("view");
    expect(planned?.action).toBe("create");
    expect(planned?.viewSource?.restored).toBe(false);
    expect(planned?.viewSource?.name).toBeTruthy();
  });

  test("items that refer to each other share a level and get each other's new ids in the last pass", async () => {
    const dashboard = byType("Dashboard");
    const story = byType("StoryMap");
    app.sim.mutate.editItem(dashboard.id, { data: JSON.stringify({ widgets: [{ itemId: story.id }] }) });
    app.sim.mutate.editItem(story.id, {
      data: JSON.stringify({ resources: { r: { data: { itemId: dashboard.id } } } }),
    });
    const cyclic = await backupWithFeatures(app, source);
    const { report } = await runRestore(app, source.id, {
      runId: cyclic.runId,
      itemIds: [dashboard.id, story.id],
      target: { mode: "new" },
    });
    expect(report.failures).toEqual([]);
    const newDashboard = report.idMap[dashboard.id] as string;
    const newStory = report.idMap[story.id] as string;
    expect(app.sim.model.itemDataBuffer(newDashboard)?.toString()).toBe(
      JSON.stringify({ widgets: [{ itemId: newStory }] }),
    );
    expect(app.sim.model.itemDataBuffer(newStory)?.toString()).toBe(
      JSON.stringify({ resources: { r: { data: { itemId: newDashboard } } } }),
    );
  });

  test("bad requests", async () => {
    const post = (body: unknown, id = source.id) => app.call("POST", `/api/identities/${id}/restores`, body);
    const unknownRun = await post({ runId: "b-0000000000000-zzzzzz", target: { mode: "new" } });
    expect(unknownRun.status).toBe(404);
    const notInRun = await post({
      runId: manifest.runId,
      itemIds: ["0".repeat(32)],
      target: { mode: "new" },
    });
    expect(notInRun.status).toBe(400);
    expect(notInRun.body.error.field).toBe("itemIds");
    const badId = await post({ runId: manifest.runId, itemIds: ["nope"], target: { mode: "new" } });
    expect(badId.status).toBe(400);
    expect(badId.body.error.field).toBe("itemIds.0");
    const noTarget = await post({ runId: manifest.runId });
    expect(noTarget.status).toBe(400);
    expect(noTarget.body.error.field).toBe("target");
    const badMode = await post({ runId: manifest.runId, target: { mode: "merge" } });
    expect(badMode.status).toBe(400);
    expect(badMode.body.error.field).toBe("target.mode");
    expect(
      (await post({ runId: manifest.runId, target: { mode: "new" } }, "00000000-0000-4000-8000-000000000000"))
        .status,
    ).toBe(404);
    const unknownTarget = await post({
      runId: manifest.runId,
      target: { mode: "new", identityId: "00000000-0000-4000-8000-000000000000" },
    });
    expect(unknownTarget.status).toBe(404);
    const badOwner = await post({
      runId: manifest.runId,
      target: { mode: "new", owner: "nobody_here" },
      dryRun: true,
    });
    expect(badOwner.status).toBe(400);
    expect(badOwner.body.error.field).toBe("target.owner");

    // A viewer may not create content: a clear 403 before anything starts.
    const viewer = app.sim.model.users.find((u) => u.userType === "viewerUT")!;
    const viewerIdentity = await identityFor(app, app.sim, viewer);
    const refused = await post({
      runId: manifest.runId,
      target: { mode: "new", identityId: viewerIdentity.id },
    });
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe("ERR_TARGET_PRIVILEGES");
    expect(refused.body.error.message).toContain("portal:user:createItem");

    expect((await app.call("GET", "/api/restores/r-0000000000000-zzzzzz")).status).toBe(404);
    expect((await app.call("GET", "/api/restores/nope")).status).toBe(404);
    const listed = await app.call("GET", `/api/identities/${source.id}/restores`);
    expect(listed.status).toBe(200);
    expect(listed.body.restores.length).toBeGreaterThanOrEqual(3);
  });
});
