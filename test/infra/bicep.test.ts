import path from "node:path";
import { describe, expect, it } from "vitest";
import {
  type BicepFile,
  checkModuleContracts,
  formatSyntaxProblem,
  INFRA_DIR,
  listBicepFiles,
  parseBicep,
  parseInfra,
  syntaxProblems,
} from "./bicep.js";

describe("Bicep syntax", () => {
  it("parses every .bicep file under infra/ without ERROR or MISSING nodes", async () => {
    const files = await parseInfra();
    expect([...files.keys()].map((f) => path.relative(INFRA_DIR, f))).toContain("main.bicep");
    const all = [...files.values()].flatMap(syntaxProblems);
    // tree-sitter-bicep 1.1.0 predates the `extension` keyword (Bicep 0.30); the one such line is the
    // Microsoft Graph extension of the console's sign-in, checked here to be exactly that.
    const isGraphExtension = (p: (typeof all)[number]) =>
      p.kind === "ERROR" &&
      /^extension 'br:mcr\.microsoft\.com\/bicep\/extensions\/microsoftgraph\/v1\.0:[\w.-]+'$/.test(p.text);
    expect(
      all.filter(isGraphExtension).map((p) => `${path.relative(INFRA_DIR, p.file)}:${p.line}:${p.column}`),
    ).toEqual(["app/console-auth.bicep:8:1"]);
    expect(all.filter((p) => !isGraphExtension(p)).map(formatSyntaxProblem)).toEqual([]);
  });

  it("finds the modules main.bicep composes", () => {
    const names = listBicepFiles().map((f) => path.relative(INFRA_DIR, f));
    expect(names).toEqual(
      expect.arrayContaining(["app/api.bicep", "app/storage.bicep", "app/keyvault.bicep", "app/rbac.bicep"]),
    );
  });

  it("reports a malformed resource block with its line and column", async () => {
    const source = [
      "param name string",
      "",
      "resource sa 'Microsoft.Storage/storageAccounts@2023-05-01' = {",
      "  name: name",
      "  properties: {",
      "    allowSharedKeyAccess false",
      "  }",
      "}",
    ].join("\n");
    const problems = syntaxProblems(await parseBicep(source, "/tmp/broken.bicep"));
    expect(problems).toEqual([
      { file: "/tmp/broken.bicep", line: 6, column: 5, kind: "ERROR", text: "allowSharedKeyAccess false" },
    ]);
    expect(problems.map(formatSyntaxProblem)).toEqual([
      '/tmp/broken.bicep:6:5: syntax error near "allowSharedKeyAccess false"',
    ]);
  });

  it("reports a missing closing brace as MISSING", async () => {
    const source = "resource kv 'Microsoft.KeyVault/vaults@2023-07-01' = {\n  name: 'kv'\n";
    const problems = syntaxProblems(await parseBicep(source, "/tmp/open.bicep"));
    expect(problems).toEqual([expect.objectContaining({ kind: "MISSING", text: "}", line: 2, column: 13 })]);
  });
});

describe("module contract", () => {
  it("holds for infra/: paths exist, params match, outputs read are declared", async () => {
    expect(checkModuleContracts(await parseInfra())).toEqual([]);
  });

  it("reports each kind of break with file:line:column", async () => {
    const files = new Map<string, BicepFile>();
    const add = async (file: string, source: string) => files.set(file, await parseBicep(source, file));
    await add(
      "/x/main.bicep",
      [
        "module a 'app/a.bicep' = {",
        "  name: 'a'",
        "  params: {",
        "    location: 'westeurope'",
        "    typo: 1",
        "  }",
        "}",
        "module b 'app/missing.bicep' = {",
        "  name: 'b'",
        "}",
        "output X string = a.outputs.nope",
        "output Y string = a.outputs.id",
      ].join("\n"),
    );
    await add(
      "/x/app/a.bicep",
      [
        "param name string",
        "param location string = 'x'",
        "param maybe string?",
        "output id string = 'i'",
      ].join("\n"),
    );
    expect(checkModuleContracts(files)).toEqual([
      "/x/main.bicep:5:11: module a passes typo, which app/a.bicep does not declare",
      "/x/main.bicep:1:1: module a does not pass name, which app/a.bicep requires",
      "/x/main.bicep:8:1: module b refers to app/missing.bicep, which does not exist",
      "/x/main.bicep:11:19: a.outputs.nope is not an output of /x/app/a.bicep",
    ]);
  });
});
