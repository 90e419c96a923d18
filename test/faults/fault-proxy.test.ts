import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { type FaultProxy, type ProxyFaultRule, startFaultProxy } from "../support/fault-proxy.js";

const BODY = Buffer.alloc(1000, "x");
let target: Server;
let origin: string;
let reached = 0;
let proxy: FaultProxy | undefined;

beforeAll(async () => {
  target = createServer((req, res) => {
    reached++;
    req.resume();
    if (req.url === "/redirect") {
      res.writeHead(302, { location: "http://127.0.0.1:1/file?sig=1" });
      return void res.end();
    }
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(BODY.length) });
    res.end(BODY);
  });
  await new Promise<void>((resolve) => target.listen(0, "127.0.0.1", resolve));
  origin = `http://127.0.0.1:${(target.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise<void>((resolve) => target.close(() => resolve()));
});

afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
  reached = 0;
});

async function through(flavour: "blob" | "portal", rules: ProxyFaultRule[], seed = 1): Promise<FaultProxy> {
  proxy = await startFaultProxy({
    target: origin,
    flavour,
    rules,
    seed,
    rewriteLocations: { "http://127.0.0.1:1": "http://127.0.0.1:2" },
  });
  return proxy;
}

/** Status and whole body, or the error the client met. */
async function get(
  url: string,
): Promise<{ status: number; body: string; headers: Headers } | { error: string }> {
  try {
    const response = await fetch(url, { redirect: "manual" });
    return { status: response.status, body: await response.text(), headers: response.headers };
  } catch (error) {
    return { error: String((error as Error & { cause?: Error }).cause ?? error) };
  }
}

describe("the fault proxy", () => {
  test("forwards untouched without a rule, rewriting redirect locations", async () => {
    const p = await through("blob", []);
    expect(await get(`${p.origin}/a`)).toMatchObject({ status: 200, body: BODY.toString() });
    const redirect = await get(`${p.origin}/redirect`);
    expect("headers" in redirect && redirect.headers.get("location")).toBe("http://127.0.0.1:2/file?sig=1");
    expect(p.counts()).toEqual({
      received: 2,
      forwarded: 2,
      injected: { status: 0, reset: 0, stall: 0, cut: 0 },
    });
  });

  test("answers errors in the target's dialect without forwarding", async () => {
    const blob = await through("blob", [{ share: 1, fault: { type: "status", status: 503 } }]);
    const busy = await get(`${blob.origin}/a`);
    expect(busy).toMatchObject({ status: 503, body: expect.stringContaining("<Code>ServerBusy</Code>") });
    expect("headers" in busy && busy.headers.get("x-ms-error-code")).toBe("ServerBusy");
    await blob.close();
    const portal = await through("portal", [
      { share: 1, fault: { type: "status", status: 500, inBody: true } },
    ]);
    const answer = await get(`${portal.origin}/sharing/rest/portals/self`);
    expect(answer).toMatchObject({ status: 200 });
    expect("body" in answer && JSON.parse(answer.body)).toMatchObject({ error: { code: 500 } });
    expect(reached).toBe(0);
  });

  test("resets before forwarding (request lost) or after the target answered (answer lost)", async () => {
    const before = await through("blob", [{ share: 1, fault: { type: "reset", lost: "request" } }]);
    expect(await get(`${before.origin}/a`)).toHaveProperty("error");
    expect(reached).toBe(0);
    await before.close();
    const after = await through("blob", [{ share: 1, fault: { type: "reset", lost: "answer" } }]);
    expect(await get(`${after.origin}/a`)).toHaveProperty("error");
    expect(reached).toBe(1);
    expect(after.counts()).toMatchObject({ received: 1, forwarded: 1, injected: { reset: 1 } });
  });

  test("stalls, then goes on or drops the connection", async () => {
    const p = await through("blob", [
      { path: /^\/drop$/, share: 1, fault: { type: "stall", ms: 50, outcome: "drop" } },
      { share: 1, fault: { type: "stall", ms: 50, outcome: "continue" } },
    ]);
    expect(await get(`${p.origin}/drop`)).toHaveProperty("error");
    expect(await get(`${p.origin}/a`)).toMatchObject({ status: 200, body: BODY.toString() });
    expect(p.counts().injected.stall).toBe(2);
  });

  test("cuts a body short of the length it announced", async () => {
    const p = await through("blob", [{ methods: ["GET"], share: 1, fault: { type: "cut" } }]);
    expect(await get(`${p.origin}/a`)).toHaveProperty("error");
    // A redirect has no body to cut: it passes, and counts as no fault.
    expect(await get(`${p.origin}/redirect`)).toMatchObject({ status: 302 });
    expect(p.counts().injected.cut).toBe(1);
  });

  test("faults a URL once when told, so its retry goes through", async () => {
    const p = await through("blob", [{ share: 1, oncePerUrl: true, fault: { type: "cut" } }]);
    expect(await get(`${p.origin}/a`)).toHaveProperty("error");
    expect(await get(`${p.origin}/a`)).toMatchObject({ status: 200, body: BODY.toString() });
    expect(await get(`${p.origin}/b`)).toHaveProperty("error");
    expect(p.counts().injected.cut).toBe(2);
  });

  test("faults the chosen share of matching requests, the same ones for the same seed", async () => {
    const rules: ProxyFaultRule[] = [
      { methods: ["GET"], share: 0.25, fault: { type: "status", status: 500 } },
    ];
    const pattern = async (seed: number) => {
      const p = await through("blob", rules, seed);
      const statuses: number[] = [];
      for (let i = 0; i < 200; i++) {
        const answer = await get(`${p.origin}/a`);
        statuses.push("status" in answer ? answer.status : 0);
      }
      await p.close();
      return statuses;
    };
    const first = await pattern(7);
    expect(await pattern(7)).toEqual(first);
    const failed = first.filter((s) => s === 500).length;
    expect(failed).toBeGreaterThan(30);
    expect(failed).toBeLessThan(70);
  });

  test("forwards to loopback only", async () => {
    await expect(startFaultProxy({ target: "http://example.com", flavour: "blob" })).rejects.toThrow(
      /loopback/,
    );
  });
});
