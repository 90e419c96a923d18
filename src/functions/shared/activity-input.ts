import * as df from "durable-functions";
import type { z } from "zod";
import { ORCHESTRATION_INPUT_INVALID, parseStored } from "../../core/stored-document.js";

/**
 * An orchestration's or activity's input, validated: the Durable history may hold input written by
 * another version of the app. A mismatch throws ERR_ORCHESTRATION_INPUT_INVALID naming the
 * function and the first field that is wrong.
 */
export function parseOrchestrationInput<S extends z.ZodType>(
  schema: S,
  input: unknown,
  name: string,
): z.infer<S> {
  return parseStored(schema, input, `${name}: invalid input`, ORCHESTRATION_INPUT_INVALID);
}

/** Registers an activity whose handler gets its input validated by `schema` first. */
export function validatedActivity<S extends z.ZodType>(
  name: string,
  schema: S,
  handler: (input: z.infer<S>) => Promise<unknown>,
): void {
  df.app.activity(name, {
    handler: (input: unknown) => handler(parseOrchestrationInput(schema, input, name)),
  });
}
