import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PortalSim, startPortalSim } from "./index.js";
import {
  addItemTypeShowcase,
  EXPERIENCE_DRAFT,
  HUB_DOMAIN,
  type ItemTypeShowcase,
  STORYMAP_DRAFT,
} from "./item-types.js";
import { getJson, type Json, tokenFor } from "./test-helpers.js";

let sim: PortalSim;
let token: string;
let showcase: ItemTypeShowcase;

beforeAll(async () => {
  sim = await startPortalSim({
    size: "tiny",
    seed: 83,
    overrides: { items: { webMap: 1, featureService: 1 } },
  });
  showcase = addItemTypeShowcase(sim.model);
  token = await tokenFor(sim);
});
afterAll(async () => {
  await sim.close();
});

const data = (id: string) => getJson(`${sim.sharingUrl}/content/items/${id}/data`, { token });
const resourceText = async (id: string, path: string) =>
  (await fetch(`${sim.sharingUrl}/content/items/${id}/resources/${path}?token=${token}`)).text();

describe("the item types showcase (added on request, never to generated orgs)", () => {
  it("a generated org of the same shape has none of them", async () => {
    const plain = await startPortalSim({
      size: "tiny",
      seed: 83,
      overrides: { items: { webMap: 1, featureService: 1 } },
    });
    try {
      expect([...plain.model.items()].map((i) => i.type).sort()).toEqual(["Feature Service", "Web Map"]);
    } finally {
      await plain.close();
    }
  });

  it("every type is found by search with its documented type name", async () => {
    const found = await getJson(`${sim.sharingUrl}/search`, { token, q: "tags:showcase", num: 100 });
    const types = (found.results as Json[]).map((r) => r.type).sort();
    expect(types).toEqual([
      "Dashboard",
      "Form",
      "Hub Initiative",
      "Hub Page",
      "Hub Site Application",
      "Notebook",
      "StoryMap",
      "Web Experience",
    ]);
  });

  it("Hub site and page: data with layout, theme, domain and the links between them", async () => {
    const { hubSite, hubPage, webMap } = showcase;
    const site = (await data(hubSite.id)).values as Json;
    expect(site).toMatchObject({
      subdomain: HUB_DOMAIN.subdomain,
      customHostname: HUB_DOMAIN.customHostname,
    });
    expect(JSON.stringify(site.layout)).toContain(webMap.id);
    expect(site.pages).toEqual([{ id: hubPage.id, title: hubPage.title, slug: "about" }]);
    expect(((await data(hubPage.id)).values as Json).sites).toEqual([
      { id: hubSite.id, title: hubSite.title },
    ]);
    expect(hubPage.typeKeywords).toContain(`hubSiteId|${hubSite.id}`);
  });

  it("Experience Builder and StoryMap drafts are resources; the form links to its layer", async () => {
    const { experience, storyMap, form, featureService } = showcase;
    expect(await resourceText(experience.id, EXPERIENCE_DRAFT)).toContain(featureService.id);
    expect(JSON.stringify(await data(experience.id))).not.toContain(featureService.id);
    expect(await resourceText(storyMap.id, STORYMAP_DRAFT)).toContain(featureService.id);
    const related = await getJson(`${sim.sharingUrl}/content/items/${form.id}/relatedItems`, {
      token,
      relationshipType: "Survey2Service",
      direction: "forward",
    });
    expect((related.relatedItems as Json[]).map((i) => i.id)).toEqual([featureService.id]);
  });

  it("the notebook's data is an .ipynb reading the layer by id", async () => {
    const notebook = await data(showcase.notebook.id);
    expect(notebook.nbformat).toBe(4);
    expect(JSON.stringify(notebook.cells)).toContain(showcase.featureService.id);
  });
});
