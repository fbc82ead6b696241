/** Small numeric helpers of the report: every figure is also given as a ratio to the baseline. */

export function median(values: readonly number[]): number {
  const finite = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (finite.length === 0) return Number.NaN;
  const middle = Math.floor(finite.length / 2);
  return finite.length % 2 ? finite[middle]! : (finite[middle - 1]! + finite[middle]!) / 2;
}

/** value / reference; NaN when either is missing or the reference is 0. */
export function ratio(value: number | undefined, reference: number | undefined): number {
  if (value === undefined || reference === undefined || !Number.isFinite(value) || !Number.isFinite(reference) || reference === 0) return Number.NaN;
  return value / reference;
}

/** Relative change from `before` to `after` (-0.05: 5 % less). */
export function change(after: number, before: number): number {
  return ratio(after, before) - 1;
}

export const MB = 1_000_000;
