import { hash32 } from "./prng.js";

export interface RequestUnitsState {
  usage: number;
  max: number;
  lockedUntil: number | null;
  lockouts: number;
  lockedMs: number;
}

/** How a throttled answer looks: HTTP 429 or an HTTP 200 error body, with or without Retry-After. */
export interface ThrottleStyle {
  http429: boolean;
  retryAfter: boolean;
}

/**
 * ArcGIS Online's per-org request-unit meter: a sliding window (60 s, as Online meters per minute;
 * shorter for fast tests) of spent units; a request
 * that would push usage past the budget starts a lockout during which every request of the org
 * is refused.
 */
export class RequestUnits {
  private events: { t: number; cost: number }[] = [];
  private head = 0;
  private sum = 0;
  private lockedUntilMs = 0;
  lockouts = 0;
  private lockedTotal = 0;
  private styleCounter = 0;

  constructor(
    readonly max: number,
    readonly coolOffMs: number,
    private readonly seed: number,
    readonly windowMs = 60_000,
  ) {}

  private trim(now: number): void {
    while (this.head < this.events.length && (this.events[this.head]?.t ?? 0) <= now - this.windowMs) {
      this.sum -= this.events[this.head]?.cost ?? 0;
      this.head++;
    }
    if (this.head > 1024 && this.head * 2 > this.events.length) {
      this.events = this.events.slice(this.head);
      this.head = 0;
    }
  }

  usage(now = Date.now()): number {
    this.trim(now);
    return Math.round(this.sum);
  }

  locked(now = Date.now()): boolean {
    return now < this.lockedUntilMs;
  }

  retryAfterSeconds(now = Date.now()): number {
    return Math.max(1, Math.ceil((this.lockedUntilMs - now) / 1000));
  }

  /** Spends `cost` units; false when the org is (now) locked out. */
  spend(cost: number, now = Date.now()): boolean {
    if (this.locked(now)) return false;
    this.trim(now);
    if (this.sum + cost > this.max) {
      this.lockedUntilMs = now + this.coolOffMs;
      this.lockouts++;
      this.lockedTotal += this.coolOffMs;
      return false;
    }
    this.events.push({ t: now, cost });
    this.sum += cost;
    return true;
  }

  nextStyle(): ThrottleStyle {
    const h = hash32(this.seed, this.styleCounter++, "throttle");
    return { http429: h % 2 === 0, retryAfter: (h >>> 1) % 3 !== 0 };
  }

  state(now = Date.now()): RequestUnitsState {
    const locked = this.locked(now);
    // lockedMs counts time actually spent locked (the current lockout up to now)
    const pending = locked ? this.lockedUntilMs - now : 0;
    return {
      usage: this.usage(now),
      max: this.max,
      lockedUntil: locked ? this.lockedUntilMs : null,
      lockouts: this.lockouts,
      lockedMs: this.lockedTotal - pending,
    };
  }
}

/** Units a feature-service request costs: metadata and counts are cheap, pages of geometry dear. */
export function requestCost(
  kind: "meta" | "count" | "ids" | "features" | "attachment" | "edit",
  records = 0,
  geometry = false,
): number {
  switch (kind) {
    case "meta":
      return 1;
    case "count":
      return 1;
    case "ids":
      return 1 + Math.floor(records / 10_000);
    case "attachment":
      return 2;
    case "edit":
      return 2 + Math.ceil(records / 50);
    case "features":
      return 1 + Math.ceil(records / 50) * (geometry ? 2 : 1);
  }
}
