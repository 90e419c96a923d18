import { describe, expect, test } from "vitest";
import { itemVersion, newRunId, RUN_ID_PATTERN, safeRelativePath } from "../../src/core/backup/layout.js";

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
