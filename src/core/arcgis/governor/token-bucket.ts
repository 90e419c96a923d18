/** A token bucket's level at a moment; refilled lazily. Pure functions, time in ms. */
export interface Bucket {
  tokens: number;
  at: number;
}

/** The bucket at `now`: refilled at `ratePerMs`, never above `capacity` (a debt stays a debt). */
export function refill(bucket: Bucket, now: number, ratePerMs: number, capacity: number): Bucket {
  const elapsed = Math.max(0, now - bucket.at);
  return { tokens: Math.min(capacity, bucket.tokens + elapsed * ratePerMs), at: Math.max(now, bucket.at) };
}

/**
 * Milliseconds until a refilled bucket holds `need` tokens. A need above the capacity waits
 * for a full bucket (the request then runs into debt); Infinity when the rate is 0.
 */
export function msUntil(bucket: Bucket, need: number, ratePerMs: number, capacity: number): number {
  const target = Math.min(need, capacity);
  if (bucket.tokens >= target) return 0;
  if (ratePerMs <= 0) return Number.POSITIVE_INFINITY;
  return Math.ceil((target - bucket.tokens) / ratePerMs);
}
