import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { orgRecordNames } from "../../src/core/backup/layout.js";
import type { Manifest } from "../../src/core/backup/manifest.js";
import { type MissingUser, structureOutcomeSchema } from "../../src/core/restore/structure-model.js";
import { type PortalSim, startPortalSim } from "../portal-sim/index.js";
import { type AppHarness, startAppHarness } from "../support/app-harness.js";
import { backupWithFeatures, identityFor, readBlob, runRestore } from "./support.js";

/**
 * The users a moved org's groups need and the target lacks: reported by default; with
 * `users: "invite"`, invited on ArcGIS Online (once, however often the restore runs) and added as
 * identity-provider accounts on ArcGIS Enterprise. Built-in Enterprise accounts are never created.
 */

let app: AppHarness;
let online: PortalSim;
let source: { id: string; container: string };
let target: { id: string; container: string };
let manifest: Manifest;

const usernameMap = { "*_usrc": "*_udst" };

beforeAll(async () => {
  app = await startAppHarness({ sim: { size: "empty", seed: 81, urlKey: "usrc" } });
  online = await startPortalSim({ size: "empty", seed: 82, urlKey: "udst" });
  const sim = app.sim.model;
  const member = (username: string, email: string) =>
    sim.addMember({ username, email, fullName: "Field Crew", role: "org_user", userType: "viewerUT" });
  member("crew1_usrc", "crew1@example.invalid");
  member("crew2_usrc", "");
  const group = sim.addGroup({
    title: "Crews",
    owner: sim.admin.username,
    description: "",
    snippet: "",
    tags: [],
    access: "org",
    isInvitationOnly: false,
    isViewOnly: false,
  });
  group.members.set("crew1_usrc", "admin");
  group.members.set("crew2_usrc", "member");
  sim.membersChanged();
  source = await identityFor(app, app.sim);
  target = await identityFor(app, online);
  manifest = await backupWithFeatures(app, source);
}, 60_000);

afterAll(async () => {
  await online?.close();
  await app?.close();
});

const body = (extra: Record<string, unknown>, identityId = target.id) => ({
  runId: manifest.runId,
  target: { identityId, mode: "new" },
  scope: "groups",
  usernameMap,
  ...extra,
});
const byName = (users: MissingUser[]) => new Map(users.map((u) => [u.targetUsername, u]));

describe("missing users on an ArcGIS Online target", () => {
  test("a bad users option, or invite without groups in the scope: 400 naming users", async () => {
    for (const extra of [{ users: "create" }, { users: "invite", scope: "items" }]) {
      const bad = await app.call("POST", `/api/identities/${source.id}/restores`, body(extra));
      expect(bad.status, bad.text).toBe(400);
      expect(bad.body.error.field).toBe("users");
    }
  });

  test("by default they are reported and nobody is invited", { timeout: 20_000 }, async () => {
    const { report } = await runRestore(app, source.id, body({}));
    const structure = structureOutcomeSchema.parse(report.structure);
    expect(structure.missingUsers.map((u) => [u.targetUsername, u.status])).toEqual([
      ["crew1_udst", undefined],
      ["crew2_udst", undefined],
    ]);
    expect(online.stats.count("sharing/portals/self/invite")).toBe(0);
    expect(online.model.invitations).toEqual([]);
  });

  test("a dry run shows who would be invited and who cannot be", async () => {
    const dry = await app.call(
      "POST",
      `/api/identities/${source.id}/restores`,
      body({ users: "invite", dryRun: true }),
    );
    expect(dry.status, dry.text).toBe(200);
    const users = byName(structureOutcomeSchema.parse(dry.body.plan.structure).missingUsers);
    expect(users.get("crew1_udst")).toMatchObject({ action: "invite", status: "planned" });
    expect(users.get("crew2_udst")).toMatchObject({
      status: "skipped",
      reason: expect.stringMatching(/no email/),
    });
    expect(online.model.invitations).toEqual([]);
  });

  test("invited once with the mapped name; after accepting, a later restore adds them to their group", {
    timeout: 20_000,
  }, async () => {
    const first = await runRestore(app, source.id, body({ users: "invite" }));
    const structure = structureOutcomeSchema.parse(first.report.structure);
    expect(byName(structure.missingUsers).get("crew1_udst")).toMatchObject({ status: "invited" });
    expect(structure.notRestored.join("\n")).toMatch(/join their groups when the same restore is run again/);
    expect(online.model.invitations.map((i) => [i.username, i.email, i.role, i.userLicenseType])).toEqual([
      ["crew1_udst", "crew1@example.invalid", "org_user", "viewerUT"],
    ]);

    // Retried: the pending invitation is found, not sent again.
    const again = await runRestore(app, source.id, body({ users: "invite" }));
    const pending = byName(structureOutcomeSchema.parse(again.report.structure).missingUsers);
    expect(pending.get("crew1_udst")).toMatchObject({ status: "pending" });
    expect(online.stats.count("sharing/portals/self/invite")).toBe(1);
    expect(online.model.invitations).toHaveLength(1);

    online.model.acceptInvitation("crew1_udst");
    const third = await runRestore(app, source.id, body({ users: "invite" }));
    const after = structureOutcomeSchema.parse(third.report.structure);
    expect(after.missingUsers.map((u) => u.targetUsername)).toEqual(["crew2_udst"]);
    const crews = online.model.groups.find((g) => g.title === "Crews");
    expect(crews?.members.get("crew1_udst")).toBe("admin");
    expect(online.stats.count("sharing/portals/self/invite")).toBe(1);
  });
});

describe("an invitation whose answer is lost", () => {
  test("is looked up before it is sent again: one invitation", { timeout: 20_000 }, async () => {
    const other = await startPortalSim({ size: "empty", seed: 84, urlKey: "ulost" });
    try {
      const identity = await identityFor(app, other);
      other.setFaults([{ match: "sharing/portals/self/invite", action: "truncate", times: 1 }]);
      const { report } = await runRestore(
        app,
        source.id,
        body({ users: "invite", usernameMap: { "*_usrc": "*_ulost" } }, identity.id),
      );
      other.setFaults([]);
      const users = byName(structureOutcomeSchema.parse(report.structure).missingUsers);
      expect(users.get("crew1_ulost")).toMatchObject({ status: "invited" });
      expect(other.stats.count("sharing/portals/self/invite")).toBe(1);
      expect(other.model.invitations.map((i) => i.username)).toEqual(["crew1_ulost"]);
    } finally {
      await other.close();
    }
  });
});

describe("missing users on an ArcGIS Enterprise target", () => {
  test("identity-provider accounts are added; built-in ones are not", { timeout: 20_000 }, async () => {
    const enterprise = await startPortalSim({ kind: "enterprise", size: "empty", seed: 83, urlKey: "uent" });
    try {
      // The backup's crew1 signs in through the org's identity provider.
      const usersBlob = orgRecordNames(manifest.runId).users;
      const lines = (await readBlob(app, source, usersBlob)).toString("utf8").split("\n").filter(Boolean);
      const edited = lines.map((line) => {
        const user = JSON.parse(line) as Record<string, unknown>;
        return JSON.stringify(
          user.username === "crew1_usrc"
            ? { ...user, provider: "enterprise", idpUsername: "crew1@corp" }
            : user,
        );
      });
      const container = await app.container(source.container);
      const text = `${edited.join("\n")}\n`;
      await container.getBlockBlobClient(`${source.id}/${usersBlob}`).upload(text, Buffer.byteLength(text));

      const identity = await identityFor(app, enterprise);
      const mapped = { "*_usrc": "*_uent" };
      const { report } = await runRestore(
        app,
        source.id,
        body({ users: "invite", usernameMap: mapped }, identity.id),
      );
      const users = byName(structureOutcomeSchema.parse(report.structure).missingUsers);
      expect(users.get("crew1_uent")).toMatchObject({ action: "create", status: "created" });
      expect(users.get("crew2_uent")?.status).toBe("skipped");
      expect(enterprise.model.user("crew1_uent")?.email).toBe("crew1@example.invalid");
      expect(enterprise.model.user("crew2_uent")).toBeUndefined();

      // Again: the account exists now and joins its group; nothing is added twice.
      const again = await runRestore(
        app,
        source.id,
        body({ users: "invite", usernameMap: mapped }, identity.id),
      );
      const second = structureOutcomeSchema.parse(again.report.structure);
      expect(second.missingUsers.map((u) => u.targetUsername)).toEqual(["crew2_uent"]);
      expect(enterprise.stats.count("sharing/portals/self/invite")).toBe(1);
      expect(enterprise.model.groups.find((g) => g.title === "Crews")?.members.get("crew1_uent")).toBe(
        "admin",
      );
    } finally {
      await enterprise.close();
    }
  });
});
