import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";

// The rule (README, Development): a test asserts on virtual time (a ManualClock) or on the order
// of events, never on how long something took on the real clock, which a busy machine stretches.
// One exception: a lower bound (toBeGreaterThanOrEqual) on a plain elapsed time, for a wait the
// code makes on the real clock: a slow machine can only lengthen it. This file keeps the rule
// with a heuristic over `expect(...)`; it cannot see an elapsed time returned by a helper.

const THIS_FILE = fileURLToPath(import.meta.url);
const TEST_ROOT = path.dirname(path.dirname(THIS_FILE));
const NOW = String.raw`(?:Date|performance)\.now\(\)`;
const ELAPSED = new RegExp(String.raw`${NOW}\s*-`);
const ELAPSED_NAME = new RegExp(String.raw`\b(\w+)\s*=\s*${NOW}\s*-`, "g");
const PLAIN_ELAPSED = new RegExp(String.raw`^(?:${NOW}\s*-\s*[\w.]+|\w+)$`);
const MATCHER = /^\s*((?:\.\s*(?:not|resolves|rejects)\s*)*)\.\s*(\w+)/;

interface Assertion {
  line: number;
  subject: string;
  /** With `not.` before it when negated. */
  matcher: string;
}

/** Each `expect(subject).matcher(…)` of a source, the subject up to its balancing parenthesis. */
function assertionsIn(source: string): Assertion[] {
  const found: Assertion[] = [];
  for (const match of source.matchAll(/(?<![\w.])expect\(/g)) {
    const open = (match.index ?? 0) + match[0].length;
    let depth = 1;
    let close = open;
    for (; close < source.length && depth > 0; close++) {
      if (source[close] === "(") depth++;
      else if (source[close] === ")") depth--;
    }
    const chain = MATCHER.exec(source.slice(close));
    if (!chain?.[2]) continue;
    const matcher = `${chain[1]?.includes("not") ? "not." : ""}${chain[2]}`;
    const line = source.slice(0, match.index).split("\n").length;
    found.push({ line, subject: source.slice(open, close - 1).trim(), matcher });
  }
  return found;
}

/** The assertions of a source on real elapsed time, but for plain lower bounds. */
function wallClockAssertions(source: string): Assertion[] {
  const names = [...source.matchAll(ELAPSED_NAME)].map((match) => match[1] as string);
  const onElapsed = (subject: string) =>
    ELAPSED.test(subject) || names.some((name) => new RegExp(String.raw`\b${name}\b`).test(subject));
  const lowerBound = (assertion: Assertion) =>
    assertion.matcher === "toBeGreaterThanOrEqual" && PLAIN_ELAPSED.test(assertion.subject);
  return assertionsIn(source).filter((assertion) => onElapsed(assertion.subject) && !lowerBound(assertion));
}

describe("tests do not assert on wall time", () => {
  test("the check finds upper bounds, ratios and elapsed names, and lets virtual time and lower bounds be", () => {
    const flagged = (source: string) => wallClockAssertions(source).map((a) => `${a.line}: ${a.matcher}`);
    expect(flagged("const t = Date.now();\nexpect(Date.now() - t).toBeLessThan(50);")).toEqual([
      "2: toBeLessThan",
    ]);
    expect(flagged("expect(performance.now() - t0).toBeGreaterThan(700);")).toEqual(["1: toBeGreaterThan"]);
    expect(
      flagged("const elapsed = Date.now() - started;\nexpect(bound / elapsed).toBeGreaterThan(0.7);"),
    ).toEqual(["2: toBeGreaterThan"]);
    expect(flagged("const ms = Date.now() - t;\nexpect(ms).not.toBeGreaterThanOrEqual(3_000);")).toEqual([
      "2: not.toBeGreaterThanOrEqual",
    ]);
    expect(flagged("expect(Date.now() - t).toBeGreaterThanOrEqual(140);")).toEqual([]);
    expect(flagged("expect(clock.now() - started).toBeLessThan(50);")).toEqual([]);
    expect(flagged("expect(new Date(token.expires).getTime()).toBeGreaterThan(Date.now());")).toEqual([]);
  });

  test("no test file asserts on real elapsed time", async () => {
    const files = (await readdir(TEST_ROOT, { recursive: true }))
      .filter((file) => file.endsWith(".test.ts"))
      .map((file) => path.join(TEST_ROOT, file))
      .filter((file) => file !== THIS_FILE);
    expect(files.length).toBeGreaterThan(20);
    const offenders: string[] = [];
    for (const file of files) {
      for (const assertion of wallClockAssertions(await readFile(file, "utf8"))) {
        offenders.push(`${path.relative(TEST_ROOT, file)}:${assertion.line} expect(${assertion.subject})`);
      }
    }
    expect(offenders).toEqual([]);
  });
});
