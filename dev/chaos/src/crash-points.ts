import { setTimeout as sleep } from "node:timers/promises";
import { countRows, OUTBOX } from "./kills.js";
import type { Victim } from "./plan.js";
import { verifyShop } from "./settle.js";
import type { ChaosShop } from "./shop.js";

/**
 * The moments of the event path where a crash is most likely to lose an
 * event or apply it twice. The random kills rarely land on them (the relay
 * publishes within milliseconds of a commit), so the harness arms the
 * services' own crash hooks, which SIGKILL the process at exactly that
 * point (services/order/src/outbox-relay.ts, services/fulfillment/src/event-consumer.ts).
 */
export const EVENT_CRASH_POINTS = [
  {
    service: "order",
    variable: "ORDER_OUTBOX_CRASH_POINT",
    point: "before:publish",
    what: "order between an event's commit and its publication",
  },
  {
    service: "order",
    variable: "ORDER_OUTBOX_CRASH_POINT",
    point: "after:publish",
    what: "order between the broker's acknowledgement and the mark (the event is published again)",
  },
  {
    service: "fulfillment",
    variable: "FULFILLMENT_CRASH_POINT",
    point: "after:apply",
    what: "fulfillment mid-handling, between its commit and its acknowledgement (the event is delivered again)",
  },
] as const satisfies readonly { service: Victim; variable: string; point: string; what: string }[];

/** Longest wait for an armed process to reach its point (the load brings it an event within seconds). */
export const CRASH_TIMEOUT_MS = 30_000;
/** The phase's bound before its final catch-up: per point, the wait for the crash and two starts (a busy machine). */
export const EVENT_CRASH_BOUND_MS = EVENT_CRASH_POINTS.length * (CRASH_TIMEOUT_MS + 2 * 30_000);

export interface CrashPointRecord {
  service: Victim;
  point: string;
  what: string;
  /** How the armed process ended: SIGKILL when the hook fired, "none" when it did not within the bound (the harness then killed it). */
  exit: string;
  /** From the armed process being ready to its death. */
  crashedAfterMs: number | null;
  /** Events committed and not yet marked published when it died (≥ 1 for order's points: the one it was publishing). */
  eventsInOutbox: number;
  /** The plain restart after the crash, ready in. */
  restartMs: number;
}

export interface CrashPointsRecord {
  points: CrashPointRecord[];
  /** From the last restart until the outbox was empty and fulfillment had applied every event; null: not within the bound. */
  caughtUpMs: number | null;
}

export interface CrashPointsOptions {
  /** Longest wait for an armed process to reach its crash point (the load must bring it an event). */
  crashTimeoutMs: number;
  /** Longest wait, after the last restart, for every event to be published and applied. */
  settleTimeoutMs: number;
}

/**
 * Under the running load, for each crash point: the service is killed,
 * started again with its hook armed, dies there by its own SIGKILL, and is
 * started once more without it. Then every event must reach fulfillment,
 * and (checked by make verify's rules at the end of the run) none twice.
 */
export async function runCrashPoints(shop: ChaosShop, options: CrashPointsOptions, note: (message: string) => void): Promise<CrashPointsRecord> {
  const orderDb = shop.databaseUrl("order");
  const points: CrashPointRecord[] = [];
  for (const { service, variable, point, what } of EVENT_CRASH_POINTS) {
    await shop.kill9(service);
    await shop.arm(service, { [variable]: point });
    const armedAt = performance.now();
    note(`crash point: ${service} armed with ${variable}=${point}`);
    const exit = await shop.exitOf(service, options.crashTimeoutMs);
    const crashedAfterMs = exit ? Math.round(performance.now() - armedAt) : null;
    const eventsInOutbox = await countRows(orderDb, OUTBOX);
    if (!exit) await shop.kill9(service);
    const restartMs = Math.round(await shop.start(service));
    const record = { service, point, what, exit: exit ? (exit.signal ?? `code ${exit.code}`) : "none", crashedAfterMs, eventsInOutbox, restartMs };
    points.push(record);
    note(
      exit
        ? `crash point: ${service} killed itself at ${point} after ${crashedAfterMs} ms (${record.exit}), ${eventsInOutbox} events in the outbox; back in ${restartMs} ms`
        : `crash point: ${service} did NOT reach ${point} within ${options.crashTimeoutMs} ms; killed and restarted`,
    );
  }

  const since = performance.now();
  let caughtUpMs: number | null = null;
  while (performance.now() - since < options.settleTimeoutMs) {
    const [outbox, report] = await Promise.all([countRows(orderDb, OUTBOX), verifyShop(shop)]);
    if (outbox === 0 && report.pending.length === 0) {
      caughtUpMs = Math.round(performance.now() - since);
      break;
    }
    await sleep(250);
  }
  note(`crash points: ${caughtUpMs === null ? "events NOT caught up" : `every event published and applied ${caughtUpMs} ms after the last restart`}`);
  return { points, caughtUpMs };
}
