import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type AppHarness, startAppHarness } from "../support/app-harness.js";

// "Snapshot now": a backup of a few item ids, taken before a truncate or an overwrite, reads just
// those items — no listing of the org's users, groups or content — and records them as a whole-org
// run would (folder, groups); the next whole-org backup still compares with the last whole-org run.

let app: AppHarness;
let identityId: string;

// biome-ignore lint/suspicious/noExplicitAny: API answers are free-form JSON in tests
async function backUp(body: unknown): Promise<any> {
  const started = await app.call("POST", `/api/identities/${identityId}/backups`, body);
  expect(started.status, started.text).toBe(202);
  await app.host.waitForInstance(started.body.runId as string, { timeoutMs: 60_000 });
  const run = await app.call("GET", `/api/backups/${started.body.runId}`);
  expect(run.body.status, run.text).toBe("completed");
  return run.body;
}

// biome-ignore lint/suspicious/noExplicitAny: manifests are free-form JSON in tests
async function manifestItems(runId: string): Promise<any[]> {
  const manifest = await app.call("GET", `/api/backups/${runId}/manifest`);
  expect(manifest.status, manifest.text).toBe(200);
  return manifest.body.items;
}

beforeAll(async () => {
  app = await startAppHarness({ sim: { size: "tiny", seed: 23 } });
  identityId = (await app.createIdentity()).body.id as string;
}, 60_000);

afterAll(async () => {
  await app?.close();
});

describe("a snapshot of one layer", () => {
  test("reads only that item, records its folder and groups, and the next full backup finds the org unchanged", async () => {
    const full = await backUp({});
    const layer = (await manifestItems(full.runId)).find(
      (item) => item.type === "Feature Service" && item.groups.length > 0,
    );
    if (!layer) throw new Error("the org lacks a shared feature layer");

    app.sim.stats.reset();
    const snapshot = await backUp({ name: "before truncate", filter: { itemIds: [layer.itemId] } });
    expect(snapshot).toMatchObject({ name: "before truncate", itemsTotal: 1, itemsFailed: 0 });
    for (const listing of ["portals/self/users", "community/groups", "content/groups/:id"]) {
      expect(app.sim.stats.count(listing), listing).toBe(0);
    }
    const [captured] = await manifestItems(snapshot.runId);
    expect(captured).toMatchObject({
      itemId: layer.itemId,
      folderTitle: layer.folderTitle,
      groups: layer.groups,
      version: layer.version,
    });

    const next = await backUp({});
    expect(next).toMatchObject({ itemsExported: 0, itemsTotal: full.itemsTotal });
  });
});
