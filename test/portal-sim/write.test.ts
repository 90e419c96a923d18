import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PortalSim, startPortalSim } from "./index.js";
import { errorOf, getJson, type Json, postForm, tokenFor } from "./test-helpers.js";

let sim: PortalSim;
let token: string;
let user: string;
let content: string;

beforeAll(async () => {
  sim = await startPortalSim({ size: "empty", seed: 2 });
  token = await tokenFor(sim);
  user = sim.admin.username;
  content = `${sim.sharingUrl}/content/users/${user}`;
});
afterAll(async () => {
  await sim.close();
});

async function multipart(
  url: string,
  fields: Record<string, string | Blob>,
  files: Record<string, [Buffer, string]> = {},
) {
  const fd = new FormData();
  fd.set("f", "json");
  fd.set("token", token);
  for (const [k, v] of Object.entries(fields)) fd.set(k, v);
  for (const [k, [buf, name]] of Object.entries(files)) fd.set(k, new Blob([buf]), name);
  return (await (await fetch(url, { method: "POST", body: fd })).json()) as Json;
}

describe("write side", () => {
  it("empty org has no items", async () => {
    const r = await getJson(`${sim.sharingUrl}/search`, { token, q: `orgid:${sim.orgId}` });
    expect(r.total).toBe(0);
  });

  it("createFolder, addItem (text and file), update, updateinfo, resources, share, relationship, delete", async () => {
    const folder = await postForm(`${content}/createFolder`, { token, title: "Restored" });
    expect(folder).toMatchObject({ success: true, folder: { username: user, title: "Restored" } });
    const folderId = (folder.folder as Json).id as string;
    expect(errorOf(await postForm(`${content}/createFolder`, { token, title: "Restored" })).code).toBe(400);

    const map = await postForm(`${content}/${folderId}/addItem`, {
      token,
      title: "My map",
      type: "Web Map",
      typeKeywords: "Web Map,Map",
      tags: "a,b",
      extent: "-1,-2,3,4",
      text: JSON.stringify({ operationalLayers: [], version: "2.31" }),
    });
    expect(map).toMatchObject({ success: true, folder: folderId });
    const mapId = map.id as string;
    const item = await getJson(`${sim.sharingUrl}/content/items/${mapId}`, { token });
    expect(item).toMatchObject({
      title: "My map",
      access: "private",
      ownerFolder: folderId,
      tags: ["a", "b"],
    });
    expect(item.extent).toEqual([
      [-1, -2],
      [3, 4],
    ]);
    const data = await getJson(`${sim.sharingUrl}/content/items/${mapId}/data`, { token });
    expect(data.version).toBe("2.31");

    const pdfBytes = Buffer.from("%PDF-1.7\nhello pdf");
    const pdf = await multipart(
      `${content}/addItem`,
      { title: "Doc", type: "PDF", filename: "doc.pdf" },
      {
        file: [pdfBytes, "doc.pdf"],
        thumbnail: [Buffer.from("\x89PNGfake"), "thumb.png"],
        metadata: [Buffer.from("<metadata/>"), "metadata.xml"],
      },
    );
    expect(pdf.success).toBe(true);
    const pdfId = pdf.id as string;
    const dup = await multipart(
      `${content}/addItem`,
      { title: "Doc 2", type: "PDF" },
      { file: [pdfBytes, "doc.pdf"] },
    );
    expect(errorOf(dup)).toMatchObject({ code: 409, messageCode: "CONT_0027" });
    const got = Buffer.from(
      await (await fetch(`${sim.sharingUrl}/content/items/${pdfId}/data?token=${token}`)).arrayBuffer(),
    );
    expect(got).toEqual(pdfBytes);
    const meta = await fetch(
      `${sim.sharingUrl}/content/items/${pdfId}/info/metadata/metadata.xml?token=${token}`,
    );
    expect(await meta.text()).toBe("<metadata/>");
    expect((await getJson(`${sim.sharingUrl}/content/items/${pdfId}`, { token })).thumbnail).toBe(
      "thumbnail/thumb.png",
    );

    const upd = await postForm(`${content}/items/${mapId}/update`, {
      token,
      snippet: "new snippet",
      description: "",
    });
    expect(upd).toMatchObject({ success: true, id: mapId });
    const after = await getJson(`${sim.sharingUrl}/content/items/${mapId}`, { token });
    expect(after.snippet).toBe("new snippet");
    expect(after.modified as number).toBeGreaterThanOrEqual(item.modified as number);

    const info = await multipart(
      `${content}/items/${mapId}/updateinfo`,
      { folderName: "metadata" },
      { file: [Buffer.from("<m2/>"), "metadata.xml"] },
    );
    expect(info).toMatchObject({ success: true, itemId: mapId });
    expect(sim.model.metadata(mapId)).toBe("<m2/>");

    const res = await multipart(
      `${content}/items/${mapId}/addResources`,
      { resourcesPrefix: "images/été", fileName: "a b.png" },
      { file: [Buffer.from("png!"), "a b.png"] },
    );
    expect(res).toMatchObject({ success: true, itemId: mapId });
    await postForm(`${content}/items/${mapId}/addResources`, {
      token,
      fileName: "config.json",
      text: '{"x":1}',
    });
    const list = await getJson(`${sim.sharingUrl}/content/items/${mapId}/resources`, { token });
    expect((list.resources as Json[]).map((r) => r.resource).sort()).toEqual([
      "config.json",
      "images/été/a b.png",
    ]);
    const file = await fetch(
      `${sim.sharingUrl}/content/items/${mapId}/resources/${encodeURIComponent("images")}/${encodeURIComponent("été")}/${encodeURIComponent("a b.png")}?token=${token}`,
    );
    expect(await file.text()).toBe("png!");

    const group = "0".repeat(32);
    const share = await postForm(`${content}/items/${mapId}/share`, { token, org: "true", groups: group });
    expect(share).toMatchObject({ itemId: mapId, notSharedWith: [group] });
    expect((await getJson(`${sim.sharingUrl}/content/items/${mapId}`, { token })).access).toBe("org");
    const batch = await postForm(`${content}/shareItems`, {
      token,
      items: `${mapId},${pdfId}`,
      everyone: "true",
    });
    expect((batch.results as Json[]).map((r) => r.success)).toEqual([true, true]);
    expect((await getJson(`${sim.sharingUrl}/content/items/${pdfId}`)).access).toBe("public");

    const rel = await postForm(`${content}/addRelationship`, {
      token,
      originItemId: mapId,
      destinationItemId: pdfId,
      relationshipType: "Map2Service",
    });
    expect(rel.success).toBe(true);
    const related = await getJson(`${sim.sharingUrl}/content/items/${mapId}/relatedItems`, {
      token,
      relationshipType: "Map2Service",
    });
    expect((related.relatedItems as Json[]).map((i) => i.id)).toEqual([pdfId]);

    const del = await postForm(`${content}/items/${pdfId}/delete`, { token });
    expect(del).toMatchObject({ success: true, itemId: pdfId });
    expect(errorOf(await getJson(`${sim.sharingUrl}/content/items/${pdfId}`, { token })).messageCode).toBe(
      "CONT_0001",
    );
    const search = await getJson(`${sim.sharingUrl}/search`, { token, q: `orgid:${sim.orgId}` });
    expect(search.total).toBe(1);
  });

  it("multipart upload: addItem(multipart) + addPart + commit", async () => {
    const add = await postForm(`${content}/addItem`, {
      token,
      title: "Big",
      type: "File Geodatabase",
      multipart: "true",
      filename: "big.zip",
    });
    const id = add.id as string;
    const p1 = Buffer.alloc(1000, 1);
    const p2 = Buffer.alloc(10, 2);
    await multipart(`${content}/items/${id}/addPart`, { partNum: "2" }, { file: [p2, "big.zip"] });
    await multipart(`${content}/items/${id}/addPart`, { partNum: "1" }, { file: [p1, "big.zip"] });
    expect((await postForm(`${content}/items/${id}/commit`, { token })).success).toBe(true);
    const got = Buffer.from(
      await (await fetch(`${sim.sharingUrl}/content/items/${id}/data?token=${token}`)).arrayBuffer(),
    );
    expect(got).toEqual(Buffer.concat([p1, p2]));
  });

  it("createService + addToDefinition + applyEdits + addAttachment, readable afterwards", async () => {
    expect(
      (
        await getJson(`${sim.sharingUrl}/portals/self/isServiceNameAvailable`, {
          token,
          name: "Trees",
          type: "Feature Service",
        })
      ).available,
    ).toBe(true);
    const created = await postForm(`${content}/createService`, {
      token,
      outputType: "featureService",
      createParameters: JSON.stringify({
        name: "Trees",
        maxRecordCount: 2,
        capabilities: "Create,Delete,Query,Update,Editing",
      }),
    });
    expect(created).toMatchObject({ success: true, type: "Feature Service", name: "Trees", isView: false });
    const url = created.serviceurl as string;
    expect(url).toBe(`${sim.orgUrl}/${sim.orgId}/arcgis/rest/services/Trees/FeatureServer`);
    expect(
      (await getJson(`${sim.sharingUrl}/portals/self/isServiceNameAvailable`, { token, name: "Trees" }))
        .available,
    ).toBe(false);
    const admin = url.replace("/rest/services/", "/rest/admin/services/");
    const def = await postForm(`${admin}/addToDefinition`, {
      token,
      addToDefinition: JSON.stringify({
        layers: [
          {
            id: 0,
            name: "Trees",
            type: "Feature Layer",
            geometryType: "esriGeometryPoint",
            objectIdField: "OBJECTID",
            globalIdField: "GlobalID",
            hasAttachments: true,
            fields: [
              { name: "OBJECTID", type: "esriFieldTypeOID", alias: "OBJECTID" },
              { name: "GlobalID", type: "esriFieldTypeGlobalID", alias: "GlobalID", length: 38 },
              { name: "species", type: "esriFieldTypeString", alias: "Species", length: 50 },
            ],
          },
        ],
      }),
    });
    expect(def).toMatchObject({ success: true, layers: [{ name: "Trees", id: 0 }] });
    const gid = "8d3e2a4b-1111-4222-8333-444455556666";
    const edits = await postForm(`${url}/0/applyEdits`, {
      token,
      useGlobalIds: "true",
      adds: JSON.stringify([
        { attributes: { species: "Oak", GlobalID: `{${gid}}` }, geometry: { x: 1, y: 2 } },
        { attributes: { species: "Elm" }, geometry: { x: 3, y: 4 } },
        { attributes: { species: "Ash" }, geometry: { x: 5, y: 6 } },
      ]),
    });
    const adds = edits.addResults as Json[];
    expect(adds.map((a) => a.success)).toEqual([true, true, true]);
    expect(String(adds[0]?.globalId).toLowerCase()).toContain(gid);
    const page = await getJson(`${url}/0/query`, { token, where: "1=1", outFields: "*" });
    expect((page.features as Json[]).length).toBe(2);
    expect(page.exceededTransferLimit).toBe(true);
    const svcEdits = await postForm(`${url}/applyEdits`, {
      token,
      edits: JSON.stringify([
        {
          id: 0,
          updates: [{ attributes: { OBJECTID: adds[1]?.objectId, species: "Birch" } }],
          deletes: [adds[2]?.objectId],
        },
      ]),
    });
    const updates = ((svcEdits as unknown as Json[])[0]?.updateResults ?? []) as Json[];
    expect(updates[0]?.success).toBe(true);
    const att = await multipart(
      `${url}/0/${adds[0]?.objectId}/addAttachment`,
      {},
      { attachment: [Buffer.from("jpegbytes"), "tree.jpg"] },
    );
    expect((att.addAttachmentResult as Json).success).toBe(true);
    const infos = await getJson(`${url}/0/${adds[0]?.objectId}/attachments`, { token });
    const a0 = (infos.attachmentInfos as Json[])[0];
    expect(a0).toMatchObject({ name: "tree.jpg", size: 9 });
    const bytes = await (
      await fetch(`${url}/0/${adds[0]?.objectId}/attachments/${a0?.id}?token=${token}`)
    ).text();
    expect(bytes).toBe("jpegbytes");
    const all = [...sim.model.features(created.itemId as string, 0)].map((f) => f.attributes.species);
    expect(all).toEqual(["Oak", "Birch"]);
    const item = await getJson(`${sim.sharingUrl}/content/items/${created.itemId}`, { token });
    expect(item.typeKeywords).toContain("Hosted Service");
    expect(item.url).toBe(url);
  });
});
