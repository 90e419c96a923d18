export interface RetryDelayInput {
  /** 1 for the first retry. */
  attempt: number;
  baseDelayMs: number;
  maxDelayMs: number;
  /** Server-given wait (Retry-After); honoured even past maxDelayMs, within the hard ceiling. */
  retryAfterMs?: number;
  /** 0..1 random source, injectable for tests. */
  random?: () => number;
}

/** Never wait longer than this for one retry, whatever a server asks. */
export const RETRY_AFTER_CEILING_MS = 5 * 60_000;

/**
 * Exponential backoff with full jitter: anywhere from 0 to base × 2^(attempt−1), capped at
 * maxDelayMs, so the retries of many callers hit by one outage spread over the whole window
 * instead of arriving together. A Retry-After wins when given. Pure.
 */
export function calculateRetryDelay(input: RetryDelayInput): number {
  if (input.retryAfterMs !== undefined && input.retryAfterMs >= 0) {
    return Math.min(input.retryAfterMs, RETRY_AFTER_CEILING_MS);
  }
  const random = input.random ?? Math.random;
  return Math.floor(random() * backoffCeiling(input));
}

/** The most one retry may wait without a Retry-After: what its full jitter draws below. */
export function backoffCeiling(
  input: Pick<RetryDelayInput, "attempt" | "baseDelayMs" | "maxDelayMs">,
): number {
  return Math.min(input.maxDelayMs, input.baseDelayMs * 2 ** (input.attempt - 1));
}

/** Parses Retry-After (seconds or an HTTP date) into milliseconds. */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}
