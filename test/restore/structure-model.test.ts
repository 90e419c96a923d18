import { describe, expect, test } from "vitest";
import { groupRecordSchema, membershipsOf } from "../../src/core/backup/org-structure.js";
import { restoreRequestSchema } from "../../src/core/restore/model.js";
import { mapUsername, scopeParts } from "../../src/core/restore/structure-model.js";
import { categoryPaths, mergeCategoryTrees } from "../../src/core/restore/structure-restore.js";

describe("restore scope and usernameMap", () => {
  test("scope: absent is items alone; all is every part; a list keeps the step's order", () => {
    expect(scopeParts(undefined)).toEqual(["items"]);
    expect(scopeParts("all")).toEqual(["roles", "categories", "groups", "items"]);
    expect(scopeParts(["groups", "roles"])).toEqual(["roles", "groups"]);
    const ok = restoreRequestSchema.safeParse({ runId: "b-1", target: { mode: "new" }, scope: ["groups"] });
    expect(ok.success).toBe(true);
    const bad = restoreRequestSchema.safeParse({ runId: "b-1", target: { mode: "new" }, scope: [] });
    expect(bad.success).toBe(false);
  });

  test("usernameMap maps exactly, then without case; other names stay", () => {
    const map = { Jo_src: "jo_dst" };
    expect(mapUsername("Jo_src", map)).toBe("jo_dst");
    expect(mapUsername("jo_SRC", map)).toBe("jo_dst");
    expect(mapUsername("ann_src", map)).toBe("ann_src");
    expect(mapUsername("ann_src", undefined)).toBe("ann_src");
    const suffix = { "*_src": "*_dst", Jo_src: "joanna_dst" };
    expect(mapUsername("ann_src", suffix)).toBe("ann_dst");
    expect(mapUsername("Jo_src", suffix)).toBe("joanna_dst");
    expect(mapUsername("ann_other", suffix)).toBe("ann_other");
    const half = restoreRequestSchema.safeParse({
      runId: "b-1",
      target: { mode: "new" },
      usernameMap: { "*_src": "ann_dst" },
    });
    expect(half.success).toBe(false);
  });
});

describe("stored group records", () => {
  test("a line written before the structure was captured still reads; its members give memberships", () => {
    const old = groupRecordSchema.parse({
      id: "g1",
      title: "Parks",
      owner: "ann",
      access: "org",
      members: { owner: "ann", admins: ["ann", "bo"], users: ["cy"] },
      itemIds: ["a"],
    });
    expect(membershipsOf(old)).toEqual(
      expect.arrayContaining([
        { username: "cy", memberType: "member" },
        { username: "bo", memberType: "admin" },
        { username: "ann", memberType: "owner" },
      ]),
    );
    expect(membershipsOf(old)).toHaveLength(3);
    expect(groupRecordSchema.safeParse({ id: "g1" }).success).toBe(false);
  });
});

describe("category trees", () => {
  test("merge adds what the target lacks, by title at each level, and keeps the target's own", () => {
    const target = [{ title: "Categories", categories: [{ title: "Water" }] }];
    const source = [
      {
        title: "categories",
        categories: [{ title: "Parks", categories: [{ title: "Trails" }] }, { title: "water" }],
      },
      { title: "Region" },
    ];
    const merged = mergeCategoryTrees(target, source);
    expect(categoryPaths(merged)).toEqual([
      "/Categories",
      "/Categories/Water",
      "/Categories/Parks",
      "/Categories/Parks/Trails",
      "/Region",
    ]);
    expect(mergeCategoryTrees(merged, source)).toEqual(merged);
  });
});
