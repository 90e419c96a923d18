/** The kinds of items the simulator generates, and how many of each a size holds. */
export const ITEM_KINDS = [
  "webMap",
  "webApp",
  "dashboard",
  "storyMap",
  "featureService",
  "view",
  "mapService",
  "vectorTile",
  "pdf",
  "csv",
  "shapefile",
  "fgdb",
  "image",
  "code",
  "form",
] as const;
export type ItemKind = (typeof ITEM_KINDS)[number];

export interface KindInfo {
  type: string;
  typeKeywords: string[];
  /** Where the item's data lives: JSON text, a file on the storage host, or nothing. */
  data: "json" | "file" | "none";
  ext?: string;
  contentType?: string;
  /** Leading bytes of generated files. */
  magic?: string;
  titleWords: string[];
}

export const KINDS: Record<ItemKind, KindInfo> = {
  webMap: {
    type: "Web Map",
    typeKeywords: [
      "ArcGIS API for JavaScript",
      "ArcGIS Online",
      "Explorer Web Map",
      "Map",
      "Online Map",
      "Web Map",
    ],
    data: "json",
    titleWords: ["Map", "Viewer", "Overview"],
  },
  webApp: {
    type: "Web Mapping Application",
    typeKeywords: ["configurableApp", "JavaScript", "Map", "Mapping Site", "Online Map", "Ready To Use"],
    data: "json",
    titleWords: ["App", "Explorer", "Finder"],
  },
  dashboard: {
    type: "Dashboard",
    typeKeywords: ["Dashboard", "Operations Dashboard"],
    data: "json",
    titleWords: ["Dashboard", "Monitor", "Status"],
  },
  storyMap: {
    type: "StoryMap",
    typeKeywords: ["arcgis-storymaps", "StoryMap", "Web Application", "smstatuspublished"],
    data: "json",
    titleWords: ["Story", "Journey", "Report"],
  },
  featureService: {
    type: "Feature Service",
    typeKeywords: ["ArcGIS Server", "Data", "Feature Access", "Feature Service", "Service", "Hosted Service"],
    data: "json",
    titleWords: ["Layer", "Inventory", "Points"],
  },
  view: {
    type: "Feature Service",
    typeKeywords: [
      "ArcGIS Server",
      "Data",
      "Feature Access",
      "Feature Service",
      "Service",
      "Hosted Service",
      "View Service",
    ],
    data: "none",
    titleWords: ["View", "Public View", "Editor View"],
  },
  mapService: {
    type: "Map Service",
    typeKeywords: ["ArcGIS Server", "Data", "Map Service", "Service"],
    data: "none",
    titleWords: ["Basemap", "Imagery", "Reference"],
  },
  vectorTile: {
    type: "Vector Tile Service",
    typeKeywords: ["Hosted Service", "Vector Tile Service"],
    data: "none",
    titleWords: ["Tiles", "Vector Basemap", "Tile Layer"],
  },
  pdf: {
    type: "PDF",
    typeKeywords: ["Data", "Document", "PDF"],
    data: "file",
    ext: "pdf",
    contentType: "application/pdf",
    magic: "%PDF-1.7\n",
    titleWords: ["Plan", "Report", "Handbook"],
  },
  csv: {
    type: "CSV",
    typeKeywords: ["CSV"],
    data: "file",
    ext: "csv",
    contentType: "text/csv",
    magic: "id,name,x,y\n",
    titleWords: ["Table", "Export", "List"],
  },
  shapefile: {
    type: "Shapefile",
    typeKeywords: ["ArcGIS", "Data", "Esri Shapefile", "Shapefile"],
    data: "file",
    ext: "zip",
    contentType: "application/zip",
    magic: "PK\u0003\u0004",
    titleWords: ["Boundaries", "Parcels", "Lines"],
  },
  fgdb: {
    type: "File Geodatabase",
    typeKeywords: ["ArcGIS", "Data", "File Geodatabase"],
    data: "file",
    ext: "zip",
    contentType: "application/zip",
    magic: "PK\u0003\u0004",
    titleWords: ["Geodatabase", "Archive", "Source Data"],
  },
  image: {
    type: "Image",
    typeKeywords: ["Data", "Image"],
    data: "file",
    ext: "jpg",
    contentType: "image/jpeg",
    magic: "\u00ff\u00d8\u00ff\u00e0",
    titleWords: ["Photo", "Picture", "Scan"],
  },
  code: {
    type: "Code Attachment",
    typeKeywords: ["Code", "JavaScript", "Web Mapping Application"],
    data: "file",
    ext: "zip",
    contentType: "application/zip",
    magic: "PK\u0003\u0004",
    titleWords: ["Source", "Widget Code", "Template"],
  },
  form: {
    type: "Form",
    typeKeywords: ["Form", "Survey123", "Survey123 Connect", "xForm"],
    data: "file",
    ext: "zip",
    contentType: "application/zip",
    magic: "PK\u0003\u0004",
    titleWords: ["Survey", "Inspection Form", "Questionnaire"],
  },
};

export type SimSize = "empty" | "tiny" | "small" | "large";

/** Counts behind a size. Tests pass `overrides` to build custom orgs cheaply. */
export interface OrgShape {
  /** Publishers (besides the admin). */
  publishers: number;
  /** Plain org users (viewers). */
  viewers: number;
  groups: number;
  foldersPerUser: number;
  /** Items per kind; missing kinds count 0. */
  items: Partial<Record<ItemKind, number>>;
  /** Upper bound of features in an ordinary layer (each layer draws 0..this). */
  featuresPerLayer: number;
  /** The first hosted feature service's first layer holds exactly this many (0 = ordinary). */
  bigLayerFeatures: number;
  /** Upper bound of an ordinary file item's size in bytes. */
  fileBytes: number;
  /** The first file item (a File Geodatabase if any) has exactly this size (0 = ordinary). */
  bigFileBytes: number;
  /** Upper bound of resources on an item that has resources. */
  resourcesPerItem: number;
  /** Upper bound of attachments per feature on layers that have attachments. */
  attachmentsPerFeature: number;
}

const every = (n: number): Record<ItemKind, number> =>
  Object.fromEntries(ITEM_KINDS.map((k) => [k, n])) as Record<ItemKind, number>;

export const SIZES: Record<SimSize, OrgShape> = {
  empty: {
    publishers: 1,
    viewers: 0,
    groups: 0,
    foldersPerUser: 0,
    items: {},
    featuresPerLayer: 0,
    bigLayerFeatures: 0,
    fileBytes: 0,
    bigFileBytes: 0,
    resourcesPerItem: 0,
    attachmentsPerFeature: 0,
  },
  tiny: {
    publishers: 1,
    viewers: 1,
    groups: 2,
    foldersPerUser: 1,
    items: every(1),
    featuresPerLayer: 30,
    bigLayerFeatures: 0,
    fileBytes: 20_000,
    bigFileBytes: 0,
    resourcesPerItem: 4,
    attachmentsPerFeature: 2,
  },
  small: {
    publishers: 4,
    viewers: 3,
    groups: 6,
    foldersPerUser: 2,
    items: every(20),
    featuresPerLayer: 300,
    bigLayerFeatures: 2_500,
    fileBytes: 200_000,
    bigFileBytes: 3_000_000,
    resourcesPerItem: 8,
    attachmentsPerFeature: 2,
  },
  large: {
    publishers: 40,
    viewers: 60,
    groups: 50,
    foldersPerUser: 3,
    items: {
      webMap: 15_000,
      webApp: 6_000,
      dashboard: 3_000,
      storyMap: 4_000,
      featureService: 12_000,
      view: 3_000,
      mapService: 2_000,
      vectorTile: 1_000,
      pdf: 15_000,
      csv: 12_000,
      shapefile: 8_000,
      fgdb: 5_000,
      image: 10_000,
      code: 1_000,
      form: 3_000,
    },
    featuresPerLayer: 200,
    bigLayerFeatures: 1_000_000,
    fileBytes: 500_000,
    bigFileBytes: 2 * 1024 * 1024 * 1024,
    resourcesPerItem: 8,
    attachmentsPerFeature: 2,
  },
};

export function resolveShape(size: SimSize, overrides?: Partial<OrgShape>): OrgShape {
  const base = SIZES[size];
  const items = overrides?.items ? { ...overrides.items } : { ...base.items };
  return { ...base, ...overrides, items };
}
