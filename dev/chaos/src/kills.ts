import pg from "pg";
import type { PlannedKill, Victim } from "./plan.js";
import type { ChaosShop } from "./shop.js";
import { sleep } from "@meshcart/lib";

/** What one kill did, for the report. */
export interface KillRecord extends PlannedKill {
  /** When it really happened, from the start of the load (later than planned when a restart ran long). */
  killedAtMs: number;
  pid: number;
  /** The exit the harness saw: SIGKILL, never a clean exit. */
  exit: string;
  /** Sagas not finished at the moment of the kill: the work at stake, whichever service died. */
  sagasInFlight: number;
  /** Order events committed and not yet published at the moment of the kill (the outbox's queue). */
  eventsInOutbox: number;
  /** From the start of the new process to its /readyz answering 200. */
  restartMs: number;
  newPid: number;
  /** From the kill until every saga in flight at that moment had finished; null: not within the bound. */
  sagasSettledMs: number | null;
}

/** The outbox relay's queue: committed order events not yet published (services/order/src/outbox-store.ts). */
export const OUTBOX = `SELECT count(*)::int AS n FROM order_events
  WHERE published_at IS NULL AND type IN ('ORDER_CONFIRMED', 'ORDER_CANCELLED', 'ORDER_REJECTED', 'ORDER_FAILED')`;

/** How long the harness follows the sagas a kill interrupted. */
const SETTLE_BOUND_MS = 120_000;

/**
 * Carries out a kill plan against a shop whose load started at `startedAt`
 * (performance.now()): kill -9 at each planned moment, leave the service
 * dead for its downtime, start it again and wait until it is ready. Kills
 * are one at a time: a kill due while the previous service is still
 * restarting waits for it, so each recovery is measured on its own.
 */
export async function runKills(
  shop: ChaosShop,
  plan: readonly PlannedKill[],
  startedAt: number,
  note: (message: string) => void,
  signal: AbortSignal,
): Promise<KillRecord[]> {
  const records: KillRecord[] = [];
  const settling: Promise<void>[] = [];
  for (const kill of plan) {
    const wait = startedAt + kill.atMs - performance.now();
    if (wait > 0) await sleep(wait, signal);
    if (signal.aborted) break;
    const pid = shop.process(kill.service).pid;
    const killedAt = performance.now();
    const status = await shop.kill9(kill.service);
    const [inFlight, eventsInOutbox] = await Promise.all([unfinishedSagas(shop.databaseUrl("order")), countRows(shop.databaseUrl("order"), OUTBOX)]);
    const killedAtMs = Math.round(killedAt - startedAt);
    note(
      `kill ${kill.index}/${plan.length}: kill -9 ${kill.service} (pid ${pid}) at ${(killedAtMs / 1000).toFixed(1)}s, ${inFlight.length} sagas in flight, ${eventsInOutbox} events in the outbox; down for ${kill.downMs} ms`,
    );
    await sleep(kill.downMs);
    const restartMs = Math.round(await shop.start(kill.service));
    const newPid = shop.process(kill.service).pid;
    note(`kill ${kill.index}/${plan.length}: ${kill.service} is back (pid ${newPid}), ready in ${restartMs} ms`);
    const record: KillRecord = {
      ...kill,
      killedAtMs,
      pid,
      exit: status.signal ?? `code ${status.code}`,
      sagasInFlight: inFlight.length,
      eventsInOutbox,
      restartMs,
      newPid,
      sagasSettledMs: null,
    };
    records.push(record);
    // Followed in the background: the next kill may come before they finish.
    settling.push(
      sagasFinished(shop.databaseUrl("order"), inFlight, killedAt).then((ms) => {
        record.sagasSettledMs = ms;
      }),
    );
  }
  await Promise.all(settling);
  return records;
}

/** The orders whose saga is not finished, read from the order database directly (the order service may be the one that is dead). */
async function unfinishedSagas(url: string): Promise<string[]> {
  return (await query<{ order_id: string }>(url, "SELECT order_id FROM saga_runs")).map((r) => r.order_id);
}

/** Milliseconds from `since` until none of `orderIds` has a saga run left; null after the bound. */
async function sagasFinished(url: string, orderIds: string[], since: number): Promise<number | null> {
  for (;;) {
    const left =
      orderIds.length === 0 ? 0 : (await query<{ n: number }>(url, "SELECT count(*)::int AS n FROM saga_runs WHERE order_id = ANY($1)", [orderIds]))[0]!.n;
    if (left === 0) return Math.round(performance.now() - since);
    if (performance.now() - since > SETTLE_BOUND_MS) return null;
    await sleep(250);
  }
}

export async function countRows(url: string, sql: string, values: unknown[] = []): Promise<number> {
  return (await query<{ n: number }>(url, sql, values))[0]?.n ?? 0;
}

async function query<R extends pg.QueryResultRow>(url: string, sql: string, values: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  client.on("error", () => undefined);
  await client.connect();
  try {
    return (await client.query<R>(sql, values)).rows;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Kills per service, for the summary. */
export function killsByService(records: readonly KillRecord[]): Record<Victim, number> {
  const counts: Record<Victim, number> = { order: 0, payment: 0, inventory: 0, fulfillment: 0, storefront: 0 };
  for (const record of records) counts[record.service] += 1;
  return counts;
}
