import { errorRate, type LoadResult } from "./ghz.js";

export interface SaturationPlan {
  /** Closed-loop concurrency levels, ascending. */
  levels: readonly number[];
  /** A level counts as progress when it beats the best so far by this fraction. */
  minGain: number;
  /** Levels in a row without progress after which the search stops. */
  patience: number;
  /** A level with more failed calls than this fraction is past saturation. */
  maxErrorRate: number;
}

export const defaultSaturationPlan = (levels: readonly number[]): SaturationPlan => ({
  levels,
  minGain: 0.05,
  // Two: one noisy step on a shared machine must not end the search early.
  patience: 2,
  maxErrorRate: 0.01,
});

export interface Saturation {
  /** The level with the most successful calls per second. */
  best: LoadResult;
  /** Every level tried, in order. */
  steps: LoadResult[];
  /** Why the search stopped. */
  stoppedBecause: "plateau" | "errors" | "last level";
}

/**
 * Throughput at saturation: closed-loop load at growing concurrency until
 * more concurrency stops buying more throughput (only queueing), or calls
 * start failing. The best level is the saturation point.
 */
export async function findSaturation(plan: SaturationPlan, measure: (concurrency: number) => Promise<LoadResult>): Promise<Saturation> {
  const steps: LoadResult[] = [];
  let best: LoadResult | undefined;
  let stale = 0;
  for (const concurrency of plan.levels) {
    const step = await measure(concurrency);
    steps.push(step);
    if (errorRate(step) > plan.maxErrorRate) {
      if (!best) throw new Error(`${(errorRate(step) * 100).toFixed(1)} % of calls failed at concurrency ${concurrency}: ${JSON.stringify(step.errors)}`);
      return { best, steps, stoppedBecause: "errors" };
    }
    if (!best || step.okRps > best.okRps * (1 + plan.minGain)) {
      best = step;
      stale = 0;
    } else {
      // Within the noise of the best: still a candidate, so the reported
      // point is the highest throughput measured, not the first one.
      if (step.okRps > best.okRps) best = step;
      stale += 1;
      if (stale >= plan.patience) return { best, steps, stoppedBecause: "plateau" };
    }
  }
  if (!best) throw new Error("no concurrency levels to try");
  return { best, steps, stoppedBecause: "last level" };
}
