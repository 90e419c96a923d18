import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type AppHarness, startAppHarness } from "../support/app-harness.js";

let app: AppHarness;

beforeAll(async () => {
  app = await startAppHarness();
});

afterAll(async () => {
  await app?.close();
});

describe("the Manage Identities flow over HTTP", () => {
  test("check credentials, save, verify, read back without secrets, stale etag, delete", async () => {
    const container = await app.container();

    // "Check Azure Credentials"
    const check = await app.call("POST", "/api/storage/check", {
      type: "azure-blob",
      container: container.containerName,
      connectionString: app.storageConnectionString,
    });
    expect(check.status).toBe(200);
    expect(check.body).toMatchObject({
      ok: true,
      account: "devstoreaccount1",
      container: container.containerName,
    });

    // "Save"
    const created = await app.createIdentity({ container: container.containerName });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    expect(created.headers.get("location")).toBe(`/api/identities/${id}`);
    expect(created.body.secrets).toEqual({ password: true, connectionString: true });
    expect(created.text).not.toContain(app.sim.admin.password);
    expect(created.text).not.toContain("AccountKey");

    // "Verify"
    const verified = await app.call("POST", `/api/identities/${id}/verify`);
    expect(verified.status).toBe(200);
    expect(verified.body).toMatchObject({
      ok: true,
      portal: { id: app.sim.orgId, isPortal: false },
      user: { username: app.sim.admin.username, role: "org_admin" },
      warnings: [],
    });

    const read = await app.call("GET", `/api/identities/${id}`);
    expect(read.status).toBe(200);
    expect(read.body.lastVerification.ok).toBe(true);
    expect(read.body.sharingUrl).toBe(app.sim.sharingUrl);
    expect(read.text).not.toContain(app.sim.admin.password);
    const etag = read.headers.get("etag") as string;

    const list = await app.call("GET", "/api/identities");
    expect(list.body.identities.map((i: { id: string }) => i.id)).toContain(id);

    const renamed = await app.call(
      "PATCH",
      `/api/identities/${id}`,
      { name: "Renamed" },
      { "if-match": etag },
    );
    expect(renamed.status).toBe(200);
    expect(renamed.body.name).toBe("Renamed");

    const stale = await app.call("PATCH", `/api/identities/${id}`, { name: "Stale" }, { "if-match": etag });
    expect(stale.status).toBe(412);

    expect((await app.call("DELETE", `/api/identities/${id}`)).status).toBe(204);
    expect((await app.call("GET", `/api/identities/${id}`)).status).toBe(404);
    expect((await app.call("DELETE", `/api/identities/${id}`)).status).toBe(404);
  });

  test("a wrong password is a failed verification, recorded on the identity", async () => {
    const created = await app.createIdentity();
    const id = created.body.id as string;
    const patched = await app.call("PATCH", `/api/identities/${id}`, {
      auth: { type: "builtin", username: app.sim.admin.username, password: "wrong" },
    });
    expect(patched.status).toBe(200);
    const verified = await app.call("POST", `/api/identities/${id}/verify`);
    expect(verified.body.ok).toBe(false);
    expect(verified.body.error.code).toBe("ERR_PORTAL_SIGN_IN");
    expect(verified.text).not.toContain("wrong");
  });

  test("bad input: malformed JSON, unknown fields, oversized bodies", async () => {
    const malformed = await app.call("POST", "/api/identities", "{not json");
    expect(malformed.status).toBe(400);
    expect(malformed.body.error.message).toMatch(/not valid JSON/);

    const unknown = await app.call("POST", "/api/identities", { name: "x", colour: "red" });
    expect(unknown.status).toBe(400);
    expect(unknown.body.error.field).toBeDefined();

    const huge = await app.call("POST", "/api/identities", { name: "x".repeat(2 * 1024 * 1024) });
    expect(huge.status).toBe(413);

    const check = await app.call("POST", "/api/storage/check", {
      type: "azure-blob",
      container: "Bad_Name",
      connectionString: app.storageConnectionString,
    });
    expect(check.status).toBe(400);
    expect(check.body.error.field).toBe("container");

    expect((await app.call("GET", "/api/identities/not-an-id")).status).toBe(404);
  });

  test("oauth2-user: sign in through the portal with PKCE, then verify with the stored refresh token", async () => {
    const created = await app.createIdentity({
      extra: { auth: { type: "oauth2-user", clientId: app.sim.oauthApp.clientId } },
    });
    const id = created.body.id as string;
    const notConnected = await app.call("POST", `/api/identities/${id}/verify`);
    expect(notConnected.body).toMatchObject({ ok: false, error: { code: "ERR_IDENTITY_NOT_SIGNED_IN" } });

    const start = await app.call("POST", `/api/identities/${id}/oauth/start`);
    expect(start.status).toBe(200);
    const authorize = new URL(start.body.authorizeUrl);
    expect(authorize.searchParams.get("code_challenge_method")).toBe("S256");
    // The admin signs in at the portal, which redirects the browser to our callback.
    const portal = await fetch(authorize, { redirect: "manual" });
    expect(portal.status).toBe(302);
    const callback = new URL(portal.headers.get("location") as string);
    expect(callback.pathname).toBe("/api/oauth/callback");
    const done = await app.call("GET", `${callback.pathname}${callback.search}`);
    expect(done.status).toBe(200);
    expect(done.body.secrets).toEqual({ refreshToken: true, connectionString: true });
    expect(done.body.auth.username).toBe(app.sim.admin.username);

    const replay = await app.call("GET", `${callback.pathname}${callback.search}`);
    expect(replay.status).toBe(404);

    const verified = await app.call("POST", `/api/identities/${id}/verify`);
    expect(verified.body).toMatchObject({ ok: true, user: { username: app.sim.admin.username } });
  });
});
