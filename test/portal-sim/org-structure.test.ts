import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PortalSim, startPortalSim } from "./index.js";
import { makePng } from "./png.js";
import { errorOf, getJson, type Json, postForm, tokenFor } from "./test-helpers.js";

let sim: PortalSim;
let token: string;
let viewerToken: string;

beforeAll(async () => {
  sim = await startPortalSim({ size: "tiny", seed: 5 });
  token = await tokenFor(sim);
  const viewer = sim.model.users.find((u) => u.userType === "viewerUT");
  viewerToken = await tokenFor(sim, viewer?.username);
});
afterAll(async () => {
  await sim.close();
});

describe("custom roles (portals/self/roles)", () => {
  it("createRole, setPrivileges, the paged list with or without privileges, one role's privileges", async () => {
    const created = await postForm(`${sim.sharingUrl}/portals/self/createRole`, {
      token,
      name: "Field Editor",
      description: "Edits in the field",
    });
    expect(created.success).toBe(true);
    const id = created.id as string;
    const set = await postForm(`${sim.sharingUrl}/portals/self/roles/${id}/setPrivileges`, {
      token,
      privileges: JSON.stringify({ privileges: ["portal:user:createItem", "features:user:edit"] }),
    });
    expect(set.success).toBe(true);
    const list = await getJson(`${sim.sharingUrl}/portals/self/roles`, { token, returnPrivileges: "true" });
    expect(list).toMatchObject({ total: 1, start: 1, nextStart: -1 });
    expect(list.roles).toEqual([
      expect.objectContaining({
        id,
        name: "Field Editor",
        privileges: ["portal:user:createItem", "features:user:edit"],
      }),
    ]);
    const bare = await getJson(`${sim.sharingUrl}/portals/self/roles`, { token });
    expect((bare.roles as Json[])[0]?.privileges).toBeUndefined();
    const one = await getJson(`${sim.sharingUrl}/portals/self/roles/${id}/privileges`, { token });
    expect(one.privileges).toEqual(["portal:user:createItem", "features:user:edit"]);
  });

  it("refuses a duplicate name, an unknown privilege, and a caller who is not an administrator", async () => {
    const again = await postForm(`${sim.sharingUrl}/portals/self/createRole`, {
      token,
      name: "field editor",
    });
    expect(errorOf(again).code).toBe(400);
    const id = sim.model.roles[0]?.id as string;
    const bad = await postForm(`${sim.sharingUrl}/portals/self/roles/${id}/setPrivileges`, {
      token,
      privileges: JSON.stringify({ privileges: ["portal:user:teleport"] }),
    });
    expect(errorOf(bad).details.join()).toContain("portal:user:teleport");
    const viewer = await postForm(`${sim.sharingUrl}/portals/self/createRole`, {
      token: viewerToken,
      name: "X",
    });
    expect(errorOf(viewer).code).toBe(403);
  });
});

describe("content categories", () => {
  const schema = [
    { title: "Categories", categories: [{ title: "Parks", categories: [{ title: "Trails" }] }] },
  ];

  it("assignCategorySchema, categorySchema, and updateItems with categories of the schema only", async () => {
    const assigned = await postForm(`${sim.sharingUrl}/portals/self/assignCategorySchema`, {
      token,
      categorySchema: JSON.stringify({ categorySchema: schema }),
    });
    expect(assigned.success).toBe(true);
    expect(
      (await getJson(`${sim.sharingUrl}/portals/self/categorySchema`, { token })).categorySchema,
    ).toEqual(schema);
    const item = [...sim.model.items()][0];
    const updated = await postForm(`${sim.sharingUrl}/content/updateItems`, {
      token,
      items: JSON.stringify([
        { [item?.id as string]: { categories: ["/Categories/Parks/Trails"] } },
        { ffffffffffffffffffffffffffffffff: { categories: [] } },
      ]),
    });
    expect(updated.results).toEqual([
      { itemId: item?.id, success: true },
      expect.objectContaining({ itemId: "ffffffffffffffffffffffffffffffff", success: false }),
    ]);
    const read = await getJson(`${sim.sharingUrl}/content/items/${item?.id}`, { token });
    expect(read.categories).toEqual(["/Categories/Parks/Trails"]);
    const unknown = await postForm(`${sim.sharingUrl}/content/updateItems`, {
      token,
      items: JSON.stringify([{ [item?.id as string]: { categories: ["/Categories/Nope"] } }]),
    });
    expect((unknown.results as Json[])[0]?.success).toBe(false);
  });

  it("refuses a schema past the documented limits (5 trees, 4 levels)", async () => {
    const deep = {
      title: "a",
      categories: [
        {
          title: "b",
          categories: [
            {
              title: "c",
              categories: [{ title: "d", categories: [{ title: "e", categories: [{ title: "f" }] }] }],
            },
          ],
        },
      ],
    };
    const tooDeep = await postForm(`${sim.sharingUrl}/portals/self/assignCategorySchema`, {
      token,
      categorySchema: JSON.stringify({ categorySchema: [deep] }),
    });
    expect(errorOf(tooDeep).code).toBe(400);
    const trees = Array.from({ length: 6 }, (_, i) => ({ title: `T${i}` }));
    const tooMany = await postForm(`${sim.sharingUrl}/portals/self/assignCategorySchema`, {
      token,
      categorySchema: JSON.stringify({ categorySchema: trees }),
    });
    expect(errorOf(tooMany).code).toBe(400);
  });
});

describe("groups: createGroup, update, addUsers, thumbnail, category schema", () => {
  it("creates a group with its settings and thumbnail, adds members, answers them as documented", async () => {
    const png = makePng(7);
    const form = new FormData();
    for (const [k, v] of Object.entries({
      f: "json",
      token,
      title: "Field Crews",
      access: "org",
      tags: "crews,field",
      description: "Crews",
      snippet: "Crews in the field",
      sortField: "title",
      sortOrder: "asc",
      isInvitationOnly: "true",
      isViewOnly: "false",
      autoJoin: "false",
      membershipAccess: "org",
    }))
      form.set(k, v);
    form.set("thumbnail", new Blob([png]), "crews.png");
    const created = (await (
      await fetch(`${sim.sharingUrl}/community/createGroup`, { method: "POST", body: form })
    ).json()) as Json;
    expect(created.success).toBe(true);
    const group = created.group as Json;
    expect(group).toMatchObject({
      title: "Field Crews",
      access: "org",
      owner: sim.admin.username,
      tags: ["crews", "field"],
      sortField: "title",
      sortOrder: "asc",
      isInvitationOnly: true,
      thumbnail: "crews.png",
    });
    const id = group.id as string;
    const thumb = await fetch(`${sim.sharingUrl}/community/groups/${id}/info/crews.png?token=${token}`);
    expect(Buffer.from(await thumb.arrayBuffer()).equals(png)).toBe(true);

    const publisher = sim.model.users.find((u) => u.role === "org_publisher")?.username as string;
    const viewer = sim.model.users.find((u) => u.userType === "viewerUT")?.username as string;
    const added = await postForm(`${sim.sharingUrl}/community/groups/${id}/addUsers`, {
      token,
      users: `${viewer},nobody_here`,
      admins: publisher,
    });
    expect(added.notAdded).toEqual(["nobody_here"]);
    const users = await getJson(`${sim.sharingUrl}/community/groups/${id}/users`, { token });
    expect(users).toEqual({
      owner: sim.admin.username,
      admins: [sim.admin.username, publisher],
      users: [viewer],
    });

    const again = await postForm(`${sim.sharingUrl}/community/createGroup`, { token, title: "field crews" });
    expect(errorOf(again).code).toBe(400);

    const updated = await postForm(`${sim.sharingUrl}/community/groups/${id}/update`, {
      token,
      snippet: "New",
    });
    expect(updated.success).toBe(true);
    const schema = [{ title: "Categories", categories: [{ title: "Crews" }] }];
    const assigned = await postForm(`${sim.sharingUrl}/community/groups/${id}/assignCategorySchema`, {
      token,
      categorySchema: JSON.stringify({ categorySchema: schema }),
    });
    expect(assigned.success).toBe(true);
    const read = await getJson(`${sim.sharingUrl}/community/groups/${id}`, { token });
    expect(read).toMatchObject({ snippet: "New", hasCategorySchema: true });
    expect(
      (await getJson(`${sim.sharingUrl}/community/groups/${id}/categorySchema`, { token })).categorySchema,
    ).toEqual(schema);
    expect(sim.stats.count("sharing/community/groups/:id/addUsers")).toBe(1);
  });

  it("a member who does not manage the group may not change it", async () => {
    const id = sim.model.groups.find((g) => g.title === "Field Crews")?.id as string;
    const denied = await postForm(`${sim.sharingUrl}/community/groups/${id}/update`, {
      token: viewerToken,
      snippet: "x",
    });
    expect(errorOf(denied).code).toBe(403);
  });
});
