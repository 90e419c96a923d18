import { z } from "zod";

/** Days a deleted item's last backup is kept when a policy does not say (prune will use it). */
export const DEFAULT_KEEP_DELETED_DAYS = 365;

/** A count or a number of days: 0 turns the rule off; the maxima are about a century of each. */
const keep = (max: number) => z.number().int().min(0).max(max);

const policyFields = {
  keepLast: keep(10_000).optional(),
  keepDaily: keep(36_500).optional(),
  keepWeekly: keep(5_200).optional(),
  keepMonthly: keep(1_200).optional(),
  keepYearly: keep(100).optional(),
  keepWithinDays: keep(36_500).optional(),
  keepDeletedDays: keep(36_500).default(DEFAULT_KEEP_DELETED_DAYS),
};

/** The rules that keep runs; keepDeletedDays is about items, not runs. */
export const RUN_RULES = [
  "keepLast",
  "keepDaily",
  "keepWeekly",
  "keepMonthly",
  "keepYearly",
  "keepWithinDays",
] as const;

type RunRules = Partial<Record<(typeof RUN_RULES)[number], number | undefined>>;

/**
 * An identity's retention policy, restic's `forget` rules: a run is kept when any rule keeps it.
 * A policy that keeps no run at all is refused: once prune exists it would delete every backup.
 */
export const retentionPolicySchema = z
  .strictObject(policyFields)
  .refine((policy: RunRules) => RUN_RULES.some((rule) => (policy[rule] ?? 0) > 0), {
    message: `keeps no run: give one of ${RUN_RULES.join(", ")} above 0 (or, in a PATCH, null to keep every run)`,
  });

export type RetentionPolicy = z.infer<typeof retentionPolicySchema>;
