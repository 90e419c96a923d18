import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type AppHarness, startAppHarness } from "../support/app-harness.js";

// The three questions an administrator brings: what was deleted (search), what did this map look
// like before (history, files), what changed since the last backup (diff) — then the revert.

let app: AppHarness;
let identityId: string;
let first: string;
let second: string;
let mapId: string;
let deletedId: string;

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

async function runBackup() {
  const started = await app.call("POST", `/api/identities/${identityId}/backups`, {});
  expect(started.status, started.text).toBe(202);
  await app.host.waitForInstance(started.body.runId as string, { timeoutMs: 60_000 });
  const run = await app.call("GET", `/api/backups/${started.body.runId}`);
  expect(run.body.status, run.text).toBe("completed");
  return started.body.runId as string;
}

beforeAll(async () => {
  app = await startAppHarness({ sim: { size: "tiny", seed: 23 } });
  identityId = (await app.createIdentity()).body.id as string;
  const items = [...app.sim.model.items()];
  const map = items.find((i) => i.type === "Web Map");
  if (map) {
    const at = app.sim.model.indexOf(map.id) as number;
    app.sim.model.putResource(at, "config/settings.json", Buffer.from(JSON.stringify({ basemap: "topo" })));
  }
  first = await runBackup();
  const dashboard = items.find((i) => i.type === "Dashboard");
  if (!map || !dashboard) throw new Error("the org lacks a web map or a dashboard");
  mapId = map.id;
  deletedId = dashboard.id;
  // The web map gets a new title and tag, and one more layer in its data; the dashboard goes.
  const index = app.sim.model.indexOf(mapId) as number;
  const record = app.sim.model.editable(index);
  record.title = "Parks (edited)";
  record.tags = [...record.tags, "edited"];
  const data = app.sim.model.itemData(index);
  if (data.kind !== "json") throw new Error("a web map's data is JSON");
  const json = JSON.parse(data.text) as { operationalLayers?: unknown[] };
  json.operationalLayers = [...(json.operationalLayers ?? []), { id: "added", title: "Added layer" }];
  app.sim.model.setItemData(index, { kind: "json", text: JSON.stringify(json) });
  app.sim.model.putResource(
    index,
    "config/settings.json",
    Buffer.from(JSON.stringify({ basemap: "imagery" })),
  );
  app.sim.model.touch(index);
  app.sim.model.deleteIndex(app.sim.model.indexOf(deletedId) as number);
  second = await runBackup();
}, 120_000);

afterAll(async () => {
  await app?.close();
});

describe("search across backups", () => {
  test("every item ever captured, the deleted one marked with the run that last saw it", async () => {
    const all = await app.call("GET", `/api/identities/${identityId}/items?top=500`);
    expect(all.status, all.text).toBe(200);
    expect(all.body.items).toHaveLength(app.sim.model.itemCount() + 1);
    const deleted = await app.call("GET", `/api/identities/${identityId}/items?deleted=true`);
    expect(deleted.body.items).toEqual([
      expect.objectContaining({ itemId: deletedId, type: "Dashboard", deleted: true, lastRunId: first }),
    ]);
    const edited = await app.call("GET", `/api/identities/${identityId}/items?q=EDITED`);
    expect(edited.body.items).toEqual([
      expect.objectContaining({
        itemId: mapId,
        title: "Parks (edited)",
        versions: 2,
        firstRunId: first,
        lastRunId: second,
        deleted: false,
      }),
    ]);
    const byId = await app.call("GET", `/api/identities/${identityId}/items?q=${mapId.slice(4, 20)}`);
    expect(byId.body.items.map((i: { itemId: string }) => i.itemId)).toEqual([mapId]);
    const maps = await app.call("GET", `/api/identities/${identityId}/items?type=Web%20Map`);
    expect(maps.body.items.every((i: { type: string }) => i.type === "Web Map")).toBe(true);
  });

  test("pages follow the continuation token in a stable order, each item once", async () => {
    const seen: string[] = [];
    let token: string | undefined;
    for (let page = 0; page < 50; page++) {
      const query = `top=4${token ? `&continuationToken=${token}` : ""}`;
      const answer = await app.call("GET", `/api/identities/${identityId}/items?${query}`);
      expect(answer.status, answer.text).toBe(200);
      seen.push(...answer.body.items.map((i: { itemId: string }) => i.itemId));
      token = answer.body.continuationToken;
      if (!token) break;
    }
    expect(seen).toEqual([...seen].sort());
    expect(new Set(seen).size).toBe(app.sim.model.itemCount() + 1);
  });

  test("an unknown query parameter or a bad value is refused naming it", async () => {
    const unknown = await app.call("GET", `/api/identities/${identityId}/items?sort=title`);
    expect(unknown.status).toBe(400);
    expect(unknown.body.error.field).toBe("sort");
    const top = await app.call("GET", `/api/identities/${identityId}/items?top=0`);
    expect(top.status).toBe(400);
    expect(top.body.error.field).toBe("top");
  });
});

describe("an item's history", () => {
  test("each version with the runs that hold it and what changed since the one before", async () => {
    const history = await app.call("GET", `/api/identities/${identityId}/items/${mapId}/versions`);
    expect(history.status, history.text).toBe(200);
    const [older, newer] = history.body.versions;
    expect(older).toMatchObject({ firstRunId: first, runs: [first], changes: null });
    expect(newer.runs).toEqual([second]);
    expect(newer.changes.parts).toEqual(expect.arrayContaining(["item", "data"]));
    expect(newer.changes.fields).toEqual(expect.arrayContaining(["title", "tags", "modified"]));
  });

  test("a captured file streams with its type", async () => {
    const history = await app.call("GET", `/api/identities/${identityId}/items/${mapId}/versions`);
    const older = history.body.versions[0];
    const data = older.files.find((f: { path: string }) => f.path === "data.json");
    const response = await fetch(
      `${app.host.baseUrl}/api/identities/${identityId}/items/${mapId}/versions/${older.version}/files/data.json`,
    );
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toContain("application/json");
    expect(sha256(Buffer.from(await response.arrayBuffer()))).toBe(data.sha256);
    const missing = await app.call(
      "GET",
      `/api/identities/${identityId}/items/${mapId}/versions/${older.version}/files/nope.json`,
    );
    expect(missing.status).toBe(404);
  });

  test("the diff of two versions carries JSON Patches of the item and its data", async () => {
    const history = await app.call("GET", `/api/identities/${identityId}/items/${mapId}/versions`);
    const [older, newer] = history.body.versions;
    const diff = await app.call(
      "GET",
      `/api/identities/${identityId}/items/${mapId}/diff?from=${older.version}&to=${newer.version}`,
    );
    expect(diff.status, diff.text).toBe(200);
    expect(diff.body.patches.item).toContainEqual({ op: "replace", path: "/title", value: "Parks (edited)" });
    expect(diff.body.patches.data).toContainEqual(
      expect.objectContaining({ op: "add", value: { id: "added", title: "Added layer" } }),
    );
    expect(diff.body.resources.changed).toEqual(["config/settings.json"]);
    expect(diff.body.patches.resources["config/settings.json"]).toEqual([
      { op: "replace", path: "/basemap", value: "imagery" },
    ]);
  });

  test("a version found in the history restores by its run", async () => {
    const history = await app.call("GET", `/api/identities/${identityId}/items/${mapId}/versions`);
    const older = history.body.versions[0];
    const plan = await app.call("POST", `/api/identities/${identityId}/restores`, {
      runId: older.runs[0],
      itemIds: [mapId],
      target: { mode: "overwrite" },
      dryRun: true,
    });
    expect(plan.status, plan.text).toBe(200);
    expect(plan.body.plan.items).toEqual([expect.objectContaining({ itemId: mapId, action: "overwrite" })]);
  });
});

describe("what changed between two runs", () => {
  test("added, removed and changed items, with the changed parts and patches", async () => {
    const diff = await app.call("GET", `/api/backups/${second}/diff?against=${first}`);
    expect(diff.status, diff.text).toBe(200);
    expect(diff.body).toMatchObject({
      from: first,
      to: second,
      totals: { added: 0, removed: 1, changed: 1 },
    });
    expect(diff.body.removed).toEqual([expect.objectContaining({ itemId: deletedId })]);
    const [changed] = diff.body.changed;
    expect(changed).toMatchObject({ itemId: mapId, parts: expect.arrayContaining(["item", "data"]) });
    expect(changed.patches.item).toContainEqual({ op: "replace", path: "/title", value: "Parks (edited)" });
    const bad = await app.call("GET", `/api/backups/${second}/diff?against=nope`);
    expect(bad.status).toBe(400);
    expect(bad.body.error.field).toBe("against");
  });
});

describe("an item listed differently without a new version", () => {
  // A move to another folder keeps `modified`; the simulator shows it as a title the listing
  // changes in place, which takes the same path (the inventory notes it, the index takes it in).
  test("is found as listed now as soon as the next backup shows completed", async () => {
    const pdf = [...app.sim.model.items()].find((i) => i.type === "PDF");
    if (!pdf) throw new Error("the org lacks a PDF");
    app.sim.model.editable(app.sim.model.indexOf(pdf.id) as number).title = "Listed anew";
    // Followed as the console follows a run: the status it shows, not the orchestration's end.
    const started = await app.call("POST", `/api/identities/${identityId}/backups`, {});
    expect(started.status, started.text).toBe(202);
    let run = await app.call("GET", `/api/backups/${started.body.runId}`);
    while (run.body.status === "running") {
      await new Promise((resolve) => setTimeout(resolve, 10));
      run = await app.call("GET", `/api/backups/${started.body.runId}`);
    }
    expect(run.body).toMatchObject({ status: "completed", itemsExported: 0 });
    const found = await app.call("GET", `/api/identities/${identityId}/items?q=listed%20anew`);
    expect(found.body.items).toEqual([
      expect.objectContaining({ itemId: pdf.id, title: "Listed anew", versions: 1 }),
    ]);
  });
});

describe("the index", () => {
  test("is rebuilt from the manifests with the same answers", async () => {
    const before = await app.call("GET", `/api/identities/${identityId}/items?top=500`);
    const rebuilt = await app.call("POST", `/api/identities/${identityId}/index/rebuild`);
    expect(rebuilt.status, rebuilt.text).toBe(200);
    expect(rebuilt.body).toEqual({ runsIndexed: 3 });
    const after = await app.call("GET", `/api/identities/${identityId}/items?top=500`);
    expect(after.body).toEqual(before.body);
  });
});
