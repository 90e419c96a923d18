import { z } from "zod";
import { AppError } from "./errors.js";
import { issueProblem } from "./validation.js";

/** A blob that does not hold the document its reader expects (damaged, or of another schema). */
export const STORED_DOCUMENT_INVALID = "ERR_STORED_DOCUMENT_INVALID";
/** An orchestration's or activity's input that does not match its schema. */
export const ORCHESTRATION_INPUT_INVALID = "ERR_ORCHESTRATION_INPUT_INVALID";

/**
 * A stored document that failed its schema. The message names where it came from (the blob
 * name relative to the identity's folder, or the orchestration) and the first field that is
 * wrong, never the value: "runs/<id>/manifest.json: items.3.sha256: expected a string, got a
 * number". It fails the item or the run that read it, as an expected failure (never retried).
 */
export class StoredDocumentError extends AppError {
  readonly source: string;

  constructor(source: string, problem: string, code = STORED_DOCUMENT_INVALID) {
    super(`${source}: ${problem}`, { code, status: 422 });
    this.source = source;
  }
}

export type StoredCheck<T> = { ok: true; value: T } | { ok: false; error: StoredDocumentError };

/** Checks a value read back against its schema; the caller decides what a mismatch fails. */
export function checkStored<S extends z.ZodType>(
  schema: S,
  value: unknown,
  source: string,
  code = STORED_DOCUMENT_INVALID,
): StoredCheck<z.infer<S>> {
  const result = schema.safeParse(value, { reportInput: true });
  if (result.success) return { ok: true, value: result.data };
  const issue = result.error.issues[0];
  const problem = issue ? withPath(issue.path, issueProblem(issue)) : "does not match its schema";
  return { ok: false, error: new StoredDocumentError(source, problem, code) };
}

/** A value read back, validated: throws StoredDocumentError naming `source` when it does not match. */
export function parseStored<S extends z.ZodType>(
  schema: S,
  value: unknown,
  source: string,
  code = STORED_DOCUMENT_INVALID,
): z.infer<S> {
  const checked = checkStored(schema, value, source, code);
  if (!checked.ok) throw checked.error;
  return checked.value;
}

/** A JSON document's text, parsed and validated. */
export function parseStoredJson<S extends z.ZodType>(schema: S, text: string, source: string): z.infer<S> {
  return parseStored(schema, parseJsonText(text, source), source);
}

/** An NDJSON document's text: every non-empty line parsed and validated (a bad one names its line). */
export function parseStoredLines<S extends z.ZodType>(schema: S, text: string, source: string): z.infer<S>[] {
  return storedLines(text, source).map(({ value, line }) =>
    parseStored(schema, value, `${source}: line ${line}`),
  );
}

/** The non-empty lines of an NDJSON document as JSON values, numbered from 1. */
export function storedLines(text: string, source: string): Array<{ value: unknown; line: number }> {
  const lines: Array<{ value: unknown; line: number }> = [];
  text.split("\n").forEach((line, index) => {
    if (line.trim() !== "")
      lines.push({ value: parseJsonText(line, `${source}: line ${index + 1}`), line: index + 1 });
  });
  return lines;
}

/**
 * The `schemaVersion` a reader accepts; another version says which one it was (a newer app's
 * document read by an older one, or one no migration covers).
 */
export function schemaVersion<const V extends number>(version: V) {
  return z.literal(version, {
    error: (issue) => `schema version ${String(issue.input)} is not one this app reads (${version})`,
  });
}

function parseJsonText(text: string, source: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new StoredDocumentError(source, `not valid JSON (${(error as Error).message})`);
  }
}

function withPath(path: PropertyKey[], problem: string): string {
  return path.length > 0 ? `${path.map(String).join(".")}: ${problem}` : problem;
}
