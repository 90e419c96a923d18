import type { SimItem, SimOrg } from "./model.js";
import { hash32, prngSource } from "./prng.js";

/**
 * The item types admins worry about most, added to an org on request (never to the generated
 * orgs, so their counts stay put). Each refers to the org's first web map and first hosted feature
 * layer the way the real apps store it, so a restore has to remap those references:
 *
 * - Hub: a site (`Hub Site Application`, data `values` with layout, theme, domain, its pages and —
 *   when the org has groups — its content group (`contentGroupId`) and core-team group
 *   (`collaborationGroupId`, and `groupId` as sites of Hub 2.0 still carry it)), a page (`Hub Page`, its `values.sites`), an initiative (`Hub Initiative`, `values.siteId`);
 * - Experience Builder (`Web Experience`): the published config as data, the draft as the
 *   resource `config/config.json`, its own id in its URL;
 * - a Dashboard (widgets with `itemId`), a Survey123 form (a zip, `Survey2Service` to the layer),
 * - a StoryMap (published data, the drafts `draft.json` and `draft_<ms>.json`, an image);
 * - a Notebook (the .ipynb as data, reading the layer by id).
 */
export interface ItemTypeShowcase {
  webMap: SimItem;
  featureService: SimItem;
  hubSite: SimItem;
  hubPage: SimItem;
  hubInitiative: SimItem;
  experience: SimItem;
  dashboard: SimItem;
  form: SimItem;
  storyMap: SimItem;
  notebook: SimItem;
}

/** The Hub site's domain as the Hub domain service knows it: not part of what an item can carry. */
export const HUB_DOMAIN = {
  subdomain: "parks-hub",
  customHostname: "parks.example.org",
} as const;

export const STORYMAP_DRAFT = "draft_1764547200000.json";
export const EXPERIENCE_DRAFT = "config/config.json";

export function addItemTypeShowcase(org: SimOrg): ItemTypeShowcase {
  const first = (kind: SimItem["kind"]) => {
    for (const item of org.items()) if (item.kind === kind) return item;
    throw new Error(`the org holds no ${kind}`);
  };
  const webMap = first("webMap");
  const featureService = first("featureService");
  const layerUrl = `${featureService.url}/0`;
  const owner = org.admin.username;
  const add = (type: string, title: string, typeKeywords: string[], fields: Partial<SimItem> = {}) =>
    org.addItemRecord({ owner, type, title, typeKeywords, tags: ["showcase"], ...fields });
  const json = (item: SimItem, value: unknown) =>
    org.setItemData(item.index, { kind: "json", text: JSON.stringify(value) });

  const hubPage = add("Hub Page", "Parks About", ["Hub", "hubPage", "JavaScript", "Map", "OpenData"]);
  const hubSite = add("Hub Site Application", "Parks Hub", hubSiteKeywords(), {
    url: `https://${HUB_DOMAIN.subdomain}-${org.urlKey}.hub.arcgis.com`,
  });
  json(hubSite, hubSiteData(org, hubSite, hubPage, webMap.id));
  // Hub links a page to its sites twice: in the page's data and by keyword.
  hubPage.typeKeywords.push(`hubSiteId|${hubSite.id}`);
  json(hubPage, {
    values: {
      layout: { sections: [{ rows: [{ cards: [chartCard(featureService.id, layerUrl)] }] }] },
      sites: [{ id: hubSite.id, title: hubSite.title }],
    },
  });
  const hubInitiative = add("Hub Initiative", "Parks Initiative", ["Hub", "hubInitiative", "OpenData"]);
  json(hubInitiative, { values: { siteId: hubSite.id, followerGroupId: null } });

  const experience = add("Web Experience", "Parks Experience", ["EXB Experience", "status: Changed"]);
  experience.url = `https://experience.arcgis.com/experience/${experience.id}/`;
  json(experience, experienceConfig(webMap.id, null));
  org.putResource(
    experience.index,
    EXPERIENCE_DRAFT,
    Buffer.from(JSON.stringify(experienceConfig(webMap.id, { id: featureService.id, url: layerUrl }))),
  );

  const dashboard = add("Dashboard", "Parks Dashboard", ["Dashboard", "Operations Dashboard"]);
  json(dashboard, dashboardData(webMap.id, featureService.id));

  const form = add("Form", "Parks Inspection", ["Form", "Survey123", "Survey123 Connect", "xForm"], {
    name: "Parks_Inspection.zip",
  });
  org.setItemData(form.index, {
    kind: "file",
    source: prngSource(hash32(org.urlKey, "form"), 4096, Buffer.from("PK\u0003\u0004", "latin1")),
    filename: "Parks_Inspection.zip",
    contentType: "application/zip",
  });
  org.addRelationship("Survey2Service", form.index, featureService.index);

  const storyMap = add("StoryMap", "Parks Story", [
    "arcgis-storymaps",
    "StoryMap",
    "Web Application",
    "smstatuspublished",
    `smdraftresourceid:${STORYMAP_DRAFT}`,
  ]);
  json(storyMap, storyData(webMap.id, null));
  org.putResource(storyMap.index, "draft.json", Buffer.from(JSON.stringify(storyData(webMap.id, null))));
  org.putResource(
    storyMap.index,
    STORYMAP_DRAFT,
    Buffer.from(JSON.stringify(storyData(webMap.id, featureService.id))),
  );
  org.putResource(storyMap.index, "images/photo.jpg", Buffer.from("\u00ff\u00d8\u00ff\u00e0jpeg", "latin1"));

  const notebook = add("Notebook", "Parks Audit", ["Notebook", "Python", "Jupyter Notebook"]);
  json(notebook, notebookData(featureService.id));
  for (const item of [hubSite, hubPage, hubInitiative, experience, dashboard, form, storyMap, notebook]) {
    item.access = "org";
  }
  return {
    webMap,
    featureService,
    hubSite,
    hubPage,
    hubInitiative,
    experience,
    dashboard,
    form,
    storyMap,
    notebook,
  };
}

function hubSiteKeywords(): string[] {
  return [
    "Hub",
    "hubSite",
    "hubSolution",
    "JavaScript",
    "Map",
    "OpenData",
    "Ready To Use",
    "selfConfigured",
    "Registered App",
    `hubSubdomain|${HUB_DOMAIN.subdomain}`,
  ];
}

function hubSiteData(org: SimOrg, site: SimItem, page: SimItem, webMapId: string): unknown {
  // The site's content group and its core team (the org's first two groups, when it has them).
  const [content, team] = org.groups;
  const groups = content
    ? {
        contentGroupId: content.id,
        collaborationGroupId: (team ?? content).id,
        groupId: (team ?? content).id,
      }
    : {};
  return {
    values: {
      ...groups,
      title: site.title,
      subdomain: HUB_DOMAIN.subdomain,
      defaultHostname: `${HUB_DOMAIN.subdomain}-${org.urlKey}.hub.arcgis.com`,
      customHostname: HUB_DOMAIN.customHostname,
      internalUrl: `${HUB_DOMAIN.subdomain}-${org.urlKey}.hub.arcgis.com`,
      clientId: "hubSiteClient01",
      layout: {
        header: { component: { name: "site-header", settings: { title: site.title } } },
        sections: [
          { rows: [{ cards: [{ component: { name: "webmap-card", settings: { webmap: webMapId } } }] }] },
        ],
      },
      theme: { header: { background: "#1f3b4d", text: "#ffffff" }, body: { background: "#ffffff" } },
      pages: [{ id: page.id, title: page.title, slug: "about" }],
    },
  };
}

function chartCard(itemId: string, url: string): unknown {
  return { component: { name: "chart-card", settings: { itemId, url, chartType: "bar" } } };
}

function experienceConfig(webMapId: string, layer: { id: string; url: string } | null): unknown {
  const dataSources: Record<string, unknown> = {
    dataSource_1: { id: "dataSource_1", type: "WEB_MAP", sourceLabel: "Parks map", itemId: webMapId },
  };
  const widgets: Record<string, unknown> = {
    widget_1: {
      uri: "widgets/arcgis/arcgis-map/",
      useDataSources: [{ dataSourceId: "dataSource_1", mainDataSourceId: "dataSource_1" }],
    },
  };
  if (layer) {
    // The draft has a table the published version does not have yet.
    dataSources.dataSource_2 = {
      id: "dataSource_2",
      type: "FEATURE_LAYER",
      itemId: layer.id,
      url: layer.url,
    };
    widgets.widget_2 = { uri: "widgets/common/table/", useDataSources: [{ dataSourceId: "dataSource_2" }] };
  }
  return { dataSources, widgets, pages: { page_1: { id: "page_1", label: "Page" } }, exbVersion: "1.15.0" };
}

function dashboardData(webMapId: string, layerItemId: string): unknown {
  return {
    version: 27,
    widgets: [
      { type: "mapWidget", id: "w1", itemId: webMapId },
      {
        type: "indicatorWidget",
        id: "w2",
        datasets: [{ dataSource: { type: "featureServiceDataSource", itemId: layerItemId, layerId: 0 } }],
      },
    ],
  };
}

function storyData(webMapId: string, layerItemId: string | null): unknown {
  const resources: Record<string, unknown> = {
    "r-map": { type: "webmap", data: { itemId: webMapId, itemType: "Web Map" } },
    "r-img": { type: "image", data: { resourceId: "images/photo.jpg", provider: "item-resource" } },
  };
  if (layerItemId)
    resources["r-layer"] = { type: "webmap", data: { itemId: layerItemId, itemType: "Feature Service" } };
  return {
    root: "n-story",
    nodes: {
      "n-story": { type: "story", children: ["n-map"] },
      "n-map": { type: "webmap", data: { map: "r-map" } },
    },
    resources,
  };
}

function notebookData(layerItemId: string): unknown {
  return {
    nbformat: 4,
    nbformat_minor: 2,
    metadata: {
      esriNotebookRuntime: {
        notebookRuntimeName: "ArcGIS Notebook Python 3 Standard",
        notebookRuntimeVersion: "10.0",
      },
      kernelspec: { display_name: "Python 3", language: "python", name: "python3" },
    },
    cells: [
      {
        cell_type: "code",
        execution_count: null,
        metadata: {},
        outputs: [],
        source: [
          "from arcgis.gis import GIS\n",
          'gis = GIS("home")\n',
          `layer = gis.content.get("${layerItemId}").layers[0]\n`,
        ],
      },
    ],
  };
}
