import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import {
  type BicepFile,
  callsOf,
  displayPath,
  formatLocation,
  INFRA_DIR,
  objectProperties,
  outputDecls,
  paramDecls,
  parseInfra,
  propertyAt,
  readRepoFile,
  repoFileExists,
  resourcesOfType,
  stringLiteral,
  varDecls,
} from "./bicep.js";

/** The only roles the infra may assign (built-in role definition ids). */
const ROLES = {
  storageBlobDataOwner: "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
  storageBlobDataContributor: "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
  storageQueueDataContributor: "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
  storageTableDataContributor: "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
  keyVaultSecretsOfficer: "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
};

let files: Map<string, BicepFile>;
const file = (relative: string) => {
  const found = files.get(path.join(INFRA_DIR, relative));
  if (!found) throw new Error(`infra/${relative} not parsed`);
  return found;
};
const all = () => [...files.values()];

beforeAll(async () => {
  files = await parseInfra();
});

describe("resource settings", () => {
  it("storage accepts Entra ID only", () => {
    const [account, ...rest] = resourcesOfType(
      file("app/storage.bicep"),
      "Microsoft.Storage/storageAccounts",
    );
    expect(rest).toEqual([]);
    const props = objectProperties(propertyAt(account?.body, "properties"));
    expect(props.get("allowSharedKeyAccess")?.text).toBe("false");
    expect(props.get("allowBlobPublicAccess")?.text).toBe("false");
    expect(stringLiteral(props.get("minimumTlsVersion"))).toBe("TLS1_2");
  });

  it("Key Vault uses RBAC with soft delete and purge protection", () => {
    const [vault] = resourcesOfType(file("app/keyvault.bicep"), "Microsoft.KeyVault/vaults");
    const props = objectProperties(propertyAt(vault?.body, "properties"));
    expect(props.get("enableRbacAuthorization")?.text).toBe("true");
    expect(props.get("enableSoftDelete")?.text).toBe("true");
    expect(props.get("enablePurgeProtection")?.text).toBe("true");
  });

  it("the function app is Flex Consumption, Node 22, system-assigned identity, azd-tagged", () => {
    const api = file("app/api.bicep");
    const [plan] = resourcesOfType(api, "Microsoft.Web/serverfarms");
    expect(stringLiteral(propertyAt(plan?.body, "sku", "name"))).toBe("FC1");
    expect(stringLiteral(propertyAt(plan?.body, "sku", "tier"))).toBe("FlexConsumption");
    const [site] = resourcesOfType(api, "Microsoft.Web/sites");
    expect(stringLiteral(propertyAt(site?.body, "identity", "type"))).toBe("SystemAssigned");
    const config = propertyAt(site?.body, "properties", "functionAppConfig");
    expect(stringLiteral(propertyAt(config, "runtime", "name"))).toBe("node");
    expect(propertyAt(config, "runtime", "version")?.text).toBe("runtimeVersion");
    expect(stringLiteral(paramDecls(api).get("runtimeVersion")?.defaultValue)).toBe("22");
    expect(stringLiteral(propertyAt(config, "deployment", "storage", "authentication", "type"))).toBe(
      "SystemAssignedIdentity",
    );
    expect(propertyAt(site?.body, "tags")?.text).toContain("'azd-service-name': serviceName");
    const service = /^services:\s*\n\s+([\w-]+):/m.exec(readRepoFile("azure.yaml"))?.[1];
    expect(stringLiteral(paramDecls(api).get("serviceName")?.defaultValue)).toBe(service);
  });
});

describe("role assignments", () => {
  it("use deterministic names guid(scope, principal, role)", () => {
    const assignments = all().flatMap((f) => resourcesOfType(f, "Microsoft.Authorization/roleAssignments"));
    expect(assignments.length).toBeGreaterThan(0);
    for (const assignment of assignments) {
      const name = propertyAt(assignment.body, "name");
      const where = formatLocation(assignment.loc);
      expect(name?.type, where).toBe("call_expression");
      expect(name?.childForFieldName("function")?.text, where).toBe("guid");
      expect(name?.childForFieldName("arguments")?.namedChildren.length, where).toBe(3);
    }
  });

  it("grant no role outside the allowed set", () => {
    const allowed = new Set(Object.values(ROLES));
    const guid = /'([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})'/gi;
    const strays = all().flatMap((f) =>
      [...f.source.matchAll(guid)]
        .filter((m) => !allowed.has(m[1]!.toLowerCase()))
        .map((m) => `${displayPath(f.file)}: ${m[1]}`),
    );
    expect(strays).toEqual([]);
  });

  it("give the app identity exactly blob owner, queue and table contributor, secrets officer", () => {
    const rbac = file("app/rbac.bicep");
    const roles = objectProperties(varDecls(rbac).get("roles"));
    const granted = resourcesOfType(rbac, "Microsoft.Authorization/roleAssignments")
      .filter((a) => propertyAt(a.body, "properties", "principalId")?.text === "appPrincipalId")
      .map((a) => {
        const ref = /roles\.(\w+)/.exec(
          propertyAt(a.body, "properties", "roleDefinitionId")?.text ?? "",
        )?.[1];
        return stringLiteral(ref ? roles.get(ref) : undefined);
      });
    expect(granted.sort()).toEqual(
      [
        ROLES.storageBlobDataOwner,
        ROLES.storageQueueDataContributor,
        ROLES.storageTableDataContributor,
        ROLES.keyVaultSecretsOfficer,
      ].sort(),
    );
  });
});

describe("azd wiring", () => {
  it("main.bicep outputs are UPPER_SNAKE and include what the app and docs use", () => {
    const outputs = [...outputDecls(file("main.bicep")).keys()];
    expect(outputs.filter((o) => !/^[A-Z][A-Z0-9_]*$/.test(o))).toEqual([]);
    expect(outputs).toEqual(
      expect.arrayContaining([
        "AZURE_FUNCTION_APP_NAME",
        "AZURE_KEY_VAULT_URL",
        "AZURE_STORAGE_ACCOUNT_NAME",
        "AZURE_BACKUP_CONTAINER_URL",
        "AZURE_FUNCTION_APP_PRINCIPAL_ID",
      ]),
    );
  });

  it("main.parameters.json maps azd variables onto declared parameters", () => {
    const parameters = JSON.parse(readRepoFile("infra/main.parameters.json")).parameters as Record<
      string,
      { value: string }
    >;
    const declared = paramDecls(file("main.bicep"));
    expect(Object.keys(parameters).filter((p) => !declared.has(p))).toEqual([]);
    const azdVariable = (name: string) => `\${${name}}`;
    expect(parameters.environmentName?.value).toBe(azdVariable("AZURE_ENV_NAME"));
    expect(parameters.location?.value).toBe(azdVariable("AZURE_LOCATION"));
    expect(parameters.principalId?.value).toBe(azdVariable("AZURE_PRINCIPAL_ID"));
    // A required parameter is either mapped here or azd prompts for it; only the alert email is prompted.
    const unmapped = [...declared.values()].filter((p) => !p.optional && !(p.name in parameters));
    expect(unmapped.map((p) => p.name)).toEqual([]);
  });

  it("azure.yaml deploys this folder as a TypeScript function app", () => {
    const yaml = readRepoFile("azure.yaml");
    expect(yaml).toMatch(/^\s+host: function$/m);
    expect(yaml).toMatch(/^\s+language: ts$/m);
    expect(yaml).toMatch(/^\s+project: \.$/m);
  });

  it("every loadTextContent/loadJsonContent file exists and abbreviations are defined", () => {
    const missing: string[] = [];
    for (const f of all()) {
      for (const call of callsOf(f, "loadTextContent", "loadJsonContent", "loadFileAsBase64")) {
        const target = stringLiteral(call.args[0]);
        const relative = path.relative(
          path.resolve(INFRA_DIR, ".."),
          path.resolve(path.dirname(f.file), target ?? ""),
        );
        if (target === undefined || !repoFileExists(relative))
          missing.push(`${formatLocation(call.loc)}: ${target}`);
      }
    }
    expect(missing).toEqual([]);
    const abbrs = JSON.parse(readRepoFile("infra/abbreviations.json")) as Record<string, string>;
    const used = [...file("main.bicep").source.matchAll(/\babbrs\.(\w+)/g)].map((m) => m[1]!);
    expect(used.length).toBeGreaterThan(0);
    expect(used.filter((key) => !(key in abbrs))).toEqual([]);
  });
});
