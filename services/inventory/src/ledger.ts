/**
 * The stock ledger: the only place that decides how stock counters move.
 * Each move is a per-unit change of the counters (MOVES), and what a
 * reservation does when asked to commit, release or return is a table
 * (decide, decisionTable). The inventory's statements apply exactly these:
 * each call is one statement that locks what it changes and moves the
 * counters by these deltas, written into the statements' text from here, so
 * the rules live in one tested module; the database's CHECK constraints are
 * a second line of defence, not the first. The functions below apply the same moves in
 * memory, checked, for the tests and for reasoning about the ledger.
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

export const RESERVATION_STATES: readonly ReservationState[] = ["HELD", "COMMITTED", "RELEASED", "EXPIRED", "RETURNED"];

/** What one unit of a move does to the counters (inventory.proto's table). */
export interface Delta {
  onHand: number;
  reserved: number;
  sold: number;
  restocked: number;
}

export type Move = "reserve" | "commit" | "release" | "return" | "restock";

export const MOVES: Readonly<Record<Move, Readonly<Delta>>> = {
  // Units are held: what a new reservation can take shrinks.
  reserve: { onHand: 0, reserved: 1, sold: 0, restocked: 0 },
  // Held units leave the warehouse: a sale.
  commit: { onHand: -1, reserved: -1, sold: 1, restocked: 0 },
  // Held units are freed (release or expiry).
  release: { onHand: 0, reserved: -1, sold: 0, restocked: 0 },
  // Sold units come back to the shelf.
  return: { onHand: 1, reserved: 0, sold: -1, restocked: 0 },
  // A delivery adds units.
  restock: { onHand: 1, reserved: 0, sold: 0, restocked: 1 },
};

/** The move that goes with a reservation entering `to`. */
export function moveInto(to: ReservationState): Move {
  switch (to) {
    case "HELD":
      return "reserve";
    case "COMMITTED":
      return "commit";
    case "RELEASED":
    case "EXPIRED":
      return "release";
    case "RETURNED":
      return "return";
  }
}

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

function apply(move: Move, stock: StockCounters, quantity: number): StockCounters {
  positive(quantity);
  const d = MOVES[move];
  return checked(
    {
      ...stock,
      onHand: stock.onHand + d.onHand * quantity,
      reserved: stock.reserved + d.reserved * quantity,
      sold: stock.sold + d.sold * quantity,
      restocked: stock.restocked + d.restocked * quantity,
    },
    move,
  );
}

/**
 * Whether `quantity` more units can be held: the one rule of a new
 * reservation (the reserve statement checks it on the rows it locks).
 */
export function canReserve(stock: Pick<StockCounters, "onHand" | "reserved">, quantity: number): boolean {
  return quantity <= stock.onHand - stock.reserved;
}

/** Hold `quantity` units for a reservation. Refused when fewer are available. */
export function reserve(stock: StockCounters, quantity: number): StockCounters {
  positive(quantity);
  if (!canReserve(stock, quantity)) throw new LedgerError(`only ${available(stock)} available, ${quantity} asked`);
  return apply("reserve", stock, quantity);
}

/** Held units leave the warehouse: a sale. */
export function commit(stock: StockCounters, quantity: number): StockCounters {
  return apply("commit", stock, quantity);
}

/** Held units are freed (release or expiry). */
export function release(stock: StockCounters, quantity: number): StockCounters {
  return apply("release", stock, quantity);
}

/** Sold units come back to the shelf. */
export function returnSold(stock: StockCounters, quantity: number): StockCounters {
  return apply("return", stock, quantity);
}

/** A delivery adds units. */
export function restock(stock: StockCounters, quantity: number): StockCounters {
  return apply("restock", stock, quantity);
}

/** Every invariant the counters break; empty when the ledger holds. */
export function ledgerViolations(stock: StockCounters): string[] {
  const problems: string[] = [];
  for (const [name, value] of Object.entries(stock)) {
    if (!Number.isSafeInteger(value) || value < 0) problems.push(`${name} is ${value}`);
  }
  if (stock.initial + stock.restocked !== stock.onHand + stock.sold) {
    problems.push(`initial + restocked (${stock.initial + stock.restocked}) != on_hand + sold (${stock.onHand + stock.sold})`);
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
        reason: state === "COMMITTED" ? "reservation is committed: return its stock instead" : `reservation is ${state.toLowerCase()} and cannot be released`,
      };
    case "return":
      if (state === "COMMITTED") return { kind: "apply", to: "RETURNED" };
      if (state === "RETURNED") return { kind: "replay" };
      return { kind: "refuse", reason: `reservation is ${state.toLowerCase()}: only committed stock can be returned` };
  }
}

/** The ledger move that goes with a reservation reaching `to`. */
export function moveFor(to: ReservationState): (stock: StockCounters, quantity: number) => StockCounters {
  const functions: Record<Move, (stock: StockCounters, quantity: number) => StockCounters> = {
    reserve,
    commit,
    release,
    return: returnSold,
    restock,
  };
  return functions[moveInto(to)];
}

/** One row of an action's decision table: what the reservation does from `state`, and the counters' move when it changes. */
export interface DecisionRow {
  state: ReservationState;
  holdExpired: boolean;
  kind: Decision["kind"];
  /** The state it enters (apply, expire); the state it is in otherwise. */
  to: ReservationState;
  delta: Delta;
}

const NO_MOVE: Delta = { onHand: 0, reserved: 0, sold: 0, restocked: 0 };

/**
 * `decide` for every state a reservation can be in, as rows a statement can
 * join against: each action's transition statement carries its table.
 */
export function decisionTable(action: ReservationAction): DecisionRow[] {
  return RESERVATION_STATES.flatMap((state) =>
    [false, true].map((holdExpired): DecisionRow => {
      const decision = decide(state, action, holdExpired);
      const to = decision.kind === "apply" ? decision.to : decision.kind === "expire" ? "EXPIRED" : state;
      const changes = decision.kind === "apply" || decision.kind === "expire";
      return { state, holdExpired, kind: decision.kind, to, delta: changes ? MOVES[moveInto(to)] : NO_MOVE };
    }),
  );
}
