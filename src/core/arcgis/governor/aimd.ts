/**
 * Adaptive concurrency for services that report no request units (ArcGIS Enterprise, older
 * services): additive increase while responses stay fast, multiplicative decrease on 429/5xx or
 * a latency spike. Pure functions, time in ms.
 */
export interface AimdPolicy {
  /** The conservative start. */
  initial: number;
  min: number;
  max: number;
  /** Added per `limit` fast responses (i.e. about once per round trip of the whole window). */
  increase: number;
  /** Factor on 429 and 5xx. */
  errorFactor: number;
  /** Factor when latency exceeds the threshold. */
  latencyFactor: number;
  /** A response is slow past max(baseline × tolerance, baseline + slack). */
  latencyTolerance: number;
  latencySlackMs: number;
  /** Decreases closer together than this count as one congestion event. */
  cooldownMs: number;
}

export const DEFAULT_AIMD_POLICY: AimdPolicy = {
  initial: 2,
  min: 1,
  max: 16,
  increase: 1,
  errorFactor: 0.5,
  latencyFactor: 0.8,
  latencyTolerance: 2,
  latencySlackMs: 250,
  cooldownMs: 1_000,
};

export interface AimdState {
  /** Fractional; the usable concurrency is floor(limit). */
  limit: number;
  /** A low-water mark of latency that drifts up slowly; null before the first response. */
  baselineMs: number | null;
  lastDecreaseAt: number;
}

export function aimdStart(policy: AimdPolicy): AimdState {
  return {
    limit: clampLimit(policy.initial, policy),
    baselineMs: null,
    lastDecreaseAt: Number.NEGATIVE_INFINITY,
  };
}

export function aimdConcurrency(state: AimdState): number {
  return Math.max(1, Math.floor(state.limit));
}

export type AimdSignal = { kind: "ok"; latencyMs: number } | { kind: "error" } | { kind: "throttled" };

/** The state after one response. */
export function aimdUpdate(state: AimdState, signal: AimdSignal, now: number, policy: AimdPolicy): AimdState {
  if (signal.kind !== "ok") return decrease(state, policy.errorFactor, now, policy);
  const latency = Math.max(0, signal.latencyMs);
  const baseline =
    state.baselineMs === null || latency < state.baselineMs
      ? latency
      : state.baselineMs + (latency - state.baselineMs) * 0.02;
  const threshold = Math.max(baseline * policy.latencyTolerance, baseline + policy.latencySlackMs);
  if (state.baselineMs !== null && latency > threshold) {
    return { ...decrease(state, policy.latencyFactor, now, policy), baselineMs: baseline };
  }
  const limit = clampLimit(state.limit + policy.increase / Math.max(1, state.limit), policy);
  return { ...state, limit, baselineMs: baseline };
}

function decrease(state: AimdState, factor: number, now: number, policy: AimdPolicy): AimdState {
  if (now - state.lastDecreaseAt < policy.cooldownMs) return state;
  return { ...state, limit: clampLimit(state.limit * factor, policy), lastDecreaseAt: now };
}

function clampLimit(limit: number, policy: AimdPolicy): number {
  return Math.min(policy.max, Math.max(policy.min, limit));
}
