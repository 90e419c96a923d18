import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { orgRecordNames } from "../../src/core/backup/layout.js";
import type { Manifest } from "../../src/core/backup/manifest.js";
import {
  categoriesRecordSchema,
  groupRecordSchema,
  roleRecordSchema,
  settingsRecordSchema,
} from "../../src/core/backup/org-structure.js";
import { structureOutcomeSchema } from "../../src/core/restore/structure-model.js";
import { type PortalSim, startPortalSim } from "../portal-sim/index.js";
import { makePng } from "../portal-sim/png.js";
import { type AppHarness, startAppHarness } from "../support/app-harness.js";
import { backupWithFeatures, identityFor, readBlob, runRestore } from "./support.js";

/**
 * An org moved to another org: its custom roles, content categories, groups (settings, thumbnail,
 * category schema, members) and items, shared and categorised as they were. Usernames differ by
 * the org's suffix and are mapped with `usernameMap`; a user the target lacks is listed, not created.
 */

let app: AppHarness;
let target: PortalSim;
let source: { id: string; container: string };
let targetIdentity: { id: string; container: string };
let manifest: Manifest;

const SCHEMA = [
  {
    title: "Categories",
    categories: [{ title: "Parks", categories: [{ title: "Trails" }] }, { title: "Water" }],
  },
];
const GROUP_SCHEMA = [{ title: "Categories", categories: [{ title: "Crews" }] }];
const THUMBNAIL = makePng(11);

beforeAll(async () => {
  app = await startAppHarness({
    sim: { size: "tiny", seed: 71, urlKey: "srcorg", overrides: { items: { webMap: 2, pdf: 1, csv: 1 } } },
  });
  target = await startPortalSim({ size: "empty", seed: 72, urlKey: "dstorg" });
  const sim = app.sim;
  sim.model.addRole("Field Editor", "Edits in the field", [
    "portal:user:createItem",
    "features:user:edit",
    "portal:user:futurePrivilege",
  ]);
  sim.model.categorySchema = SCHEMA;
  const [first, second] = sim.model.groups;
  if (!first || !second) throw new Error("the tiny org has two groups");
  Object.assign(first, {
    thumbnail: { name: "crews.png", data: THUMBNAIL },
    categorySchema: GROUP_SCHEMA,
    sortField: "title",
    sortOrder: "asc",
  });
  const items = [...sim.model.items()];
  items.forEach((item, n) => {
    sim.mutate.editItem(item.id, {
      access: "shared",
      groups: n % 2 === 0 ? [first.id] : [first.id, second.id],
    });
    sim.model.editable(sim.model.indexOf(item.id) as number).categories = [
      n % 2 === 0 ? "/Categories/Parks/Trails" : "/Categories/Water",
    ];
  });
  source = await identityFor(app, sim);
  targetIdentity = await identityFor(app, target);
  manifest = await backupWithFeatures(app, source);
}, 120_000);

afterAll(async () => {
  await target?.close();
  await app?.close();
});

// One exact entry and one suffix entry.
const usernameMap = { admin_srcorg: "admin_dstorg", "*_srcorg": "*_dstorg" };

async function orgRecord(relative: string): Promise<string> {
  return (await readBlob(app, source, relative)).toString("utf8");
}
const lines = (text: string) =>
  text
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l));

describe("an org's structure in its backup", () => {
  test("roles with privileges, categories, settings; groups with memberships, thumbnail and category schema", async () => {
    const names = orgRecordNames(manifest.runId);
    const roles = lines(await orgRecord(names.roles)).map((r) => roleRecordSchema.parse(r));
    expect(roles).toEqual([
      expect.objectContaining({
        name: "Field Editor",
        privileges: ["portal:user:createItem", "features:user:edit", "portal:user:futurePrivilege"],
      }),
    ]);
    expect(
      categoriesRecordSchema.parse(JSON.parse(await orgRecord(names.categories))).categorySchema,
    ).toEqual(SCHEMA);
    const settings = settingsRecordSchema.parse(JSON.parse(await orgRecord(names.settings)));
    expect(settings.defaultExtent).toBeDefined();
    const groups = lines(await orgRecord(names.groups)).map((g) => groupRecordSchema.parse(g));
    const crews = groups.find((g) => g.id === app.sim.model.groups[0]?.id);
    expect(crews?.categorySchema).toEqual(GROUP_SCHEMA);
    expect(crews?.itemIds?.length).toBe(4);
    const simGroup = app.sim.model.groups[0];
    expect(new Map(crews?.memberships?.map((m) => [m.username, m.memberType]))).toEqual(simGroup?.members);
    expect((await readBlob(app, source, crews?.thumbnailBlob as string)).equals(THUMBNAIL)).toBe(true);
  });
});

describe("a move into another org (scope all, usernameMap)", () => {
  test("bad scope or usernameMap: 400 naming the field", async () => {
    const badScope = await app.call("POST", `/api/identities/${source.id}/restores`, {
      runId: manifest.runId,
      target: { identityId: targetIdentity.id, mode: "new" },
      scope: "users",
    });
    expect(badScope.status).toBe(400);
    expect(badScope.body.error.field).toBe("scope");
    const badMap = await app.call("POST", `/api/identities/${source.id}/restores`, {
      runId: manifest.runId,
      target: { identityId: targetIdentity.id, mode: "new" },
      usernameMap: { admin_srcorg: 3 },
    });
    expect(badMap.status).toBe(400);
    expect(String(badMap.body.error.field)).toMatch(/^usernameMap/);
  });

  test("a dry run shows what would be created, matched and skipped, and writes nothing", async () => {
    const dry = await app.call("POST", `/api/identities/${source.id}/restores`, {
      runId: manifest.runId,
      target: { identityId: targetIdentity.id, mode: "new" },
      scope: "all",
      usernameMap,
      dryRun: true,
    });
    expect(dry.status, dry.text).toBe(200);
    const structure = structureOutcomeSchema.parse(dry.body.plan.structure);
    expect(structure.applied).toBe(false);
    expect(structure.roles).toEqual([
      expect.objectContaining({
        name: "Field Editor",
        action: "create",
        status: "planned",
        unsupportedPrivileges: ["portal:user:futurePrivilege"],
      }),
    ]);
    expect(structure.categories).toMatchObject({ action: "assign", status: "planned" });
    expect(structure.groups.map((g) => [g.title, g.action])).toEqual(
      app.sim.model.groups.map((g) => [g.title, "create"]),
    );
    const viewerGroups = app.sim.model.groups
      .filter((g) => g.members.has("viewer1_srcorg"))
      .map((g) => g.title);
    expect(structure.missingUsers).toEqual([
      {
        username: "viewer1_srcorg",
        targetUsername: "viewer1_dstorg",
        role: "org_user",
        userType: "viewerUT",
        groups: viewerGroups,
      },
    ]);
    // Items are not reported as missing the groups the structure step will create.
    expect(dry.body.plan.missingGroups).toEqual([]);
    expect(target.model.groups).toHaveLength(0);
    expect(target.model.roles).toHaveLength(0);
    expect(target.model.categorySchema).toEqual([]);
  });

  test("roles, categories, groups, memberships and items come back shared and categorised as they were; a second run matches", {
    timeout: 120_000,
  }, async () => {
    const { report, record } = await runRestore(app, source.id, {
      runId: manifest.runId,
      target: { identityId: targetIdentity.id, mode: "new" },
      scope: "all",
      usernameMap,
    });
    expect(record.status, JSON.stringify(report.structure)).toBe("completed");
    const structure = structureOutcomeSchema.parse(report.structure);
    expect(structure.totals).toEqual({ created: 1 + app.sim.model.groups.length, matched: 0, failed: 0 });

    // Roles: the privileges the target offers.
    expect(target.model.roles.map((r) => [r.name, r.privileges])).toEqual([
      ["Field Editor", ["portal:user:createItem", "features:user:edit"]],
    ]);
    // Categories.
    expect(target.model.categorySchema).toEqual(SCHEMA);
    // Groups: same titles and settings, thumbnail, category schema; members who exist in the target.
    const map = (u: string) =>
      target.model.user(u.replace(/_srcorg$/, "_dstorg")) ? u.replace(/_srcorg$/, "_dstorg") : undefined;
    for (const sourceGroup of app.sim.model.groups) {
      const moved = target.model.groups.find((g) => g.title === sourceGroup.title);
      expect(moved, sourceGroup.title).toBeDefined();
      if (!moved) continue;
      expect(moved).toMatchObject({
        access: sourceGroup.access,
        tags: sourceGroup.tags,
        description: sourceGroup.description,
        snippet: sourceGroup.snippet,
        isInvitationOnly: sourceGroup.isInvitationOnly,
        isViewOnly: sourceGroup.isViewOnly,
      });
      if (sourceGroup.thumbnail) expect(moved.thumbnail?.data.equals(THUMBNAIL)).toBe(true);
      if (sourceGroup.categorySchema) expect(moved.categorySchema).toEqual(GROUP_SCHEMA);
      // The restoring user owns what it creates; the original owner manages the group.
      const expected = new Set([...sourceGroup.members.keys()].map(map).filter(Boolean));
      expected.add(target.admin.username);
      expect([...moved.members.keys()].sort()).toEqual([...expected].sort());
      const owner = map(sourceGroup.owner);
      if (owner && owner !== target.admin.username) expect(moved.members.get(owner)).toBe("admin");
    }
    // Items: shared into the same groups (by title) and with the same categories.
    const groupTitle = (org: PortalSim, id: string) => org.model.groups.find((g) => g.id === id)?.title;
    for (const entry of report.items) {
      const before = app.sim.model.item(entry.itemId);
      const after = target.model.item(entry.newId as string);
      expect(after, entry.title).toBeDefined();
      expect(after?.groups.map((id) => groupTitle(target, id)).sort()).toEqual(
        before?.groups.map((id) => groupTitle(app.sim, id)).sort(),
      );
      expect(after?.categories).toEqual(before?.categories);
    }
    expect(report.missingGroups).toEqual([]);

    // Again, structure only: everything is matched, nothing is created twice.
    const again = await runRestore(app, source.id, {
      runId: manifest.runId,
      target: { identityId: targetIdentity.id, mode: "new" },
      scope: ["roles", "categories", "groups"],
      usernameMap,
    });
    const second = structureOutcomeSchema.parse(again.report.structure);
    expect(second.totals).toEqual({ created: 0, matched: 1 + app.sim.model.groups.length, failed: 0 });
    expect(second.categories?.action).toBe("match");
    expect(second.groups.every((g) => g.members.length === 0)).toBe(true);
    expect(again.report.items).toEqual([]);
    expect(target.model.groups).toHaveLength(app.sim.model.groups.length);
    expect(target.model.roles).toHaveLength(1);
  });
});

describe("a structure step that fails midway", () => {
  test("lost answers and a failed activity create no role or group twice", { timeout: 120_000 }, async () => {
    const crashTarget = await startPortalSim({ size: "empty", seed: 73, urlKey: "crashorg" });
    try {
      const identity = await identityFor(app, crashTarget);
      crashTarget.setFaults([
        // The portal created the role and the group, but the answers never arrived.
        { match: "sharing/portals/self/createRole", action: "truncate", times: 1 },
        { match: "sharing/community/createGroup", action: "truncate", times: 1 },
        // Sign-in keeps failing while members are added: the plan activity fails and runs again.
        { match: "sharing/community/groups/:id/addUsers", action: "status", status: 401, times: 3 },
      ]);
      const { report, restoreId } = await runRestore(app, source.id, {
        runId: manifest.runId,
        target: { identityId: identity.id, mode: "new" },
        scope: ["roles", "categories", "groups"],
        usernameMap: { admin_srcorg: "admin_crashorg", "*_srcorg": "*_crashorg" },
      });
      crashTarget.setFaults([]);
      const status = await app.host.getStatus(restoreId, { showHistory: true });
      const events = (status?.historyEvents ?? []) as Array<{ EventType: string }>;
      expect(events.filter((e) => e.EventType === "TaskFailed").length).toBeGreaterThanOrEqual(1);
      const structure = structureOutcomeSchema.parse(report.structure);
      expect(structure.totals.failed).toBe(0);
      expect(crashTarget.model.roles.map((r) => r.name)).toEqual(["Field Editor"]);
      // Each create sent once: a lost answer is looked up, a retried step matches by name.
      expect(crashTarget.stats.count("sharing/portals/self/createRole")).toBe(1);
      expect(crashTarget.stats.count("sharing/community/createGroup")).toBe(app.sim.model.groups.length);
      expect(crashTarget.model.groups.map((g) => g.title).sort()).toEqual(
        app.sim.model.groups.map((g) => g.title).sort(),
      );
      for (const sourceGroup of app.sim.model.groups) {
        const moved = crashTarget.model.groups.find((g) => g.title === sourceGroup.title);
        const expected = new Set(
          [...sourceGroup.members.keys()]
            .map((u) => u.replace(/_srcorg$/, "_crashorg"))
            .filter((u) => crashTarget.model.user(u)),
        );
        expected.add(crashTarget.admin.username);
        expect([...(moved?.members.keys() ?? [])].sort()).toEqual([...expected].sort());
      }
    } finally {
      await crashTarget.close();
    }
  });
});

describe("a target identity that may not manage roles", () => {
  test("each role it cannot create is reported failed with the portal's reason; the restore says so", {
    timeout: 60_000,
  }, async () => {
    const other = await startPortalSim({ size: "empty", seed: 74, urlKey: "puborg" });
    try {
      const publisher = other.model.users.find((u) => u.role === "org_publisher");
      if (!publisher) throw new Error("the empty org has a publisher");
      const identity = await identityFor(app, other, publisher);
      const { report, record } = await runRestore(app, source.id, {
        runId: manifest.runId,
        target: { identityId: identity.id, mode: "new" },
        scope: "roles",
      });
      expect(record.status).toBe("completed-with-failures");
      const structure = structureOutcomeSchema.parse(report.structure);
      expect(structure.roles).toEqual([
        expect.objectContaining({ name: "Field Editor", action: "create", status: "failed", targetId: null }),
      ]);
      expect(structure.roles[0]?.error?.message).toMatch(/permission/i);
      expect(structure.totals).toEqual({ created: 0, matched: 0, failed: 1 });
      expect(other.model.roles).toEqual([]);
    } finally {
      await other.close();
    }
  });
});
