/**
 * The stock ledger: the only place that decides how stock counters move.
 * Every write of the inventory service computes new counters here from rows
 * it holds locked, so the rules live in one tested module and the database's
 * CHECK constraints are a second line of defence, not the first.
 *
 * Invariants (hold before and after every move):
 *   initial + restocked = on_hand + sold
 *   0 <= reserved <= on_hand
 */

export interface StockCounters {
  initial: number;
  restocked: number;
  /** Units physically present, reserved ones included. */
  onHand: number;
  /** Units held by live reservations. */
  reserved: number;
  /** Units sold (committed) less units returned. */
  sold: number;
}

export type ReservationState = "HELD" | "COMMITTED" | "RELEASED" | "EXPIRED" | "RETURNED";

export function available(stock: StockCounters): number {
  return stock.onHand - stock.reserved;
}

export class LedgerError extends Error {
  override name = "LedgerError";
}

function checked(stock: StockCounters, move: string): StockCounters {
  const problems = ledgerViolations(stock);
  if (problems.length > 0) throw new LedgerError(`${move} would break the ledger: ${problems.join(", ")}`);
  return stock;
}

function positive(quantity: number): void {
  if (!Number.isSafeInteger(quantity) || quantity <= 0) throw new LedgerError(`quantity ${quantity} is not a positive whole number`);
}

/** Hold `quantity` units for a reservation. Refused when fewer are available. */
export function reserve(stock: StockCounters, quantity: number): StockCounters {
  positive(quantity);
  if (quantity > available(stock)) throw new LedgerError(`only ${available(stock)} available, ${quantity} asked`);
  return checked({ ...stock, reserved: stock.reserved + quantity }, "reserve");
}

/** Held units leave the warehouse: a sale. */
export function commit(stock: StockCounters, quantity: number): StockCounters {
  positive(quantity);
  return checked(
    { ...stock, onHand: stock.onHand - quantity, reserved: stock.reserved - quantity, sold: stock.sold + quantity },
    "commit",
  );
}

/** Held units are freed (release or expiry). */
export function release(stock: StockCounters, quantity: number): StockCounters {
  positive(quantity);
  return checked({ ...stock, reserved: stock.reserved - quantity }, "release");
}

/** Sold units come back to the shelf. */
export function returnSold(stock: StockCounters, quantity: number): StockCounters {
  positive(quantity);
  return checked({ ...stock, onHand: stock.onHand + quantity, sold: stock.sold - quantity }, "return");
}

/** A delivery adds units. */
export function restock(stock: StockCounters, quantity: number): StockCounters {
  positive(quantity);
  return checked({ ...stock, onHand: stock.onHand + quantity, restocked: stock.restocked + quantity }, "restock");
}

/** Every invariant the counters break; empty when the ledger holds. */
export function ledgerViolations(stock: StockCounters): string[] {
  const problems: string[] = [];
  for (const [name, value] of Object.entries(stock)) {
    if (!Number.isSafeInteger(value) || value < 0) problems.push(`${name} is ${value}`);
  }
  if (stock.initial + stock.restocked !== stock.onHand + stock.sold) {
    problems.push(
      `initial + restocked (${stock.initial + stock.restocked}) != on_hand + sold (${stock.onHand + stock.sold})`,
    );
  }
  if (stock.reserved > stock.onHand) problems.push(`reserved (${stock.reserved}) > on_hand (${stock.onHand})`);
  return problems;
}

export type ReservationAction = "commit" | "release" | "return";

/**
 * What a reservation in `state` does when asked to `action`:
 * - apply: move the ledger and change state;
 * - replay: the action already happened; answer with the reservation as is;
 * - expire: the hold ran out; free the units (state EXPIRED), then refuse;
 * - refuse: the action cannot happen from this state.
 */
export type Decision = { kind: "apply"; to: ReservationState } | { kind: "replay" } | { kind: "expire" } | { kind: "refuse"; reason: string };

export function decide(state: ReservationState, action: ReservationAction, holdExpired: boolean): Decision {
  switch (action) {
    case "commit":
      if (state === "HELD") return holdExpired ? { kind: "expire" } : { kind: "apply", to: "COMMITTED" };
      if (state === "COMMITTED") return { kind: "replay" };
      return { kind: "refuse", reason: `reservation is ${state.toLowerCase()} and can no longer be committed` };
    case "release":
      // Releasing after the deadline but before the sweeper ran frees the
      // units just the same; the caller asked for the units to go.
      if (state === "HELD") return { kind: "apply", to: "RELEASED" };
      if (state === "RELEASED" || state === "EXPIRED") return { kind: "replay" };
      return {
        kind: "refuse",
        reason:
          state === "COMMITTED"
            ? "reservation is committed: return its stock instead"
            : `reservation is ${state.toLowerCase()} and cannot be released`,
      };
    case "return":
      if (state === "COMMITTED") return { kind: "apply", to: "RETURNED" };
      if (state === "RETURNED") return { kind: "replay" };
      return { kind: "refuse", reason: `reservation is ${state.toLowerCase()}: only committed stock can be returned` };
  }
}

/** The ledger move that goes with a reservation reaching `to`. */
export function moveFor(to: ReservationState): (stock: StockCounters, quantity: number) => StockCounters {
  switch (to) {
    case "COMMITTED":
      return commit;
    case "RELEASED":
    case "EXPIRED":
      return release;
    case "RETURNED":
      return returnSold;
    case "HELD":
      return reserve;
  }
}
