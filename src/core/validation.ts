import type { z } from "zod";
import { ValidationError } from "./errors.js";

/**
 * Parses input with a schema; the first problem becomes a 400 that names the field
 * (`auth.password`, `storage.container`) and says what was wrong (unknown field, missing, wrong
 * type) without quoting the value, which may be a secret. Every text of the result is then
 * checked for control characters and unpaired surrogates. Every endpoint's body passes here.
 */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown, prefix = ""): z.infer<S> {
  // reportInput: the issue carries the value, so a wrong type can be told from a missing one.
  const result = schema.safeParse(input, { reportInput: true });
  const root = prefix ? [prefix] : [];
  if (!result.success) throw issueError(result.error.issues[0], root);
  assertPlainText(result.data, root);
  return result.data;
}

function issueError(issue: z.core.$ZodIssue | undefined, root: string[]): ValidationError {
  if (!issue) return new ValidationError("Invalid input");
  const path = [...root, ...issue.path.map(String)];
  if (issue.code === "unrecognized_keys") {
    return fieldError([...path, issue.keys[0]].join("."), (label) => `${label} is not a known field`);
  }
  const field = path.join(".");
  if (issue.code === "invalid_type" && issue.input === undefined && field) {
    return fieldError(field, (label) => `${label} is required`);
  }
  return fieldError(field, (label) => `${label}: ${issueProblem(issue)}`);
}

/**
 * What an issue found wrong, without the value (it may be a secret): "expected a string, got a
 * number", or the schema's own message. Needs the issue's input (`reportInput`).
 */
export function issueProblem(issue: z.core.$ZodIssue): string {
  if (issue.code === "invalid_type") {
    return `expected ${withArticle(issue.expected)}, got ${describeValue(issue.input)}`;
  }
  return issue.message;
}

/** The error names the field (quoted when it holds odd characters); no field: the whole body. */
function fieldError(field: string, message: (label: string) => string): ValidationError {
  const label = !field ? "The request body" : isPlainText(field) ? field : JSON.stringify(field);
  return new ValidationError(message(label), field);
}

function withArticle(type: string): string {
  return /^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`;
}

/** The kind of a value, never the value itself. */
function describeValue(value: unknown): string {
  if (value === null) return "null";
  if (value === undefined) return "nothing";
  if (Array.isArray(value)) return "an array";
  return withArticle(typeof value);
}

function assertPlainText(value: unknown, path: string[]): void {
  if (typeof value === "string") {
    if (!isPlainText(value)) {
      throw fieldError(
        path.join("."),
        (label) => `${label} must not contain control characters or unpaired surrogates`,
      );
    }
  } else if (Array.isArray(value)) {
    value.forEach((item, index) => {
      assertPlainText(item, [...path, String(index)]);
    });
  } else if (value !== null && typeof value === "object") {
    for (const [key, item] of Object.entries(value)) assertPlainText(item, [...path, key]);
  }
}

/**
 * No C0 or C1 control character (tab and newline included: no field of this API holds more than
 * a line), no DEL, and no half of a surrogate pair (JSON's \ud800 escape makes one).
 */
export function isPlainText(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x20 || (code >= 0x7f && code <= 0x9f)) return false;
    if (code >= 0xdc00 && code <= 0xdfff) return false;
    if (code >= 0xd800 && code <= 0xdbff) {
      const next = text.charCodeAt(i + 1);
      if (!(next >= 0xdc00 && next <= 0xdfff)) return false;
      i++;
    }
  }
  return true;
}
