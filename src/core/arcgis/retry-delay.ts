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

/** Exponential backoff with full jitter; a Retry-After wins when given. Pure. */
export function calculateRetryDelay(input: RetryDelayInput): number {
  if (input.retryAfterMs !== undefined && input.retryAfterMs >= 0) {
    return Math.min(input.retryAfterMs, RETRY_AFTER_CEILING_MS);
  }
  const random = input.random ?? Math.random;
  const exponential = Math.min(input.maxDelayMs, input.baseDelayMs * 2 ** (input.attempt - 1));
  // Half fixed, half jitter: retries of parallel activities spread out but never collapse to 0.
  return Math.round(exponential / 2 + (random() * exponential) / 2);
}

/** Parses Retry-After (seconds or an HTTP date) into milliseconds. */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}
