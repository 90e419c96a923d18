import { describe, expect, test } from "vitest";
import { identityInputSchema, identityPatchSchema } from "../../src/core/identities/identity.js";
import { restoreRequestSchema } from "../../src/core/restore/model.js";
import { parseInput } from "../../src/core/validation.js";

const identity = {
  name: "Contoso GIS",
  kind: "arcgis-online",
  portalUrl: "https://contoso.maps.arcgis.com",
  auth: { type: "builtin", username: "gisadmin", password: "s3cret-pa55" },
  storage: { type: "azure-blob", container: "gis-backups", accountUrl: "https://acct.blob.core.windows.net" },
};

function problemOf(run: () => unknown): { message: string; field?: string } {
  try {
    run();
  } catch (error) {
    return error as { message: string; field?: string };
  }
  throw new Error("the input was accepted");
}

describe("input errors say what was wrong with which field", () => {
  test.each([
    [{ name: 42 }, "name", "name: expected a string, got a number"],
    [{ maxOrgBudgetShare: "0.5" }, "maxOrgBudgetShare", "maxOrgBudgetShare: expected a number, got a string"],
    [
      { schedule: { cron: "0 0 2 * * *", enabled: "yes" } },
      "schedule.enabled",
      "expected a boolean, got a string",
    ],
    [{ auth: null }, "auth", "auth: expected an object, got null"],
    [{ storage: [] }, "storage", "storage: expected an object, got an array"],
  ])("a wrong type is not reported as missing: %j", (patch, field, message) => {
    const problem = problemOf(() => parseInput(identityPatchSchema, patch));
    expect(problem).toMatchObject({ field, message: expect.stringContaining(message) });
    expect(problem.message).not.toContain("required");
  });

  test("a missing field is required, an unknown one is not known, a wrong body is the body", () => {
    const { name: _name, ...withoutName } = identity;
    expect(problemOf(() => parseInput(identityInputSchema, withoutName))).toMatchObject({
      field: "name",
      message: "name is required",
    });
    expect(problemOf(() => parseInput(identityInputSchema, { ...identity, colour: "red" }))).toMatchObject({
      field: "colour",
      message: "colour is not a known field",
    });
    expect(problemOf(() => parseInput(identityInputSchema, [identity]))).toMatchObject({
      message: "The request body: expected an object, got an array",
    });
    const restore = { runId: "b-1", target: { mode: "new" }, dryRun: "true" };
    expect(problemOf(() => parseInput(restoreRequestSchema, restore))).toMatchObject({
      field: "dryRun",
      message: "dryRun: expected a boolean, got a string",
    });
  });

  test("a wrong value is never quoted: it may be a secret", () => {
    const problem = problemOf(() =>
      parseInput(identityInputSchema, { ...identity, auth: { ...identity.auth, password: 918273645 } }),
    );
    expect(problem).toMatchObject({ field: "auth.password" });
    expect(problem.message).not.toContain("918273645");
  });

  test.each([
    ["NUL", "Contoso\u0000GIS"],
    ["a newline", "Contoso\nGIS"],
    ["DEL", "Contoso\u007f"],
    ["a C1 control", "Contoso\u0085"],
    ["a lone high surrogate", "Contoso\ud800"],
    ["a lone low surrogate", "\udc00Contoso"],
  ])("text with %s is refused, naming the field", (_what, name) => {
    expect(problemOf(() => parseInput(identityInputSchema, { ...identity, name }))).toMatchObject({
      field: "name",
      message: "name must not contain control characters or unpaired surrogates",
    });
  });

  test("secrets and nested texts are checked too; paired surrogates (emoji) are fine", () => {
    const auth = { ...identity.auth, password: "s3cret\u0000x" };
    const problem = problemOf(() => parseInput(identityInputSchema, { ...identity, auth }));
    expect(problem).toMatchObject({ field: "auth.password" });
    expect(problem.message).not.toContain("s3cret");
    expect(parseInput(identityInputSchema, { ...identity, name: "Contoso 🗺️ GIS" }).name).toBe(
      "Contoso 🗺️ GIS",
    );
  });
});
