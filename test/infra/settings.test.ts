import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { Node } from "web-tree-sitter";
import { SETTINGS } from "../../src/core/config.js";
import {
  appSettings,
  type BicepFile,
  INFRA_DIR,
  moduleDecls,
  objectProperties,
  paramDecls,
  parseInfra,
  propertyAt,
  stringLiteral,
} from "./bicep.js";

/** Settings the Functions platform reads that the app code does not (so they are not in SETTINGS). */
const PLATFORM_SETTINGS = new Set([
  "AzureWebJobsStorage__credential",
  "AzureWebJobsStorage__clientId",
  "AzureWebJobsStorage__queueServiceUri",
  "AzureWebJobsStorage__accountName",
  "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
  "AzureFunctionsJobHost__logging__logLevel__default",
  "WEBSITE_TIME_ZONE",
]);

/** App settings the Flex Consumption plan rejects or ignores: the runtime lives in functionAppConfig. */
const FLEX_UNSUPPORTED = [
  "FUNCTIONS_EXTENSION_VERSION",
  "FUNCTIONS_WORKER_RUNTIME",
  "FUNCTIONS_WORKER_RUNTIME_VERSION",
  "WEBSITE_NODE_DEFAULT_VERSION",
  "WEBSITE_RUN_FROM_PACKAGE",
  "WEBSITE_CONTENTSHARE",
  "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
  "SCM_DO_BUILD_DURING_DEPLOYMENT",
  "ENABLE_ORYX_BUILD",
];

let files: Map<string, BicepFile>;
let settings: Map<string, Node>;

beforeAll(async () => {
  files = await parseInfra();
  const setters = [...files.values()].flatMap((f) => {
    const found = appSettings(f);
    return found ? [{ file: f.file, settings: found }] : [];
  });
  // One place sets the app settings, so this test sees all of them.
  expect(setters.map((s) => path.relative(INFRA_DIR, s.file))).toEqual(["app/api.bicep"]);
  settings = setters[0]!.settings;
});

describe("function app settings against SETTINGS (src/core/config.ts)", () => {
  it("sets every setting that is requiredInAzure", () => {
    const required = SETTINGS.filter((s) => s.requiredInAzure).map((s) => s.name);
    expect(required.length).toBeGreaterThan(0);
    expect(required.filter((name) => !settings.has(name))).toEqual([]);
  });

  it("sets nothing but SETTINGS entries and known platform settings", () => {
    const known = new Set([...SETTINGS.map((s) => s.name), ...PLATFORM_SETTINGS]);
    expect([...settings.keys()].filter((name) => !known.has(name))).toEqual([]);
  });

  it("never sets what Flex Consumption rejects", () => {
    expect(FLEX_UNSUPPORTED.filter((name) => settings.has(name))).toEqual([]);
  });

  it("uses the identity-based storage connection and no connection string", () => {
    expect(settings.has("AzureWebJobsStorage")).toBe(false);
    expect(stringLiteral(settings.get("AzureWebJobsStorage__credential"))).toBe("managedidentity");
    for (const service of ["blob", "queue", "table"]) {
      expect(settings.get(`AzureWebJobsStorage__${service}ServiceUri`)?.text).toContain(
        `primaryEndpoints.${service}`,
      );
    }
  });

  it("keeps secrets in Key Vault and never allows insecure loopback", () => {
    expect(settings.has("ALLOW_INSECURE_LOOPBACK")).toBe(false);
    expect(stringLiteral(settings.get("SECRET_STORE"))).toBe("keyvault");
    expect(settings.has("FILE_SECRET_STORE_PATH")).toBe(false);
    expect(settings.get("KEY_VAULT_URL")?.type).not.toBe("string");
  });

  it("creates the tables under the names the code defaults to", () => {
    const main = files.get(path.join(INFRA_DIR, "main.bicep"))!;
    const params = paramDecls(main);
    for (const [setting, param] of [
      ["IDENTITIES_TABLE", "identitiesTableName"],
      ["RUNS_TABLE", "runsTableName"],
      ["ITEM_INDEX_TABLE", "itemIndexTableName"],
    ] as const) {
      const defaultValue = SETTINGS.find((s) => s.name === setting)?.defaultValue;
      expect(stringLiteral(params.get(param)?.defaultValue), param).toBe(defaultValue);
      expect(settings.has(setting)).toBe(true);
    }
    const storage = moduleDecls(main).find((m) => m.path === "app/storage.bicep");
    const tableNames = propertyAt(storage?.body, "params", "tableNames");
    expect(tableNames?.namedChildren.map((n) => n?.text)).toEqual([
      "identitiesTableName",
      "runsTableName",
      "itemIndexTableName",
    ]);
    const api = moduleDecls(main).find((m) => m.path === "app/api.bicep");
    const apiParams = objectProperties(propertyAt(api?.body, "params"));
    expect(apiParams.get("identitiesTableName")?.text).toBe("identitiesTableName");
    expect(apiParams.get("runsTableName")?.text).toBe("runsTableName");
    expect(apiParams.get("itemIndexTableName")?.text).toBe("itemIndexTableName");
  });
});
