import { checkInvariants, readSnapshot, type Report } from "@meshcart/stack/verify.js";
import { countRows } from "./kills.js";
import type { ChaosShop } from "./shop.js";
import { sleep } from "@meshcart/lib";

const UNFINISHED_ORDERS = "SELECT count(*)::int AS n FROM orders WHERE state NOT IN ('CONFIRMED', 'REJECTED', 'FAILED', 'CANCELLED')";
const SAGA_RUNS = "SELECT count(*)::int AS n FROM saga_runs";

export interface Settled {
  /** When: after the kills, or at the end of the run. */
  after: string;
  /** Until every order was final, no saga run was left and every order event had reached fulfillment; null: not within the bound. */
  settleMs: number | null;
  /** Orders not in a final state at the end. */
  unfinishedOrders: number;
  /** Saga runs left at the end (a final order may still have one while cancelling). */
  sagaRuns: number;
  /** Order events still on their way at the end (make verify's pending: in the outbox, or not yet applied). */
  eventsOnTheirWay: number;
  verify: Report;
}

/**
 * Waits until the shop has settled (every order final, no saga run left:
 * recovery has resumed whatever the kills interrupted; every order event
 * published and applied by fulfillment), then runs make verify's invariant
 * check on the four databases.
 */
export async function settleAndVerify(shop: ChaosShop, after: string, timeoutMs: number): Promise<Settled> {
  const url = shop.databaseUrl("order");
  const begun = performance.now();
  let unfinishedOrders: number;
  let sagaRuns: number;
  let verify: Report;
  for (;;) {
    [unfinishedOrders, sagaRuns] = await Promise.all([countRows(url, UNFINISHED_ORDERS), countRows(url, SAGA_RUNS)]);
    verify = await verifyShop(shop);
    if ((unfinishedOrders === 0 && sagaRuns === 0 && verify.pending.length === 0) || performance.now() - begun > timeoutMs) break;
    await sleep(250);
  }
  const settled = unfinishedOrders === 0 && sagaRuns === 0 && verify.pending.length === 0;
  return {
    after,
    settleMs: settled ? Math.round(performance.now() - begun) : null,
    unfinishedOrders,
    sagaRuns,
    eventsOnTheirWay: verify.pending.length,
    verify,
  };
}

/** make verify's check of the shop's four databases. */
export async function verifyShop(shop: ChaosShop): Promise<Report> {
  return checkInvariants(
    await readSnapshot({
      order: shop.databaseUrl("order"),
      payment: shop.databaseUrl("payment"),
      inventory: shop.databaseUrl("inventory"),
      fulfillment: shop.databaseUrl("fulfillment"),
    }),
  );
}

/** Waits until loadgen's run `runId` has placed an order: it is sending, past its start-up. */
export async function firstOrderOf(shop: ChaosShop, runId: string, timeoutMs: number): Promise<boolean> {
  const begun = performance.now();
  while (performance.now() - begun < timeoutMs) {
    // loadgen's request ids are lg.<run>.<n>, kept under the shopper's name behind the edge.
    if ((await countRows(shop.databaseUrl("order"), "SELECT count(*)::int AS n FROM orders WHERE request_id LIKE $1", [`%:lg.${runId}.%`])) > 0) return true;
    await sleep(100);
  }
  return false;
}
