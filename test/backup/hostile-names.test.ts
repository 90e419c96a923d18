import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { BlobServiceClient, type ContainerClient } from "@azure/storage-blob";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { PortalClient } from "../../src/core/arcgis/portal-client.js";
import { CacheSpace } from "../../src/core/backup/cache.js";
import { exportItem } from "../../src/core/backup/export-item.js";
import type { InventoryRecord } from "../../src/core/backup/inventory.js";
import { itemVersion, itemVersionPrefix } from "../../src/core/backup/layout.js";
import { silentLogger } from "../../src/core/log.js";
import { BlobBackupStore } from "../../src/core/storage/blob-backup-store.js";
import { isPlainText } from "../../src/core/validation.js";

// A portal that answers with hostile names everywhere a name becomes part of a blob path — the
// item id, the data file name, the thumbnail, resource paths, layer and table ids — and the
// proof that every blob of the export lands inside the item version's folder.

const IDENTITY = "00000000-0000-4000-8000-0000000000e7";
const MODIFIED = 1_700_000_000_000;
const HOSTILE_ID = "../../../runs/x";
const RESOURCES = [
  "../../../../runs/escape.json",
  "/absolute/path.txt",
  "nul\u0000inside.txt",
  "..\\..\\windows.txt",
  `${"long".repeat(200)}.txt`,
  "ok/nested/fine.json",
];
const LAYER_IDS = ["../../x", "/abs", "..", 0];

let server: Server;
let baseUrl: string;
let container: ContainerClient;
let cacheDirectory: string;

/** Sharing REST, as far as exporting one item goes; every other path answers a small JSON body. */
function answer(request: IncomingMessage, response: ServerResponse) {
  const url = new URL(request.url ?? "/", baseUrl);
  const json = (body: unknown) => {
    response.writeHead(200, { "content-type": "application/json" });
    response.end(JSON.stringify(body));
  };
  if (url.pathname.endsWith("/data")) {
    response.writeHead(200, {
      "content-type": "application/octet-stream",
      "content-disposition": `attachment; filename*=UTF-8''${encodeURIComponent("../../../evil\u0000.bin")}`,
    });
    response.end(Buffer.from("file data"));
  } else if (url.pathname.endsWith("/metadata/metadata.xml")) {
    response.writeHead(404).end();
  } else if (url.pathname.endsWith("/resources")) {
    json({ resources: RESOURCES.map((resource) => ({ resource })), nextStart: -1 });
  } else if (url.pathname.endsWith("/FeatureServer")) {
    json({ layers: LAYER_IDS.slice(0, 3).map((id) => ({ id })), tables: [{ id: LAYER_IDS[3] }] });
  } else {
    json({ relatedItems: [], id: 0 });
  }
}

beforeAll(async () => {
  server = createServer(answer);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  container = BlobServiceClient.fromConnectionString(inject("azurite").connectionString).getContainerClient(
    `hostile-${randomBytes(4).toString("hex")}`,
  );
  await container.create();
  cacheDirectory = await mkdtemp(path.join(tmpdir(), "hostile-cache-"));
});

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  await container?.delete().catch(() => undefined);
  if (cacheDirectory) await rm(cacheDirectory, { recursive: true, force: true });
});

function hostileRecord(): InventoryRecord {
  const item = {
    id: HOSTILE_ID,
    owner: "mallory",
    created: MODIFIED,
    modified: MODIFIED,
    title: "Hostile",
    type: "Feature Service",
    name: "../../../fallback-name",
    thumbnail: "thumbnail/../../../../runs/thumb.png",
    url: `${baseUrl}/arcgis/rest/services/Hostile/FeatureServer`,
  };
  return {
    id: HOSTILE_ID,
    title: item.title,
    type: item.type,
    typeKeywords: [],
    owner: item.owner,
    folderId: null,
    folderTitle: null,
    modified: MODIFIED,
    size: 1,
    url: item.url,
    access: "private",
    groups: [],
    item,
  };
}

describe("names from the portal never leave the item version", () => {
  test("every blob of an item with hostile ids and names lands under its version's prefix", async () => {
    const store = new BlobBackupStore(container, IDENTITY);
    const result = await exportItem(
      {
        runId: "b-hostile-names",
        portal: new PortalClient({ sharingUrl: `${baseUrl}/sharing/rest`, baseDelayMs: 1, maxDelayMs: 5 }),
        store,
        cacheDirectory,
        cacheSpace: new CacheSpace(64 * 1024 * 1024),
        log: silentLogger,
      },
      hostileRecord(),
    );
    expect(result.error).toBeUndefined();
    expect(result.status).toBe("exported");

    const prefix = `${IDENTITY}/${itemVersionPrefix(HOSTILE_ID, itemVersion(MODIFIED))}`;
    expect(prefix).toBe(`${IDENTITY}/items/..%2F..%2F..%2Fruns%2Fx/v${MODIFIED}/`);
    const names: string[] = [];
    for await (const blob of container.listBlobsFlat()) names.push(blob.name);
    // item.json, data, thumbnail, 6 resources, related.json, service.json, 4 layers, the marker.
    expect(names).toHaveLength(16);
    for (const name of names) {
      expect(name.startsWith(prefix), name).toBe(true);
      const inside = name.slice(prefix.length).split("/");
      for (const segment of inside) {
        expect(["", ".", ".."], name).not.toContain(segment);
        expect(isPlainText(segment) && !segment.includes("\\"), name).toBe(true);
        expect(Buffer.byteLength(segment), name).toBeLessThanOrEqual(127);
      }
    }
    // The manifest's paths are the blobs', and the portal's own names are kept beside them.
    for (const file of result.files) expect(names).toContain(`${IDENTITY}/${file.blob}`);
    const layers = result.files.filter((f) => f.kind === "layer").map((f) => f.path);
    expect(layers.sort()).toEqual([
      "service/layers/%2E%2E.json",
      "service/layers/%2Fabs.json",
      "service/layers/..%2F..%2Fx.json",
      "service/layers/0.json",
    ]);
    const data = result.files.find((f) => f.kind === "data");
    expect(data?.originalName).toBe("../../../evil\u0000.bin");
    expect(result.files.filter((f) => f.kind === "resource").map((f) => f.originalName)).toEqual(RESOURCES);
  });
});
