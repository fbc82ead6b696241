import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ConflictError, Database, NotFoundError, RefusedError, createLogger, migrate, sleep } from "@meshcart/lib";
import { createTestDatabase } from "@meshcart/testing/database.js";
import { Inventory, type Product, type Reservation } from "../src/inventory.js";
import { ledgerViolations, type StockCounters } from "../src/ledger.js";

const MIGRATIONS = fileURLToPath(new URL("../migrations", import.meta.url));
const logger = createLogger({ service: "inventory-test", version: "test", level: "silent" });

let testDb: { url: string; drop(): Promise<void> };
let db: Database;
/** A second connection pool: another replica of the service on the same database. */
let db2: Database;
let inventory: Inventory;
let replica: Inventory;

/**
 * A pool as the service opens one. Its connections are opened up front: the
 * kit's pool gives up on a connection after 1 s, and the concurrency tests
 * should measure the ledger, not how fast a loaded machine forks backends.
 */
async function openPool(url: string, name: string, size = 20): Promise<Database> {
  const pool = new Database({ url, poolMax: size, statementTimeoutMs: 20_000, applicationName: name, logger });
  const clients = [];
  for (let i = 0; i < size; i++) clients.push(await pool.pool.connect());
  for (const client of clients) client.release();
  return pool;
}

beforeAll(async () => {
  testDb = await createTestDatabase("inventory_domain");
  db = await openPool(testDb.url, "inventory-test-a");
  db2 = await openPool(testDb.url, "inventory-test-b");
  await migrate(db, MIGRATIONS, logger);
  inventory = new Inventory(db);
  replica = new Inventory(db2);
});

afterAll(async () => {
  await db2?.close();
  await db?.close();
  await testDb?.drop();
});

// ---------------------------------------------------------------- helpers

let serial = 0;
/** A name no other test uses, so tests sharing the database never see each other's rows. */
function unique(prefix: string): string {
  serial += 1;
  return `${prefix}-${serial}-${Math.random().toString(36).slice(2, 8)}`.toUpperCase();
}

async function addProduct(stock: number, price = 1000, currency = "USD", prefix = "SKU"): Promise<string> {
  const sku = unique(prefix);
  const added = await inventory.seed([
    { sku, name: `Product ${sku}`, description: "test", currencyCode: currency, unitPriceMinor: price, initialStock: stock },
  ]);
  expect(added).toBe(1);
  return sku;
}

async function stockOf(sku: string): Promise<StockCounters> {
  return (await inventory.getProduct(sku)).stock;
}

/** Moves a reservation's deadline into the past, as if its TTL ran out. */
async function backdate(reservationId: string): Promise<void> {
  const result = await db.query("UPDATE reservations SET expires_at = now() - interval '1 second' WHERE reservation_id = $1", [reservationId]);
  expect(result.rowCount).toBe(1);
}

async function reservationRows(reservationId: string): Promise<{ reservations: number; lines: number }> {
  const r = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM reservations WHERE reservation_id = $1", [reservationId]);
  const l = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM reservation_lines WHERE reservation_id = $1", [reservationId]);
  return { reservations: r.rows[0]!.n, lines: l.rows[0]!.n };
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected a rejection, but the call succeeded");
}

/** Frees every hold already due, so a test can count exactly what it expires itself. */
async function drainDue(): Promise<void> {
  while ((await inventory.expireDue(1000)) > 0);
}

/**
 * The ledger invariants for every SKU in the table, and the counters agree
 * with the reservations and restocks that explain them:
 *   reserved = Σ HELD lines, sold = Σ COMMITTED lines, restocked = Σ restocks.
 */
async function assertLedgerHolds(): Promise<void> {
  const { rows } = await db.query<{
    sku: string;
    initial: number;
    restocked: number;
    on_hand: number;
    reserved: number;
    sold: number;
    held: number;
    committed: number;
    restocks: number;
  }>(`
    SELECT p.sku, p.initial, p.restocked, p.on_hand, p.reserved, p.sold,
      COALESCE((SELECT sum(l.quantity) FROM reservation_lines l JOIN reservations r USING (reservation_id)
                WHERE l.sku = p.sku AND r.state = 'HELD'), 0)::bigint AS held,
      COALESCE((SELECT sum(l.quantity) FROM reservation_lines l JOIN reservations r USING (reservation_id)
                WHERE l.sku = p.sku AND r.state = 'COMMITTED'), 0)::bigint AS committed,
      COALESCE((SELECT sum(quantity) FROM restocks s WHERE s.sku = p.sku), 0)::bigint AS restocks
    FROM products p ORDER BY p.sku`);
  expect(rows.length).toBeGreaterThan(0);
  const problems: string[] = [];
  for (const row of rows) {
    const stock = { initial: row.initial, restocked: row.restocked, onHand: row.on_hand, reserved: row.reserved, sold: row.sold };
    for (const p of ledgerViolations(stock)) problems.push(`${row.sku}: ${p}`);
    if (row.reserved !== row.held) problems.push(`${row.sku}: reserved ${row.reserved} but HELD lines sum to ${row.held}`);
    if (row.sold !== row.committed) problems.push(`${row.sku}: sold ${row.sold} but COMMITTED lines sum to ${row.committed}`);
    if (row.restocked !== row.restocks) problems.push(`${row.sku}: restocked ${row.restocked} but restocks sum to ${row.restocks}`);
  }
  expect(problems).toEqual([]);
}

afterEach(async () => {
  await assertLedgerHolds();
});

// ---------------------------------------------------------------- catalogue

describe("catalogue", () => {
  it("lists every product once, in SKU order, one page at a time", async () => {
    const mine = await Promise.all([1, 2, 3, 4, 5, 6, 7].map(() => addProduct(5, 100, "USD", "LIST")));
    const { rows } = await db.query<{ sku: string }>("SELECT sku FROM products ORDER BY sku");
    const everything = rows.map((r) => r.sku);

    const seen: string[] = [];
    let after: string | undefined;
    let pages = 0;
    for (;;) {
      const page = await inventory.listProducts(3, after);
      pages += 1;
      expect(page.products.length).toBeLessThanOrEqual(3);
      seen.push(...page.products.map((p) => p.sku));
      expect(page.lastSku).toBe(page.products.at(-1)?.sku);
      if (!page.more) break;
      expect(page.products).toHaveLength(3);
      after = page.lastSku;
      expect(pages).toBeLessThan(1000);
    }
    expect(seen).toEqual(everything);
    expect(pages).toBe(Math.max(1, Math.ceil(everything.length / 3)));
    for (const sku of mine) expect(seen).toContain(sku);
  });

  it("says there is no more when the last page is exactly full", async () => {
    const { rows } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM products");
    const total = rows[0]!.n;
    const all = await inventory.listProducts(total);
    expect(all.products).toHaveLength(total);
    expect(all.more).toBe(false);
    const allButOne = await inventory.listProducts(total - 1);
    expect(allButOne.more).toBe(true);
    const rest = await inventory.listProducts(total, allButOne.lastSku);
    expect(rest.products.map((p) => p.sku)).toEqual([all.products.at(-1)!.sku]);
    expect(rest.more).toBe(false);
  });

  it("gets one product with its stock; an unknown SKU is NotFoundError", async () => {
    const sku = await addProduct(42, 1234);
    const product = await inventory.getProduct(sku);
    expect(product).toEqual<Product>({
      sku,
      name: `Product ${sku}`,
      description: "test",
      currencyCode: "USD",
      unitPriceMinor: 1234,
      stock: { initial: 42, restocked: 0, onHand: 42, reserved: 0, sold: 0 },
    });
    expect(await rejection(inventory.getProduct("NO-SUCH-SKU"))).toBeInstanceOf(NotFoundError);
  });

  it("seed leaves existing products as they are", async () => {
    const sku = await addProduct(10, 500);
    await inventory.reserve(unique("seed"), [{ sku, quantity: 4 }], 60_000);
    const added = await inventory.seed([{ sku, name: "other", description: "", currencyCode: "EUR", unitPriceMinor: 1, initialStock: 999 }]);
    expect(added).toBe(0);
    const product = await inventory.getProduct(sku);
    expect(product.unitPriceMinor).toBe(500);
    expect(product.stock).toEqual({ initial: 10, restocked: 0, onHand: 10, reserved: 4, sold: 0 });
  });
});

// ---------------------------------------------------------------- reserve

describe("reserve", () => {
  it("prices each line from the catalogue, in request order, and totals them", async () => {
    const shirt = await addProduct(20, 2500);
    const mug = await addProduct(20, 1399);
    const id = unique("res");
    const reservation = await inventory.reserve(
      id,
      [
        { sku: mug, quantity: 3 },
        { sku: shirt, quantity: 2 },
      ],
      60_000,
    );
    expect(reservation).toMatchObject({
      reservationId: id,
      state: "HELD",
      currencyCode: "USD",
      totalMinor: 3 * 1399 + 2 * 2500,
      lines: [
        { sku: mug, quantity: 3, unitPriceMinor: 1399 },
        { sku: shirt, quantity: 2, unitPriceMinor: 2500 },
      ],
    });
    expect(reservation.expiresAt.getTime() - reservation.createdAt.getTime()).toBe(60_000);
    expect(await inventory.getReservation(id)).toEqual(reservation);
    expect(await stockOf(mug)).toEqual({ initial: 20, restocked: 0, onHand: 20, reserved: 3, sold: 0 });
    expect(await stockOf(shirt)).toEqual({ initial: 20, restocked: 0, onHand: 20, reserved: 2, sold: 0 });
  });

  it("keeps the price of reservation time when the catalogue price changes later", async () => {
    const sku = await addProduct(5, 700);
    const id = unique("res");
    await inventory.reserve(id, [{ sku, quantity: 2 }], 60_000);
    await db.query("UPDATE products SET unit_price_minor = 999 WHERE sku = $1", [sku]);
    const reservation = await inventory.getReservation(id);
    expect(reservation.lines[0]!.unitPriceMinor).toBe(700);
    expect(reservation.totalMinor).toBe(1400);
  });

  it("may take exactly what is available", async () => {
    const sku = await addProduct(7);
    await inventory.reserve(unique("res"), [{ sku, quantity: 7 }], 60_000);
    expect(await stockOf(sku)).toMatchObject({ onHand: 7, reserved: 7 });
  });

  it("is all or nothing: one short line holds nothing and writes no reservation", async () => {
    const plenty = await addProduct(50);
    const scarce = await addProduct(2);
    const id = unique("res");
    const error = await rejection(
      inventory.reserve(
        id,
        [
          { sku: plenty, quantity: 10 },
          { sku: scarce, quantity: 3 },
        ],
        60_000,
      ),
    );
    expect(error).toBeInstanceOf(RefusedError);
    expect((error as RefusedError).violations).toEqual([{ type: "STOCK", subject: scarce, description: "3 asked, 2 available" }]);
    expect(await stockOf(plenty)).toEqual({ initial: 50, restocked: 0, onHand: 50, reserved: 0, sold: 0 });
    expect(await stockOf(scarce)).toEqual({ initial: 2, restocked: 0, onHand: 2, reserved: 0, sold: 0 });
    expect(await reservationRows(id)).toEqual({ reservations: 0, lines: 0 });
    expect(await rejection(inventory.getReservation(id))).toBeInstanceOf(NotFoundError);
  });

  it("names every short SKU", async () => {
    const a = await addProduct(1);
    const b = await addProduct(1);
    const ok = await addProduct(10);
    const error = (await rejection(
      inventory.reserve(
        unique("res"),
        [
          { sku: a, quantity: 2 },
          { sku: ok, quantity: 1 },
          { sku: b, quantity: 5 },
        ],
        60_000,
      ),
    )) as RefusedError;
    expect(error).toBeInstanceOf(RefusedError);
    expect(error.violations.map((v) => [v.type, v.subject])).toEqual([
      ["STOCK", a],
      ["STOCK", b],
    ]);
  });

  it("counts stock already held by other reservations as unavailable", async () => {
    const sku = await addProduct(5);
    await inventory.reserve(unique("res"), [{ sku, quantity: 4 }], 60_000);
    expect(await rejection(inventory.reserve(unique("res"), [{ sku, quantity: 2 }], 60_000))).toBeInstanceOf(RefusedError);
    await inventory.reserve(unique("res"), [{ sku, quantity: 1 }], 60_000);
    expect(await stockOf(sku)).toMatchObject({ onHand: 5, reserved: 5 });
  });

  it("an unknown SKU is NotFoundError and nothing is written", async () => {
    const known = await addProduct(10);
    const id = unique("res");
    const error = await rejection(
      inventory.reserve(
        id,
        [
          { sku: known, quantity: 1 },
          { sku: "NO-SUCH-SKU", quantity: 1 },
        ],
        60_000,
      ),
    );
    expect(error).toBeInstanceOf(NotFoundError);
    expect(error).toMatchObject({ resource: "product", id: "NO-SUCH-SKU" });
    expect(await stockOf(known)).toMatchObject({ reserved: 0 });
    expect(await reservationRows(id)).toEqual({ reservations: 0, lines: 0 });
  });

  it("refuses lines priced in different currencies and writes nothing", async () => {
    const usd = await addProduct(10, 100, "USD");
    const eur = await addProduct(10, 100, "EUR");
    const id = unique("res");
    const error = await rejection(
      inventory.reserve(
        id,
        [
          { sku: usd, quantity: 1 },
          { sku: eur, quantity: 1 },
        ],
        60_000,
      ),
    );
    expect(error).toBeInstanceOf(RefusedError);
    expect((error as RefusedError).violations[0]?.type).toBe("CURRENCY");
    expect(await stockOf(usd)).toMatchObject({ reserved: 0 });
    expect(await stockOf(eur)).toMatchObject({ reserved: 0 });
    expect(await reservationRows(id)).toEqual({ reservations: 0, lines: 0 });
  });

  it("a replay returns the first reservation and holds nothing more", async () => {
    const a = await addProduct(10, 300);
    const b = await addProduct(10, 400);
    const id = unique("res");
    const items = [
      { sku: a, quantity: 2 },
      { sku: b, quantity: 1 },
    ];
    const first = await inventory.reserve(id, items, 60_000);
    const again = await inventory.reserve(id, items, 60_000);
    expect(again).toEqual(first);
    // The same items in another order are the same request.
    expect(await inventory.reserve(id, [...items].reverse(), 60_000)).toEqual(first);
    // A different TTL does not make it a new request either.
    expect(await inventory.reserve(id, items, 5_000)).toEqual(first);
    expect(await stockOf(a)).toMatchObject({ reserved: 2 });
    expect(await stockOf(b)).toMatchObject({ reserved: 1 });
    expect(await reservationRows(id)).toEqual({ reservations: 1, lines: 2 });
  });

  it("a replay after the reservation moved on returns it as it is now, with no new hold", async () => {
    const sku = await addProduct(10);
    const id = unique("res");
    await inventory.reserve(id, [{ sku, quantity: 3 }], 60_000);
    const committed = await inventory.commit(id);
    expect(await inventory.reserve(id, [{ sku, quantity: 3 }], 60_000)).toEqual(committed);
    expect(await stockOf(sku)).toEqual({ initial: 10, restocked: 0, onHand: 7, reserved: 0, sold: 3 });
  });

  it("a replay succeeds even when the stock it holds is no longer available to others", async () => {
    const sku = await addProduct(3);
    const id = unique("res");
    const first = await inventory.reserve(id, [{ sku, quantity: 3 }], 60_000);
    expect(await inventory.reserve(id, [{ sku, quantity: 3 }], 60_000)).toEqual(first);
  });

  it("the same id with different items is ConflictError and changes nothing", async () => {
    const a = await addProduct(10);
    const b = await addProduct(10);
    const id = unique("res");
    const first = await inventory.reserve(id, [{ sku: a, quantity: 2 }], 60_000);
    for (const items of [
      [{ sku: a, quantity: 3 }],
      [{ sku: b, quantity: 2 }],
      [
        { sku: a, quantity: 2 },
        { sku: b, quantity: 1 },
      ],
    ]) {
      expect(await rejection(inventory.reserve(id, items, 60_000))).toBeInstanceOf(ConflictError);
    }
    expect(await inventory.getReservation(id)).toEqual(first);
    expect(await stockOf(a)).toMatchObject({ reserved: 2 });
    expect(await stockOf(b)).toMatchObject({ reserved: 0 });
  });

  it("an id refused for lack of stock can be used again once there is stock", async () => {
    const sku = await addProduct(1);
    const id = unique("res");
    expect(await rejection(inventory.reserve(id, [{ sku, quantity: 2 }], 60_000))).toBeInstanceOf(RefusedError);
    await inventory.restock(unique("rst"), sku, 1);
    const reservation = await inventory.reserve(id, [{ sku, quantity: 2 }], 60_000);
    expect(reservation.state).toBe("HELD");
  });

  it("an unknown reservation is NotFoundError for every call", async () => {
    const id = unique("missing");
    for (const call of [() => inventory.getReservation(id), () => inventory.commit(id), () => inventory.release(id), () => inventory.returnStock(id)]) {
      const error = await rejection(call());
      expect(error).toBeInstanceOf(NotFoundError);
      expect(error).toMatchObject({ resource: "reservation", id });
    }
  });
});

// ---------------------------------------------------------------- life of a reservation

describe("commit, release, return", () => {
  async function held(quantity: number, stock = 10): Promise<{ sku: string; id: string; reservation: Reservation }> {
    const sku = await addProduct(stock, 250);
    const id = unique("res");
    const reservation = await inventory.reserve(id, [{ sku, quantity }], 60_000);
    return { sku, id, reservation };
  }

  it("commit sells the held units; a replay returns the first result and sells nothing more", async () => {
    const { sku, id, reservation } = await held(4);
    const committed = await inventory.commit(id);
    expect(committed).toMatchObject({ reservationId: id, state: "COMMITTED", lines: reservation.lines, totalMinor: 1000 });
    expect(committed.updatedAt.getTime()).toBeGreaterThanOrEqual(reservation.updatedAt.getTime());
    expect(await stockOf(sku)).toEqual({ initial: 10, restocked: 0, onHand: 6, reserved: 0, sold: 4 });
    expect(await inventory.commit(id)).toEqual(committed);
    expect(await stockOf(sku)).toEqual({ initial: 10, restocked: 0, onHand: 6, reserved: 0, sold: 4 });
  });

  it("release frees the held units; a replay returns the first result and frees nothing more", async () => {
    const sku = await addProduct(10);
    const other = unique("res");
    await inventory.reserve(other, [{ sku, quantity: 3 }], 60_000); // a second hold that must survive
    const id = unique("res");
    await inventory.reserve(id, [{ sku, quantity: 5 }], 60_000);
    const released = await inventory.release(id);
    expect(released.state).toBe("RELEASED");
    expect(await stockOf(sku)).toEqual({ initial: 10, restocked: 0, onHand: 10, reserved: 3, sold: 0 });
    expect(await inventory.release(id)).toEqual(released);
    expect(await stockOf(sku)).toEqual({ initial: 10, restocked: 0, onHand: 10, reserved: 3, sold: 0 });
  });

  it("return after commit restores on_hand; a replay returns the first result and restores nothing more", async () => {
    const { sku, id } = await held(4);
    await inventory.commit(id);
    const returned = await inventory.returnStock(id);
    expect(returned.state).toBe("RETURNED");
    expect(await stockOf(sku)).toEqual({ initial: 10, restocked: 0, onHand: 10, reserved: 0, sold: 0 });
    expect(await inventory.returnStock(id)).toEqual(returned);
    expect(await stockOf(sku)).toEqual({ initial: 10, restocked: 0, onHand: 10, reserved: 0, sold: 0 });
  });

  it("returned units can be reserved again", async () => {
    const { sku, id } = await held(10, 10);
    await inventory.commit(id);
    expect(await rejection(inventory.reserve(unique("res"), [{ sku, quantity: 1 }], 60_000))).toBeInstanceOf(RefusedError);
    await inventory.returnStock(id);
    await inventory.reserve(unique("res"), [{ sku, quantity: 10 }], 60_000);
    expect(await stockOf(sku)).toMatchObject({ onHand: 10, reserved: 10, sold: 0 });
  });

  it("commit after release is refused and sells nothing", async () => {
    const { sku, id } = await held(2);
    await inventory.release(id);
    const error = await rejection(inventory.commit(id));
    expect(error).toBeInstanceOf(RefusedError);
    expect((error as RefusedError).violations[0]).toMatchObject({ type: "RESERVATION_STATE", subject: id });
    expect((await inventory.getReservation(id)).state).toBe("RELEASED");
    expect(await stockOf(sku)).toEqual({ initial: 10, restocked: 0, onHand: 10, reserved: 0, sold: 0 });
  });

  it("commit after return is refused", async () => {
    const { sku, id } = await held(2);
    await inventory.commit(id);
    await inventory.returnStock(id);
    expect(await rejection(inventory.commit(id))).toBeInstanceOf(RefusedError);
    expect((await inventory.getReservation(id)).state).toBe("RETURNED");
    expect(await stockOf(sku)).toMatchObject({ onHand: 10, sold: 0 });
  });

  it("release of a committed reservation is refused and keeps the sale", async () => {
    const { sku, id } = await held(3);
    await inventory.commit(id);
    expect(await rejection(inventory.release(id))).toBeInstanceOf(RefusedError);
    expect((await inventory.getReservation(id)).state).toBe("COMMITTED");
    expect(await stockOf(sku)).toMatchObject({ onHand: 7, reserved: 0, sold: 3 });
  });

  it("return of a reservation that was never committed is refused", async () => {
    const { sku, id } = await held(3);
    expect(await rejection(inventory.returnStock(id))).toBeInstanceOf(RefusedError);
    await inventory.release(id);
    expect(await rejection(inventory.returnStock(id))).toBeInstanceOf(RefusedError);
    expect(await stockOf(sku)).toEqual({ initial: 10, restocked: 0, onHand: 10, reserved: 0, sold: 0 });
  });
});

// ---------------------------------------------------------------- expiry

describe("expiry", () => {
  it("commit of an expired hold the sweeper has not reached is refused, and the units are freed", async () => {
    const sku = await addProduct(10);
    const id = unique("res");
    await inventory.reserve(id, [{ sku, quantity: 6 }], 60_000);
    await backdate(id);
    expect((await inventory.getReservation(id)).state).toBe("HELD");

    const error = await rejection(inventory.commit(id));
    expect(error).toBeInstanceOf(RefusedError);
    expect((error as RefusedError).violations[0]).toMatchObject({ type: "RESERVATION_EXPIRED", subject: id });
    expect((await inventory.getReservation(id)).state).toBe("EXPIRED");
    expect(await stockOf(sku)).toEqual({ initial: 10, restocked: 0, onHand: 10, reserved: 0, sold: 0 });

    // Still refused the second time, still freed once.
    expect(await rejection(inventory.commit(id))).toBeInstanceOf(RefusedError);
    expect(await stockOf(sku)).toMatchObject({ reserved: 0, sold: 0 });
    // Releasing an expired reservation returns it unchanged.
    expect((await inventory.release(id)).state).toBe("EXPIRED");
    expect(await stockOf(sku)).toMatchObject({ reserved: 0 });
  });

  it("expireDue frees the holds that are due and only those", async () => {
    await drainDue();
    const sku = await addProduct(100);
    const due = [unique("due"), unique("due"), unique("due")];
    const live = unique("live");
    const committedDue = unique("committed");
    const releasedDue = unique("released");
    for (const id of [...due, live, committedDue, releasedDue]) await inventory.reserve(id, [{ sku, quantity: 5 }], 60_000);
    await inventory.commit(committedDue);
    await inventory.release(releasedDue);
    for (const id of [...due, committedDue, releasedDue]) await backdate(id);

    expect(await inventory.expireDue(100)).toBe(3);
    for (const id of due) expect((await inventory.getReservation(id)).state).toBe("EXPIRED");
    expect((await inventory.getReservation(live)).state).toBe("HELD");
    expect((await inventory.getReservation(committedDue)).state).toBe("COMMITTED");
    expect((await inventory.getReservation(releasedDue)).state).toBe("RELEASED");
    expect(await stockOf(sku)).toEqual({ initial: 100, restocked: 0, onHand: 95, reserved: 5, sold: 5 });

    expect(await inventory.expireDue(100)).toBe(0);
    expect(await stockOf(sku)).toEqual({ initial: 100, restocked: 0, onHand: 95, reserved: 5, sold: 5 });
    // An expired reservation can no longer be committed.
    expect(await rejection(inventory.commit(due[0]!))).toBeInstanceOf(RefusedError);
  });

  it("expireDue takes at most a batch at a time", async () => {
    await drainDue();
    const sku = await addProduct(10);
    const ids = [unique("due"), unique("due"), unique("due")];
    for (const id of ids) await inventory.reserve(id, [{ sku, quantity: 1 }], 60_000);
    for (const id of ids) await backdate(id);
    expect(await inventory.expireDue(2)).toBe(2);
    expect(await stockOf(sku)).toMatchObject({ reserved: 1 });
    expect(await inventory.expireDue(2)).toBe(1);
    expect(await stockOf(sku)).toMatchObject({ reserved: 0 });
  });
});

// ---------------------------------------------------------------- restock

describe("restock", () => {
  it("adds units; a replay returns the same product and adds nothing", async () => {
    const sku = await addProduct(5);
    const id = unique("rst");
    const first = await inventory.restock(id, sku, 20);
    expect(first.stock).toEqual({ initial: 5, restocked: 20, onHand: 25, reserved: 0, sold: 0 });
    expect(await inventory.restock(id, sku, 20)).toEqual(first);
    expect(await stockOf(sku)).toEqual({ initial: 5, restocked: 20, onHand: 25, reserved: 0, sold: 0 });
    const second = await inventory.restock(unique("rst"), sku, 5);
    expect(second.stock).toMatchObject({ restocked: 25, onHand: 30 });
  });

  it("the same id for another SKU or quantity is ConflictError and adds nothing", async () => {
    const sku = await addProduct(5);
    const other = await addProduct(5);
    const id = unique("rst");
    await inventory.restock(id, sku, 20);
    expect(await rejection(inventory.restock(id, sku, 21))).toBeInstanceOf(ConflictError);
    expect(await rejection(inventory.restock(id, other, 20))).toBeInstanceOf(ConflictError);
    expect(await stockOf(sku)).toMatchObject({ restocked: 20, onHand: 25 });
    expect(await stockOf(other)).toMatchObject({ restocked: 0, onHand: 5 });
  });

  it("an unknown SKU is NotFoundError and records no restock", async () => {
    const id = unique("rst");
    const error = await rejection(inventory.restock(id, "NO-SUCH-SKU", 3));
    expect(error).toBeInstanceOf(NotFoundError);
    const { rows } = await db.query("SELECT 1 FROM restocks WHERE restock_id = $1", [id]);
    expect(rows).toHaveLength(0);
  });
});

// ---------------------------------------------------------------- concurrency

describe("concurrency", () => {
  /** Each call goes through one of two pools, like calls spread over two replicas. */
  const via = (i: number) => (i % 2 === 0 ? inventory : replica);

  function outcomes(results: PromiseSettledResult<unknown>[]) {
    const rejected = results.filter((r): r is PromiseRejectedResult => r.status === "rejected").map((r) => r.reason as unknown);
    return { fulfilled: results.length - rejected.length, rejected };
  }

  it("40 racing one-unit reservations for 10 units: exactly 10 succeed, the rest are refused", async () => {
    const sku = await addProduct(10);
    const ids = Array.from({ length: 40 }, () => unique("race"));
    const results = await Promise.allSettled(ids.map((id, i) => via(i).reserve(id, [{ sku, quantity: 1 }], 60_000)));
    const { fulfilled, rejected } = outcomes(results);
    expect(fulfilled).toBe(10);
    expect(rejected).toHaveLength(30);
    for (const error of rejected) expect(error).toBeInstanceOf(RefusedError);
    expect(await stockOf(sku)).toEqual({ initial: 10, restocked: 0, onHand: 10, reserved: 10, sold: 0 });
    const { rows } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM reservation_lines WHERE sku = $1", [sku]);
    expect(rows[0]!.n).toBe(10);
  });

  it("racing multi-line reservations over shared SKUs never oversell and never deadlock into failure", async () => {
    const a = await addProduct(15);
    const b = await addProduct(15);
    const c = await addProduct(15);
    // Lines in different orders, so a lock-order bug would deadlock.
    const shapes = [
      [a, b],
      [b, c],
      [c, a],
      [c, b, a],
    ];
    const results = await Promise.allSettled(
      Array.from({ length: 32 }, (_, i) =>
        via(i).reserve(
          unique("multi"),
          shapes[i % shapes.length]!.map((sku) => ({ sku, quantity: 2 })),
          60_000,
        ),
      ),
    );
    const { fulfilled, rejected } = outcomes(results);
    for (const error of rejected) expect(error).toBeInstanceOf(RefusedError);
    expect(fulfilled).toBeGreaterThan(0);
    const after = new Map<string, StockCounters>();
    for (const sku of [a, b, c]) {
      const stock = await stockOf(sku);
      expect(stock.reserved).toBeLessThanOrEqual(15);
      after.set(sku, stock);
    }
    // Each shape was asked 8 times (16 units of each of its SKUs, more than
    // 15), so each was refused at least once: some SKU of it is now short.
    for (const shape of shapes) expect(shape.some((sku) => available(after.get(sku)!) < 2)).toBe(true);
    // Every success held its lines: reserved = 2 x the successes naming the SKU.
    for (const sku of [a, b, c]) {
      const held = results.filter((r, i) => r.status === "fulfilled" && shapes[i % shapes.length]!.includes(sku)).length;
      expect(after.get(sku)!.reserved).toBe(2 * held);
    }
  });

  it("10 racing duplicates of a reserve hold once", async () => {
    const sku = await addProduct(10, 100);
    const id = unique("dup");
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => via(i).reserve(id, [{ sku, quantity: 4 }], 60_000)));
    for (const r of results) expect(r).toEqual(results[0]);
    expect(await stockOf(sku)).toMatchObject({ reserved: 4 });
    expect(await reservationRows(id)).toEqual({ reservations: 1, lines: 1 });
  });

  it("racing reserves of one id with two different payloads: one wins, the others get ConflictError", async () => {
    const sku = await addProduct(100);
    const id = unique("dup");
    const results = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => via(i).reserve(id, [{ sku, quantity: i % 2 === 0 ? 2 : 3 }], 60_000)));
    const won = (await inventory.getReservation(id)).lines[0]!.quantity;
    results.forEach((r, i) => {
      if ((i % 2 === 0 ? 2 : 3) === won) expect(r.status).toBe("fulfilled");
      else expect((r as PromiseRejectedResult).reason).toBeInstanceOf(ConflictError);
    });
    expect(await stockOf(sku)).toMatchObject({ reserved: won });
    expect(await reservationRows(id)).toEqual({ reservations: 1, lines: 1 });
  });

  it("10 racing duplicates of a commit sell once", async () => {
    const sku = await addProduct(10);
    const id = unique("dup");
    await inventory.reserve(id, [{ sku, quantity: 4 }], 60_000);
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => via(i).commit(id)));
    for (const r of results) expect(r).toEqual(results[0]);
    expect(results[0]!.state).toBe("COMMITTED");
    expect(await stockOf(sku)).toEqual({ initial: 10, restocked: 0, onHand: 6, reserved: 0, sold: 4 });
  });

  it("10 racing duplicates of a release free once", async () => {
    const sku = await addProduct(10);
    await inventory.reserve(unique("keep"), [{ sku, quantity: 3 }], 60_000);
    const id = unique("dup");
    await inventory.reserve(id, [{ sku, quantity: 4 }], 60_000);
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => via(i).release(id)));
    for (const r of results) expect(r).toEqual(results[0]);
    expect(results[0]!.state).toBe("RELEASED");
    expect(await stockOf(sku)).toEqual({ initial: 10, restocked: 0, onHand: 10, reserved: 3, sold: 0 });
  });

  it("10 racing duplicates of a return restore once", async () => {
    const sku = await addProduct(10);
    const sold = unique("sold");
    await inventory.reserve(sold, [{ sku, quantity: 2 }], 60_000);
    await inventory.commit(sold); // another sale that must stay sold
    const id = unique("dup");
    await inventory.reserve(id, [{ sku, quantity: 4 }], 60_000);
    await inventory.commit(id);
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => via(i).returnStock(id)));
    for (const r of results) expect(r).toEqual(results[0]);
    expect(results[0]!.state).toBe("RETURNED");
    expect(await stockOf(sku)).toEqual({ initial: 10, restocked: 0, onHand: 8, reserved: 0, sold: 2 });
  });

  it("10 racing duplicates of a restock add once", async () => {
    const sku = await addProduct(10);
    const id = unique("dup");
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => via(i).restock(id, sku, 7)));
    for (const r of results) expect(r.stock).toEqual({ initial: 10, restocked: 7, onHand: 17, reserved: 0, sold: 0 });
    expect(await stockOf(sku)).toEqual({ initial: 10, restocked: 7, onHand: 17, reserved: 0, sold: 0 });
    const { rows } = await db.query("SELECT 1 FROM restocks WHERE restock_id = $1", [id]);
    expect(rows).toHaveLength(1);
  });

  it("racing commits and releases of one hold: exactly one of them wins", async () => {
    const sku = await addProduct(10);
    const id = unique("dup");
    await inventory.reserve(id, [{ sku, quantity: 4 }], 60_000);
    const calls = Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? via(i).commit(id) : via(i + 1).release(id)));
    const results = await Promise.allSettled(calls);
    const final = (await inventory.getReservation(id)).state;
    expect(["COMMITTED", "RELEASED"]).toContain(final);
    const winner = final === "COMMITTED" ? 0 : 1; // index parity of the calls that must have succeeded
    results.forEach((r, i) => {
      if (i % 2 === winner) expect(r.status).toBe("fulfilled");
      else {
        expect(r.status).toBe("rejected");
        expect((r as PromiseRejectedResult).reason).toBeInstanceOf(RefusedError);
      }
    });
    expect(await stockOf(sku)).toEqual(
      final === "COMMITTED" ? { initial: 10, restocked: 0, onHand: 6, reserved: 0, sold: 4 } : { initial: 10, restocked: 0, onHand: 10, reserved: 0, sold: 0 },
    );
  });

  it("concurrent expireDue on two replicas frees each due hold exactly once", async () => {
    await drainDue();
    const skus = [await addProduct(100), await addProduct(100), await addProduct(100)];
    const ids = Array.from({ length: 30 }, () => unique("sweep"));
    for (const [i, id] of ids.entries()) {
      await inventory.reserve(
        id,
        [
          { sku: skus[i % 3]!, quantity: 2 },
          { sku: skus[(i + 1) % 3]!, quantity: 1 },
        ],
        60_000,
      );
    }
    await db.query("UPDATE reservations SET expires_at = now() - interval '1 second' WHERE reservation_id = ANY($1::text[])", [ids]);

    async function sweep(on: Inventory): Promise<number> {
      let total = 0;
      for (;;) {
        const n = await on.expireDue(4);
        if (n === 0) return total;
        total += n;
      }
    }
    const [a, b, c, d] = await Promise.all([sweep(inventory), sweep(replica), sweep(inventory), sweep(replica)]);
    expect(a + b + c + d).toBe(30);
    expect(await sweep(inventory)).toBe(0);
    for (const sku of skus) expect(await stockOf(sku)).toEqual({ initial: 100, restocked: 0, onHand: 100, reserved: 0, sold: 0 });
    const { rows } = await db.query<{ state: string; n: number }>(
      "SELECT state, count(*)::int AS n FROM reservations WHERE reservation_id = ANY($1::text[]) GROUP BY state",
      [ids],
    );
    expect(rows).toEqual([{ state: "EXPIRED", n: 30 }]);
  });

  /**
   * Runs `act` on a fresh pool while another transaction holds product
   * `first` locked; once `act` waits for that lock, takes `second` (which
   * sorts after `first`) with NOWAIT. A writer that holds `second` while it
   * waits for `first` locks out of SKU order: the NOWAIT fails at once, where
   * a waiting writer would deadlock with it.
   */
  async function actWhileFirstIsLocked<T>(first: string, second: string, act: (on: Inventory) => Promise<T>): Promise<T> {
    expect(first < second).toBe(true);
    const name = unique("blocked").toLowerCase();
    const pool = await openPool(testDb.url, name, 2);
    const other = await db.pool.connect();
    let call: Promise<T> | undefined;
    try {
      await other.query("BEGIN");
      await other.query("SELECT 1 FROM products WHERE sku = $1 FOR UPDATE", [first]);
      call = act(new Inventory(pool));
      call.catch(() => undefined); // awaited below
      for (const deadline = Date.now() + 20_000; ;) {
        const { rowCount } = await db.query("SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'", [name]);
        if (rowCount) break;
        if (Date.now() > deadline) throw new Error("the call never waited for the locked product");
        await sleep(20);
      }
      await other.query("SELECT 1 FROM products WHERE sku = $1 FOR UPDATE NOWAIT", [second]);
      await other.query("COMMIT");
      return await call;
    } finally {
      await other.query("ROLLBACK").catch(() => undefined);
      other.release();
      await call?.catch(() => undefined);
      await pool.close();
    }
  }

  /** Two products whose SKUs sort A before B, created B first so that table order is not SKU order. */
  async function twoProducts(): Promise<[string, string]> {
    const b = await addProduct(10, 100, "USD", "B-LOCK");
    const a = await addProduct(10, 100, "USD", "A-LOCK");
    return [a, b];
  }

  it("reserve takes its products in SKU order, so it cannot deadlock with another writer", async () => {
    const [a, b] = await twoProducts();
    const id = unique("ordered");
    const reservation = await actWhileFirstIsLocked(a, b, (on) =>
      on.reserve(
        id,
        [
          { sku: b, quantity: 1 },
          { sku: a, quantity: 2 },
        ],
        60_000,
      ),
    );
    expect(reservation.state).toBe("HELD");
    expect(await stockOf(a)).toMatchObject({ reserved: 2 });
    expect(await stockOf(b)).toMatchObject({ reserved: 1 });
  });

  it("commit takes its products in SKU order, so it cannot deadlock with another writer", async () => {
    const [a, b] = await twoProducts();
    const id = unique("ordered");
    await inventory.reserve(
      id,
      [
        { sku: b, quantity: 1 },
        { sku: a, quantity: 2 },
      ],
      60_000,
    );
    const committed = await actWhileFirstIsLocked(a, b, (on) => on.commit(id));
    expect(committed.state).toBe("COMMITTED");
    expect(await stockOf(a)).toMatchObject({ reserved: 0, sold: 2 });
    expect(await stockOf(b)).toMatchObject({ reserved: 0, sold: 1 });
  });

  it("expireDue takes a whole batch's products in SKU order, so it cannot deadlock with another writer", async () => {
    await drainDue();
    const [a, b] = await twoProducts();
    // The hold due first is on B, the next on A: taking products hold by
    // hold would lock B, then wait for A.
    const first = unique("due");
    const second = unique("due");
    await inventory.reserve(first, [{ sku: b, quantity: 1 }], 60_000);
    await inventory.reserve(second, [{ sku: a, quantity: 2 }], 60_000);
    await db.query("UPDATE reservations SET expires_at = now() - interval '2 seconds' WHERE reservation_id = $1", [first]);
    await db.query("UPDATE reservations SET expires_at = now() - interval '1 second' WHERE reservation_id = $1", [second]);
    expect(await actWhileFirstIsLocked(a, b, (on) => on.expireDue(10))).toBe(2);
    expect(await stockOf(a)).toMatchObject({ reserved: 0 });
    expect(await stockOf(b)).toMatchObject({ reserved: 0 });
  });

  it("commits racing the sweeper over expired holds are all refused and each hold is freed once", async () => {
    await drainDue();
    const sku = await addProduct(50);
    const ids = Array.from({ length: 10 }, () => unique("late"));
    for (const id of ids) await inventory.reserve(id, [{ sku, quantity: 3 }], 60_000);
    await db.query("UPDATE reservations SET expires_at = now() - interval '1 second' WHERE reservation_id = ANY($1::text[])", [ids]);
    const results = await Promise.allSettled([...ids.map((id, i) => via(i).commit(id)), replica.expireDue(100), inventory.expireDue(100)]);
    const commits = results.slice(0, ids.length);
    for (const r of commits) {
      expect(r.status).toBe("rejected");
      expect((r as PromiseRejectedResult).reason).toBeInstanceOf(RefusedError);
    }
    for (const r of results.slice(ids.length)) expect(r.status).toBe("fulfilled");
    expect(await stockOf(sku)).toEqual({ initial: 50, restocked: 0, onHand: 50, reserved: 0, sold: 0 });
    for (const id of ids) expect((await inventory.getReservation(id)).state).toBe("EXPIRED");
  });
});

function available(stock: StockCounters): number {
  return stock.onHand - stock.reserved;
}
