import { createServer, get as httpGet, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { PortalClient } from "../../src/core/arcgis/portal-client.js";
import { GuardedHttpAgent, type Resolver } from "../../src/core/net/guarded-agents.js";

let server: Server;
let port = 0;
let requests = 0;

beforeAll(async () => {
  server = createServer((req, res) => {
    requests++;
    if (req.url?.startsWith("/sharing/rest/redirect")) {
      res.writeHead(302, { location: "http://169.254.169.254/latest/meta-data/" }).end();
      return;
    }
    res.writeHead(200, { "content-type": "application/json" }).end('{"ok":true}');
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

/** A resolver as DNS could answer: any name may point anywhere. */
function resolverOf(answers: Record<string, string[]>): Resolver {
  return (hostname, _options, callback) => {
    const addresses = answers[hostname];
    if (!addresses) return callback(Object.assign(new Error("not found"), { code: "ENOTFOUND" }), []);
    callback(
      null,
      addresses.map((address) => ({ address, family: address.includes(":") ? 6 : 4 })),
    );
  };
}

function fetchThrough(agent: GuardedHttpAgent, url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    httpGet(url, { agent, signal: AbortSignal.timeout(5_000) }, (response) => {
      response.resume();
      resolve(response.statusCode ?? 0);
    }).on("error", reject);
  });
}

describe("the guarded agents", () => {
  const agent = new GuardedHttpAgent(
    {},
    resolverOf({
      "portal.test": ["127.0.0.1"],
      "metadata.test": ["169.254.169.254"],
      "mixed.test": ["127.0.0.1", "169.254.169.254"],
    }),
  );
  afterAll(() => agent.destroy());

  test("connect to what a name resolves to, when it is allowed", async () => {
    expect(await fetchThrough(agent, `http://portal.test:${port}/`)).toBe(200);
  });

  test("refuse a name that resolves to a link-local address, or to one among others", async () => {
    const before = requests;
    for (const host of ["metadata.test", "mixed.test"]) {
      await expect(fetchThrough(agent, `http://${host}:${port}/`)).rejects.toMatchObject({
        code: "ERR_BLOCKED_ADDRESS",
      });
    }
    expect(requests).toBe(before);
  });

  test("refuse an address literal without any lookup", async () => {
    await expect(fetchThrough(agent, "http://169.254.169.254/latest/meta-data/")).rejects.toMatchObject({
      code: "ERR_BLOCKED_ADDRESS",
    });
  });

  test("the portal client refuses a redirect to a metadata address, and does not retry it", async () => {
    const client = new PortalClient({ sharingUrl: `http://127.0.0.1:${port}/sharing/rest`, baseDelayMs: 1 });
    await expect(client.json("redirect", {}, { auth: false, method: "GET" })).rejects.toMatchObject({
      code: "ERR_BLOCKED_ADDRESS",
    });
    expect(client.stats.retries).toBe(0);
  });
});
