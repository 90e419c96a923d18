import { createHash, randomBytes } from "node:crypto";
import {
  getItem,
  getItemData,
  getItemResources,
  getPortal,
  getSelf,
  getUserContent,
  searchItems,
} from "@esri/arcgis-rest-portal";
import { ApplicationCredentialsManager, ArcGISIdentityManager, request } from "@esri/arcgis-rest-request";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PortalSim, startPortalSim } from "./index.js";
import { errorOf, getJson, type Json, postForm } from "./test-helpers.js";

let sim: PortalSim;
let session: ArcGISIdentityManager;

beforeAll(async () => {
  sim = await startPortalSim({ size: "tiny", seed: 11 });
  session = await ArcGISIdentityManager.signIn({
    username: sim.admin.username,
    password: sim.admin.password,
    portal: sim.sharingUrl,
  });
});
afterAll(async () => {
  await sim.close();
});

const items = () => [...sim.model.items()];

describe("@esri/arcgis-rest-js against the simulator", () => {
  it("signIn, getSelf/getPortal and community/self", async () => {
    expect(session.username).toBe(sim.admin.username);
    const self = await getSelf({ authentication: session });
    expect(self.id).toBe(sim.orgId);
    const portal = await getPortal(undefined, { authentication: session });
    expect(portal.isPortal).toBe(false);
    const user = await session.getUser();
    expect(user.role).toBe("org_admin");
  });

  it("searchItems pages through the org", async () => {
    const ids: string[] = [];
    let r = await searchItems({ q: `orgid:${sim.orgId}`, num: 5, authentication: session });
    ids.push(...r.results.map((i) => i.id));
    while (r.nextPage) {
      r = await r.nextPage();
      ids.push(...r.results.map((i) => i.id));
    }
    expect(ids.sort()).toEqual(
      items()
        .map((i) => i.id)
        .sort(),
    );
  });

  it("getItem, getItemData (JSON, empty and file), getItemResources, getUserContent", async () => {
    const wm = items().find((i) => i.type === "Web Map");
    const item = await getItem(wm?.id ?? "", { authentication: session });
    expect(item.title).toBe(wm?.title);
    const data = await getItemData(wm?.id ?? "", { authentication: session });
    expect(data.operationalLayers.length).toBeGreaterThan(0);
    const ms = items().find((i) => i.type === "Map Service");
    expect(await getItemData(ms?.id ?? "", { authentication: session })).toBeUndefined();
    const csv = items().find((i) => i.type === "CSV");
    const blob = (await getItemData(csv?.id ?? "", { authentication: session, file: true })) as Blob;
    const bytes = Buffer.from(await blob.arrayBuffer());
    expect(bytes).toEqual(sim.model.itemDataBuffer(csv?.id ?? ""));
    const withRes = items().find((i) => sim.model.resources(i.id).length > 0);
    const res = await getItemResources(withRes?.id ?? "", { authentication: session });
    expect(res.total).toBe(sim.model.resources(withRes?.id ?? "").length);
    const content = await getUserContent({ owner: sim.admin.username, authentication: session, num: 100 });
    expect(content.items.map((i) => i.id).sort()).toEqual(
      items()
        .filter((i) => i.owner === sim.admin.username && i.folderId === null)
        .map((i) => i.id)
        .sort(),
    );
  });

  it("queries a hosted feature service through the federated-server token flow", async () => {
    const fs = items().find((i) => i.type === "Feature Service" && !i.typeKeywords.includes("View Service"));
    const r = (await request(`${fs?.url}/0/query`, {
      authentication: session,
      params: { where: "1=1", returnCountOnly: true },
    })) as { count: number };
    expect(r.count).toBe([...sim.model.features(fs?.id ?? "", 0)].length);
    expect(sim.stats.count("services/info")).toBeGreaterThan(0);
    expect(sim.stats.count("sharing/info")).toBeGreaterThan(0);
  });

  it("refreshes after the portal expires its token (498 → refresh → retry)", async () => {
    const s = await ArcGISIdentityManager.signIn({
      username: sim.admin.username,
      password: sim.admin.password,
      portal: sim.sharingUrl,
    });
    const before = sim.stats.count("sharing/generateToken");
    sim.expireTokens();
    const r = await searchItems({ q: `orgid:${sim.orgId}`, num: 1, authentication: s });
    expect(r.total).toBe(items().length);
    expect(sim.stats.count("sharing/generateToken")).toBe(before + 1);
  });

  it("ApplicationCredentialsManager.fromCredentials gets an app token", async () => {
    const app = ApplicationCredentialsManager.fromCredentials({
      clientId: sim.oauthApp.clientId,
      clientSecret: sim.oauthApp.clientSecret,
      portal: sim.sharingUrl,
    });
    const token = await app.getToken(sim.sharingUrl);
    expect(token.length).toBeGreaterThan(10);
    const pub = await searchItems({ q: `orgid:${sim.orgId}`, num: 100, authentication: app });
    expect(pub.results.every((i) => i.access === "public")).toBe(true);
  });

  it("authorization code exchange (exchangeAuthorizationCode) and refresh", async () => {
    const redirectUri = "http://127.0.0.1:9/callback";
    const auth = await fetch(
      `${sim.sharingUrl}/oauth2/authorize?client_id=${sim.oauthApp.clientId}&response_type=code&redirect_uri=${encodeURIComponent(redirectUri)}&state=xyz`,
      { redirect: "manual" },
    );
    expect(auth.status).toBe(302);
    const loc = new URL(auth.headers.get("location") ?? "");
    expect(loc.searchParams.get("state")).toBe("xyz");
    const s = await ArcGISIdentityManager.exchangeAuthorizationCode(
      { clientId: sim.oauthApp.clientId, redirectUri, portal: sim.sharingUrl },
      loc.searchParams.get("code") ?? "",
    );
    expect(s.username).toBe(sim.admin.username);
    expect(s.refreshToken).toBeTruthy();
    await s.refreshCredentials();
    const me = await s.getUser();
    expect(me.username).toBe(sim.admin.username);
  });
});

describe("oauth2 endpoints", () => {
  it("PKCE S256: the right verifier gets tokens, a wrong one fails; refresh and exchange", async () => {
    const redirectUri = "http://localhost:5555/cb";
    const verifier = randomBytes(32).toString("base64url");
    const challenge = createHash("sha256").update(verifier).digest("base64url");
    const code = async () => {
      const r = await fetch(
        `${sim.sharingUrl}/oauth2/authorize?client_id=${sim.oauthApp.clientId}&response_type=code&redirect_uri=${encodeURIComponent(redirectUri)}&code_challenge=${challenge}&code_challenge_method=S256`,
        { redirect: "manual" },
      );
      return new URL(r.headers.get("location") ?? "").searchParams.get("code") ?? "";
    };
    const bad = await postForm(`${sim.sharingUrl}/oauth2/token/`, {
      grant_type: "authorization_code",
      client_id: sim.oauthApp.clientId,
      redirect_uri: redirectUri,
      code: await code(),
      code_verifier: "wrong",
    });
    expect(bad.error).toBeDefined();
    const ok = await postForm(`${sim.sharingUrl}/oauth2/token`, {
      grant_type: "authorization_code",
      client_id: sim.oauthApp.clientId,
      redirect_uri: redirectUri,
      code: await code(),
      code_verifier: verifier,
    });
    for (const k of ["access_token", "expires_in", "username", "refresh_token", "refresh_token_expires_in"])
      expect(ok).toHaveProperty(k);
    const refreshed = await postForm(`${sim.sharingUrl}/oauth2/token/`, {
      grant_type: "refresh_token",
      client_id: sim.oauthApp.clientId,
      refresh_token: ok.refresh_token as string,
    });
    expect(refreshed).toHaveProperty("access_token");
    const exchanged = await postForm(`${sim.sharingUrl}/oauth2/token`, {
      grant_type: "exchange_refresh_token",
      client_id: sim.oauthApp.clientId,
      refresh_token: ok.refresh_token as string,
      redirect_uri: redirectUri,
    });
    expect(exchanged.refresh_token).not.toBe(ok.refresh_token);
    const reused = await postForm(`${sim.sharingUrl}/oauth2/token`, {
      grant_type: "refresh_token",
      client_id: sim.oauthApp.clientId,
      refresh_token: ok.refresh_token as string,
    });
    expect(reused.error).toBeDefined();
    const me = await getJson(`${sim.sharingUrl}/community/self`, { token: exchanged.access_token as string });
    expect(me.username).toBe(sim.admin.username);
  });

  it("rejects unknown clients and non-loopback redirect uris", async () => {
    const r = await fetch(
      `${sim.sharingUrl}/oauth2/authorize?client_id=${sim.oauthApp.clientId}&response_type=code&redirect_uri=${encodeURIComponent("https://evil.example/cb")}`,
      { redirect: "manual" },
    );
    expect(r.status).toBe(200);
    expect(((await r.json()) as Json).error).toBeDefined();
    const c = await postForm(`${sim.sharingUrl}/oauth2/token`, {
      grant_type: "client_credentials",
      client_id: sim.oauthApp.clientId,
      client_secret: "wrong",
    });
    expect(errorOf(c)).toBeDefined();
  });
});

describe("enterprise layout", () => {
  it("portal under /portal, isPortal true, hosted services under /server federated with the portal", async () => {
    const ent = await startPortalSim({ size: "tiny", kind: "enterprise", seed: 11 });
    try {
      expect(ent.orgUrl).toMatch(/\/portal$/);
      const s = await ArcGISIdentityManager.signIn({
        username: ent.admin.username,
        password: ent.admin.password,
        portal: ent.sharingUrl,
      });
      const self = await getSelf({ authentication: s });
      expect(self).toMatchObject({ isPortal: true, id: "0123456789ABCDEF" });
      const r = await searchItems({ q: 'type:"Feature Service"', num: 100, authentication: s });
      const fs = r.results.find((i) => !i.typeKeywords?.includes("View Service"));
      expect(fs?.url).toMatch(/\/server\/rest\/services\/Hosted\/[^/]+\/FeatureServer$/);
      const count = (await request(`${fs?.url}/0/query`, {
        authentication: s,
        params: { where: "1=1", returnCountOnly: true },
      })) as { count: number };
      expect(count.count).toBe([...ent.model.features(fs?.id ?? "", 0)].length);
    } finally {
      await ent.close();
    }
  });
});
