import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { startPortalSim } from "./index.js";
import { getJson, type Json, tokenFor } from "./test-helpers.js";

/**
 * `SIM_LARGE=1 npx vitest run test/portal-sim/large.test.ts`: a `large` org (100,000 items, a
 * 1,000,000-feature layer, a 2 GiB file) served and read in one process under 300 MB RSS.
 */
describe.skipIf(!process.env.SIM_LARGE)("large org", () => {
  it("serves search, the million-feature layer and the 2 GiB file under 300 MB RSS", async () => {
    let peak = 0;
    const sample = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 50);
    const t0 = Date.now();
    const sim = await startPortalSim({ size: "large", seed: 1 });
    const startMs = Date.now() - t0;
    try {
      const token = await tokenFor(sim);
      const q = `orgid:${sim.orgId}`;
      let t = Date.now();
      const first = await getJson(`${sim.sharingUrl}/search`, { token, q, num: 100 });
      expect(first.total).toBe(100_000);
      let pages = 0;
      for (let start = 101; start <= 10_000; start += 100) {
        const r = await getJson(`${sim.sharingUrl}/search`, { token, q, num: 100, start });
        expect((r.results as Json[]).length).toBe(100);
        pages++;
      }
      const searchMs = Date.now() - t;
      t = Date.now();
      const bigService = [...sim.model.indices()].find((i) => sim.model.kindAt(i) === "featureService") ?? -1;
      const svc = sim.model.itemAt(bigService);
      const layer = `${svc.url}/0`;
      const count = await getJson(`${layer}/query`, { token, where: "1=1", returnCountOnly: "true" });
      expect(count.count).toBe(1_000_000);
      const ids = await getJson(`${layer}/query`, { token, where: "1=1", returnIdsOnly: "true" });
      expect((ids.objectIds as number[]).length).toBe(1_000_000);
      let features = 0;
      for (let k = 0; k < 100; k++) {
        const off = k * 10_000;
        const r = await getJson(`${layer}/query`, {
          token,
          where: `OBJECTID > ${off} AND OBJECTID <= ${off + 1000}`,
          outFields: "*",
        });
        features += (r.features as Json[]).length;
      }
      const tail = await getJson(`${layer}/query`, {
        token,
        where: "1=1",
        outFields: "*",
        resultOffset: 999_000,
        resultRecordCount: 1000,
      });
      features += (tail.features as Json[]).length;
      expect(features).toBe(101_000);
      const layerMs = Date.now() - t;
      t = Date.now();
      const bigFile = sim.model.itemAt(sim.model.bigFileIndex() ?? -1);
      expect(bigFile.size).toBe(2 * 1024 ** 3);
      const res = await fetch(`${sim.sharingUrl}/content/items/${bigFile.id}/data?token=${token}`);
      const hash = createHash("sha256");
      let bytes = 0;
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        hash.update(chunk);
        bytes += chunk.length;
      }
      expect(bytes).toBe(bigFile.size);
      const fileMs = Date.now() - t;
      clearInterval(sample);
      peak = Math.max(peak, process.memoryUsage().rss);
      process.stdout.write(
        `large: start ${startMs} ms; search ${pages + 1} pages ${searchMs} ms; layer count+ids(1M)+101k features ${layerMs} ms; 2 GiB file ${fileMs} ms; peak RSS ${(peak / 1024 / 1024).toFixed(0)} MB\n`,
      );
      expect(peak).toBeLessThan(300 * 1024 * 1024);
    } finally {
      clearInterval(sample);
      await sim.close();
    }
  }, 600_000);
});
