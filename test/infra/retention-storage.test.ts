import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { Node } from "web-tree-sitter";
import {
  type BicepFile,
  INFRA_DIR,
  moduleDecls,
  objectProperties,
  paramDecls,
  parseInfra,
  propertyAt,
  readRepoFile,
  stringLiteral,
  varDecls,
} from "./bicep.js";

/**
 * The backup container's lifecycle rule (Hot → Cool) and its opt-in version-level immutability (WORM), checked
 * by evaluating storage.bicep for given parameter values: a small evaluator for the expressions the file uses
 * (literals, interpolation, parameters, variables, operators, ternaries, concat/empty), then which resources
 * are deployed and with what `properties`.
 */

type Value = null | boolean | number | string | Value[] | { [key: string]: Value };
type Lookup = (name: string) => Value;

const STORAGE_API = "2023-05-01";
const LIFECYCLE = "Microsoft.Storage/storageAccounts/managementPolicies";
const IMMUTABILITY = "Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies";
const CONTAINER = "Microsoft.Storage/storageAccounts/blobServices/containers";
const BLOB_SERVICE = "Microsoft.Storage/storageAccounts/blobServices";

let files: Map<string, BicepFile>;
const file = (relative: string) => {
  const found = files.get(path.join(INFRA_DIR, relative));
  if (!found) throw new Error(`infra/${relative} not parsed`);
  return found;
};

beforeAll(async () => {
  files = await parseInfra();
});

// ---------------------------------------------------------------------------------------------------------
// Evaluator

function where(node: Node): string {
  return `line ${node.startPosition.row + 1}`;
}

const ESCAPES: Record<string, string> = { n: "\n", r: "\r", t: "\t", "\\": "\\", "'": "'", $: "$" };

function evaluate(node: Node, lookup: Lookup): Value {
  const named = node.namedChildren.filter((c): c is Node => c !== null && c.type !== "comment");
  switch (node.type) {
    case "number":
      return Number(node.text);
    case "boolean":
      return node.text === "true";
    case "null":
      return null;
    case "identifier":
      return lookup(node.text);
    case "parenthesized_expression":
      return evaluate(named[0]!, lookup);
    case "string":
      return named
        .map((part) => {
          if (part.type === "interpolation") return String(evaluate(part.namedChildren[0]!, lookup));
          if (part.type === "escape_sequence") return ESCAPES[part.text.slice(1)] ?? part.text.slice(1);
          return part.text;
        })
        .join("");
    case "array":
      return named.map((item) => evaluate(item, lookup));
    case "object": {
      const result: Record<string, Value> = {};
      for (const property of named) {
        const [key, value] = property.namedChildren;
        if (!key || !value) throw new Error(`object property without value at ${where(property)}`);
        const name = key.type === "string" ? stringLiteral(key) : key.text;
        if (name === undefined) throw new Error(`computed key at ${where(property)}`);
        result[name] = evaluate(value, lookup);
      }
      return result;
    }
    case "unary_expression": {
      const operand = evaluate(named[0]!, lookup);
      const operator = node.children[0]?.type;
      if (operator === "!") return !operand;
      if (operator === "-") return -(operand as number);
      throw new Error(`unary ${operator} at ${where(node)}`);
    }
    case "binary_expression":
      return binary(node, lookup);
    case "ternary_expression": {
      const condition = evaluate(node.childForFieldName("condition")!, lookup);
      return evaluate(node.childForFieldName(condition ? "consequence" : "alternative")!, lookup);
    }
    case "call_expression": {
      const fn = node.childForFieldName("function")?.text;
      const args =
        node
          .childForFieldName("arguments")
          ?.namedChildren.filter((a): a is Node => a !== null && a.type !== "comment")
          .map((a) => evaluate(a, lookup)) ?? [];
      if (fn === "concat") {
        return args.every(Array.isArray) ? (args as Value[][]).flat() : args.map(String).join("");
      }
      if (fn === "empty") {
        const [v] = args;
        return (
          v === null || v === "" || (Array.isArray(v) ? v.length === 0 : Object.keys(v ?? {}).length === 0)
        );
      }
      throw new Error(`function ${fn} at ${where(node)} is not supported here`);
    }
    default:
      throw new Error(`cannot evaluate ${node.type} at ${where(node)}: ${node.text.slice(0, 60)}`);
  }
}

function binary(node: Node, lookup: Lookup): Value {
  const operator = node.childForFieldName("operator")?.text ?? node.children[1]?.type;
  const left = () => evaluate(node.childForFieldName("left")!, lookup);
  const right = () => evaluate(node.childForFieldName("right")!, lookup);
  switch (operator) {
    case "&&":
      return Boolean(left()) && Boolean(right());
    case "||":
      return Boolean(left()) || Boolean(right());
    case "==":
      return left() === right();
    case "!=":
      return left() !== right();
    case ">":
      return (left() as number) > (right() as number);
    case ">=":
      return (left() as number) >= (right() as number);
    case "<":
      return (left() as number) < (right() as number);
    case "<=":
      return (left() as number) <= (right() as number);
    case "+":
      return (left() as number) + (right() as number);
    case "-":
      return (left() as number) - (right() as number);
    default:
      throw new Error(`operator ${operator} at ${where(node)}`);
  }
}

/** Parameters (given, else their default) and variables of a file; evaluated on first use. */
function scopeOf(bicep: BicepFile, given: Record<string, Value>): Lookup {
  const params = paramDecls(bicep);
  const vars = varDecls(bicep);
  for (const name of Object.keys(given)) {
    if (!params.has(name)) throw new Error(`${name} is not a parameter of ${bicep.file}`);
  }
  const values = new Map<string, Value>();
  const lookup: Lookup = (name) => {
    if (values.has(name)) return values.get(name) as Value;
    let value: Value;
    if (Object.hasOwn(given, name)) value = given[name] as Value;
    else if (params.get(name)?.defaultValue) value = evaluate(params.get(name)!.defaultValue!, lookup);
    else if (vars.has(name)) value = evaluate(vars.get(name)!, lookup);
    else throw new Error(`${name} has no value (not given, no default, not a variable)`);
    values.set(name, value);
    return value;
  };
  return lookup;
}

interface Deployed {
  symbol: string;
  /** Without the API version. */
  type: string;
  apiVersion: string;
  /** Symbol of the `parent:` resource, if any. */
  parent?: string;
  name: Value;
  properties: Value;
}

/** The top-level resources of a file that deploy for the given parameters (loops are skipped). */
function deployed(bicep: BicepFile, given: Record<string, Value>): Deployed[] {
  const lookup = scopeOf(bicep, given);
  const result: Deployed[] = [];
  for (const decl of bicep.root.namedChildren) {
    if (decl?.type !== "resource_declaration") continue;
    const [symbol, typeNode] = decl.namedChildren;
    const value = decl.namedChildren[decl.namedChildren.length - 1];
    let body: Node | undefined;
    if (value?.type === "object") body = value;
    else if (value?.type === "if_statement") {
      if (!evaluate(value.namedChildren[0]!, lookup)) continue;
      body = value.namedChildren.find((c) => c?.type === "object") ?? undefined;
    }
    if (!body) continue;
    const [type = "", apiVersion = ""] = (stringLiteral(typeNode) ?? "").split("@");
    const parent = propertyAt(body, "parent")?.text;
    const properties = propertyAt(body, "properties");
    result.push({
      symbol: symbol?.text ?? "",
      type,
      apiVersion,
      ...(parent ? { parent } : {}),
      name: evaluate(propertyAt(body, "name")!, lookup),
      properties: properties ? evaluate(properties, lookup) : null,
    });
  }
  return result;
}

// ---------------------------------------------------------------------------------------------------------
// Helpers over the evaluated storage module

/** The storage module as main.bicep deploys it by default, with `overrides` on top. */
function storage(overrides: Record<string, Value> = {}): Deployed[] {
  const mainDefaults = scopeOf(file("main.bicep"), {});
  return deployed(file("app/storage.bicep"), {
    name: "stx",
    location: "westeurope",
    deploymentContainerName: "app-package-x",
    tableNames: ["identities", "runs", "itemindex"],
    backupContainerName: mainDefaults("backupContainerName"),
    blobSoftDeleteRetentionDays: mainDefaults("blobSoftDeleteRetentionDays"),
    backupCoolAfterDays: mainDefaults("backupCoolAfterDays"),
    backupImmutabilityDays: mainDefaults("backupImmutabilityDays"),
    backupImmutabilityLocked: mainDefaults("backupImmutabilityLocked"),
    ...overrides,
  });
}

const ofType = (resources: Deployed[], type: string) => resources.filter((r) => r.type === type);

type Rule = {
  name: string;
  enabled: boolean;
  type: string;
  definition: { filters: { blobTypes?: string[]; prefixMatch?: string[] }; actions: Record<string, Value> };
};

function lifecycleRules(resources: Deployed[]): Rule[] | undefined {
  const policies = ofType(resources, LIFECYCLE);
  expect(policies.length).toBeLessThanOrEqual(1);
  const [policy] = policies;
  if (!policy) return undefined;
  expect(policy.name).toBe("default");
  expect(policy.parent).toBe("storageAccount");
  return (policy.properties as { policy: { rules: Rule[] } }).policy.rules;
}

function backupContainer(resources: Deployed[], name = "backups"): Deployed {
  const found = ofType(resources, CONTAINER).filter((c) => c.name === name);
  expect(found).toHaveLength(1);
  return found[0]!;
}

const versioning = (resources: Deployed[]) =>
  ((ofType(resources, BLOB_SERVICE)[0]?.properties ?? {}) as { isVersioningEnabled?: Value })
    .isVersioningEnabled;

const wormOf = (container: Deployed) =>
  (container.properties as { immutableStorageWithVersioning?: Value }).immutableStorageWithVersioning;

function coolRules(rules: Rule[] | undefined): Rule[] {
  return (rules ?? []).filter((r) => (r.definition.actions.baseBlob as Record<string, Value>)?.tierToCool);
}

// ---------------------------------------------------------------------------------------------------------

describe("parameters", () => {
  it("main.bicep declares both with bounds and a description, and passes them to storage.bicep", () => {
    const main = file("main.bicep");
    const params = paramDecls(main);
    expect(params.get("backupCoolAfterDays")?.defaultValue?.text).toBe("30");
    expect(params.get("backupImmutabilityDays")?.defaultValue?.text).toBe("0");
    expect(params.get("backupImmutabilityLocked")?.defaultValue?.text).toBe("false");
    for (const bicep of [main, file("app/storage.bicep")]) {
      expect(decorators(bicep, "backupCoolAfterDays")).toMatchObject({ minValue: "0" });
      expect(decorators(bicep, "backupCoolAfterDays").description).toBeDefined();
      expect(decorators(bicep, "backupImmutabilityDays")).toMatchObject({
        minValue: "0",
        maxValue: "146000",
      });
    }
    const immutability = decorators(main, "backupImmutabilityDays").description ?? "";
    expect(immutability).toMatch(/unlocked/i);
    expect(immutability).toMatch(/lock/i);
    expect(immutability).toMatch(/can never be shortened or removed/);

    const storageModule = moduleDecls(main).find((m) => m.path === "app/storage.bicep");
    const passed = objectProperties(propertyAt(storageModule?.body, "params"));
    for (const name of ["backupCoolAfterDays", "backupImmutabilityDays", "backupImmutabilityLocked"]) {
      expect(passed.get(name)?.text, name).toBe(name);
    }
  });

  it("azd can set them (main.parameters.json) and reads the days back (outputs)", () => {
    const parameters = JSON.parse(readRepoFile("infra/main.parameters.json")).parameters;
    const azdVariable = (name: string, fallback: string) => `\${${name}=${fallback}}`;
    expect(parameters.backupCoolAfterDays.value).toBe(azdVariable("BACKUP_COOL_AFTER_DAYS", "30"));
    expect(parameters.backupImmutabilityDays.value).toBe(azdVariable("BACKUP_IMMUTABILITY_DAYS", "0"));
    expect(parameters.backupImmutabilityLocked.value).toBe(
      azdVariable("BACKUP_IMMUTABILITY_LOCKED", "false"),
    );
    const source = file("main.bicep").source;
    expect(source).toMatch(
      /^output AZURE_BACKUP_COOL_AFTER_DAYS int = storage\.outputs\.backupCoolAfterDays$/m,
    );
    expect(source).toMatch(
      /^output AZURE_BACKUP_IMMUTABILITY_DAYS int = storage\.outputs\.backupImmutabilityDays$/m,
    );
  });
});

describe("lifecycle rule (Hot → Cool)", () => {
  it("by default moves block blobs of the backup container to Cool 30 days after their last change", () => {
    const rules = lifecycleRules(storage());
    expect(rules).toEqual([
      {
        name: "backupsToCool",
        enabled: true,
        type: "Lifecycle",
        definition: {
          filters: { blobTypes: ["blockBlob"], prefixMatch: ["backups/"] },
          actions: { baseBlob: { tierToCool: { daysAfterModificationGreaterThan: 30 } } },
        },
      },
    ]);
  });

  it("follows the parameter and the container name, and touches no other container", () => {
    const rules = lifecycleRules(storage({ backupCoolAfterDays: 45, backupContainerName: "org-backups" }));
    const [cool, ...others] = coolRules(rules);
    expect(others).toEqual([]);
    expect(cool?.definition.filters.prefixMatch).toEqual(["org-backups/"]);
    expect(cool?.definition.actions).toEqual({
      baseBlob: { tierToCool: { daysAfterModificationGreaterThan: 45 } },
    });
    // Only the tier rule acts on current blobs, and only under the backup container.
    for (const rule of rules ?? []) {
      if (!rule.definition.actions.baseBlob) continue;
      expect(rule.definition.filters.prefixMatch?.length).toBeGreaterThan(0);
      for (const prefix of rule.definition.filters.prefixMatch ?? []) expect(prefix).toBe("org-backups/");
    }
  });

  it("0 days and no immutability: no lifecycle policy at all", () => {
    expect(ofType(storage({ backupCoolAfterDays: 0 }), LIFECYCLE)).toEqual([]);
  });

  it("never deletes current blobs nor moves them to Cold or Archive", () => {
    for (const resources of [storage(), storage({ backupImmutabilityDays: 90 })]) {
      for (const rule of lifecycleRules(resources) ?? []) {
        const baseBlob = (rule.definition.actions.baseBlob ?? {}) as Record<string, Value>;
        expect(Object.keys(baseBlob).filter((action) => action !== "tierToCool")).toEqual([]);
      }
    }
  });
});

describe("immutability (version-level WORM)", () => {
  it("is off by default: no WORM on the container, no policy, versioning left alone", () => {
    const resources = storage();
    expect(wormOf(backupContainer(resources)) ?? null).toBeNull();
    expect(ofType(resources, IMMUTABILITY)).toEqual([]);
    expect(versioning(resources) ?? null).toBeNull();
    expect(coolRules(lifecycleRules(resources))).toHaveLength(1);
    expect(lifecycleRules(resources)?.filter((r) => r.definition.actions.version)).toEqual([]);
  });

  it("with days > 0: versioning, WORM on the backup container only, an unlocked default policy", () => {
    const resources = storage({ backupImmutabilityDays: 365 });
    expect(versioning(resources)).toBe(true);
    expect(wormOf(backupContainer(resources))).toEqual({ enabled: true });
    for (const other of ofType(resources, CONTAINER).filter((c) => c.name !== "backups")) {
      expect(wormOf(other) ?? null, String(other.name)).toBeNull();
    }
    const policies = ofType(resources, IMMUTABILITY);
    expect(policies).toEqual([
      {
        symbol: "backupImmutabilityPolicy",
        type: IMMUTABILITY,
        apiVersion: STORAGE_API,
        parent: "backupContainer",
        name: "default",
        // No state: ARM creates the policy unlocked; locking is the admin's act.
        properties: { immutabilityPeriodSinceCreationInDays: 365, allowProtectedAppendWrites: false },
      },
    ]);
  });

  it("with days > 0: previous versions expire once their period is over; the Cool rule stays", () => {
    const rules = lifecycleRules(storage({ backupImmutabilityDays: 365 }));
    expect(coolRules(rules)).toHaveLength(1);
    expect(rules?.filter((r) => r.definition.actions.version)).toEqual([
      {
        name: "expirePreviousVersions",
        enabled: true,
        type: "Lifecycle",
        definition: {
          filters: { blobTypes: ["blockBlob"] },
          actions: { version: { delete: { daysAfterCreationGreaterThan: 365 } } },
        },
      },
    ]);
    const onlyVersions = lifecycleRules(storage({ backupImmutabilityDays: 30, backupCoolAfterDays: 0 }));
    expect(onlyVersions?.map((r) => r.name)).toEqual(["expirePreviousVersions"]);
  });

  it("once locked, the deployment no longer sends the policy but keeps WORM and versioning", () => {
    const resources = storage({ backupImmutabilityDays: 365, backupImmutabilityLocked: true });
    expect(ofType(resources, IMMUTABILITY)).toEqual([]);
    expect(wormOf(backupContainer(resources))).toEqual({ enabled: true });
    expect(versioning(resources)).toBe(true);
  });

  it("uses the API version of the storage account for the new resource types", () => {
    const resources = storage({ backupImmutabilityDays: 1 });
    for (const type of [LIFECYCLE, IMMUTABILITY, CONTAINER, BLOB_SERVICE]) {
      for (const r of ofType(resources, type)) expect(r.apiVersion, r.symbol).toBe(STORAGE_API);
    }
  });
});

describe("evaluator", () => {
  it("refuses what it does not know instead of guessing", () => {
    expect(() => deployed(file("app/storage.bicep"), { nope: 1 })).toThrow(/nope is not a parameter/);
    const lookup = scopeOf(file("app/storage.bicep"), { backupImmutabilityDays: 2 });
    expect(lookup("immutable")).toBe(true);
    expect(() => lookup("storageAccount")).toThrow(/has no value/);
  });
});

/** The decorators of a parameter: name → argument text (string arguments unquoted). */
function decorators(bicep: BicepFile, param: string): Record<string, string> {
  const decl = bicep.root.namedChildren.find(
    (n) => n?.type === "parameter_declaration" && n.namedChildren[0]?.text === param,
  );
  if (!decl) throw new Error(`${param} is not declared in ${bicep.file}`);
  const result: Record<string, string> = {};
  const list = decl.previousNamedSibling;
  if (list?.type !== "decorators") return result;
  for (const decorator of list.namedChildren) {
    const call = decorator?.namedChildren[0];
    const name = call?.childForFieldName("function")?.text;
    const arg = call?.childForFieldName("arguments")?.namedChildren[0];
    if (name && arg) result[name] = stringLiteral(arg) ?? arg.text;
  }
  return result;
}
