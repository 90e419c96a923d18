import { randomBytes } from "node:crypto";
import { BlobServiceClient } from "@azure/storage-blob";
import { beforeAll, describe, expect, inject, test } from "vitest";
import type { ItemResult } from "../../src/core/backup/export-item.js";
import { batchResultName, newRunId } from "../../src/core/backup/layout.js";
import { planPrune } from "../../src/core/backup/prune.js";
import { newRunRecord, type RunRecord } from "../../src/core/backup/runs.js";
import { BlobBackupStore } from "../../src/core/storage/blob-backup-store.js";

// Which runs a prune keeps, trims and forgets, with the runs' results in Blob (Azurite): the
// last version of a deleted item is held by the newest run that saw it, for keepDeletedDays.

const IDENTITY = "00000000-0000-4000-8000-0000000000a7";
const DAY_MS = 86_400_000;
let store: BlobBackupStore;

beforeAll(async () => {
  const { connectionString } = inject("azurite");
  const container = BlobServiceClient.fromConnectionString(connectionString).getContainerClient(
    `prune-plan-${randomBytes(4).toString("hex")}`,
  );
  await container.create();
  store = new BlobBackupStore(container, IDENTITY);
});

function result(itemId: string): ItemResult {
  return {
    itemId,
    title: itemId,
    type: "Web Map",
    owner: "jsmith",
    folderId: null,
    folderTitle: null,
    access: "private",
    groups: [],
    status: "exported",
    version: "v1",
    files: [],
    bytes: 0,
    notes: [],
  };
}

async function run(daysAgo: number, status: RunRecord["status"], itemIds: string[], now: number) {
  const startedAt = now - daysAgo * DAY_MS;
  const record = newRunRecord({
    runId: newRunId("b", startedAt),
    identityId: IDENTITY,
    name: "test",
    trigger: "schedule",
    status,
    startedAt: new Date(startedAt).toISOString(),
    endedAt: new Date(startedAt + 3_600_000).toISOString(),
    manifest: "m",
  });
  await store.uploadJson(batchResultName(record.runId, 0, 0), itemIds.map(result));
  return record;
}

describe("a prune's plan", () => {
  test("trims a forgotten run to the deleted items it last saw; a newer cancelled run's own items are not deleted ones", async () => {
    const now = Date.parse("2026-12-05T12:00:00Z");
    const cancelled = await run(9, "cancelled", ["a", "b", "x"], now);
    const newest = await run(10, "completed", ["a", "b"], now);
    const older = await run(11, "completed", ["a", "b", "d"], now);
    const oldest = await run(400, "completed", ["a", "e"], now);
    const plan = await planPrune({
      store,
      runs: [cancelled, newest, older, oldest].sort((p, q) => (p.runId < q.runId ? -1 : 1)),
      policy: { keepLast: 1, keepDeletedDays: 365 },
      restoresInUse: new Set(),
      now: new Date(now),
      pruneId: null,
      identityId: IDENTITY,
    });
    const byRun = new Map(plan.runs.map((d) => [d.runId, d]));
    expect(byRun.get(newest.runId)?.action).toBe("keep");
    expect(byRun.get(older.runId)).toMatchObject({ action: "trim", heldItems: ["d"] });
    // Ended over 365 days ago: its deleted item is no longer held.
    expect(byRun.get(oldest.runId)?.action).toBe("forget");
    // Forgotten (its diagnosis week is over), holding nothing: x was created after the newest run.
    expect(byRun.get(cancelled.runId)?.action).toBe("forget");
  });

  test("a run a running restore reads is kept", async () => {
    const now = Date.now();
    const newest = await run(1, "completed", ["a"], now);
    const read = await run(2, "completed", ["a"], now);
    const plan = await planPrune({
      store,
      runs: [newest, read],
      policy: { keepLast: 1, keepDeletedDays: 0 },
      restoresInUse: new Set([read.runId]),
      now: new Date(now),
      pruneId: null,
      identityId: IDENTITY,
    });
    expect(plan.runs.find((d) => d.runId === read.runId)).toMatchObject({
      action: "keep",
      reasons: ["read by a running restore"],
    });
  });
});
