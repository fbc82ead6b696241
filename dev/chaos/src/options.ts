import { parseDuration } from "@meshcart/lib";
import { VICTIMS, type Victim } from "./plan.js";

/** What `make chaos` can be told (flags, or CHAOS_* variables), already checked. */
export interface ChaosCommand {
  seed: number | undefined;
  durationMs: number;
  kills: number;
  services: Victim[];
  rps: number;
  outageMs: number;
  outageMode: "fast" | "immediate";
  brokerOutageMs: number;
  outDir: string | undefined;
}

/** Each option, its variable, and its default when neither is given. */
export const CHAOS_OPTIONS = {
  seed: { variable: "CHAOS_SEED", default: "random, printed" },
  duration: { variable: "CHAOS_DURATION", default: "60s" },
  kills: { variable: "CHAOS_KILLS", default: "8" },
  services: { variable: "CHAOS_SERVICES", default: VICTIMS.join(",") },
  rps: { variable: "CHAOS_RPS", default: "10" },
  outage: { variable: "CHAOS_OUTAGE", default: "5s" },
  "outage-mode": { variable: "CHAOS_OUTAGE_MODE", default: "fast" },
  "broker-outage": { variable: "CHAOS_BROKER_OUTAGE", default: "5s" },
  out: { variable: "CHAOS_OUT", default: ".data/chaos/<time>-seed<seed>" },
} as const;

export type OptionName = keyof typeof CHAOS_OPTIONS;

/**
 * Reads the options: a flag wins over its variable; an empty value (make
 * passes unset variables as "") means "not given". Returns every problem at
 * once rather than the first.
 */
export function parseChaosOptions(
  given: Partial<Record<OptionName, string | undefined>>,
  env: NodeJS.ProcessEnv,
): { ok: true; command: ChaosCommand } | { ok: false; problems: string[] } {
  const problems: string[] = [];
  const value = (name: OptionName): string | undefined => {
    const text = (given[name] ?? "").trim() || (env[CHAOS_OPTIONS[name].variable] ?? "").trim();
    return text === "" ? undefined : text;
  };
  const label = (name: OptionName) => `--${name} (${CHAOS_OPTIONS[name].variable})`;
  const integer = (name: OptionName, fallback: number, min: number, max: number): number => {
    const text = value(name);
    if (text === undefined) return fallback;
    const number = Number(text);
    if (!/^\d+$/.test(text) || number < min || number > max) problems.push(`${label(name)}: "${text}" is not an integer from ${min} to ${max}`);
    return number;
  };
  const duration = (name: OptionName, fallback: number, min: number, max: number): number => {
    const text = value(name);
    if (text === undefined) return fallback;
    const ms = parseDuration(text);
    if (ms === undefined) problems.push(`${label(name)}: "${text}" is not a duration such as 500ms, 30s or 2m`);
    else if (ms !== 0 && (ms < min || ms > max)) problems.push(`${label(name)}: ${text} is outside ${min / 1000}s..${max / 1000}s`);
    return ms ?? fallback;
  };

  const seedText = value("seed");
  const seed = seedText === undefined ? undefined : integer("seed", 0, 0, 0xffff_ffff);
  const durationMs = duration("duration", 60_000, 10_000, 30 * 60_000);
  if (durationMs === 0) problems.push(`${label("duration")}: must be more than 0`);
  const kills = integer("kills", 8, 0, 200);
  const rps = integer("rps", 10, 1, 200);
  const outageMs = duration("outage", 5_000, 1_000, 5 * 60_000);
  const brokerOutageMs = duration("broker-outage", 5_000, 1_000, 5 * 60_000);

  const servicesText = value("services");
  const services =
    servicesText === undefined
      ? [...VICTIMS]
      : servicesText
          .split(",")
          .map((s) => s.trim())
          .filter(Boolean);
  const unknown = services.filter((s) => !VICTIMS.includes(s as Victim));
  if (unknown.length > 0 || services.length === 0) problems.push(`${label("services")}: use some of ${VICTIMS.join(", ")}, not "${servicesText}"`);

  const mode = value("outage-mode") ?? "fast";
  if (mode !== "fast" && mode !== "immediate") problems.push(`${label("outage-mode")}: fast or immediate, not "${mode}"`);

  if (problems.length > 0) return { ok: false, problems };
  return {
    ok: true,
    command: {
      seed,
      durationMs,
      kills,
      services: [...new Set(services as Victim[])],
      rps,
      outageMs,
      outageMode: mode as "fast" | "immediate",
      brokerOutageMs,
      outDir: value("out"),
    },
  };
}
