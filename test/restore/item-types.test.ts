import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { Manifest } from "../../src/core/backup/manifest.js";
import type { RestoreReport } from "../../src/core/restore/model.js";
import { type PortalSim, type SimItem, startPortalSim } from "../portal-sim/index.js";
import {
  addItemTypeShowcase,
  EXPERIENCE_DRAFT,
  HUB_DOMAIN,
  type ItemTypeShowcase,
  STORYMAP_DRAFT,
} from "../portal-sim/item-types.js";
import { type AppHarness, startAppHarness } from "../support/app-harness.js";
import { backupWithFeatures, expectedText, identityFor, runRestore } from "./support.js";

/**
 * Hub sites and pages, Experience Builder, Dashboards, Survey123, StoryMaps and Notebooks backed up
 * and restored into another org: each comes back with its data and resources, its references to
 * the web map and the hosted layer pointing at their restored copies, and what cannot come back
 * (a Hub site's domain, notebook schedules) reported on the item.
 */

let app: AppHarness;
let target: PortalSim;
let source: { id: string; container: string };
let targetIdentity: { id: string; container: string };
let manifest: Manifest;
let showcase: ItemTypeShowcase;
let report: RestoreReport;

beforeAll(async () => {
  app = await startAppHarness({
    sim: {
      size: "tiny",
      seed: 81,
      urlKey: "typesrc",
      overrides: { items: { webMap: 1, featureService: 1 } },
    },
  });
  target = await startPortalSim({ size: "empty", seed: 82, urlKey: "typedst" });
  showcase = addItemTypeShowcase(app.sim.model);
  source = await identityFor(app, app.sim);
  targetIdentity = await identityFor(app, target);
  manifest = await backupWithFeatures(app, source);
  const restored = await runRestore(app, source.id, {
    runId: manifest.runId,
    target: { identityId: targetIdentity.id, mode: "new" },
  });
  expect(restored.record.status, JSON.stringify(restored.report.failures)).toBe("completed");
  report = restored.report;
}, 120_000);

afterAll(async () => {
  await target?.close();
  await app?.close();
});

const newIdOf = (item: SimItem): string => {
  const id = report.idMap[item.id];
  if (!id) throw new Error(`${item.type} ${item.id} was not restored`);
  return id;
};
const restoredOf = (item: SimItem): SimItem => {
  const restored = target.model.item(newIdOf(item));
  if (!restored) throw new Error(`${item.type} has no item in the target`);
  return restored;
};
const sourceText = (item: SimItem) => app.sim.model.itemDataBuffer(item.id)?.toString("utf8") ?? "";
const restoredText = (item: SimItem) => target.model.itemDataBuffer(newIdOf(item))?.toString("utf8") ?? "";
const restoredJson = (item: SimItem) => JSON.parse(restoredText(item));
const restoredResource = (item: SimItem, path: string) =>
  target.model.resourceBuffer(newIdOf(item), path)?.toString("utf8") ?? "";
const sourceResource = (item: SimItem, path: string) =>
  app.sim.model.resourceBuffer(item.id, path)?.toString("utf8") ?? "";
const notesOf = (item: SimItem) => report.items.find((i) => i.itemId === item.id)?.notes ?? [];
const layerUrl = () => `${report.urlMap[showcase.featureService.url as string]}/0`;

describe("item types with references, restored into another org", () => {
  test("every type comes back with its type and keywords; its references point at restored items", () => {
    const { webMap, featureService, ...types } = showcase;
    for (const item of Object.values(types)) {
      const restored = restoredOf(item);
      expect(restored.type).toBe(item.type);
      expect(restored.typeKeywords).toEqual(item.typeKeywords.map((k) => expectedText(k, report)));
      // The data is the source's with every id and service URL of the restore replaced.
      if (item.type !== "Form")
        expect(restoredText(item), item.type).toBe(expectedText(sourceText(item), report));
      const mine = report.unchangedReferences.filter((r) => r.itemId === item.id);
      expect(mine.map((r) => r.reference)).not.toContain(webMap.id);
      expect(mine.map((r) => r.reference)).not.toContain(featureService.id);
    }
  });

  test("Hub site: layout, theme and pages remapped; its domain reported as not restored", () => {
    const { hubSite, hubPage, hubInitiative, webMap } = showcase;
    const values = restoredJson(hubSite).values;
    expect(values.layout.sections[0].rows[0].cards[0].component.settings.webmap).toBe(newIdOf(webMap));
    expect(values.theme.header.background).toBe("#1f3b4d");
    expect(values.pages).toEqual([{ id: newIdOf(hubPage), title: hubPage.title, slug: "about" }]);
    expect(values.subdomain).toBe(HUB_DOMAIN.subdomain);
    const domainNote = notesOf(hubSite).find((n) => n.startsWith("Hub site domain not restored"));
    expect(domainNote).toContain(`subdomain "${HUB_DOMAIN.subdomain}"`);
    expect(domainNote).toContain(`custom hostname ${HUB_DOMAIN.customHostname}`);
    // The site and its page refer to each other: the last pass linked the page to the new site.
    expect(restoredJson(hubPage).values.sites).toEqual([{ id: newIdOf(hubSite), title: hubSite.title }]);
    expect(restoredJson(hubPage).values.layout.sections[0].rows[0].cards[0].component.settings).toMatchObject(
      {
        itemId: newIdOf(showcase.featureService),
        url: layerUrl(),
      },
    );
    expect(restoredOf(hubPage).typeKeywords).toContain(`hubSiteId|${newIdOf(hubSite)}`);
    expect(restoredJson(hubInitiative).values.siteId).toBe(newIdOf(hubSite));
    expect(notesOf(hubPage).join(" ")).not.toContain("domain");
  });

  test("Experience Builder: published config and draft remapped; its URL carries its new id", () => {
    const { experience, webMap, featureService } = showcase;
    expect(restoredJson(experience).dataSources.dataSource_1.itemId).toBe(newIdOf(webMap));
    const draft = JSON.parse(restoredResource(experience, EXPERIENCE_DRAFT));
    expect(draft.dataSources.dataSource_2).toMatchObject({
      itemId: newIdOf(featureService),
      url: layerUrl(),
    });
    expect(restoredResource(experience, EXPERIENCE_DRAFT)).toBe(
      expectedText(sourceResource(experience, EXPERIENCE_DRAFT), report),
    );
    expect(restoredOf(experience).url).toBe(
      `https://experience.arcgis.com/experience/${newIdOf(experience)}/`,
    );
  });

  test("Dashboard: widgets' itemIds remapped", () => {
    const { dashboard, webMap, featureService } = showcase;
    const widgets = restoredJson(dashboard).widgets;
    expect(widgets[0].itemId).toBe(newIdOf(webMap));
    expect(widgets[1].datasets[0].dataSource.itemId).toBe(newIdOf(featureService));
  });

  test("Survey123: the form file byte for byte, Survey2Service to the restored layer", () => {
    const { form, featureService } = showcase;
    const bytes = target.model.itemDataBuffer(newIdOf(form));
    expect(bytes?.equals(app.sim.model.itemDataBuffer(form.id) as Buffer)).toBe(true);
    expect(target.model.relatedItems(newIdOf(form))).toContainEqual({
      type: "Survey2Service",
      originId: newIdOf(form),
      destId: newIdOf(featureService),
    });
  });

  test("StoryMap: published data and both drafts remapped, images as they were", () => {
    const { storyMap, webMap, featureService } = showcase;
    expect(restoredJson(storyMap).resources["r-map"].data.itemId).toBe(newIdOf(webMap));
    for (const draft of ["draft.json", STORYMAP_DRAFT]) {
      expect(restoredResource(storyMap, draft), draft).toBe(
        expectedText(sourceResource(storyMap, draft), report),
      );
    }
    expect(JSON.parse(restoredResource(storyMap, STORYMAP_DRAFT)).resources["r-layer"].data.itemId).toBe(
      newIdOf(featureService),
    );
    expect(restoredResource(storyMap, "images/photo.jpg")).toBe(sourceResource(storyMap, "images/photo.jpg"));
  });

  test("Notebook: the .ipynb as data with the layer's new id; schedules reported as not restored", () => {
    const { notebook, featureService } = showcase;
    const cells = restoredJson(notebook).cells;
    expect(cells[0].source.join("")).toContain(`gis.content.get("${newIdOf(featureService)}")`);
    expect(notesOf(notebook)).toContainEqual(
      expect.stringMatching(/^Notebook schedules \(tasks\) are not restored/),
    );
  });

  test("a dry run lists what stays behind among the plan's warnings", async () => {
    const dry = await app.call("POST", `/api/identities/${source.id}/restores`, {
      runId: manifest.runId,
      itemIds: [showcase.hubSite.id, showcase.notebook.id],
      target: { identityId: targetIdentity.id, mode: "new" },
      dryRun: true,
    });
    expect(dry.status, dry.text).toBe(200);
    const warnings = dry.body.plan.warnings as string[];
    expect(warnings).toContainEqual(
      expect.stringMatching(`^${showcase.hubSite.id}: Hub site domain not restored`),
    );
    expect(warnings).toContainEqual(expect.stringMatching(`^${showcase.notebook.id}: Notebook schedules`));
  });
});

describe("item types moved into another org with its groups (scope all)", () => {
  test("a Hub site's content and core-team groups point at the groups created in the target", {
    timeout: 120_000,
  }, async () => {
    const { hubSite } = showcase;
    const values = JSON.parse(sourceText(hubSite)).values;
    const [content, team] = app.sim.model.groups;
    if (!content || !team) throw new Error("the tiny org has two groups");
    expect(values).toMatchObject({
      contentGroupId: content.id,
      collaborationGroupId: team.id,
      groupId: team.id,
    });
    const moved = await startPortalSim({ size: "empty", seed: 84, urlKey: "typemove" });
    try {
      const identity = await identityFor(app, moved);
      const { report: move, record } = await runRestore(app, source.id, {
        runId: manifest.runId,
        target: { identityId: identity.id, mode: "new" },
        scope: "all",
        usernameMap: { "*_typesrc": "*_typemove" },
      });
      expect(record.status, JSON.stringify(move.failures)).toBe("completed");
      const targetOf = (group: { id: string; title: string }) => {
        const created = moved.model.groups.find((g) => g.title === group.title);
        if (!created) throw new Error(`${group.title} was not created in the target`);
        expect(created.id).not.toBe(group.id);
        expect(move.structure?.groups.find((g) => g.sourceId === group.id)?.targetId).toBe(created.id);
        return created.id;
      };
      const newSiteId = move.idMap[hubSite.id] as string;
      const site = JSON.parse(moved.model.itemDataBuffer(newSiteId)?.toString("utf8") ?? "{}").values;
      expect(site).toMatchObject({
        contentGroupId: targetOf(content),
        collaborationGroupId: targetOf(team),
        groupId: targetOf(team),
      });
      // Item references in the same data are remapped as before, in the same pass.
      expect(site.pages[0].id).toBe(move.idMap[showcase.hubPage.id]);
      const unchanged = move.unchangedReferences.map((r) => r.reference);
      expect(unchanged).not.toContain(content.id);
      expect(unchanged).not.toContain(team.id);
      expect(move.structure?.notRestored.join(" ")).not.toMatch(/not rewritten/);
    } finally {
      await moved.close();
    }
  });
});

// Runs last: it edits the source org.
describe("item types put back in place", () => {
  test("overwrite: drafts and data as backed up, no notes on what the item keeps", async () => {
    const { hubSite, experience, storyMap, notebook } = showcase;
    const model = app.sim.model;
    const before = {
      site: sourceText(hubSite),
      draft: sourceResource(experience, EXPERIENCE_DRAFT),
      story: sourceResource(storyMap, STORYMAP_DRAFT),
    };
    model.setItemData(hubSite.index, { kind: "json", text: JSON.stringify({ values: { layout: {} } }) });
    model.putResource(experience.index, EXPERIENCE_DRAFT, Buffer.from("{}"));
    model.removeResource(storyMap.index, STORYMAP_DRAFT);
    const itemIds = [hubSite.id, experience.id, storyMap.id, notebook.id];
    const body = { runId: manifest.runId, itemIds, target: { mode: "overwrite" } };
    const dry = await app.call("POST", `/api/identities/${source.id}/restores`, { ...body, dryRun: true });
    expect(dry.status, dry.text).toBe(200);
    expect(dry.body.plan.warnings).toEqual([]);
    const { report: inPlace, record } = await runRestore(app, source.id, body);
    expect(record.status, JSON.stringify(inPlace.failures)).toBe("completed");
    expect(inPlace.items.map((i) => [i.action, i.newId]).sort()).toEqual(
      itemIds.map((id) => ["overwrite", id]).sort(),
    );
    expect(sourceText(hubSite)).toBe(before.site);
    expect(sourceResource(experience, EXPERIENCE_DRAFT)).toBe(before.draft);
    expect(sourceResource(storyMap, STORYMAP_DRAFT)).toBe(before.story);
    for (const item of inPlace.items)
      expect(item.notes.join(" "), item.title).not.toMatch(/domain|schedules/);
  });
});
