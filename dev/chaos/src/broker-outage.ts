import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { countRows, OUTBOX } from "./kills.js";
import type { Victim } from "./plan.js";
import { verifyShop } from "./settle.js";
import type { ChaosShop } from "./shop.js";

export interface BrokerOutageOptions {
  /** How long NATS stays stopped. */
  outageMs: number;
  /** Longest the harness waits, once NATS is back, for the outbox to drain and fulfillment to catch up. */
  settleTimeoutMs: number;
}

export interface BrokerOutageRecord {
  /** From the moment NATS had stopped to the moment it was asked to start again. */
  downMs: number;
  /** Orders placed while NATS was down, by state once they were final (the checkouts did not wait for the broker). */
  ordersDuringOutage: Record<string, number>;
  /** The outbox's queue at its longest while NATS was down: the events waited in the order log. */
  outboxPeak: number;
  /** From NATS answering again until the outbox was empty and fulfillment had applied every event; null: not within the bound. */
  caughtUpMs: number | null;
  /** Same process before and after, for every service: recovery without a restart. */
  restarted: Victim[];
}

const ORDERS_SINCE = "SELECT state, count(*)::int AS n FROM orders WHERE created_at >= $1 AND created_at <= $2 GROUP BY state";
const FINAL = ["CONFIRMED", "REJECTED", "FAILED", "CANCELLED"];

/**
 * NATS stops under the running shop for a few seconds, then starts again.
 * What should happen, and what is recorded: checkouts go on (the saga
 * never waits for the broker; the order's events wait in its log, the
 * outbox), and once the broker is back the relay publishes the queue and
 * fulfillment applies it, without any service being restarted.
 */
export async function runBrokerOutage(shop: ChaosShop, options: BrokerOutageOptions, note: (message: string) => void): Promise<BrokerOutageRecord> {
  const victims: Victim[] = ["inventory", "payment", "order", "fulfillment", "storefront"];
  const pidsBefore = new Map(victims.map((name) => [name, shop.process(name).pid]));
  const orderDb = shop.databaseUrl("order");

  note(`stopping NATS for ${options.outageMs} ms`);
  await shop.nats.pause();
  const stoppedAt = performance.now();
  const from = new Date();
  let outboxPeak = 0;
  while (performance.now() - stoppedAt < options.outageMs) {
    outboxPeak = Math.max(outboxPeak, await countRows(orderDb, OUTBOX));
    await sleep(250);
  }
  const to = new Date();
  note(`NATS down for ${Math.round(performance.now() - stoppedAt)} ms; the outbox held up to ${outboxPeak} events`);
  await shop.nats.resume();
  const resumedAt = performance.now();
  const downMs = Math.round(resumedAt - stoppedAt);

  let caughtUpMs: number | null = null;
  while (performance.now() - resumedAt < options.settleTimeoutMs) {
    const [outbox, report] = await Promise.all([countRows(orderDb, OUTBOX), verifyShop(shop)]);
    if (outbox === 0 && report.pending.length === 0) {
      caughtUpMs = Math.round(performance.now() - resumedAt);
      break;
    }
    await sleep(250);
  }

  // The orders placed while it was down, once their sagas are done.
  let ordersDuringOutage: Record<string, number>;
  const settleBy = performance.now() + options.settleTimeoutMs;
  for (;;) {
    const rows = await rowsOf(orderDb, from, to);
    ordersDuringOutage = Object.fromEntries(rows.map((r) => [r.state, r.n]));
    if (rows.every((r) => FINAL.includes(r.state)) || performance.now() > settleBy) break;
    await sleep(250);
  }
  const restarted = victims.filter((name) => !shop.isRunning(name) || shop.process(name).pid !== pidsBefore.get(name));
  note(
    `NATS is back: ${caughtUpMs === null ? "NOT caught up" : `outbox drained and every event applied ${caughtUpMs} ms later`}; ` +
      `orders placed meanwhile: ${
        Object.entries(ordersDuringOutage)
          .map(([s, n]) => `${s} ${n}`)
          .join(", ") || "none"
      }`,
  );
  return { downMs, ordersDuringOutage, outboxPeak, caughtUpMs, restarted };
}

async function rowsOf(url: string, from: Date, to: Date): Promise<{ state: string; n: number }[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  client.on("error", () => undefined);
  await client.connect();
  try {
    return (await client.query<{ state: string; n: number }>(ORDERS_SINCE, [from, to])).rows;
  } finally {
    await client.end().catch(() => undefined);
  }
}
