import type { z } from "zod";
import { ValidationError } from "./errors.js";

/**
 * Parses input with a schema; the first problem becomes a 400 that names the field
 * (`auth.password`, `storage.container`), unknown fields included.
 */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown, prefix = ""): z.infer<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  if (!issue) throw new ValidationError("Invalid input");
  const path = [prefix, ...issue.path.map(String)].filter(Boolean);
  if (issue.code === "unrecognized_keys") {
    const field = [...path, issue.keys[0]].join(".");
    throw new ValidationError(`${field} is not a known field`, field);
  }
  const field = path.join(".");
  if (!field) throw new ValidationError(`Invalid request body: ${issue.message}`);
  if (issue.code === "invalid_type" && issue.input === undefined) {
    throw new ValidationError(`${field} is required`, field);
  }
  if (issue.code === "invalid_union" && path.at(-1) !== "type") {
    throw new ValidationError(`${field}: ${issue.message}`, field);
  }
  throw new ValidationError(`${field}: ${issue.message}`, field);
}
