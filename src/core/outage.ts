import { z } from "zod";
import { errorMessage } from "./errors.js";

/**
 * How a run waits out an outage (the portal or storage unreachable past the retries of their
 * clients): the batch that met it stops and asks to run again after `pauseMs`; the orchestration
 * waits on a durable timer and runs it again, for at most `maxOutageMs` of one outage.
 */
export interface OutageSettings {
  pauseMs: number;
  maxOutageMs: number;
}

export const DEFAULT_OUTAGE_SETTINGS: OutageSettings = { pauseMs: 60_000, maxOutageMs: 30 * 60_000 };

/** The code of items failed because an outage outlasted `maxOutageMs`. */
export const OUTAGE_ERROR_CODE = "ERR_OUTAGE";

/** What a paused batch tells its orchestration (through the history: plain data). */
export const outagePauseSchema = z.object({
  /** What the batch met last, for the items' error should the outage outlast the maximum. */
  reason: z.string(),
  pauseMs: z.number().nonnegative(),
  maxOutageMs: z.number().nonnegative(),
});
export type OutagePause = z.infer<typeof outagePauseSchema>;

export function outagePause(error: unknown, settings: OutageSettings): OutagePause {
  return { reason: errorMessage(error), ...settings };
}

/** The error message of items whose outage outlasted the maximum. */
export function outageReason(pause: OutagePause): string {
  const minutes = Math.round(pause.maxOutageMs / 6_000) / 10;
  return `The portal or the storage stayed unreachable for ${minutes} min (the most a run waits out): ${pause.reason}`;
}
