import { parseDuration } from "@meshcart/lib";
/**
 * The load generator's vocabulary: scenarios and their mix, durations. Pure
 * parsing, shared by the environment (config.ts) and the command line
 * (cli.ts).
 */

/**
 * What one request of the load is. Orders go through the whole saga;
 * `out_of_stock` orders more of a scarce product than exists, `declined`
 * pays with a test card that declines, `invalid` sends a request the edge
 * must refuse (INVALID_ARGUMENT). Reads pick an order placed earlier in the
 * run; `track` follows one with a TrackOrder stream.
 */
export const SCENARIOS = ["order", "out_of_stock", "declined", "invalid", "get_order", "details", "browse", "track"] as const;
export type Scenario = (typeof SCENARIOS)[number];

export type Mix = Record<Scenario, number>;

/** A shop: mostly good orders and reads, some refusals, a little bad input, a few streams. */
export const DEFAULT_MIX: Mix = {
  order: 45,
  out_of_stock: 4,
  declined: 6,
  invalid: 2,
  get_order: 15,
  details: 8,
  browse: 17,
  track: 3,
};

export const DEFAULT_MIX_TEXT = formatMix(DEFAULT_MIX);

export function formatMix(mix: Mix): string {
  return SCENARIOS.map((s) => `${s}=${mix[s]}`).join(",");
}

/**
 * `order=50,declined=10`: relative weights (any non-negative numbers).
 * Scenarios not named keep their default weight; 0 turns one off.
 */
export function parseMix(text: string): { ok: true; mix: Mix } | { ok: false; problem: string } {
  const mix: Mix = { ...DEFAULT_MIX };
  for (const part of text
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean)) {
    const match = /^([a-z_]+)\s*=\s*(\d+(?:\.\d+)?)$/.exec(part);
    if (!match) return { ok: false, problem: `"${part}" is not scenario=weight (e.g. order=50,declined=10)` };
    const name = match[1] as Scenario;
    if (!SCENARIOS.includes(name)) return { ok: false, problem: `"${match[1]}" is not a scenario; use ${SCENARIOS.join(", ")}` };
    mix[name] = Number(match[2]);
  }
  if (SCENARIOS.every((s) => mix[s] === 0)) return { ok: false, problem: "every weight is 0: nothing to send" };
  return { ok: true, mix };
}

/**
 * How long to run: a duration (the kit's: `30s`, `5m`, `1h30m`, `500ms`,
 * `90` seconds), or `forever` (`inf`, `0`) for no end. Returns milliseconds,
 * undefined for forever, or a problem.
 */
export function parseRunDuration(text: string): { ok: true; ms: number | undefined } | { ok: false; problem: string } {
  const value = text.trim().toLowerCase();
  if (value === "forever" || value === "inf") return { ok: true, ms: undefined };
  const ms = parseDuration(value);
  if (ms === undefined) return { ok: false, problem: `"${text}" is not a duration such as 30s, 5m, 1h30m, 90 (seconds) or forever` };
  return { ok: true, ms: ms === 0 ? undefined : ms };
}
