/** One benchmark section's outcome: raw measurements and the ratios the issues set targets for. */
export interface BenchRatio {
  name: string;
  value: number;
  /** The target the ratio should reach; `higherIsBetter` says which side passes. */
  target?: number;
  higherIsBetter?: boolean;
}

export interface BenchResult {
  name: string;
  metrics: Record<string, number | string>;
  ratios: BenchRatio[];
}

export type BenchSection = (options: { quick: boolean }) => Promise<BenchResult>;
