import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PortalSim, startPortalSim } from "./index.js";
import { errorOf, getJson, type Json, postForm, tokenFor } from "./test-helpers.js";

let sim: PortalSim;
let token: string;

beforeAll(async () => {
  sim = await startPortalSim({ size: "tiny", seed: 7 });
  token = await tokenFor(sim);
});
afterAll(async () => {
  await sim.close();
});

const items = () => [...sim.model.items()];
const byType = (type: string) => items().filter((i) => i.type === type);

describe("tokens and portal", () => {
  it("generateToken answers token/expires/ssl and rejects bad passwords", async () => {
    const ok = await postForm(`${sim.sharingUrl}/generateToken`, {
      username: sim.admin.username,
      password: sim.admin.password,
      client: "referer",
      referer: "x",
    });
    expect(typeof ok.token).toBe("string");
    expect(typeof ok.expires).toBe("number");
    expect(ok.expires as number).toBeGreaterThan(Date.now());
    expect(typeof ok.ssl).toBe("boolean");
    const bad = await postForm(`${sim.sharingUrl}/generateToken`, {
      username: sim.admin.username,
      password: "nope",
    });
    expect(errorOf(bad)).toMatchObject({ code: 400, message: "Unable to generate token." });
    expect(errorOf(bad).details).toContain("Invalid username or password.");
  });

  it("portals/self describes the org, with the caller as user", async () => {
    const self = await getJson(`${sim.sharingUrl}/portals/self`, { token });
    expect(self).toMatchObject({ id: sim.orgId, isPortal: false, urlKey: "sim7" });
    expect((self.user as Json).username).toBe(sim.admin.username);
    expect((self.user as Json).role).toBe("org_admin");
    const anon = await getJson(`${sim.sharingUrl}/portals/self`);
    expect(anon.user).toBeUndefined();
  });

  it("community/self lists role, privileges and groups with membership", async () => {
    const me = await getJson(`${sim.sharingUrl}/community/self`, { token });
    expect(me.username).toBe(sim.admin.username);
    expect(me.privileges).toContain("portal:admin:viewItems");
    for (const g of me.groups as Json[])
      expect((g.userMembership as Json).memberType).toMatch(/owner|admin|member/);
    expect(errorOf(await getJson(`${sim.sharingUrl}/community/self`))).toMatchObject({ code: 499 });
  });

  it("token errors: invalid 498, required 499; tokens really expire", async () => {
    expect(errorOf(await getJson(`${sim.sharingUrl}/community/self`, { token: "bogus" }))).toMatchObject({
      code: 498,
      message: "Invalid token.",
    });
    expect(errorOf(await getJson(`${sim.sharingUrl}/portals/self/users`))).toMatchObject({
      code: 499,
      messageCode: "GWM_0003",
    });
    const short = await startPortalSim({ size: "empty", tokenTtlSeconds: 1 });
    try {
      const t = await tokenFor(short);
      expect((await getJson(`${short.sharingUrl}/community/self`, { token: t })).username).toBe(
        short.admin.username,
      );
      await new Promise((r) => setTimeout(r, 1100));
      expect(errorOf(await getJson(`${short.sharingUrl}/community/self`, { token: t })).code).toBe(498);
    } finally {
      await short.close();
    }
  });

  it("portals/self/users pages with total/start/num/nextStart; users/search honours q", async () => {
    const all = sim.model.users.length;
    const p1 = await getJson(`${sim.sharingUrl}/portals/self/users`, { token, num: 2 });
    expect(p1).toMatchObject({ total: all, start: 1, num: 2, nextStart: all > 2 ? 3 : -1 });
    expect((p1.users as Json[]).length).toBe(Math.min(2, all));
    const last = await getJson(`${sim.sharingUrl}/portals/self/users`, { token, start: all, num: 2 });
    expect(last.nextStart).toBe(-1);
    const admins = await getJson(`${sim.sharingUrl}/portals/self/users/search`, {
      token,
      q: "role:org_admin",
    });
    expect((admins.results as Json[]).map((u) => u.username)).toEqual([sim.admin.username]);
  });
});

describe("search", () => {
  it("pages the org's items and ends with nextStart -1", async () => {
    const seen: string[] = [];
    let start = 1;
    for (;;) {
      const r = await getJson(`${sim.sharingUrl}/search`, { token, q: `orgid:${sim.orgId}`, num: 4, start });
      expect(r).toMatchObject({ total: items().length, start, num: 4, query: `orgid:${sim.orgId}` });
      seen.push(...(r.results as Json[]).map((i) => i.id as string));
      if (r.nextStart === -1) break;
      start = r.nextStart as number;
    }
    expect(seen.sort()).toEqual(
      items()
        .map((i) => i.id)
        .sort(),
    );
  });

  it("supports type, typekeywords, owner, id, ranges and boolean operators", async () => {
    const q = async (text: string) =>
      ((await getJson(`${sim.sharingUrl}/search`, { token, q: text, num: 100 })).results as Json[]).map(
        (i) => i.id as string,
      );
    const fs = byType("Feature Service").map((i) => i.id);
    expect((await q('type:"Feature Service"')).sort()).toEqual(fs.sort());
    const hosted = items().filter((i) => i.typeKeywords.includes("Hosted Service"));
    expect((await q('typekeywords:"Hosted Service"')).sort()).toEqual(hosted.map((i) => i.id).sort());
    const views = items().filter((i) => i.typeKeywords.includes("View Service"));
    expect(await q('type:"Feature Service" AND NOT typekeywords:"View Service"')).toEqual(
      fs.filter((id) => !views.some((v) => v.id === id)),
    );
    const one = items()[3];
    expect(await q(`id:${one?.id}`)).toEqual([one?.id]);
    const sorted = items().sort((a, b) => a.created - b.created);
    const mid = sorted[Math.floor(sorted.length / 2)]?.created ?? 0;
    const early = await q(`orgid:${sim.orgId} AND created:[0 TO ${mid}]`);
    expect(early.sort()).toEqual(
      sorted
        .filter((i) => i.created <= mid)
        .map((i) => i.id)
        .sort(),
    );
    const owner = sim.model.users[1]?.username ?? "";
    expect(
      (await q(`(owner:${owner} OR owner:${sim.admin.username}) AND orgid:${sim.orgId}`)).sort(),
    ).toEqual(
      items()
        .filter((i) => i.owner === owner || i.owner === sim.admin.username)
        .map((i) => i.id)
        .sort(),
    );
  });

  it("anonymous callers see public items only; a viewer sees org/public/own-group items", async () => {
    const anon = (await getJson(`${sim.sharingUrl}/search`, { q: `orgid:${sim.orgId}`, num: 100 }))
      .results as Json[];
    expect(anon.map((i) => i.access)).toEqual(anon.map(() => "public"));
    expect(anon.length).toBe(items().filter((i) => i.access === "public").length);
    const viewer = sim.model.users.find((u) => u.role === "org_user");
    if (!viewer) return;
    const vt = await tokenFor(sim, viewer.username);
    const seen = (await getJson(`${sim.sharingUrl}/search`, { token: vt, q: `orgid:${sim.orgId}`, num: 100 }))
      .results as Json[];
    const mine = sim.model.groupsOfUser(viewer.username);
    const expected = items().filter(
      (i) =>
        i.access === "public" ||
        i.access === "org" ||
        i.owner === viewer.username ||
        i.groups.some((g) => mine.includes(g)),
    );
    expect(seen.map((i) => i.id).sort()).toEqual(expected.map((i) => i.id).sort());
  });

  it("answers an error without q", async () => {
    expect(errorOf(await getJson(`${sim.sharingUrl}/search`, { token })).code).toBe(400);
  });
});

describe("content", () => {
  it("content/users lists the root folder with folders, and each folder separately", async () => {
    const owner = sim.model.users.find((u) => sim.model.foldersOf(u.username).length > 0) ?? sim.admin;
    const t = await tokenFor(sim, owner.username);
    const root = await getJson(`${sim.sharingUrl}/content/users/${owner.username}`, { token: t, num: 100 });
    expect(root).toMatchObject({ username: owner.username, start: 1, nextStart: -1, currentFolder: null });
    const own = items().filter((i) => i.owner === owner.username);
    expect((root.items as Json[]).map((i) => i.id).sort()).toEqual(
      own
        .filter((i) => i.folderId === null)
        .map((i) => i.id)
        .sort(),
    );
    const folders = root.folders as Json[];
    expect(folders.map((f) => f.id).sort()).toEqual(
      sim.model
        .foldersOf(owner.username)
        .map((f) => f.id)
        .sort(),
    );
    for (const f of folders) {
      expect(Object.keys(f).sort()).toEqual(["created", "id", "title", "username"]);
      const inside = await getJson(`${sim.sharingUrl}/content/users/${owner.username}/${f.id}`, { token: t });
      expect((inside.currentFolder as Json).id).toBe(f.id);
      expect((inside.items as Json[]).map((i) => i.id).sort()).toEqual(
        own
          .filter((i) => i.folderId === f.id)
          .map((i) => i.id)
          .sort(),
      );
    }
    const viewer = sim.model.users.find((u) => u.role === "org_user" && u.username !== owner.username);
    if (viewer) {
      const vt = await tokenFor(sim, viewer.username);
      const denied = await getJson(`${sim.sharingUrl}/content/users/${owner.username}`, { token: vt });
      expect(errorOf(denied).code).toBe(403);
    }
  });

  it("item JSON has the documented fields; missing or invisible items answer CONT_0001", async () => {
    const it0 = items()[0];
    if (!it0) throw new Error("no items");
    const j = await getJson(`${sim.sharingUrl}/content/items/${it0.id}`, { token });
    for (const k of [
      "id",
      "owner",
      "orgId",
      "created",
      "modified",
      "title",
      "type",
      "typeKeywords",
      "access",
      "size",
    ])
      expect(j).toHaveProperty(k);
    expect(j.id).toMatch(/^[0-9a-f]{32}$/);
    const missing = await getJson(`${sim.sharingUrl}/content/items/${"0".repeat(32)}`, { token });
    expect(errorOf(missing)).toMatchObject({
      code: 400,
      messageCode: "CONT_0001",
      message: "Item does not exist or is inaccessible.",
    });
    const priv = items().find((i) => i.access === "private");
    if (priv)
      expect(errorOf(await getJson(`${sim.sharingUrl}/content/items/${priv.id}`)).messageCode).toBe(
        "CONT_0001",
      );
    const withSharing = await getJson(`${sim.sharingUrl}/content/users/${it0.owner}/items/${it0.id}`, {
      token,
    });
    expect(withSharing.sharing).toEqual({ access: it0.access, groups: it0.groups });
    expect(it0.access === "shared" ? it0.groups.length > 0 : true).toBe(true);
  });

  it("data: JSON items return JSON, service items an empty 200, file items a 302 to signed storage", async () => {
    const wm = byType("Web Map")[0];
    const r1 = await fetch(`${sim.sharingUrl}/content/items/${wm?.id}/data?f=json&token=${token}`);
    const data = (await r1.json()) as Json;
    expect(Array.isArray(data.operationalLayers)).toBe(true);
    const ms = byType("Map Service")[0];
    const r2 = await fetch(`${sim.sharingUrl}/content/items/${ms?.id}/data?f=json&token=${token}`);
    expect(r2.status).toBe(200);
    expect(await r2.text()).toBe("");
    const pdf = byType("PDF")[0];
    if (!pdf) throw new Error("no pdf");
    const r3 = await fetch(`${sim.sharingUrl}/content/items/${pdf.id}/data?token=${token}`, {
      redirect: "manual",
    });
    expect(r3.status).toBe(302);
    const loc = r3.headers.get("location") ?? "";
    expect(loc.startsWith(sim.storageUrl)).toBe(true);
    expect(loc).not.toContain(token);
    const bytes = Buffer.from(await (await fetch(loc)).arrayBuffer());
    const truth = sim.model.itemDataBuffer(pdf.id);
    expect(bytes.length).toBe(pdf.size);
    expect(sha(bytes)).toBe(sha(truth ?? Buffer.alloc(0)));
    expect(bytes.subarray(0, 5).toString()).toBe("%PDF-");
    const r4 = await fetch(loc, { headers: { range: "bytes=10-19" } });
    expect(r4.status).toBe(206);
    expect(Buffer.from(await r4.arrayBuffer())).toEqual(truth?.subarray(10, 20));
  });

  it("the storage host rejects a forwarded token, a token header and a bad signature", async () => {
    const csv = byType("CSV")[0];
    const r = await fetch(`${sim.sharingUrl}/content/items/${csv?.id}/data?token=${token}`, {
      redirect: "manual",
    });
    const loc = r.headers.get("location") ?? "";
    expect((await fetch(`${loc}&token=${token}`)).status).toBe(400);
    expect((await fetch(loc, { headers: { "X-Esri-Authorization": `Bearer ${token}` } })).status).toBe(400);
    expect((await fetch(loc, { headers: { Authorization: `Bearer ${token}` } })).status).toBe(400);
    expect((await fetch(loc.replace(/sig=[^&]+/, "sig=forged"))).status).toBe(403);
    const ok = await fetch(loc);
    expect(ok.status).toBe(200);
    expect(ok.headers.get("content-disposition")).toContain("attachment");
  });

  it("metadata, thumbnails and missing info files", async () => {
    const withMeta = items().find((i) => sim.model.metadata(i.id) !== null);
    const without = items().find((i) => sim.model.metadata(i.id) === null);
    if (withMeta) {
      const r = await fetch(
        `${sim.sharingUrl}/content/items/${withMeta.id}/info/metadata/metadata.xml?token=${token}`,
      );
      expect(await r.text()).toBe(sim.model.metadata(withMeta.id));
    }
    if (without) {
      const j = await getJson(`${sim.sharingUrl}/content/items/${without.id}/info/metadata/metadata.xml`, {
        token,
      });
      expect(errorOf(j).code).toBe(400);
    }
    const thumbed = items().find((i) => i.thumbnail);
    if (thumbed) {
      const r = await fetch(
        `${sim.sharingUrl}/content/items/${thumbed.id}/info/${thumbed.thumbnail}?token=${token}`,
      );
      const png = Buffer.from(await r.arrayBuffer());
      expect(png.subarray(1, 4).toString()).toBe("PNG");
      expect(png).toEqual(sim.model.thumbnail(thumbed.id));
    }
  });

  it("resources page and each file round-trips, awkward names included", async () => {
    const withRes = items().filter((i) => sim.model.resources(i.id).length > 0);
    expect(withRes.length).toBeGreaterThan(0);
    let awkward = 0;
    for (const it of withRes) {
      const truth = sim.model.resources(it.id);
      const first = await getJson(`${sim.sharingUrl}/content/items/${it.id}/resources`, { token, num: 2 });
      expect(first).toMatchObject({
        total: truth.length,
        start: 1,
        num: 2,
        nextStart: truth.length > 2 ? 3 : -1,
      });
      const all = await getJson(`${sim.sharingUrl}/content/items/${it.id}/resources`, { token, num: 1000 });
      const list = all.resources as Json[];
      expect(list.map((r) => r.resource)).toEqual(truth.map((r) => r.resource));
      for (const r of list) {
        expect(Object.keys(r).sort()).toEqual(["access", "created", "resource", "size"]);
        const path = String(r.resource).split("/").map(encodeURIComponent).join("/");
        const res = await fetch(`${sim.sharingUrl}/content/items/${it.id}/resources/${path}?token=${token}`);
        const buf = Buffer.from(await res.arrayBuffer());
        expect(buf).toEqual(sim.model.resourceBuffer(it.id, String(r.resource)));
        expect(buf.length).toBe(r.size);
        if (/[^\x20-\x7e]|\.\.| /.test(String(r.resource))) awkward++;
      }
    }
    expect(awkward).toBeGreaterThan(0);
  });

  it("relatedItems follows relationship types both ways; groups lists item groups", async () => {
    const form = byType("Form")[0];
    const fwd = await getJson(`${sim.sharingUrl}/content/items/${form?.id}/relatedItems`, {
      token,
      relationshipType: "Survey2Service",
      direction: "forward",
    });
    const expected = sim.model.relatedItems(form?.id ?? "").filter((r) => r.type === "Survey2Service");
    expect(fwd.total).toBe(expected.length);
    expect((fwd.relatedItems as Json[]).map((i) => i.id)).toEqual(expected.map((r) => r.destId));
    const back = await getJson(`${sim.sharingUrl}/content/items/${expected[0]?.destId}/relatedItems`, {
      token,
      relationshipType: "Survey2Service",
      direction: "reverse",
    });
    expect((back.relatedItems as Json[]).map((i) => i.id)).toContain(form?.id);
    const shared = items().find((i) => i.groups.length > 0);
    if (shared) {
      const g = await getJson(`${sim.sharingUrl}/content/items/${shared.id}/groups`, { token });
      const all = [...(g.admin as Json[]), ...(g.member as Json[]), ...(g.other as Json[])].map((x) => x.id);
      expect(all.sort()).toEqual([...shared.groups].sort());
    }
  });

  it("community groups search, group users and group content", async () => {
    const r = await getJson(`${sim.sharingUrl}/community/groups`, {
      token,
      q: `orgid:${sim.orgId}`,
      num: 100,
    });
    expect(r.total).toBe(sim.model.groups.length);
    const g = sim.model.groups[0];
    if (!g) return;
    const users = await getJson(`${sim.sharingUrl}/community/groups/${g.id}/users`, { token });
    expect(users.owner).toBe(g.owner);
    expect([...(users.admins as string[]), ...(users.users as string[])].sort()).toEqual(
      [...g.members.keys()].sort(),
    );
    const content = await getJson(`${sim.sharingUrl}/content/groups/${g.id}`, { token, num: 100 });
    expect((content.items as Json[]).map((i) => i.id).sort()).toEqual(
      items()
        .filter((i) => i.groups.includes(g.id))
        .map((i) => i.id)
        .sort(),
    );
  });

  it("stats count requests per normalised route", async () => {
    sim.stats.reset();
    const it0 = items()[0];
    await getJson(`${sim.sharingUrl}/content/items/${it0?.id}`, { token });
    await getJson(`${sim.sharingUrl}/content/items/${it0?.id}/data`, { token });
    await getJson(`${sim.sharingUrl}/content/items/${it0?.id}/data`, { token });
    expect(sim.stats.count("sharing/content/items/:id/data")).toBe(2);
    expect(sim.stats.count("sharing/content/items/**")).toBe(3);
    expect(sim.stats.byRoute()).toEqual({
      "sharing/content/items/:id": 1,
      "sharing/content/items/:id/data": 2,
    });
  });
});

function sha(b: Buffer): string {
  return createHash("sha256").update(b).digest("hex");
}
