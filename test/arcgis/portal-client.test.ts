import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "vitest";
import { PortalClient, type RequestPacer } from "../../src/core/arcgis/portal-client.js";
import {
  PortalAuthError,
  PortalNotFoundError,
  PortalSignInError,
  PortalTransientError,
} from "../../src/core/arcgis/portal-errors.js";
import {
  backoffCeiling,
  calculateRetryDelay,
  parseRetryAfter,
  RETRY_AFTER_CEILING_MS,
} from "../../src/core/arcgis/retry-delay.js";
import {
  authorizeUrl,
  createPkcePair,
  exchangeAuthorizationCode,
  RefreshTokenProvider,
  UsernamePasswordTokenProvider,
} from "../../src/core/arcgis/token-providers.js";
import { type PortalSim, startPortalSim } from "../portal-sim/index.js";

let sim: PortalSim;

beforeAll(async () => {
  sim = await startPortalSim({ size: "tiny", seed: 3 });
});
afterAll(async () => {
  await sim?.close();
});
beforeEach(() => {
  sim.setFaults([]);
  sim.stats.reset();
});

function signedIn(options: Partial<ConstructorParameters<typeof PortalClient>[0]> = {}) {
  const tokenClient = new PortalClient({ sharingUrl: sim.sharingUrl });
  const tokens = new UsernamePasswordTokenProvider(tokenClient, {
    ...sim.admin,
    referer: tokenClient.referer,
  });
  return new PortalClient({ sharingUrl: sim.sharingUrl, tokens, baseDelayMs: 10, ...options });
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

describe("the portal client", () => {
  test("follows the 302 of file data to the storage host without the token", async () => {
    const client = signedIn();
    const fileItem = [...sim.model.items()].find((i) => i.type === "PDF")!;
    const stream = await client.openStream(`content/items/${fileItem.id}/data`);
    expect(stream).toBeDefined();
    const bytes = await readAll(stream!.body);
    expect(bytes.equals(sim.model.itemDataBuffer(fileItem.id)!)).toBe(true);
    expect(sim.stats.count("storage/blob")).toBe(1);
  });

  test("an item without data is an empty answer, a missing item a typed not-found error", async () => {
    const client = signedIn();
    const noData = [...sim.model.items()].find((i) => sim.model.itemDataBuffer(i.id) === null)!;
    expect(await client.openStream(`content/items/${noData.id}/data`)).toBeUndefined();
    await expect(client.json("content/items/0123456789abcdef0123456789abcdef")).rejects.toBeInstanceOf(
      PortalNotFoundError,
    );
  });

  test("an ArcGIS error inside a download (HTTP 200, chunked JSON) is an error, never file data", async () => {
    const client = signedIn({ maxRetries: 0 });
    const item = [...sim.model.items()].find((i) => i.type === "Web Map")!;
    sim.setFaults([{ match: "**/data", action: "bodyError", status: 403 }]);
    await expect(client.openStream(`content/items/${item.id}/data`)).rejects.toMatchObject({
      code: "ERR_PORTAL_FORBIDDEN",
    });
  });

  test("a download cut short of its Content-Length fails, so the file is fetched again", async () => {
    const client = signedIn({ maxRetries: 0 });
    const item = [...sim.model.items()].find((i) => i.type === "PDF")!;
    sim.setFaults([{ match: "storage/**", action: "truncate", times: 1 }]);
    const download = async () => readAll((await client.openStream(`content/items/${item.id}/data`))!.body);
    await expect(download()).rejects.toBeInstanceOf(PortalTransientError);
    // The next attempt gets the whole file.
    expect((await download()).equals(sim.model.itemDataBuffer(item.id)!)).toBe(true);
  });

  test("an expired token (498) is refreshed once and the call succeeds", async () => {
    const client = signedIn();
    await client.json("portals/self");
    sim.expireTokens();
    const self = await client.json<{ id: string }>("portals/self");
    expect(self.id).toBe(sim.orgId);
    expect(client.stats.tokenRefreshes).toBe(1);
    expect(sim.stats.count("sharing/generateToken")).toBe(2);
  });

  test("429 honours Retry-After; 5xx, resets and truncated bodies are retried", async () => {
    const client = signedIn();
    await client.json("portals/self");
    sim.setFaults([
      { match: "sharing/portals/self", action: "status", status: 429, retryAfter: 1, times: 1 },
    ]);
    await client.json("portals/self");
    // The wait the 429 asked for, not a backoff of the client's own.
    expect(client.stats.retryWaitMs).toBe(1_000);
    sim.setFaults([
      { match: "sharing/community/self", action: "bodyError", status: 503, times: 1 },
      { match: "sharing/community/self", action: "reset", after: 1, times: 1 },
      { match: "sharing/community/self", action: "truncate", after: 2, times: 1 },
    ]);
    const user = await client.json<{ username: string }>("community/self");
    expect(user.username).toBe(sim.admin.username);
    expect(client.stats.retries).toBeGreaterThanOrEqual(4);
    expect(client.stats.throttled).toBe(1);
  });

  test("every attempt has a timeout, and retries are bounded", async () => {
    const client = signedIn({ timeoutMs: 150, maxRetries: 2 });
    await client.json("portals/self");
    sim.setFaults([{ match: "sharing/community/self", action: "latency", latencyMs: 1_000 }]);
    const error = await client.json("community/self").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PortalTransientError);
    expect((error as PortalTransientError).code).toBe("ERR_PORTAL_TIMEOUT");
    expect(client.stats.retries).toBe(2);
  });

  test("a token never appears in an error message", async () => {
    const client = signedIn({ maxRetries: 0 });
    await client.json("portals/self");
    sim.setFaults([{ match: "sharing/community/self", action: "status", status: 500 }]);
    const error = (await client
      .json("community/self", {}, { method: "GET" })
      .catch((e: unknown) => e)) as Error;
    expect(error.message).toMatch(/HTTP 500/);
    expect(error.message).not.toMatch(/token=/);
  });

  test("wrong credentials are a sign-in error, not retried", async () => {
    const tokenClient = new PortalClient({ sharingUrl: sim.sharingUrl });
    const tokens = new UsernamePasswordTokenProvider(tokenClient, {
      username: sim.admin.username,
      password: "not-the-password",
      referer: tokenClient.referer,
    });
    const error = await tokens.getToken().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PortalSignInError);
    expect((error as Error).message).not.toContain("not-the-password");
    expect(sim.stats.count("sharing/generateToken")).toBe(1);
  });

  test("concurrent callers share one token request", async () => {
    const tokenClient = new PortalClient({ sharingUrl: sim.sharingUrl });
    const tokens = new UsernamePasswordTokenProvider(tokenClient, {
      ...sim.admin,
      referer: tokenClient.referer,
    });
    const all = await Promise.all(Array.from({ length: 10 }, () => tokens.getToken()));
    expect(new Set(all).size).toBe(1);
    expect(sim.stats.count("sharing/generateToken")).toBe(1);
  });

  test("a stopped client aborts its download in flight, retries nothing, and its pacer sees each request end", async () => {
    const seen = { released: 0, answered: 0 };
    const pacerStopping = (stop?: AbortController): RequestPacer => ({
      async beforeRequest() {
        seen.released++;
        stop?.abort(new Error("cancelled while waiting for budget"));
      },
      afterResponse() {
        seen.answered++;
      },
    });
    const stop = new AbortController();
    const client = signedIn({ pacer: pacerStopping(), signal: stop.signal });
    const file = [...sim.model.items()].find((i) => i.type === "PDF")!;
    // The file's bytes would take a minute to arrive.
    sim.setFaults([{ match: "storage/**", action: "trickle", latencyMs: 60_000 }]);
    const stream = await client.openStream(`content/items/${file.id}/data`);
    const reading = readAll(stream!.body);
    stop.abort(new Error("the run was cancelled"));
    await expect(reading).rejects.toThrow();
    await expect(client.json("portals/self")).rejects.toThrow("the run was cancelled");

    // Stopped while the pacer held it back, a request still goes out (and fails at once), so the
    // pacer sees it end and keeps no budget reserved for it.
    const late = new AbortController();
    const waiting = signedIn({ pacer: pacerStopping(late), signal: late.signal });
    await expect(waiting.json("portals/self")).rejects.toThrow("cancelled while waiting for budget");
    expect(seen.answered).toBe(seen.released);
  });
});

describe("OAuth 2.0 user sign-in", () => {
  async function signIn() {
    const { verifier, challenge } = createPkcePair();
    const redirectUri = "http://127.0.0.1:7071/api/oauth/callback";
    const url = authorizeUrl(sim.sharingUrl, {
      clientId: sim.oauthApp.clientId,
      redirectUri,
      state: "s1",
      codeChallenge: challenge,
    });
    const redirect = await fetch(url, { redirect: "manual" });
    const code = new URL(redirect.headers.get("location")!).searchParams.get("code")!;
    const client = new PortalClient({ sharingUrl: sim.sharingUrl });
    return {
      client,
      redirectUri,
      ...(await exchangeAuthorizationCode(client, {
        clientId: sim.oauthApp.clientId,
        redirectUri,
        code,
        codeVerifier: verifier,
      })),
    };
  }

  test("a wrong PKCE verifier is refused", async () => {
    const { challenge } = createPkcePair();
    const redirectUri = "http://127.0.0.1:7071/api/oauth/callback";
    const url = authorizeUrl(sim.sharingUrl, {
      clientId: sim.oauthApp.clientId,
      redirectUri,
      state: "s",
      codeChallenge: challenge,
    });
    const code = new URL(
      (await fetch(url, { redirect: "manual" })).headers.get("location")!,
    ).searchParams.get("code")!;
    const client = new PortalClient({ sharingUrl: sim.sharingUrl });
    await expect(
      exchangeAuthorizationCode(client, {
        clientId: sim.oauthApp.clientId,
        redirectUri,
        code,
        codeVerifier: "wrong",
      }),
    ).rejects.toBeInstanceOf(PortalSignInError);
  });

  test("the refresh token is exchanged for a new one before it expires, and the new one is saved", async () => {
    const first = await signIn();
    expect(first.username).toBe(sim.admin.username);
    const saved: Array<{ refreshToken: string }> = [];
    const provider = new RefreshTokenProvider(first.client, {
      clientId: sim.oauthApp.clientId,
      redirectUri: first.redirectUri,
      // Pretend it expires in a day: inside the 7-day rotation window.
      state: { refreshToken: first.refreshToken, expiresAt: Date.now() + 24 * 3600_000 },
      onRotated: async (state) => {
        saved.push(state);
      },
    });
    const token = await provider.getToken();
    expect(saved).toHaveLength(1);
    expect(saved[0]?.refreshToken).not.toBe(first.refreshToken);
    const client = new PortalClient({ sharingUrl: sim.sharingUrl, tokens: provider });
    expect((await client.json<{ username: string }>("community/self")).username).toBe(sim.admin.username);
    expect(token).toBeTruthy();
  });
});

describe("retry policy", () => {
  test("full jitter: each retry waits a uniform draw below base × 2^(attempt−1), capped; Retry-After wins", () => {
    const base = { baseDelayMs: 100, maxDelayMs: 1_000 };
    const draws = [0, 0.25, 0.5, 0.999_999];
    for (let attempt = 1; attempt <= 8; attempt++) {
      const ceiling = backoffCeiling({ attempt, ...base });
      expect(ceiling).toBe(Math.min(1_000, 100 * 2 ** (attempt - 1)));
      const delays = draws.map((draw) => calculateRetryDelay({ attempt, ...base, random: () => draw }));
      // The whole window, from nothing to just below the ceiling: retries of many callers spread out.
      expect(delays).toEqual(draws.map((draw) => Math.floor(draw * ceiling)));
      expect(delays[0]).toBe(0);
      expect(delays[3]).toBe(ceiling - 1);
    }
    expect(calculateRetryDelay({ attempt: 1, ...base, retryAfterMs: 5_000 })).toBe(5_000);
    expect(calculateRetryDelay({ attempt: 1, ...base, retryAfterMs: 60 * 60_000 })).toBe(
      RETRY_AFTER_CEILING_MS,
    );
    expect(parseRetryAfter("2")).toBe(2_000);
    expect(parseRetryAfter(new Date(Date.now() + 3_000).toUTCString())).toBeGreaterThan(1_000);
    expect(parseRetryAfter(null)).toBeUndefined();
  });

  test("498 without a refreshable token is an auth error", async () => {
    const client = new PortalClient({ sharingUrl: sim.sharingUrl });
    const item = [...sim.model.items()].find((i) => i.access === "private")!;
    const error = await client.json(`content/items/${item.id}`, { token: "forged" }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PortalAuthError);
  });
});

describe("the connection to the portal", () => {
  let server: Server;
  let baseUrl: string;
  let connections = 0;

  beforeAll(async () => {
    server = createServer((req, res) => {
      if (req.url?.startsWith("/sharing/rest/short")) {
        // Chunked (no Content-Length), in pieces shorter than the client's error sniffing.
        res.writeHead(200, { "content-type": "text/plain" });
        res.write("hel");
        setTimeout(() => res.end("lo"), 5);
        return;
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ ok: true }));
    });
    server.on("connection", () => connections++);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/sharing/rest`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  test("one kept-alive connection serves a run of requests", async () => {
    const client = new PortalClient({ sharingUrl: baseUrl });
    connections = 0;
    for (let i = 0; i < 30; i++) expect(await client.json("portals/self")).toEqual({ ok: true });
    expect(connections).toBe(1);
  });

  test("a download shorter than the error sniffing, without Content-Length, arrives whole", async () => {
    const client = new PortalClient({ sharingUrl: baseUrl });
    const stream = await client.openStream("short");
    expect(stream?.contentLength).toBeUndefined();
    expect((await readAll(stream!.body)).toString()).toBe("hello");
  });
});
