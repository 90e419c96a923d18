/** How much of the org's request-unit budget we allow ourselves. Pure functions, time in ms. */
export interface BudgetPolicy {
  /** Our usage stays under this share of the org budget (the identity's maxOrgBudgetShare). */
  share: number;
  /** The org's total (ours + everyone else's) is kept under this share of the budget. */
  headroom: number;
  /** Our allowance never drops below this share of the budget (so responses keep us informed). */
  floorShare: number;
  /** Part of the allowance that may go out as a burst; the rest is spread over the window. */
  burstFraction: number;
  /** The org meter's window (a minute on ArcGIS Online). */
  windowMs: number;
  /** After a lockout the penalty recovers to 1 linearly over this long. */
  penaltyRecoveryMs: number;
  /** Each new lockout multiplies the penalty by this. */
  penaltyFactor: number;
  /** The penalty never goes below this. */
  minPenalty: number;
}

export const DEFAULT_BUDGET_POLICY: BudgetPolicy = {
  share: 0.5,
  headroom: 0.85,
  floorShare: 0.02,
  burstFraction: 0.1,
  windowMs: 60_000,
  penaltyRecoveryMs: 300_000,
  penaltyFactor: 0.5,
  minPenalty: 0.1,
};

/** What is known of the org: its budget, everybody else's usage, our lockout penalty. */
export interface BudgetView {
  max: number;
  others: number;
  penalty: number;
}

/**
 * Units per window we may spend: our share of the budget, shrunk when others' traffic would
 * push the org total past the headroom, and by the penalty after a lockout; never below the floor.
 */
export function ourAllowance(view: BudgetView, policy: BudgetPolicy): number {
  const shareCap = policy.share * view.max;
  const headroomCap = policy.headroom * view.max - Math.max(0, view.others);
  const floor = Math.min(shareCap, policy.floorShare * view.max);
  return Math.max(floor, Math.min(shareCap, headroomCap) * clamp(view.penalty, 0, 1));
}

/**
 * A bucket that can never spend more than `allowance` in any window: capacity (burst) b·A plus
 * refill (1-b)·A per window.
 */
export function bucketShape(
  allowance: number,
  policy: BudgetPolicy,
): { ratePerMs: number; capacity: number } {
  const burst = clamp(policy.burstFraction, 0, 1);
  return { ratePerMs: ((1 - burst) * allowance) / policy.windowMs, capacity: burst * allowance };
}

/** Others' usage: the org's total the header reported less what we spent in that window. */
export function othersUsage(orgUsage: number, ours: number): number {
  return Math.max(0, orgUsage - ours);
}

/** The lockout penalty at `now`: `factor` set at `at`, recovering linearly to 1. */
export function penaltyAt(
  penalty: { factor: number; at: number },
  now: number,
  policy: Pick<BudgetPolicy, "penaltyRecoveryMs">,
): number {
  if (penalty.factor >= 1) return 1;
  const recovered = (Math.max(0, now - penalty.at) / policy.penaltyRecoveryMs) * (1 - penalty.factor);
  return Math.min(1, penalty.factor + Math.max(0, recovered));
}

/** The penalty after a new lockout at `now`. */
export function penalize(
  penalty: { factor: number; at: number },
  now: number,
  policy: Pick<BudgetPolicy, "penaltyRecoveryMs" | "penaltyFactor" | "minPenalty">,
): { factor: number; at: number } {
  const current = penaltyAt(penalty, now, policy);
  return { factor: Math.max(policy.minPenalty, current * policy.penaltyFactor), at: now };
}

function clamp(value: number, low: number, high: number): number {
  return Math.min(high, Math.max(low, value));
}
