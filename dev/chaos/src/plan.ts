import type { Random } from "./random.js";

/** The services the harness may kill: every process of the shop. */
export const VICTIMS = ["order", "payment", "inventory", "fulfillment", "storefront"] as const;
export type Victim = (typeof VICTIMS)[number];

export interface PlannedKill {
  /** 1-based, in the order the kills happen. */
  index: number;
  service: Victim;
  /** When to kill, from the start of the load. */
  atMs: number;
  /** How long the service stays dead before it is started again. */
  downMs: number;
}

export interface KillPlanOptions {
  services: readonly Victim[];
  count: number;
  /** Kills fall in [fromMs, toMs) of the load. */
  fromMs: number;
  toMs: number;
  /** Bounds of each downtime, both included. */
  minDownMs: number;
  maxDownMs: number;
}

/**
 * Which service dies when, from the seed alone. Services are taken round by
 * round, each round in a new random order, so with at least as many kills as
 * services every service dies at least once. The window is cut into one
 * slot per kill and each kill lands at a random moment of its slot: spread
 * over the whole load rather than bunched, yet not at predictable points of
 * any saga.
 */
export function planKills(random: Random, options: KillPlanOptions): PlannedKill[] {
  const { services, count, fromMs, toMs, minDownMs, maxDownMs } = options;
  if (count === 0) return [];
  if (services.length === 0) throw new Error("no service to kill");
  if (!(toMs > fromMs) || fromMs < 0) throw new Error(`the kill window ${fromMs}..${toMs} ms is empty`);
  if (minDownMs < 0 || maxDownMs < minDownMs) throw new Error(`downtime bounds ${minDownMs}..${maxDownMs} ms are wrong`);

  const order: Victim[] = [];
  while (order.length < count) order.push(...random.shuffle(services));
  const slot = (toMs - fromMs) / count;
  return order.slice(0, count).map((service, i) => ({
    index: i + 1,
    service,
    atMs: Math.round(fromMs + slot * i + random.next() * slot),
    downMs: random.between(minDownMs, maxDownMs),
  }));
}
