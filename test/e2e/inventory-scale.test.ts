import { randomBytes } from "node:crypto";
import { BlobServiceClient } from "@azure/storage-blob";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { PortalClient } from "../../src/core/arcgis/portal-client.js";
import { UsernamePasswordTokenProvider } from "../../src/core/arcgis/token-providers.js";
import { readInventoryChunk, takeInventory } from "../../src/core/backup/inventory.js";
import { silentLogger } from "../../src/core/log.js";
import { BlobBackupStore } from "../../src/core/storage/blob-backup-store.js";
import { type PortalSim, startPortalSim } from "../portal-sim/index.js";

let sim: PortalSim;

beforeAll(async () => {
  // Past the search API's 10,000-result ceiling: only per-user listing sees them all.
  sim = await startPortalSim({
    size: "tiny",
    seed: 21,
    overrides: { publishers: 4, viewers: 2, foldersPerUser: 2, items: { webMap: 9_000, pdf: 3_000 } },
  });
});

afterAll(async () => {
  await sim?.close();
});

describe("inventory", () => {
  test("lists all 12,000 items of an org past the search ceiling, each exactly once", async () => {
    const portal = new PortalClient({ sharingUrl: sim.sharingUrl });
    const signedIn = new PortalClient({
      sharingUrl: sim.sharingUrl,
      tokens: new UsernamePasswordTokenProvider(portal, { ...sim.admin, referer: portal.referer }),
    });
    const container = BlobServiceClient.fromConnectionString(
      inject("azurite").connectionString,
    ).getContainerClient(`inventory-${randomBytes(4).toString("hex")}`);
    await container.create();
    const store = new BlobBackupStore(container, "00000000-0000-4000-8000-000000000000");
    const summary = await takeInventory({ portal: signedIn, store, runId: "b-1-test", log: silentLogger });
    const expected = sim.model.itemCount();
    expect(expected).toBeGreaterThanOrEqual(12_000);
    expect(summary.itemCount).toBe(expected);

    const ids = new Set<string>();
    for (let chunk = 0; chunk < summary.chunkCount; chunk++) {
      for (const record of await readInventoryChunk(store, "b-1-test", chunk)) ids.add(record.id);
    }
    expect(ids.size).toBe(expected);
    // Search alone could not have done it: its paging stops at 10,000.
    const search = await signedIn
      .json("search", { q: `orgid:${sim.orgId}`, start: 10_001, num: 100 }, { method: "GET" })
      .then(
        () => "answered",
        () => "refused",
      );
    expect(search).toBe("refused");
  }, 120_000);
});
