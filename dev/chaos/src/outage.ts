import type { CallResult, Probe } from "./calls.js";
import { HealthChecker, type HealthStatus } from "./health.js";
import type { Victim } from "./plan.js";
import type { ChaosShop } from "./shop.js";
import { sleep } from "@meshcart/lib";

/** The services whose health follows their database. */
export const DATABASE_SERVICES = ["inventory", "payment", "order", "fulfillment"] as const satisfies readonly Victim[];
type DatabaseService = (typeof DATABASE_SERVICES)[number];

export interface OutageOptions {
  /** How long Postgres stays stopped. */
  outageMs: number;
  /** An immediate shutdown (as in a crash) instead of a fast one. */
  immediate: boolean;
  /** Deadline of every probe call: a call that hangs shows up as DEADLINE_EXCEEDED at this bound. */
  callDeadlineMs: number;
  /** Pause between rounds of probe calls. */
  probeIntervalMs: number;
  /** Longest the harness waits for a health change or for the first good answer after the outage. */
  settleTimeoutMs: number;
}

export interface OutageRecord {
  mode: "fast" | "immediate";
  /** From the moment Postgres had stopped to the moment it was asked to start again. */
  downMs: number;
  /** Until each service's grpc.health.v1 said NOT_SERVING, from Postgres having stopped; null: never seen. */
  notServingMs: Record<DatabaseService, number | null>;
  /** The storefront owns no database: its own health during the outage. */
  storefrontHealth: HealthStatus;
  callDeadlineMs: number;
  /** Every probe call made while Postgres was down. */
  calls: CallResult[];
  /** From Postgres answering again to each service saying SERVING; null: never within the bound. */
  servingAgainMs: Record<DatabaseService, number | null>;
  /** From Postgres answering again to each probe's first OK; null: never within the bound. */
  firstOkMs: Record<string, number | null>;
  /** Same process before and after, for every service: recovery without a restart. */
  restarted: Victim[];
}

/**
 * Postgres stops under the running shop for a few seconds, then starts
 * again. What should happen, and what is recorded: the services with a
 * database report NOT_SERVING (so Kubernetes and the mesh stop sending them
 * traffic), calls that need the database fail at once with UNAVAILABLE
 * rather than waiting for their deadline, and when Postgres is back every
 * service serves again by itself, without a restart.
 */
export async function runOutage(shop: ChaosShop, probes: readonly Probe[], options: OutageOptions, note: (message: string) => void): Promise<OutageRecord> {
  const victims: Victim[] = ["inventory", "payment", "order", "fulfillment", "storefront"];
  const pidsBefore = new Map(victims.map((name) => [name, shop.process(name).pid]));
  const checkers = new Map(victims.map((name) => [name, new HealthChecker(shop.address(name))]));
  try {
    note(`stopping Postgres (${options.immediate ? "immediate" : "fast"} shutdown) for ${options.outageMs} ms`);
    await shop.postgres.pause({ immediate: options.immediate });
    const stoppedAt = performance.now();
    const resumeAt = stoppedAt + options.outageMs;

    const notServing = Promise.all(DATABASE_SERVICES.map(async (name) => [name, await checkers.get(name)!.waitFor("NOT_SERVING", options.outageMs)] as const));
    const calls: CallResult[] = [];
    while (performance.now() < resumeAt) {
      calls.push(...(await Promise.all(probes.map((probe) => probe.run(options.callDeadlineMs)))));
      const left = resumeAt - performance.now();
      if (left > 0) await sleep(Math.min(options.probeIntervalMs, left));
    }
    const storefrontHealth = await checkers.get("storefront")!.check();
    const notServingMs = roundAll(Object.fromEntries(await notServing) as Record<DatabaseService, number | undefined>);
    note(`during the outage: NOT_SERVING after ${formatTimes(notServingMs)}; ${calls.length} calls, ${summariseCodes(calls)}`);

    await shop.postgres.resume();
    const resumedAt = performance.now();
    const downMs = Math.round(resumedAt - stoppedAt);
    const [servingAgain, firstOk] = await Promise.all([
      Promise.all(DATABASE_SERVICES.map(async (name) => [name, await checkers.get(name)!.waitFor("SERVING", options.settleTimeoutMs)] as const)),
      Promise.all(probes.map(async (probe) => [probe.name, await firstOkAfter(probe, options)] as const)),
    ]);
    const servingAgainMs = roundAll(Object.fromEntries(servingAgain) as Record<DatabaseService, number | undefined>);
    const firstOkMs = roundAll(Object.fromEntries(firstOk));
    const restarted = victims.filter((name) => !shop.isRunning(name) || shop.process(name).pid !== pidsBefore.get(name));
    note(`Postgres is back: SERVING again after ${formatTimes(servingAgainMs)}; first good answers after ${formatTimes(firstOkMs)}`);
    return {
      mode: options.immediate ? "immediate" : "fast",
      downMs,
      notServingMs,
      storefrontHealth,
      callDeadlineMs: options.callDeadlineMs,
      calls,
      servingAgainMs,
      firstOkMs,
      restarted,
    };
  } finally {
    for (const checker of checkers.values()) checker.close();
  }
}

async function firstOkAfter(probe: Probe, options: OutageOptions): Promise<number | undefined> {
  const begun = performance.now();
  while (performance.now() - begun < options.settleTimeoutMs) {
    if ((await probe.run(options.callDeadlineMs)).code === "OK") return performance.now() - begun;
    await sleep(options.probeIntervalMs);
  }
  return undefined;
}

function roundAll<K extends string>(values: Record<K, number | undefined>): Record<K, number | null> {
  return Object.fromEntries(Object.entries(values).map(([k, v]) => [k, v === undefined ? null : Math.round(v as number)])) as Record<K, number | null>;
}

function formatTimes(values: Record<string, number | null>): string {
  return Object.entries(values)
    .map(([name, ms]) => `${name} ${ms === null ? "never" : `${ms} ms`}`)
    .join(", ");
}

/** "UNAVAILABLE 40 (max 12 ms)": codes with their count and slowest call. */
export function summariseCodes(calls: readonly CallResult[]): string {
  const byCode = new Map<string, { count: number; maxMs: number }>();
  for (const call of calls) {
    const entry = byCode.get(call.code) ?? { count: 0, maxMs: 0 };
    entry.count += 1;
    entry.maxMs = Math.max(entry.maxMs, call.ms);
    byCode.set(call.code, entry);
  }
  return [...byCode].map(([code, e]) => `${code} ${e.count} (max ${e.maxMs} ms)`).join(", ") || "none";
}
