/**
 * Learns what a request costs, per key (URL), to reserve budget before the response says.
 * The estimate is the running mean plus the mean deviation, so it errs on the high side; an
 * unknown key gets its first estimate (see firstCostEstimate), else the mean over all keys.
 */
export class CostEstimator {
  private readonly perKey = new Map<string, { mean: number; deviation: number }>();
  private overall: { mean: number; deviation: number } | undefined;

  constructor(
    private readonly initial = 2,
    private readonly alpha = 0.2,
    private readonly maxKeys = 500,
  ) {}

  /** Whether a request of this kind has been priced by the org yet. */
  known(key: string): boolean {
    return this.perKey.has(key);
  }

  estimate(key: string, first?: number): number {
    const entry = this.perKey.get(key) ?? (first === undefined ? this.overall : undefined);
    if (entry) return Math.max(1, Math.ceil(entry.mean + entry.deviation));
    return first === undefined ? this.initial : Math.max(1, Math.ceil(first));
  }

  observe(key: string, cost: number): void {
    if (!Number.isFinite(cost) || cost < 0) return;
    const current = this.perKey.get(key);
    if (current) this.perKey.delete(key);
    else if (this.perKey.size >= this.maxKeys) {
      const oldest = this.perKey.keys().next().value;
      if (oldest !== undefined) this.perKey.delete(oldest);
    }
    this.perKey.set(key, blend(current, cost, this.alpha));
    this.overall = blend(this.overall, cost, this.alpha);
  }
}

function blend(
  entry: { mean: number; deviation: number } | undefined,
  cost: number,
  alpha: number,
): { mean: number; deviation: number } {
  if (!entry) return { mean: cost, deviation: 0 };
  const mean = entry.mean + alpha * (cost - entry.mean);
  const deviation = entry.deviation + alpha * (Math.abs(cost - entry.mean) - entry.deviation);
  return { mean, deviation };
}
