export {
  type AimdPolicy,
  type AimdSignal,
  type AimdState,
  aimdConcurrency,
  aimdStart,
  aimdUpdate,
  DEFAULT_AIMD_POLICY,
} from "./aimd.js";
export {
  type BudgetPolicy,
  type BudgetView,
  bucketShape,
  DEFAULT_BUDGET_POLICY,
  othersUsage,
  ourAllowance,
  penalize,
  penaltyAt,
} from "./allowance.js";
export { CostEstimator } from "./cost-estimator.js";
export {
  costKey,
  firstCostEstimate,
  isMeteredUrl,
  ORG_UNITS_HEADER,
  type OrgUnitsHeader,
  parseOrgUnits,
  parseQueryUnits,
  QUERY_UNITS_HEADER,
} from "./headers.js";
export {
  type CreateOrgGovernorOptions,
  createOrgGovernor,
  type GovernorSnapshot,
  type GovernorStats,
  type OrgGovernorOptions,
  OrgRateGovernor,
  sharedOrgGovernor,
  type TrackedPacer,
} from "./org-rate-governor.js";
export {
  applyObservation,
  emptyOrgState,
  type GovernorMode,
  type GovernorPolicy,
  governorPolicy,
  type LeaseInput,
  type LeaseOutcome,
  leaseRound,
  markAdaptive,
  type Observation,
  type OrgState,
  parseOrgState,
  type Refund,
  recordLockout,
  serializeOrgState,
} from "./org-state.js";
export {
  addSpend,
  adjustSpend,
  msUntilRoom,
  pruneSpend,
  type SpendSlots,
  slotOf,
  spendBetween,
} from "./spend-window.js";
export {
  GOVERNOR_TABLE,
  type GovernorStateStore,
  governorRowKey,
  MemoryGovernorStore,
  type StateChange,
  TableGovernorStore,
} from "./state-store.js";
export { type Bucket, msUntil, refill } from "./token-bucket.js";
