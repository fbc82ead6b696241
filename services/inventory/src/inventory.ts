import { createHash } from "node:crypto";
import type pg from "pg";
import { ConflictError, NotFoundError, RefusedError, type Database } from "@meshcart/lib";
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

interface ReservationRow {
  reservation_id: string;
  state: ReservationState;
  request_digest: string;
  currency_code: string;
  total_minor: number;
  created_at: Date;
  expires_at: Date;
  updated_at: Date;
}

const PRODUCT_COLUMNS = "sku, name, description, currency_code, unit_price_minor, initial, restocked, on_hand, reserved, sold";

/**
 * The catalogue and the stock ledger. Each mutating method is one
 * transaction that locks what it changes (the reservation first, then its
 * products in SKU order, so concurrent calls never deadlock), decides with
 * the ledger module, and writes absolute counters back.
 */
export class Inventory {
  constructor(private readonly db: Database) {}

  async listProducts(limit: number, afterSku?: string): Promise<{ products: Product[]; lastSku?: string; more: boolean }> {
    const { rows } = await this.db.query<ProductRow>(
      `SELECT ${PRODUCT_COLUMNS} FROM products WHERE ($1::text IS NULL OR sku > $1) ORDER BY sku LIMIT $2`,
      [afterSku ?? null, limit + 1],
    );
    const page = rows.slice(0, limit).map(toProduct);
    return { products: page, lastSku: page.at(-1)?.sku, more: rows.length > limit };
  }

  async getProduct(sku: string): Promise<Product> {
    const { rows } = await this.db.query<ProductRow>(`SELECT ${PRODUCT_COLUMNS} FROM products WHERE sku = $1`, [sku]);
    if (!rows[0]) throw new NotFoundError("product", sku);
    return toProduct(rows[0]);
  }

  /**
   * Holds every line or none. A replay with the same id and items returns
   * the first reservation, whatever state it has reached since.
   */
  async reserve(reservationId: string, items: ItemQuantity[], ttlMs: number): Promise<Reservation> {
    const digest = itemsDigest(items);
    return this.db.transaction(async (tx) => {
      // Serialises calls for the same id: a racing duplicate waits here and
      // then sees the first attempt's committed reservation.
      await tx.query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [`reservation:${reservationId}`]);
      const existing = await loadReservation(tx, reservationId);
      if (existing) {
        if (existing.digest !== digest) {
          throw new ConflictError(`reservation ${reservationId} already exists with different items`);
        }
        return existing.reservation;
      }

      const products = await lockProducts(
        tx,
        items.map((i) => i.sku),
      );
      const shortfalls: { type: string; subject: string; description: string }[] = [];
      for (const item of items) {
        const product = products.get(item.sku);
        if (!product) throw new NotFoundError("product", item.sku);
        const free = ledger.available(product.stock);
        if (item.quantity > free) {
          shortfalls.push({ type: "STOCK", subject: item.sku, description: `${item.quantity} asked, ${free} available` });
        }
      }
      if (shortfalls.length > 0) {
        throw new RefusedError(`not enough stock for ${shortfalls.map((s) => s.subject).join(", ")}`, shortfalls);
      }

      const currencies = new Set(items.map((i) => products.get(i.sku)!.currencyCode));
      if (currencies.size > 1) {
        throw new RefusedError("items are priced in different currencies", [
          { type: "CURRENCY", subject: [...currencies].join(","), description: "one reservation takes one currency" },
        ]);
      }
      const total = items.reduce((sum, item) => sum + products.get(item.sku)!.unitPriceMinor * item.quantity, 0);
      await tx.query(
        `INSERT INTO reservations (reservation_id, state, request_digest, currency_code, total_minor, expires_at)
         VALUES ($1, 'HELD', $2, $3, $4, now() + make_interval(secs => $5::double precision / 1000))`,
        [reservationId, digest, [...currencies][0], total, ttlMs],
      );
      for (const [index, item] of items.entries()) {
        const product = products.get(item.sku)!;
        await writeStock(tx, item.sku, ledger.reserve(product.stock, item.quantity));
        await tx.query(
          `INSERT INTO reservation_lines (reservation_id, line_no, sku, quantity, unit_price_minor) VALUES ($1, $2, $3, $4, $5)`,
          [reservationId, index, item.sku, item.quantity, product.unitPriceMinor],
        );
      }
      const created = await loadReservation(tx, reservationId);
      return created!.reservation;
    });
  }

  async getReservation(reservationId: string): Promise<Reservation> {
    const found = await loadReservation(this.db.pool, reservationId);
    if (!found) throw new NotFoundError("reservation", reservationId);
    return found.reservation;
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
    const outcome = await this.db.transaction(async (tx) => {
      const found = await loadReservation(tx, reservationId, { lock: true });
      if (!found) throw new NotFoundError("reservation", reservationId);
      const { reservation } = found;
      const decision = ledger.decide(reservation.state, action, found.holdExpired);
      switch (decision.kind) {
        case "replay":
          return { reservation };
        case "refuse":
          throw new RefusedError(decision.reason, [
            { type: "RESERVATION_STATE", subject: reservationId, description: decision.reason },
          ]);
        case "expire":
          // The expiry is committed even though the call is refused: the
          // units must go back whoever notices the deadline first.
          return { reservation: await applyTransition(tx, reservation, "EXPIRED"), refusal: "reservation expired before it was committed" };
        case "apply":
          return { reservation: await applyTransition(tx, reservation, decision.to) };
      }
    });
    if ("refusal" in outcome && outcome.refusal) {
      throw new RefusedError(outcome.refusal, [{ type: "RESERVATION_EXPIRED", subject: reservationId, description: outcome.refusal }]);
    }
    return outcome.reservation;
  }

  async restock(restockId: string, sku: string, quantity: number): Promise<Product> {
    return this.db.transaction(async (tx) => {
      const inserted = await tx.query(
        `INSERT INTO restocks (restock_id, sku, quantity)
         SELECT $1, sku, $3 FROM products WHERE sku = $2
         ON CONFLICT (restock_id) DO NOTHING`,
        [restockId, sku, quantity],
      );
      if (inserted.rowCount === 0) {
        const { rows } = await tx.query<{ sku: string; quantity: number }>(
          "SELECT sku, quantity FROM restocks WHERE restock_id = $1",
          [restockId],
        );
        const previous = rows[0];
        if (!previous) throw new NotFoundError("product", sku);
        if (previous.sku !== sku || previous.quantity !== quantity) {
          throw new ConflictError(`restock ${restockId} already exists for ${previous.quantity} x ${previous.sku}`);
        }
        return toProduct((await selectProduct(tx, sku))!);
      }
      const product = (await lockProducts(tx, [sku])).get(sku)!;
      await writeStock(tx, sku, ledger.restock(product.stock, quantity));
      return toProduct((await selectProduct(tx, sku))!);
    });
  }

  /**
   * Frees holds whose deadline passed. Safe to run on every replica at once:
   * SKIP LOCKED hands each reservation to one of them.
   */
  async expireDue(batchSize: number): Promise<number> {
    return this.db.transaction(async (tx) => {
      const { rows } = await tx.query<{ reservation_id: string }>(
        `SELECT reservation_id FROM reservations WHERE state = 'HELD' AND expires_at <= now()
         ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED`,
        [batchSize],
      );
      const due: Reservation[] = [];
      for (const row of rows) due.push((await loadReservation(tx, row.reservation_id))!.reservation);
      // Lock the whole batch's products at once, in SKU order like every
      // other write: locking them reservation by reservation takes them out
      // of order and deadlocks against a concurrent sweep or commit.
      await lockProducts(
        tx,
        due.flatMap((r) => r.lines.map((l) => l.sku)),
      );
      for (const reservation of due) await applyTransition(tx, reservation, "EXPIRED");
      return rows.length;
    });
  }

  /** Every SKU's available and reserved units (for /metrics). */
  async stockLevels(): Promise<StockLevel[]> {
    const { rows } = await this.db.query<StockLevel>(
      "SELECT sku, on_hand - reserved AS available, reserved FROM products ORDER BY sku",
    );
    return rows;
  }

  /** Adds the products that are missing; existing ones are left as they are. */
  async seed(products: NewProduct[]): Promise<number> {
    let added = 0;
    for (const p of products) {
      const result = await this.db.query(
        `INSERT INTO products (sku, name, description, currency_code, unit_price_minor, initial, on_hand)
         VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (sku) DO NOTHING`,
        [p.sku, p.name, p.description, p.currencyCode, p.unitPriceMinor, p.initialStock],
      );
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

async function applyTransition(tx: pg.PoolClient, reservation: Reservation, to: ReservationState): Promise<Reservation> {
  const move = ledger.moveFor(to);
  const products = await lockProducts(
    tx,
    reservation.lines.map((l) => l.sku),
  );
  for (const line of reservation.lines) {
    const product = products.get(line.sku)!;
    await writeStock(tx, line.sku, move(product.stock, line.quantity));
  }
  await tx.query("UPDATE reservations SET state = $2, updated_at = now() WHERE reservation_id = $1", [
    reservation.reservationId,
    to,
  ]);
  return (await loadReservation(tx, reservation.reservationId))!.reservation;
}

async function lockProducts(tx: pg.PoolClient, skus: string[]): Promise<Map<string, Product>> {
  const unique = [...new Set(skus)].sort();
  const { rows } = await tx.query<ProductRow>(
    `SELECT ${PRODUCT_COLUMNS} FROM products WHERE sku = ANY($1::text[]) ORDER BY sku FOR UPDATE`,
    [unique],
  );
  return new Map(rows.map((row) => [row.sku, toProduct(row)]));
}

async function selectProduct(tx: pg.PoolClient, sku: string): Promise<ProductRow | undefined> {
  const { rows } = await tx.query<ProductRow>(`SELECT ${PRODUCT_COLUMNS} FROM products WHERE sku = $1`, [sku]);
  return rows[0];
}

async function writeStock(tx: pg.PoolClient, sku: string, stock: StockCounters): Promise<void> {
  await tx.query(
    `UPDATE products SET on_hand = $2, reserved = $3, sold = $4, restocked = $5, updated_at = now() WHERE sku = $1`,
    [sku, stock.onHand, stock.reserved, stock.sold, stock.restocked],
  );
}

async function loadReservation(
  sql: pg.PoolClient | pg.Pool,
  reservationId: string,
  options: { lock?: boolean } = {},
): Promise<{ reservation: Reservation; digest: string; holdExpired: boolean } | undefined> {
  const { rows } = await sql.query<ReservationRow & { hold_expired: boolean }>(
    `SELECT *, expires_at <= now() AS hold_expired FROM reservations WHERE reservation_id = $1 ${options.lock ? "FOR UPDATE" : ""}`,
    [reservationId],
  );
  const row = rows[0];
  if (!row) return undefined;
  const lines = await sql.query<{ sku: string; quantity: number; unit_price_minor: number }>(
    "SELECT sku, quantity, unit_price_minor FROM reservation_lines WHERE reservation_id = $1 ORDER BY line_no",
    [reservationId],
  );
  return {
    digest: row.request_digest,
    holdExpired: row.hold_expired,
    reservation: {
      reservationId: row.reservation_id,
      state: row.state,
      lines: lines.rows.map((l) => ({ sku: l.sku, quantity: l.quantity, unitPriceMinor: l.unit_price_minor })),
      currencyCode: row.currency_code,
      totalMinor: row.total_minor,
      createdAt: row.created_at,
      expiresAt: row.expires_at,
      updatedAt: row.updated_at,
    },
  };
}

function toProduct(row: ProductRow): Product {
  return {
    sku: row.sku,
    name: row.name,
    description: row.description,
    currencyCode: row.currency_code,
    unitPriceMinor: row.unit_price_minor,
    stock: {
      initial: row.initial,
      restocked: row.restocked,
      onHand: row.on_hand,
      reserved: row.reserved,
      sold: row.sold,
    },
  };
}
