/** How figures read in the table and the chart. */

/** Calls per second: whole numbers, thousands set apart by a space ("5 832"). */
export function rate(value: number): string {
  if (!Number.isFinite(value)) return "n/a";
  return Math.round(value).toLocaleString("en-US").replaceAll(",", " ");
}

/** Milliseconds with about three significant digits. */
export function ms(value: number): string {
  if (!Number.isFinite(value)) return "n/a";
  if (value >= 100) return value.toFixed(0);
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

/** A ratio to the baseline: "0.21×", "37×". */
export function times(value: number): string {
  if (!Number.isFinite(value)) return "n/a";
  if (value >= 10) return `${value.toFixed(0)}×`;
  if (value >= 1) return `${value.toFixed(1)}×`;
  return `${value.toFixed(value >= 0.01 ? 2 : 3)}×`;
}

/** A fraction as a percentage: "21 %", "4.5 %", "-3.2 %". */
export function percent(value: number, signed = false): string {
  if (!Number.isFinite(value)) return "n/a";
  const p = value * 100;
  const digits = Math.abs(p) >= 10 ? 0 : 1;
  const sign = signed && p > 0 ? "+" : "";
  return `${sign}${p.toFixed(digits)} %`;
}

export function megabytes(value: number): string {
  if (!Number.isFinite(value)) return "n/a";
  return value >= 100 ? value.toFixed(0) : value.toFixed(1);
}
