import {
  type BudgetPolicy,
  bucketShape,
  DEFAULT_BUDGET_POLICY,
  othersUsage,
  ourAllowance,
  penalize,
  penaltyAt,
} from "./allowance.js";
import {
  addSpend,
  adjustSpend,
  msUntilRoom,
  pruneSpend,
  type SpendSlots,
  spendBetween,
} from "./spend-window.js";
import { msUntil, refill } from "./token-bucket.js";

/**
 * "unknown" until the first metered response; "headers" once a response carried the org's
 * request-unit header; "adaptive" when metered responses carry none (Enterprise, older services).
 */
export type GovernorMode = "unknown" | "headers" | "adaptive";

/** The state every instance of an org's governor shares (one table row). Times are epoch ms. */
export interface OrgState {
  v: 1;
  mode: GovernorMode;
  /** The org's budget per window, 0 while unknown. */
  max: number;
  /** Others' usage in the window, as of `observedAt`. */
  others: number;
  observedAt: number;
  /** Our token bucket. */
  tokens: number;
  tokensAt: number;
  /** Units we were granted (less what came back unused), by slot. */
  spend: SpendSlots;
  /** Every caller of the org waits until then (a lockout). */
  pausedUntil: number;
  lockouts: number;
  /** Lockout penalty on our allowance (1 = none), set at `penaltyAt`. */
  penalty: number;
  penaltyAt: number;
}

export interface GovernorPolicy extends BudgetPolicy {
  /** How long a granted slice of budget stays usable by the instance that leased it. */
  leaseMs: number;
  /** Resolution of the spend window. */
  slotMs: number;
  /** Budget may be reserved this far ahead of need (hides the round trip to the shared row). */
  reserveAheadMs: number;
}

/** Policy for a meter window; lease, slot and reservation scale with it (1 s, 1 s, 2 s for a minute). */
export function governorPolicy(overrides: Partial<GovernorPolicy> = {}): GovernorPolicy {
  const windowMs = overrides.windowMs ?? DEFAULT_BUDGET_POLICY.windowMs;
  return {
    ...DEFAULT_BUDGET_POLICY,
    leaseMs: Math.max(10, Math.min(1_000, Math.round(windowMs / 20))),
    slotMs: Math.max(5, Math.round(windowMs / 60)),
    reserveAheadMs: 2 * Math.max(10, Math.min(1_000, Math.round(windowMs / 20))),
    penaltyRecoveryMs: windowMs * 5,
    ...overrides,
    windowMs,
  };
}

export function emptyOrgState(): OrgState {
  return {
    v: 1,
    mode: "unknown",
    max: 0,
    others: 0,
    observedAt: 0,
    tokens: Number.POSITIVE_INFINITY,
    tokensAt: 0,
    spend: [],
    pausedUntil: 0,
    lockouts: 0,
    penalty: 1,
    penaltyAt: 0,
  };
}

/** One response's reading of the org meter. */
export interface Observation {
  at: number;
  usage: number;
  max: number;
}

/** Takes a newer reading: the budget, and others' usage (the org's less our spend in that window). */
export function applyObservation(
  state: OrgState,
  observation: Observation,
  policy: GovernorPolicy,
): OrgState {
  if (observation.at <= state.observedAt) return state;
  const ours = spendBetween(state.spend, policy.slotMs, observation.at - policy.windowMs, observation.at);
  return {
    ...state,
    mode: "headers",
    max: observation.max,
    others: othersUsage(observation.usage, ours),
    observedAt: observation.at,
  };
}

/** Units booked by a lease granted at `from` that went unused (negative: overdrawn). */
export interface Refund {
  from: number;
  units: number;
}

export interface LeaseInput {
  now: number;
  /** Units the first waiting request needs. */
  need: number;
  /** Units the instance would like (everything it has waiting). */
  want: number;
  /** What is left of the previous lease (negative when overdrawn) and when it was granted. */
  returned: number;
  returnedFrom: number;
  /** Parts of earlier leases whose requests' answers cost less (negative: more) than booked. */
  refunds?: readonly Refund[];
  /** Units spent without a lease (before the header was known), charged now. */
  unleased?: number;
  /** How long metered requests take lately, at most: the server counts a unit when it answers. */
  lagMs?: number;
  observation?: Observation | undefined;
}

export interface LeaseOutcome {
  /** Units granted (0: wait `waitMs` and ask again), usable from `readyAt` for a lease. */
  grant: number;
  waitMs: number;
  readyAt: number;
  /** Our allowance per window at this moment. */
  allowance: number;
  /** Whether the state changed in a way worth writing. */
  dirty: boolean;
}

/**
 * One lease round on the shared state: take back the previous lease's leftover, take in a
 * newer meter reading, then grant a slice of budget if both the bucket (pace) and the window
 * (hard cap: our spend in any window stays under the allowance) have room for the head request.
 */
export function leaseRound(
  state: OrgState,
  input: LeaseInput,
  policy: GovernorPolicy,
): { state: OrgState; outcome: LeaseOutcome } {
  const { now } = input;
  // The server counts a grant when the request gets there and is answered, up to a lease plus
  // the requests' latency later: our window spans that much more (the latency at most a tenth).
  const lag = Math.min(Math.max(0, input.lagMs ?? 0), policy.windowMs / 10);
  const span = policy.windowMs + policy.leaseMs + lag;
  let next: OrgState = {
    ...state,
    spend: pruneSpend(state.spend, policy.slotMs, now - 2 * policy.windowMs - 2 * policy.leaseMs),
  };
  let dirty = false;
  for (const { from, units } of [
    { from: input.returnedFrom, units: input.returned },
    ...(input.refunds ?? []),
  ]) {
    if (units === 0) continue;
    next.tokens += units;
    next.spend = adjustSpend(next.spend, policy.slotMs, from, -units);
    dirty = true;
  }
  if (input.unleased) {
    next.tokens -= input.unleased;
    next.spend = addSpend(next.spend, policy.slotMs, now, input.unleased);
    dirty = true;
  }
  if (input.observation) {
    const observed = applyObservation(next, input.observation, policy);
    dirty ||= observed !== next;
    next = observed;
  }
  if (next.max <= 0)
    return { state: next, outcome: { grant: 0, waitMs: policy.leaseMs, readyAt: now, allowance: 0, dirty } };
  const penalty = penaltyAt({ factor: next.penalty, at: next.penaltyAt }, now, policy);
  const allowance = ourAllowance({ max: next.max, others: next.others, penalty }, policy);
  if (now < next.pausedUntil) {
    return {
      state: next,
      outcome: { grant: 0, waitMs: next.pausedUntil - now, readyAt: now, allowance, dirty },
    };
  }
  const { ratePerMs, capacity } = bucketShape(allowance, policy);
  const need = Math.max(0, input.need);
  // When will the bucket (pace) and the window (cap) both have room for the head request?
  // A reservation may already run ahead of now (tokensAt in the future).
  const start = Math.max(now, next.tokensAt);
  const bucket = refill({ tokens: next.tokens, at: next.tokensAt }, start, ratePerMs, capacity);
  let at = start + msUntil(bucket, need, ratePerMs, capacity);
  if (Number.isFinite(at))
    at += msUntilRoom(next.spend, policy.slotMs, span, at, allowance, Math.min(need, allowance));
  // Grant up to a little ahead (the caller waits locally until readyAt), so the round trip to
  // the shared row does not stall the pace; further ahead, come back later.
  const ahead = at - now;
  if (!Number.isFinite(ahead) || ahead > policy.reserveAheadMs) {
    const waitMs = Number.isFinite(ahead) ? Math.max(1, ahead - policy.reserveAheadMs) : policy.leaseMs;
    return { state: next, outcome: { grant: 0, waitMs, readyAt: now, allowance, dirty } };
  }
  const ready = refill(bucket, at, ratePerMs, capacity);
  const room = allowance - spendBetween(next.spend, policy.slotMs, at - span, Number.POSITIVE_INFINITY);
  const slice = Math.max(ratePerMs * policy.leaseMs, capacity / 4);
  const grant = Math.max(need, Math.min(Math.max(need, input.want), slice, ready.tokens, room));
  next = {
    ...next,
    tokens: ready.tokens - grant,
    tokensAt: ready.at,
    spend: addSpend(next.spend, policy.slotMs, at, grant),
  };
  return { state: next, outcome: { grant, waitMs: 0, readyAt: at, allowance, dirty: true } };
}

/** A lockout seen at `now` pausing the org until `until`; a new lockout costs a penalty and the bucket. */
export function recordLockout(state: OrgState, now: number, until: number, policy: GovernorPolicy): OrgState {
  const isNew = now >= state.pausedUntil;
  if (!isNew && until <= state.pausedUntil) return state;
  if (!isNew) return { ...state, pausedUntil: until };
  const penalty = penalize({ factor: state.penalty, at: state.penaltyAt }, now, policy);
  return {
    ...state,
    pausedUntil: Math.max(state.pausedUntil, until),
    lockouts: state.lockouts + 1,
    penalty: penalty.factor,
    penaltyAt: penalty.at,
    // Restart slowly: no burst saved up during the pause.
    tokens: Math.min(0, Number.isFinite(state.tokens) ? state.tokens : 0),
    tokensAt: until,
  };
}

/** Records that metered responses of this org carry no request-unit header. */
export function markAdaptive(state: OrgState): OrgState {
  return state.mode === "unknown" ? { ...state, mode: "adaptive" } : state;
}

/** Parses a stored state; anything unreadable starts over. */
export function parseOrgState(text: string | undefined): OrgState {
  if (!text) return emptyOrgState();
  try {
    const parsed = JSON.parse(text) as Partial<OrgState> & { tokens?: number | null };
    if (parsed.v !== 1) return emptyOrgState();
    const base = emptyOrgState();
    return {
      ...base,
      ...parsed,
      // JSON has no Infinity: a fresh bucket is stored as null.
      tokens: typeof parsed.tokens === "number" ? parsed.tokens : base.tokens,
      spend: Array.isArray(parsed.spend) ? parsed.spend : [],
    } as OrgState;
  } catch {
    return emptyOrgState();
  }
}

export function serializeOrgState(state: OrgState): string {
  return JSON.stringify({ ...state, tokens: Number.isFinite(state.tokens) ? state.tokens : null });
}
