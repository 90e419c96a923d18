import { describe, expect, test } from "vitest";
import {
  attachmentPath,
  attachmentsIndexPath,
  dataFilePath,
  featuresPath,
  itemVersion,
  itemVersionPrefix,
  layerDefinitionPath,
  newRunId,
  RUN_ID_PATTERN,
  resourcePath,
  safeName,
  safeRelativePath,
  thumbnailPath,
} from "../../src/core/backup/layout.js";
import { isPlainText } from "../../src/core/validation.js";

describe("names from the portal become safe blob paths", () => {
  test.each([
    ["images/photo 1.png", "images/photo 1.png"],
    ["../../etc/passwd", "%2E%2E/%2E%2E/etc/passwd"],
    ["a/./b", "a/%2E/b"],
    ["weird/..%2Fnot-a-parent.txt", "weird/..%252Fnot-a-parent.txt"],
    ["/leading//double/", "leading/double"],
    ["ünïcödé/日本語.json", "ünïcödé/日本語.json"],
    ["back\\slash", "back/slash"],
    ["trailing.", "trailing%2E"],
    ["", "_"],
  ])("%s → %s", (input, expected) => {
    expect(safeRelativePath(input)).toBe(expected);
  });

  test("no segment climbs out, very long names are shortened without collisions", () => {
    const long = "x".repeat(300);
    const a = safeRelativePath(`${long}a.txt`);
    const b = safeRelativePath(`${long}b.txt`);
    expect(Buffer.byteLength(a)).toBeLessThanOrEqual(120);
    expect(a).not.toBe(b);
    for (const path of [a, b, safeRelativePath("../../x")]) expect(path.split("/")).not.toContain("..");
  });
});

/** Names the portal gives that must not leave their folder. */
const HOSTILE: Array<[label: string, value: string]> = [
  ["a parent climb", "../../x"],
  ["a parent", ".."],
  ["a dot", "."],
  ["nothing", ""],
  ["an absolute path", "/etc/passwd"],
  ["a Windows path", "C:\\Windows\\win.ini"],
  ["a NUL inside", "a\u0000b"],
  ["a NUL alone", "\u0000"],
  ["a climb in the middle", "x/../../../y"],
  ["encoded parents", "%2e%2e/%2E%2E"],
  ["unicode and a climb", "ünï/../ok"],
  ["a very long name", "y".repeat(5000)],
];

/** A relative blob path that stays where it is put: no empty, `.` or `..` segment, nothing odd. */
function expectContained(relative: string) {
  for (const segment of relative.split("/")) {
    expect(segment, relative).not.toBe("");
    expect(segment, relative).not.toBe(".");
    expect(segment, relative).not.toBe("..");
    // 120 bytes, plus a fixed extension (.ndjson) where the layout adds one.
    expect(Buffer.byteLength(segment), relative).toBeLessThanOrEqual(127);
  }
  expect(isPlainText(relative) && !relative.includes("\\"), relative).toBe(true);
}

describe("every portal-made segment of an item version's names", () => {
  test.each(HOSTILE)("%s stays one segment where it is one, and inside its folder", (_label, value) => {
    expect(safeName(value).includes("/")).toBe(false);
    for (const name of [layerDefinitionPath(value), featuresPath(value), attachmentsIndexPath(value)]) {
      expect(name.split("/")).toHaveLength(
        name.startsWith("service/") ? 3 : name.startsWith("features/") ? 2 : 3,
      );
      expectContained(name);
    }
    const attachment = attachmentPath(value, value, value);
    expect(attachment.split("/")).toHaveLength(4);
    expectContained(attachment);
    const prefix = itemVersionPrefix(value, value);
    expect(prefix.split("/")).toHaveLength(4);
    expectContained(prefix.slice(0, -1));
    for (const name of [dataFilePath(value), thumbnailPath(value), resourcePath(value)])
      expectContained(name);
  });

  test("a layer id of ../../x is a file of service/layers/", () => {
    expect(layerDefinitionPath("../../x")).toBe("service/layers/..%2F..%2Fx.json");
    expect(layerDefinitionPath(3)).toBe("service/layers/3.json");
    expect(attachmentPath(0, 12, 3)).toBe("attachments/0/12/3");
  });
});

describe("versions and run ids", () => {
  test("a version is the modified time, plus the data edit time for hosted layers", () => {
    expect(itemVersion(1700000000000)).toBe("v1700000000000");
    expect(itemVersion(1700000000000, 1700000005000)).toBe("v1700000000000-e1700000005000");
  });

  test("run ids sort newest first", () => {
    const older = newRunId("b", 1_700_000_000_000);
    const newer = newRunId("b", 1_700_000_000_001);
    expect(RUN_ID_PATTERN.test(older)).toBe(true);
    expect([older, newer].sort()).toEqual([newer, older]);
  });
});
