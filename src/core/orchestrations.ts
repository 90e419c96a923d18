import { errorMessage } from "./errors.js";
import type { Logger } from "./log.js";

/** The orchestration engine, as the backup and restore use cases need it (Durable Functions in the app). */
export interface OrchestrationClient {
  start(orchestrator: string, instanceId: string, input: unknown): Promise<void>;
  /** Undefined when there is no such instance; throws when the engine could not be asked. */
  status(instanceId: string): Promise<OrchestrationState | undefined>;
}

export interface OrchestrationState {
  /** Pending, Running, Suspended, ContinuedAsNew, Completed, Failed, Terminated, Canceled. */
  runtimeStatus: string;
  customStatus: unknown;
  /** The result; for Failed the error, for Terminated the reason. */
  output: unknown;
}

/** What a record says when its orchestration ended without recording the run's outcome. */
export interface UnrecordedEnd {
  code: string;
  message: string;
}

/** A record younger than this may still be waiting for its orchestration to be created. */
export const START_GRACE_MS = 60_000;
const MAX_REASON_CHARS = 2_000;

/**
 * Why a run (or restore) whose record still says `running` has in fact ended, read from its
 * orchestration's state; undefined while the orchestration may still record the outcome itself.
 * Its final activity writes the record before the orchestration completes, so an orchestration
 * that is over while the record still runs failed, was terminated, or lost its outcome.
 */
export function unrecordedEnd(
  state: OrchestrationState | undefined,
  startedAt: string,
  now: Date,
): UnrecordedEnd | undefined {
  if (!state) {
    if (now.getTime() - Date.parse(startedAt) < START_GRACE_MS) return undefined;
    return {
      code: "ERR_ORCHESTRATION_MISSING",
      message: "Its orchestration does not exist: it never started, or its history was purged",
    };
  }
  const reason = reasonText(state.output);
  switch (state.runtimeStatus) {
    case "Failed":
      return { code: "ERR_ORCHESTRATION_FAILED", message: reason || "Its orchestration failed" };
    case "Terminated":
      return {
        code: "ERR_ORCHESTRATION_TERMINATED",
        message: `Its orchestration was terminated${reason ? `: ${reason}` : ""}`,
      };
    case "Completed":
    case "Canceled":
      return {
        code: "ERR_ORCHESTRATION_ENDED",
        message: "Its orchestration ended without recording the outcome",
      };
    default:
      return undefined;
  }
}

function reasonText(output: unknown): string {
  if (output === undefined || output === null) return "";
  const text = typeof output === "string" ? output : JSON.stringify(output);
  return text.length > MAX_REASON_CHARS ? `${text.slice(0, MAX_REASON_CHARS)}…` : text;
}

/**
 * A record's orchestration as it stands, and why the record must end if the orchestration is over
 * without having ended it; undefined when the engine did not answer (the record stays as it is, and
 * the next look asks again).
 */
export async function readOrchestration(
  orchestrations: OrchestrationClient,
  instanceId: string,
  startedAt: string,
  log: Logger,
): Promise<{ state: OrchestrationState | undefined; end: UnrecordedEnd | undefined } | undefined> {
  try {
    const state = await orchestrations.status(instanceId);
    return { state, end: unrecordedEnd(state, startedAt, new Date()) };
  } catch (error) {
    log.warn("Orchestration status not readable", { instanceId, reason: errorMessage(error) });
    return undefined;
  }
}
