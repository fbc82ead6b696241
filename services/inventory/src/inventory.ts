import { createHash } from "node:crypto";
import { ConflictError, NotFoundError, RefusedError, statement, type Database } from "@meshcart/lib";
import * as ledger from "./ledger.js";
import type { ReservationAction, ReservationState, StockCounters } from "./ledger.js";

export interface Product {
  sku: string;
  name: string;
  description: string;
  currencyCode: string;
  unitPriceMinor: number;
  stock: StockCounters;
}

export interface ReservationLine {
  sku: string;
  quantity: number;
  unitPriceMinor: number;
}

export interface Reservation {
  reservationId: string;
  state: ReservationState;
  lines: ReservationLine[];
  currencyCode: string;
  totalMinor: number;
  createdAt: Date;
  expiresAt: Date;
  updatedAt: Date;
}

export interface ItemQuantity {
  sku: string;
  quantity: number;
}

/** The totals a caller can accept (in minor units); a reservation outside them is refused before anything is held. */
export interface TotalBounds {
  minMinor?: number;
  maxMinor?: number;
}

/** A SKU's stock as the metrics endpoint shows it. */
export interface StockLevel {
  sku: string;
  available: number;
  reserved: number;
}

export interface NewProduct {
  sku: string;
  name: string;
  description: string;
  currencyCode: string;
  unitPriceMinor: number;
  initialStock: number;
}

interface ProductRow {
  sku: string;
  name: string;
  description: string;
  currency_code: string;
  unit_price_minor: number;
  initial: number;
  restocked: number;
  on_hand: number;
  reserved: number;
  sold: number;
}

/** A reservation as the statements return it: the row with its lines as JSON. */
interface ReservationRow {
  reservation_id: string;
  state: ReservationState;
  request_digest: string;
  currency_code: string;
  total_minor: number;
  created_at: Date;
  expires_at: Date;
  updated_at: Date;
  lines: { sku: string; quantity: number; unitPriceMinor: number }[];
}

const PRODUCT_COLUMNS = "sku, name, description, currency_code, unit_price_minor, initial, restocked, on_hand, reserved, sold";

/** A reservation's columns with its lines, in request order (`r` is the reservations row). */
const RESERVATION_JSON = `r.reservation_id, r.state, r.request_digest, r.currency_code, r.total_minor, r.created_at, r.expires_at, r.updated_at,
  (SELECT coalesce(json_agg(json_build_object('sku', l.sku, 'quantity', l.quantity, 'unitPriceMinor', l.unit_price_minor) ORDER BY l.line_no), '[]')
   FROM reservation_lines l WHERE l.reservation_id = r.reservation_id) AS lines`;

// Every call below is one statement: it locks what it changes (the
// reservation first, then its products in SKU order, so that concurrent
// calls never deadlock), decides, and moves the counters in one round trip.
// The ledger's rules (ledger.ts: the moves' deltas, the decision tables)
// are written into the statements' text from there, so they are defined
// once and Postgres plans them as constants.

/** A move's deltas as SQL: the counters' new values, `q` the quantity expression. */
function moved(move: ledger.Move, q: string, p = "p"): string {
  const d = ledger.MOVES[move];
  const term = (column: string, delta: number) => `${column} = ${p}.${column} + (${delta}) * ${q}`;
  return [term("on_hand", d.onHand), term("reserved", d.reserved), term("sold", d.sold), term("restocked", d.restocked)].join(", ");
}

/** An action's decision table (ledger.decisionTable) as a VALUES list. */
function decisionValues(action: ReservationAction): string {
  const word = (value: string) => {
    if (!/^[A-Za-z_]+$/.test(value)) throw new Error(`${value} cannot be written into a statement`);
    return `'${value}'`;
  };
  return ledger
    .decisionTable(action)
    .map((r) => `(${word(r.state)}, ${r.holdExpired}, ${word(r.kind)}, ${word(r.to)}, ${r.delta.onHand}, ${r.delta.reserved}, ${r.delta.sold})`)
    .join(",\n       ");
}

const LIST_PRODUCTS = statement(
  "inventory.list-products",
  `SELECT ${PRODUCT_COLUMNS} FROM products WHERE ($1::text IS NULL OR sku > $1) ORDER BY sku LIMIT $2`,
);

const GET_PRODUCT = statement("inventory.get-product", `SELECT ${PRODUCT_COLUMNS} FROM products WHERE sku = $1`);

const GET_RESERVATION = statement("inventory.get-reservation", `SELECT ${RESERVATION_JSON} FROM reservations r WHERE r.reservation_id = $1`);

/**
 * Holds every line or none. When the reservation exists already it is
 * returned as it is (a replay) and nothing is locked. Otherwise the
 * products are locked in SKU order, checked (found, enough available, one
 * currency, the total within the caller's bounds), and only when all hold
 * are the reservation, its lines and the counters written.
 * $1 id, $2 SKUs, $3 quantities (request order), $4 digest, $5 TTL ms,
 * $6/$7 total bounds (NULL: none).
 */
const RESERVE = statement(
  "inventory.reserve",
  `WITH request AS (
     SELECT sku, quantity, line_no - 1 AS line_no FROM unnest($2::text[], $3::bigint[]) WITH ORDINALITY AS i(sku, quantity, line_no)
   ),
   existing AS MATERIALIZED (SELECT ${RESERVATION_JSON} FROM reservations r WHERE r.reservation_id = $1),
   stock AS MATERIALIZED (
     SELECT p.sku, p.currency_code, p.unit_price_minor, p.on_hand, p.reserved FROM products p
     WHERE p.sku = ANY($2::text[]) AND NOT EXISTS (SELECT 1 FROM existing)
     ORDER BY p.sku FOR UPDATE OF p
   ),
   priced AS MATERIALIZED (
     -- "enough" is ledger.canReserve on the locked row.
     SELECT q.sku, q.quantity, q.line_no, s.sku IS NOT NULL AS found, s.on_hand - s.reserved AS available,
            coalesce(q.quantity <= s.on_hand - s.reserved, false) AS enough, s.currency_code, s.unit_price_minor
     FROM request q LEFT JOIN stock s USING (sku)
   ),
   verdict AS MATERIALIZED (
     SELECT bool_and(found) AS all_found, bool_and(enough) AS all_enough,
            count(DISTINCT currency_code) = 1 AS one_currency, min(currency_code) AS currency_code,
            coalesce(sum(quantity * unit_price_minor), 0)::bigint AS total
     FROM priced
   ),
   created AS (
     INSERT INTO reservations (reservation_id, state, request_digest, currency_code, total_minor, expires_at)
     SELECT $1, 'HELD', $4, v.currency_code, v.total, now() + make_interval(secs => $5::double precision / 1000)
     FROM verdict v
     WHERE NOT EXISTS (SELECT 1 FROM existing) AND v.all_found AND v.all_enough AND v.one_currency
       AND ($6::bigint IS NULL OR v.total >= $6) AND ($7::bigint IS NULL OR v.total <= $7)
     ON CONFLICT (reservation_id) DO NOTHING
     RETURNING reservation_id, state, request_digest, currency_code, total_minor, created_at, expires_at, updated_at
   ),
   lines AS (
     INSERT INTO reservation_lines (reservation_id, line_no, sku, quantity, unit_price_minor)
     SELECT c.reservation_id, p.line_no, p.sku, p.quantity, p.unit_price_minor FROM created c, priced p
   ),
   held AS (
     UPDATE products p SET ${moved("reserve", "q.quantity")}, updated_at = now()
     FROM (SELECT sku, sum(quantity) AS quantity FROM request GROUP BY sku) q, created c
     WHERE p.sku = q.sku
   )
   SELECT
     (SELECT row_to_json(e) FROM existing e) AS existing,
     (SELECT row_to_json(c) FROM created c) AS created,
     (SELECT json_agg(json_build_object('sku', p.sku, 'quantity', p.quantity, 'found', p.found, 'enough', p.enough, 'available', p.available,
                                        'currencyCode', p.currency_code, 'unitPriceMinor', p.unit_price_minor) ORDER BY p.line_no)
      FROM priced p) AS lines,
     (SELECT row_to_json(v) FROM verdict v) AS verdict`,
);

/**
 * Commit, release or return: the reservation is locked, the action's
 * decision table says what happens from its state, and when it changes, its
 * products are locked in SKU order and moved by the decision's deltas.
 * $1 id.
 */
function transitionStatement(action: ReservationAction) {
  return statement(
    `inventory.${action}`,
    `WITH rules (state, hold_expired, kind, to_state, d_on_hand, d_reserved, d_sold) AS (
       VALUES ${decisionValues(action)}
     ),
     current AS MATERIALIZED (
       SELECT r.*, r.expires_at <= now() AS hold_expired FROM reservations r WHERE r.reservation_id = $1 FOR UPDATE
     ),
     decision AS MATERIALIZED (
       SELECT c.reservation_id, c.state AS from_state, c.hold_expired, t.kind, t.to_state, t.d_on_hand, t.d_reserved, t.d_sold
       FROM current c JOIN rules t ON t.state = c.state AND t.hold_expired = c.hold_expired
     ),
     moving AS MATERIALIZED (
       SELECT l.sku, sum(l.quantity) AS quantity FROM reservation_lines l
       WHERE l.reservation_id = $1 AND EXISTS (SELECT 1 FROM decision WHERE kind IN ('apply', 'expire'))
       GROUP BY l.sku
     ),
     locked AS MATERIALIZED (
       SELECT p.sku FROM products p WHERE p.sku IN (SELECT sku FROM moving) ORDER BY p.sku FOR UPDATE OF p
     ),
     moved AS (
       UPDATE products p
       SET on_hand = p.on_hand + d.d_on_hand * m.quantity, reserved = p.reserved + d.d_reserved * m.quantity,
           sold = p.sold + d.d_sold * m.quantity, updated_at = now()
       FROM moving m JOIN locked k USING (sku), decision d
       WHERE p.sku = m.sku
     ),
     changed AS (
       UPDATE reservations r SET state = d.to_state, updated_at = now()
       FROM decision d WHERE r.reservation_id = d.reservation_id AND d.kind IN ('apply', 'expire')
       RETURNING r.state, r.updated_at
     )
     SELECT d.from_state, d.hold_expired, c.reservation_id, coalesce(ch.state, c.state) AS state, c.request_digest, c.currency_code,
            c.total_minor, c.created_at, c.expires_at, coalesce(ch.updated_at, c.updated_at) AS updated_at,
            (SELECT coalesce(json_agg(json_build_object('sku', l.sku, 'quantity', l.quantity, 'unitPriceMinor', l.unit_price_minor) ORDER BY l.line_no), '[]')
             FROM reservation_lines l WHERE l.reservation_id = $1) AS lines
     FROM decision d JOIN current c USING (reservation_id) LEFT JOIN changed ch ON true`,
  );
}

const TRANSITIONS: Record<ReservationAction, ReturnType<typeof transitionStatement>> = {
  commit: transitionStatement("commit"),
  release: transitionStatement("release"),
  return: transitionStatement("return"),
};

/**
 * Frees holds whose deadline passed, at most $1, and says when the next
 * live hold runs out. Safe on every replica at once: SKIP LOCKED hands each
 * reservation to one of them.
 */
const EXPIRE_DUE = statement(
  "inventory.expire-due",
  `WITH due AS MATERIALIZED (
     SELECT reservation_id FROM reservations WHERE state = 'HELD' AND expires_at <= now()
     ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED
   ),
   moving AS MATERIALIZED (
     SELECT l.sku, sum(l.quantity) AS quantity FROM reservation_lines l WHERE l.reservation_id IN (SELECT reservation_id FROM due) GROUP BY l.sku
   ),
   locked AS MATERIALIZED (
     SELECT p.sku FROM products p WHERE p.sku IN (SELECT sku FROM moving) ORDER BY p.sku FOR UPDATE OF p
   ),
   moved AS (
     UPDATE products p SET ${moved("release", "m.quantity")}, updated_at = now()
     FROM moving m JOIN locked k USING (sku)
     WHERE p.sku = m.sku
   ),
   expired AS (
     UPDATE reservations r SET state = 'EXPIRED', updated_at = now() FROM due WHERE r.reservation_id = due.reservation_id RETURNING 1
   )
   SELECT (SELECT count(*) FROM expired)::int AS expired,
          (SELECT min(expires_at) FROM reservations WHERE state = 'HELD' AND reservation_id NOT IN (SELECT reservation_id FROM due)) AS next_expiry`,
);

/**
 * A delivery, counted once per restock id: the restock row and the
 * counters in one statement. $1 id, $2 SKU, $3 quantity.
 */
const RESTOCK = statement(
  "inventory.restock",
  `WITH recorded AS (
     INSERT INTO restocks (restock_id, sku, quantity)
     SELECT $1, sku, $3 FROM products WHERE sku = $2
     ON CONFLICT (restock_id) DO NOTHING
     RETURNING sku, quantity
   ),
   delivered AS (
     UPDATE products p SET ${moved("restock", "r.quantity")}, updated_at = now()
     FROM recorded r WHERE p.sku = r.sku
     RETURNING p.sku, p.name, p.description, p.currency_code, p.unit_price_minor, p.initial, p.restocked, p.on_hand, p.reserved, p.sold
   )
   SELECT 'delivered' AS outcome, NULL::text AS previous_sku, NULL::bigint AS previous_quantity, d.* FROM delivered d
   UNION ALL
   SELECT 'earlier', s.sku, s.quantity, p.sku, p.name, p.description, p.currency_code, p.unit_price_minor, p.initial, p.restocked, p.on_hand, p.reserved, p.sold
   FROM restocks s JOIN products p ON p.sku = s.sku
   WHERE s.restock_id = $1 AND NOT EXISTS (SELECT 1 FROM recorded)`,
);

const STOCK_LEVELS = statement("inventory.stock-levels", "SELECT sku, on_hand - reserved AS available, reserved FROM products ORDER BY sku");

const SEED = statement(
  "inventory.seed",
  `INSERT INTO products (sku, name, description, currency_code, unit_price_minor, initial, on_hand)
   VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (sku) DO NOTHING`,
);

interface PricedLine {
  sku: string;
  quantity: number;
  found: boolean;
  enough: boolean;
  available: number | null;
  currencyCode: string | null;
  unitPriceMinor: number | null;
}

/**
 * The catalogue and the stock ledger. Every method is one statement (a
 * replay that lost a race against its first attempt reads once more).
 */
export class Inventory {
  /** Told of every hold made here, with its deadline (the expiry sweeper wakes for it). */
  onHold: (expiresAt: Date) => void = () => undefined;

  constructor(private readonly db: Database) {}

  async listProducts(limit: number, afterSku?: string): Promise<{ products: Product[]; lastSku?: string; more: boolean }> {
    const { rows } = await this.db.query<ProductRow>(LIST_PRODUCTS, [afterSku ?? null, limit + 1]);
    const page = rows.slice(0, limit).map(toProduct);
    return { products: page, lastSku: page.at(-1)?.sku, more: rows.length > limit };
  }

  async getProduct(sku: string): Promise<Product> {
    const { rows } = await this.db.query<ProductRow>(GET_PRODUCT, [sku]);
    if (!rows[0]) throw new NotFoundError("product", sku);
    return toProduct(rows[0]);
  }

  /**
   * Holds every line or none. A replay with the same id and items returns
   * the first reservation, whatever state it has reached since. `bounds`:
   * the totals the caller can accept; outside them nothing is held
   * (FAILED_PRECONDITION, type TOTAL).
   */
  async reserve(reservationId: string, items: ItemQuantity[], ttlMs: number, bounds: TotalBounds = {}): Promise<Reservation> {
    const digest = itemsDigest(items);
    const { rows } = await this.db.query<{
      existing: ReservationRow | null;
      created: Omit<ReservationRow, "lines"> | null;
      lines: PricedLine[];
      verdict: { all_found: boolean; all_enough: boolean; one_currency: boolean; currency_code: string | null; total: number };
    }>(RESERVE, [reservationId, items.map((i) => i.sku), items.map((i) => i.quantity), digest, ttlMs, bounds.minMinor ?? null, bounds.maxMinor ?? null]);
    const result = rows[0]!;
    if (result.existing) return replayed(reservationId, result.existing, digest);
    if (result.created) {
      const reservation = toReservation({
        ...result.created,
        lines: result.lines.map((l) => ({ sku: l.sku, quantity: l.quantity, unitPriceMinor: l.unitPriceMinor! })),
      });
      this.onHold(reservation.expiresAt);
      return reservation;
    }
    refuseReservation(result.lines, result.verdict, bounds);
    // Every check passed and nothing was written: a racing attempt with the same id created it first.
    const { rows: raced } = await this.db.query<ReservationRow>(GET_RESERVATION, [reservationId]);
    if (!raced[0]) throw new Error(`reservation ${reservationId} was neither created nor found`);
    return replayed(reservationId, raced[0], digest);
  }

  async getReservation(reservationId: string): Promise<Reservation> {
    const { rows } = await this.db.query<ReservationRow>(GET_RESERVATION, [reservationId]);
    if (!rows[0]) throw new NotFoundError("reservation", reservationId);
    return toReservation(rows[0]);
  }

  commit(reservationId: string): Promise<Reservation> {
    return this.transition(reservationId, "commit");
  }

  release(reservationId: string): Promise<Reservation> {
    return this.transition(reservationId, "release");
  }

  returnStock(reservationId: string): Promise<Reservation> {
    return this.transition(reservationId, "return");
  }

  private async transition(reservationId: string, action: ReservationAction): Promise<Reservation> {
    const { rows } = await this.db.query<ReservationRow & { from_state: ReservationState; hold_expired: boolean }>(TRANSITIONS[action], [reservationId]);
    const row = rows[0];
    if (!row) throw new NotFoundError("reservation", reservationId);
    // The statement applied this same decision; here it says how to answer.
    const decision = ledger.decide(row.from_state, action, row.hold_expired);
    switch (decision.kind) {
      case "replay":
      case "apply":
        return toReservation(row);
      case "refuse":
        throw new RefusedError(decision.reason, [{ type: "RESERVATION_STATE", subject: reservationId, description: decision.reason }]);
      case "expire": {
        // The expiry is committed even though the call is refused: the
        // units go back whoever notices the deadline first.
        const refusal = "reservation expired before it was committed";
        throw new RefusedError(refusal, [{ type: "RESERVATION_EXPIRED", subject: reservationId, description: refusal }]);
      }
    }
  }

  async restock(restockId: string, sku: string, quantity: number): Promise<Product> {
    const query = () =>
      this.db.query<ProductRow & { outcome: "delivered" | "earlier"; previous_sku: string | null; previous_quantity: number | null }>(RESTOCK, [
        restockId,
        sku,
        quantity,
      ]);
    let { rows } = await query();
    // A racing delivery with the same id won: read it now that it is committed.
    if (rows.length === 0) ({ rows } = await query());
    const row = rows[0];
    if (!row) throw new NotFoundError("product", sku);
    if (row.outcome === "earlier" && (row.previous_sku !== sku || row.previous_quantity !== quantity)) {
      throw new ConflictError(`restock ${restockId} already exists for ${row.previous_quantity} x ${row.previous_sku}`);
    }
    return toProduct(row);
  }

  /**
   * Frees holds whose deadline passed, at most `batchSize`, and says when
   * the next live hold runs out (undefined: none). Safe to run on every
   * replica at once.
   */
  async sweep(batchSize: number): Promise<{ expired: number; nextExpiry: Date | undefined }> {
    const { rows } = await this.db.query<{ expired: number; next_expiry: Date | null }>(EXPIRE_DUE, [batchSize]);
    return { expired: rows[0]!.expired, nextExpiry: rows[0]!.next_expiry ?? undefined };
  }

  /** Frees holds whose deadline passed, at most `batchSize`; how many. */
  async expireDue(batchSize: number): Promise<number> {
    return (await this.sweep(batchSize)).expired;
  }

  /** Every SKU's available and reserved units (for /metrics). */
  async stockLevels(): Promise<StockLevel[]> {
    const { rows } = await this.db.query<StockLevel>(STOCK_LEVELS);
    return rows;
  }

  /** Adds the products that are missing; existing ones are left as they are. */
  async seed(products: NewProduct[]): Promise<number> {
    let added = 0;
    for (const p of products) {
      const result = await this.db.query(SEED, [p.sku, p.name, p.description, p.currencyCode, p.unitPriceMinor, p.initialStock]);
      added += result.rowCount ?? 0;
    }
    return added;
  }
}

/** Order-insensitive digest of a reservation request's items. */
function itemsDigest(items: ItemQuantity[]): string {
  const canonical = [...items].sort((a, b) => a.sku.localeCompare(b.sku)).map((i) => `${i.sku}:${i.quantity}`);
  return createHash("sha256").update(canonical.join("\n")).digest("hex");
}

/** An existing reservation answers a replay with the same items; other items are a conflict. */
function replayed(reservationId: string, row: ReservationRow, digest: string): Reservation {
  if (row.request_digest !== digest) throw new ConflictError(`reservation ${reservationId} already exists with different items`);
  return toReservation(row);
}

/** Why a reservation was not made, as the first failed check says; returns when every check passed. */
function refuseReservation(
  lines: PricedLine[],
  verdict: { all_found: boolean; all_enough: boolean; one_currency: boolean; currency_code: string | null; total: number },
  bounds: TotalBounds,
): void {
  const missing = lines.find((l) => !l.found);
  if (missing) throw new NotFoundError("product", missing.sku);
  const short = lines.filter((l) => !l.enough);
  if (short.length > 0) {
    throw new RefusedError(
      `not enough stock for ${short.map((s) => s.sku).join(", ")}`,
      short.map((s) => ({ type: "STOCK", subject: s.sku, description: `${s.quantity} asked, ${s.available ?? 0} available` })),
    );
  }
  if (!verdict.one_currency) {
    const currencies = [...new Set(lines.map((l) => l.currencyCode))];
    throw new RefusedError("items are priced in different currencies", [
      { type: "CURRENCY", subject: currencies.join(","), description: "one reservation takes one currency" },
    ]);
  }
  const total = Number(verdict.total);
  const outside =
    bounds.minMinor !== undefined && total < bounds.minMinor
      ? `at least ${bounds.minMinor}`
      : bounds.maxMinor !== undefined && total > bounds.maxMinor
        ? `at most ${bounds.maxMinor}`
        : undefined;
  if (outside) {
    const reason = `the total of ${total} ${verdict.currency_code} minor units is outside what the caller can accept (${outside})`;
    throw new RefusedError(reason, [{ type: "TOTAL", subject: String(total), description: reason }]);
  }
}

function toReservation(row: ReservationRow): Reservation {
  return {
    reservationId: row.reservation_id,
    state: row.state,
    lines: row.lines.map((l) => ({ sku: l.sku, quantity: Number(l.quantity), unitPriceMinor: Number(l.unitPriceMinor) })),
    currencyCode: row.currency_code,
    totalMinor: Number(row.total_minor),
    createdAt: new Date(row.created_at),
    expiresAt: new Date(row.expires_at),
    updatedAt: new Date(row.updated_at),
  };
}

function toProduct(row: ProductRow): Product {
  return {
    sku: row.sku,
    name: row.name,
    description: row.description,
    currencyCode: row.currency_code,
    unitPriceMinor: Number(row.unit_price_minor),
    stock: {
      initial: Number(row.initial),
      restocked: Number(row.restocked),
      onHand: Number(row.on_hand),
      reserved: Number(row.reserved),
      sold: Number(row.sold),
    },
  };
}
