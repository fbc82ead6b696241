import { Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import {
  Admission,
  CHARGE_AMOUNT,
  ConflictError,
  Database,
  NotFoundError,
  RefusedError,
  OverloadedError,
  StillRunningError,
  createLogger,
  migrate,
  type Logger,
} from "@meshcart/lib";
import { ConcurrentAppendError, EventStore, type NewOrder, type RunChange } from "../src/event-store.js";
import { OrderNotifier } from "../src/order-notifier.js";
import { applyEvent, fold, stateAfter, type Order, type OrderEventData, type OrderState } from "../src/order-state.js";
import { Orders } from "../src/orders.js";
import type { InventoryPort, PaymentPort } from "../src/ports.js";
import { Saga, sagaRecovery } from "../src/saga.js";
import { TestDatabases } from "./support/database.js";
import { FakeInventory, FakePayment } from "./support/fakes.js";
import { eventually, sleep, unique } from "./support/wait.js";

/**
 * The saga, the event store and the use cases over a real test database,
 * with in-memory inventory and payment (support/fakes.ts) scripted to
 * answer, fail, lose answers or hold calls. Row numbers refer to the
 * transition table of docs/order-saga.md.
 */

const MIGRATIONS = fileURLToPath(new URL("../migrations", import.meta.url));
const logger = createLogger({ service: "order-saga-test", version: "test", level: "silent" });
// Bounds (not targets) also when vitest runs without the repository's vitest.config.ts.
vi.setConfig({ testTimeout: 60_000, hookTimeout: 120_000 });

const databases = new TestDatabases();

let db: Database;
let store: EventStore;
let notifier: OrderNotifier;

beforeAll(async () => {
  const database = await databases.create("order_saga");
  db = new Database({ url: database.url, poolMax: 20, statementTimeoutMs: 10_000, applicationName: "order-saga-test", logger });
  await migrate(db, MIGRATIONS, logger);
  store = new EventStore(db);
  notifier = new OrderNotifier(database.url, logger);
  notifier.start();
}, 120_000);

afterAll(async () => {
  await stopHarnesses();
  await notifier?.stop();
  await db?.close();
  await databases.dropAll();
}, 60_000);

afterEach(async () => {
  await stopHarnesses();
});

// ---------------------------------------------------------------- harness

interface Harness {
  owner: string;
  inventory: FakeInventory;
  payment: FakePayment;
  saga: Saga;
  orders: Orders;
  /** Stops the saga driver as a replica's shutdown would. */
  stop: AbortController;
}

const harnesses: Harness[] = [];

/** One replica of the order service: its saga driver and use cases, over the shared store. */
function replica(
  options: {
    owner?: string;
    inventory?: FakeInventory;
    payment?: FakePayment;
    /** Ports the saga uses instead of the fakes (e.g. wrappers that record who called). */
    ports?: { inventory: InventoryPort; payment: PaymentPort };
    leaseMs?: number;
    maxWaitMs?: number;
    /** The waiters' fallback re-read; a notification wakes them before it. */
    pollMs?: number;
    /** Attempts of an undo step failing in a way retrying does not fix. */
    undoAttempts?: number;
    /** The checkouts' admission control; a limit no test reaches by default. */
    admission?: Admission;
    /** The store the saga driver and the use cases see (the shared one by default). */
    sagaStore?: EventStore;
    ordersStore?: EventStore;
    logger?: Logger;
  } = {},
): Harness {
  const owner = options.owner ?? unique("replica");
  const inventory = options.inventory ?? new FakeInventory();
  const payment = options.payment ?? new FakePayment();
  const leaseMs = options.leaseMs ?? 30_000;
  const stop = new AbortController();
  const saga = new Saga({
    store: options.sagaStore ?? store,
    inventory: options.ports?.inventory ?? inventory,
    payment: options.ports?.payment ?? payment,
    settings: {
      owner,
      leaseMs,
      retryBaseMs: 5,
      retryMaxMs: 40,
      undoAttempts: options.undoAttempts ?? 10,
      chargeBounds: { minMinor: CHARGE_AMOUNT.minMinorUnits, maxMinor: CHARGE_AMOUNT.maxMinorUnits },
      ...(options.admission ? { admission: options.admission } : {}),
    },
    logger: options.logger ?? logger,
    stopping: stop.signal,
    onAppend: (order) => notifier.notify(order),
  });
  const orders = new Orders(
    options.ordersStore ?? store,
    saga,
    notifier,
    {
      owner,
      leaseMs,
      maxWaitMs: options.maxWaitMs ?? 20_000,
      pollMs: options.pollMs ?? 50,
    },
    options.admission ?? new Admission("checkouts", { limit: 1_000, queue: 0, queueTimeoutMs: 1 }),
  );
  const harness = { owner, inventory, payment, saga, orders, stop };
  harnesses.push(harness);
  return harness;
}

async function stopHarnesses(): Promise<void> {
  for (const h of harnesses.splice(0)) {
    h.stop.abort();
    await h.saga.drained();
  }
}

function request(overrides: Partial<NewOrder> = {}): NewOrder {
  return {
    requestId: unique("req"),
    customerId: unique("cust"),
    items: [{ sku: "MESH-MUG", quantity: 2 }],
    paymentMethod: "pm_card_visa",
    ...overrides,
  };
}

const never = () => new AbortController().signal;

function types(order: Order): string[] {
  return order.history.map((e) => e.data.type);
}

function states(order: Order): OrderState[] {
  return order.history.map((e) => e.stateAfter);
}

function eventOf<T extends OrderEventData["type"]>(order: Order, type: T): Extract<OrderEventData, { type: T }> {
  const found = order.history.find((e) => e.data.type === type);
  if (!found) throw new Error(`order ${order.orderId} has no ${type} event`);
  return found.data as Extract<OrderEventData, { type: T }>;
}

/** The keys each step must carry (docs/order-saga.md, "Idempotency keys"). */
function keys(orderId: string) {
  return {
    stock: `${orderId}.stock`,
    charge: `${orderId}.charge`,
    compensation: `${orderId}.refund.compensation`,
    cancellation: `${orderId}.refund.cancellation`,
  };
}

/** Every call the saga made to both services, as "method key", in order. */
function callOrder(h: Harness): string[] {
  return [...h.inventory.calls, ...h.payment.calls].sort((a, b) => a.seq - b.seq).map((c) => `${c.method} ${c.key}`);
}

/** Appends events to an order's log as a writer outside any saga would (no run change but the one named). */
async function appendEvents(orderId: string, events: OrderEventData[], change: RunChange = { run: "renew", leaseMs: 60_000 }): Promise<Order> {
  let order = (await store.load(orderId))!;
  const version = order.version;
  let state = order.state;
  for (const data of events) {
    state = stateAfter(state, data);
    order = applyEvent(order, { sequence: order.version + 1, data, stateAfter: state, occurredAt: new Date() });
  }
  await store.append(order, version, { change });
  return order;
}

async function projectionOf(orderId: string) {
  const { rows } = await db.query("SELECT * FROM orders WHERE order_id = $1", [orderId]);
  if (!rows[0]) throw new Error(`order ${orderId} has no projection row`);
  return rows[0];
}

async function sagaRunOf(orderId: string) {
  const { rows } = await db.query<{ owner: string; expired: boolean }>("SELECT owner, lease_until < now() AS expired FROM saga_runs WHERE order_id = $1", [
    orderId,
  ]);
  return rows[0];
}

async function counts() {
  const { rows } = await db.query<{ orders: number; events: number; runs: number }>(
    `SELECT (SELECT count(*)::int FROM orders) AS orders, (SELECT count(*)::int FROM order_events) AS events,
            (SELECT count(*)::int FROM saga_runs) AS runs`,
  );
  return rows[0]!;
}

async function finalOrder(h: Harness, orderId: string): Promise<Order> {
  return eventually(`order ${orderId} to be final`, async () => {
    const order = await h.orders.get(orderId);
    return ["CONFIRMED", "REJECTED", "FAILED", "CANCELLED"].includes(order.state) ? order : undefined;
  });
}

/** The projection must always equal the fold of the log. */
async function expectProjectionInStep(order: Order): Promise<void> {
  const row = await projectionOf(order.orderId);
  expect(row).toMatchObject({
    state: order.state,
    version: order.version,
    payment_id: order.paymentId ?? null,
    failure_reason: order.failureReason ?? null,
    total_minor: order.totalMinor ?? null,
  });
}

// ------------------------------------------------------------- forward path

describe("forward path (rows 1, 2, 5, 8)", () => {
  it("CONFIRMED: reserve, charge and commit once each with the derived keys; prices come from inventory", async () => {
    const h = replica();
    const order = await h.orders.create(
      request({
        items: [
          { sku: "MESH-MUG", quantity: 2 },
          { sku: "MESH-CAP", quantity: 1 },
        ],
      }),
      never(),
    );
    const k = keys(order.orderId);

    expect(order.state).toBe("CONFIRMED");
    expect(types(order)).toEqual(["ORDER_PLACED", "STOCK_RESERVED", "PAYMENT_CAPTURED", "RESERVATION_COMMITTED", "ORDER_CONFIRMED"]);
    expect(states(order)).toEqual(["PENDING", "STOCK_RESERVED", "PAYMENT_CAPTURED", "PAYMENT_CAPTURED", "CONFIRMED"]);
    expect(order.history.map((e) => e.sequence)).toEqual([1, 2, 3, 4, 5]);
    expect(order.lines).toEqual([
      { sku: "MESH-MUG", quantity: 2, unitPriceMinor: 1400 },
      { sku: "MESH-CAP", quantity: 1, unitPriceMinor: 1900 },
    ]);
    expect(order.totalMinor).toBe(4700);
    expect(order.currencyCode).toBe("USD");
    expect(eventOf(order, "STOCK_RESERVED").reservationId).toBe(k.stock);

    expect(callOrder(h)).toEqual([`reserve ${k.stock}`, `charge ${k.charge}`, `commit ${k.stock}`]);
    const [payment] = h.payment.paymentsOf(order.orderId);
    expect(payment!.request).toMatchObject({ amountMinor: 4700, currencyCode: "USD", customerId: order.customerId, paymentMethod: "pm_card_visa" });
    expect(order.paymentId).toBe(payment!.paymentId);
    expect(h.payment.netCharged(order.orderId)).toBe(4700);
    expect(h.inventory.stock("MESH-MUG")).toEqual({ unitPriceMinor: 1400, onHand: 98, reserved: 0, sold: 2 });

    // Final: the saga run is gone and the projection matches the log.
    expect(await sagaRunOf(order.orderId)).toBeUndefined();
    await expectProjectionInStep(order);
    expect((await projectionOf(order.orderId)).lines).toEqual(order.lines);
  });

  it("row 1: the order is persisted PENDING with its saga lease before any step runs", async () => {
    const h = replica();
    const hold = h.inventory.script.hold("reserve");
    const req = request();
    const created = h.orders.create(req, never());
    await hold.reached;

    const found = await store.findByRequestId(req.requestId);
    const pending = await h.orders.get(found!.orderId);
    expect(pending.state).toBe("PENDING");
    expect(types(pending)).toEqual(["ORDER_PLACED"]);
    expect(eventOf(pending, "ORDER_PLACED")).toMatchObject({ requestId: req.requestId, customerId: req.customerId, items: req.items });
    expect(await sagaRunOf(pending.orderId)).toMatchObject({ owner: h.owner, expired: false });
    expect((await projectionOf(pending.orderId)).state).toBe("PENDING");

    hold.release();
    expect((await created).state).toBe("CONFIRMED");
  });
});

// ------------------------------------------------------------- rejections

describe("reserve refused (row 3)", () => {
  it("not enough stock: STOCK_UNAVAILABLE + ORDER_REJECTED in one step, nothing charged", async () => {
    const h = replica();
    const order = await h.orders.create(request({ items: [{ sku: "MESH-STICKER-GOLD", quantity: 11 }] }), never());
    expect(order.state).toBe("REJECTED");
    expect(types(order)).toEqual(["ORDER_PLACED", "STOCK_UNAVAILABLE", "ORDER_REJECTED"]);
    expect(states(order)).toEqual(["PENDING", "PENDING", "REJECTED"]);
    expect(order.failureReason).toMatch(/not enough stock of MESH-STICKER-GOLD/);
    expect(h.payment.calls).toEqual([]);
    expect(h.inventory.script.trace("reserve", "release", "commit", "returnStock")).toEqual([`reserve ${order.orderId}.stock`]);
    expect(h.inventory.totalReserved).toBe(0);
    await expectProjectionInStep(order);
  });

  it("an unknown SKU (NOT_FOUND from the reserve) is a rejection too: nothing held, nothing charged", async () => {
    const h = replica();
    const order = await h.orders.create(
      request({
        items: [
          { sku: "MESH-MUG", quantity: 1 },
          { sku: "NO-SUCH-SKU", quantity: 1 },
        ],
      }),
      never(),
    );
    expect(order.state).toBe("REJECTED");
    expect(types(order)).toEqual(["ORDER_PLACED", "STOCK_UNAVAILABLE", "ORDER_REJECTED"]);
    expect(order.failureReason).toMatch(/NO-SUCH-SKU not found/);
    expect(h.payment.calls).toEqual([]);
    expect(h.inventory.totalReserved).toBe(0);
    expect(await sagaRunOf(order.orderId)).toBeUndefined();
  });

  it("a total payment can never take is refused by the reserve, before anything is held", async () => {
    const inventory = new FakeInventory({ "MESH-YACHT": { price: 90_000_000, stock: 10 } });
    const h = replica({ inventory });
    const order = await h.orders.create(request({ items: [{ sku: "MESH-YACHT", quantity: 2 }] }), never());
    expect(order.state).toBe("REJECTED");
    expect(types(order)).toEqual(["ORDER_PLACED", "STOCK_UNAVAILABLE", "ORDER_REJECTED"]);
    expect(order.failureReason).toMatch(/total of 180000000 .* outside/);
    expect(inventory.reservations.size).toBe(0);
    expect(h.payment.calls).toEqual([]);
  });
});

describe("reserve failed (row 4, then rows 11 and 13)", () => {
  it("a transient failure with no effect: STEP_FAILED, the release finds nothing, fences a late reserve, FAILED", async () => {
    const h = replica();
    h.inventory.script.failNext("reserve", { kind: "transient" });
    const order = await h.orders.create(request(), never());
    const k = keys(order.orderId);

    expect(order.state).toBe("FAILED");
    expect(types(order)).toEqual(["ORDER_PLACED", "STEP_FAILED", "STOCK_RELEASED", "ORDER_FAILED"]);
    expect(states(order)).toEqual(["PENDING", "COMPENSATING", "COMPENSATING", "FAILED"]);
    expect(eventOf(order, "STEP_FAILED").step).toBe("reserve");
    expect(eventOf(order, "STOCK_RELEASED").detail).toMatch(/fenced/);
    // No refund: nothing was charged. The fence reserves under the same id and releases at once.
    expect(callOrder(h)).toEqual([`reserve ${k.stock}`, `release ${k.stock}`, `reserve ${k.stock}`, `release ${k.stock}`]);
    expect(h.inventory.reservations.get(k.stock)!.state).toBe("RELEASED");
    expect(h.inventory.totalReserved).toBe(0);
    // A late original attempt now finds the released reservation and holds nothing.
    await h.inventory.reserve(k.stock, order.items, { minMinor: 1, maxMinor: 100_000_000 });
    expect(h.inventory.totalReserved).toBe(0);
    await expectProjectionInStep(order);
    expect(await sagaRunOf(order.orderId)).toBeUndefined();
  });

  it("reservation in doubt (reserved, answer lost): the release frees the hold, no fence", async () => {
    const h = replica();
    h.inventory.script.failNext("reserve", { kind: "transient", afterEffect: true });
    const order = await h.orders.create(request(), never());
    const k = keys(order.orderId);

    expect(order.state).toBe("FAILED");
    expect(types(order)).toEqual(["ORDER_PLACED", "STEP_FAILED", "STOCK_RELEASED", "ORDER_FAILED"]);
    expect(eventOf(order, "STOCK_RELEASED").detail).toBe("reservation released");
    expect(callOrder(h)).toEqual([`reserve ${k.stock}`, `release ${k.stock}`]);
    expect(h.inventory.stock("MESH-MUG")).toMatchObject({ onHand: 100, reserved: 0, sold: 0 });
  });

  it("a refusal without a rejection's meaning (the id used with other items) is a STEP_FAILED too", async () => {
    const h = replica();
    h.inventory.script.failNext("reserve", { kind: "refused", message: "ALREADY_EXISTS reservation exists with other items" });
    const order = await h.orders.create(request(), never());
    expect(order.state).toBe("FAILED");
    expect(eventOf(order, "STEP_FAILED")).toMatchObject({ step: "reserve", reason: expect.stringMatching(/ALREADY_EXISTS/) });
    expect(order.failureReason).toMatch(/ALREADY_EXISTS/);
    expect(h.payment.calls).toEqual([]);
  });
});

describe("charge (rows 6, 7, then 10-13)", () => {
  it("declined: PAYMENT_DECLINED, release without a refund, REJECTED", async () => {
    const h = replica();
    const order = await h.orders.create(request({ paymentMethod: "pm_card_declined" }), never());
    const k = keys(order.orderId);

    expect(order.state).toBe("REJECTED");
    expect(types(order)).toEqual(["ORDER_PLACED", "STOCK_RESERVED", "PAYMENT_DECLINED", "STOCK_RELEASED", "ORDER_REJECTED"]);
    expect(states(order)).toEqual(["PENDING", "STOCK_RESERVED", "COMPENSATING", "COMPENSATING", "REJECTED"]);
    expect(order.failureReason).toBe("payment declined: card declined");
    expect(callOrder(h)).toEqual([`reserve ${k.stock}`, `charge ${k.charge}`, `release ${k.stock}`]);
    expect(h.payment.script.count("refundAll")).toBe(0);
    expect(h.payment.netCharged(order.orderId)).toBe(0);
    expect(h.inventory.stock("MESH-MUG")).toMatchObject({ onHand: 100, reserved: 0, sold: 0 });
    await expectProjectionInStep(order);
  });

  it("insufficient funds is a decline too", async () => {
    const h = replica();
    const order = await h.orders.create(request({ paymentMethod: "pm_card_insufficient_funds" }), never());
    expect(order.state).toBe("REJECTED");
    expect(order.failureReason).toBe("payment declined: insufficient funds");
    expect(h.payment.script.count("refundAll")).toBe(0);
  });

  it("a transient failure that charged nothing: the refund step settles it with the same key and refunds, net zero, FAILED", async () => {
    const h = replica();
    h.payment.script.failNext("charge", { kind: "transient" });
    const order = await h.orders.create(request(), never());
    const k = keys(order.orderId);

    expect(order.state).toBe("FAILED");
    expect(types(order)).toEqual(["ORDER_PLACED", "STOCK_RESERVED", "STEP_FAILED", "PAYMENT_REFUNDED", "STOCK_RELEASED", "ORDER_FAILED"]);
    expect(states(order)).toEqual(["PENDING", "STOCK_RESERVED", "COMPENSATING", "COMPENSATING", "COMPENSATING", "FAILED"]);
    expect(eventOf(order, "STEP_FAILED").step).toBe("charge");
    // Refund before release, with exactly these keys.
    expect(callOrder(h)).toEqual([`reserve ${k.stock}`, `charge ${k.charge}`, `charge ${k.charge}`, `refundAll ${k.compensation}`, `release ${k.stock}`]);
    const payments = h.payment.paymentsOf(order.orderId);
    expect(payments).toHaveLength(1);
    expect(eventOf(order, "PAYMENT_REFUNDED")).toEqual({ type: "PAYMENT_REFUNDED", paymentId: payments[0]!.paymentId, refundedMinor: 2800 });
    expect(h.payment.refundsOf(order.orderId)).toEqual([{ key: k.compensation, amountMinor: 2800 }]);
    expect(h.payment.netCharged(order.orderId)).toBe(0);
    expect(h.inventory.stock("MESH-MUG")).toMatchObject({ onHand: 100, reserved: 0, sold: 0 });
    await expectProjectionInStep(order);
  });

  it("charge in doubt (charged, answer lost): the repeated charge finds the same payment and it is refunded, net zero", async () => {
    const h = replica();
    h.payment.script.failNext("charge", { kind: "transient", afterEffect: true });
    const order = await h.orders.create(request(), never());
    const k = keys(order.orderId);

    expect(order.state).toBe("FAILED");
    expect(order.failureReason).toMatch(/charge: scripted transient failure after acting/);
    expect(callOrder(h)).toEqual([`reserve ${k.stock}`, `charge ${k.charge}`, `charge ${k.charge}`, `refundAll ${k.compensation}`, `release ${k.stock}`]);
    const payments = h.payment.paymentsOf(order.orderId);
    expect(payments).toHaveLength(1);
    expect(payments[0]!.refundedMinor).toBe(2800);
    expect(order.paymentId).toBe(payments[0]!.paymentId);
    expect(h.payment.netCharged(order.orderId)).toBe(0);
    // A late original attempt finds the same (refunded) payment: still one payment.
    await h.payment.charge({
      idempotencyKey: k.charge,
      customerId: order.customerId,
      currencyCode: "USD",
      amountMinor: 2800,
      paymentMethod: "pm_card_visa",
      orderId: order.orderId,
    });
    expect(h.payment.paymentsOf(order.orderId)).toHaveLength(1);
    expect(h.payment.netCharged(order.orderId)).toBe(0);
  });

  it("charge in doubt that was in fact declined: nothing to refund (refunded 0), no Refund call", async () => {
    const h = replica();
    h.payment.script.failNext("charge", { kind: "transient", afterEffect: true });
    const order = await h.orders.create(request({ paymentMethod: "pm_card_declined" }), never());
    const k = keys(order.orderId);

    expect(order.state).toBe("FAILED");
    expect(types(order)).toEqual(["ORDER_PLACED", "STOCK_RESERVED", "STEP_FAILED", "PAYMENT_REFUNDED", "STOCK_RELEASED", "ORDER_FAILED"]);
    expect(eventOf(order, "PAYMENT_REFUNDED")).toMatchObject({ refundedMinor: 0, detail: "the charge was declined: nothing was taken" });
    expect(callOrder(h)).toEqual([`reserve ${k.stock}`, `charge ${k.charge}`, `charge ${k.charge}`, `release ${k.stock}`]);
    expect(h.inventory.totalReserved).toBe(0);
  });

  it("payment refusing the amount outright: nothing was taken, the stock is released, REJECTED with the reason, no refund", async () => {
    const h = replica();
    // A payment stricter than the bounds the reserve was given (a canary with another limit, say).
    h.payment.maxAmountMinor = 1_000;
    const order = await h.orders.create(request(), never());
    const k = keys(order.orderId);
    expect(order.state).toBe("REJECTED");
    expect(types(order)).toEqual(["ORDER_PLACED", "STOCK_RESERVED", "PAYMENT_DECLINED", "STOCK_RELEASED", "ORDER_REJECTED"]);
    expect(order.failureReason).toMatch(/payment refused the charge: INVALID_ARGUMENT/);
    expect(order.paymentId).toBeUndefined();
    expect(callOrder(h)).toEqual([`reserve ${k.stock}`, `charge ${k.charge}`, `release ${k.stock}`]);
    expect(h.payment.payments.size).toBe(0);
    expect(h.inventory.totalReserved).toBe(0);
    await expectProjectionInStep(order);
  });

  it("a charge in doubt whose settling re-charge is refused: nothing was taken, FAILED, stock released, no loop", async () => {
    const h = replica();
    const hold = h.payment.script.hold("charge");
    h.payment.script.failNext("charge", { kind: "transient" });
    const created = h.orders.create(request(), never());
    await hold.reached;
    // From the second attempt on, payment refuses the amount.
    h.payment.maxAmountMinor = 1;
    hold.release();
    const order = await created;
    expect(order.state).toBe("FAILED");
    expect(types(order)).toEqual(["ORDER_PLACED", "STOCK_RESERVED", "STEP_FAILED", "PAYMENT_REFUNDED", "STOCK_RELEASED", "ORDER_FAILED"]);
    expect(eventOf(order, "PAYMENT_REFUNDED")).toMatchObject({ refundedMinor: 0, detail: expect.stringMatching(/refused the charge.*nothing was taken/) });
    expect(h.payment.script.count("charge")).toBe(2);
    expect(h.payment.script.count("refundAll")).toBe(0);
    expect(h.inventory.totalReserved).toBe(0);
  });

  it("a refused charge without a decline's meaning (ALREADY_EXISTS) is a STEP_FAILED and compensates", async () => {
    const h = replica();
    h.payment.script.failNext("charge", { kind: "refused", message: "ALREADY_EXISTS key used with another amount" });
    const order = await h.orders.create(request(), never());
    expect(order.state).toBe("FAILED");
    expect(eventOf(order, "STEP_FAILED")).toMatchObject({ step: "charge" });
    expect(h.payment.netCharged(order.orderId)).toBe(0);
    expect(h.inventory.totalReserved).toBe(0);
  });
});

describe("commit (row 9, then 10, 11, 13)", () => {
  it("a transient failure that committed nothing: refund the known payment (no second charge), release, FAILED", async () => {
    const h = replica();
    h.inventory.script.failNext("commit", { kind: "transient" });
    const order = await h.orders.create(request(), never());
    const k = keys(order.orderId);

    expect(order.state).toBe("FAILED");
    expect(types(order)).toEqual(["ORDER_PLACED", "STOCK_RESERVED", "PAYMENT_CAPTURED", "STEP_FAILED", "PAYMENT_REFUNDED", "STOCK_RELEASED", "ORDER_FAILED"]);
    expect(eventOf(order, "STEP_FAILED").step).toBe("commit");
    expect(callOrder(h)).toEqual([`reserve ${k.stock}`, `charge ${k.charge}`, `commit ${k.stock}`, `refundAll ${k.compensation}`, `release ${k.stock}`]);
    expect(h.payment.netCharged(order.orderId)).toBe(0);
    expect(h.inventory.stock("MESH-MUG")).toMatchObject({ onHand: 100, reserved: 0, sold: 0 });
    expect(h.inventory.reservations.get(k.stock)!.state).toBe("RELEASED");
  });

  it("commit in doubt (committed, answer lost): the release reports already-committed and the stock is returned", async () => {
    const h = replica();
    h.inventory.script.failNext("commit", { kind: "transient", afterEffect: true });
    const order = await h.orders.create(request(), never());
    const k = keys(order.orderId);

    expect(order.state).toBe("FAILED");
    expect(callOrder(h)).toEqual([
      `reserve ${k.stock}`,
      `charge ${k.charge}`,
      `commit ${k.stock}`,
      `refundAll ${k.compensation}`,
      `release ${k.stock}`,
      `returnStock ${k.stock}`,
    ]);
    expect(eventOf(order, "STOCK_RELEASED").detail).toMatch(/committed: stock returned/);
    expect(h.inventory.reservations.get(k.stock)!.state).toBe("RETURNED");
    expect(h.inventory.stock("MESH-MUG")).toMatchObject({ onHand: 100, reserved: 0, sold: 0 });
    expect(h.payment.netCharged(order.orderId)).toBe(0);
  });

  it("the hold expired before the commit (FAILED_PRECONDITION): refund, nothing sold, FAILED", async () => {
    const h = replica();
    const hold = h.inventory.script.hold("commit");
    const req = request();
    const created = h.orders.create(req, never());
    await hold.reached;
    const { orderId } = (await store.findByRequestId(req.requestId))!;
    h.inventory.expire(`${orderId}.stock`);
    hold.release();
    const order = await created;
    const k = keys(order.orderId);

    expect(order.state).toBe("FAILED");
    expect(eventOf(order, "STEP_FAILED")).toMatchObject({ step: "commit", reason: expect.stringMatching(/expired/) });
    expect(callOrder(h)).toEqual([`reserve ${k.stock}`, `charge ${k.charge}`, `commit ${k.stock}`, `refundAll ${k.compensation}`, `release ${k.stock}`]);
    expect(h.inventory.stock("MESH-MUG")).toMatchObject({ onHand: 100, reserved: 0, sold: 0 });
    expect(h.payment.netCharged(order.orderId)).toBe(0);
    expect(h.payment.refundsOf(order.orderId)).toEqual([{ key: k.compensation, amountMinor: 2800 }]);
  });
});

describe("compensation steps retry until they succeed", () => {
  it("refund and release failing (transiently or not) are retried with the same keys; one refund, one release", async () => {
    const h = replica();
    h.inventory.script.failNext("commit", { kind: "transient" });
    h.payment.script.failNext("refundAll", { kind: "transient" }, 2);
    h.payment.script.failNext("refundAll", { kind: "transient", afterEffect: true });
    h.inventory.script.failNext("release", { kind: "transient" });
    h.inventory.script.failNext("release", { kind: "broken" });
    const order = await h.orders.create(request(), never());
    const k = keys(order.orderId);

    expect(order.state).toBe("FAILED");
    // Failed attempts are not facts of the order: one event per step.
    expect(types(order)).toEqual(["ORDER_PLACED", "STOCK_RESERVED", "PAYMENT_CAPTURED", "STEP_FAILED", "PAYMENT_REFUNDED", "STOCK_RELEASED", "ORDER_FAILED"]);
    expect(callOrder(h)).toEqual([
      `reserve ${k.stock}`,
      `charge ${k.charge}`,
      `commit ${k.stock}`,
      ...Array(4).fill(`refundAll ${k.compensation}`),
      ...Array(3).fill(`release ${k.stock}`),
    ]);
    expect(h.payment.refundsOf(order.orderId)).toEqual([{ key: k.compensation, amountMinor: 2800 }]);
    expect(eventOf(order, "PAYMENT_REFUNDED").refundedMinor).toBe(2800);
    expect(h.payment.netCharged(order.orderId)).toBe(0);
    expect(h.inventory.totalReserved).toBe(0);
  });

  it("transient failures never count towards giving up: five in a row with undoAttempts 2 still complete", async () => {
    const h = replica({ undoAttempts: 2 });
    h.inventory.script.failNext("commit", { kind: "transient" });
    h.inventory.script.failNext("release", { kind: "transient" }, 5);
    const order = await h.orders.create(request(), never());
    expect(order.state).toBe("FAILED");
    expect(types(order)).not.toContain("STEP_ABANDONED");
    expect(h.inventory.script.count("release")).toBe(6);
    expect(h.inventory.totalReserved).toBe(0);
  });

  it("a compensation step that keeps meeting an answer retrying does not fix is given up after undoAttempts: the saga ends", async () => {
    const h = replica({ undoAttempts: 3 });
    h.inventory.script.failNext("commit", { kind: "transient" });
    h.inventory.script.failNext("release", { kind: "broken", message: "releasing the reservation: INTERNAL boom" }, 50);
    const order = await h.orders.create(request(), never());
    expect(order.state).toBe("FAILED");
    expect(types(order)).toEqual(["ORDER_PLACED", "STOCK_RESERVED", "PAYMENT_CAPTURED", "STEP_FAILED", "PAYMENT_REFUNDED", "STEP_ABANDONED", "ORDER_FAILED"]);
    expect(eventOf(order, "STEP_ABANDONED")).toMatchObject({ step: "release", reason: "releasing the reservation: INTERNAL boom" });
    expect(order.failureReason).toMatch(/the stock release was not confirmed and needs an operator \(releasing the reservation: INTERNAL boom\)/);
    expect(h.inventory.script.count("release")).toBe(3);
    // The money was settled; the hold is left to expire (or to an operator).
    expect(h.payment.netCharged(order.orderId)).toBe(0);
    expect(await sagaRunOf(order.orderId)).toBeUndefined();
    await expectProjectionInStep(order);
  });

  it("the re-charge that settles a charge in doubt is retried too", async () => {
    const h = replica();
    h.payment.script.failNext("charge", { kind: "transient" }, 3);
    const order = await h.orders.create(request(), never());
    const k = keys(order.orderId);
    expect(order.state).toBe("FAILED");
    expect(callOrder(h)).toEqual([`reserve ${k.stock}`, ...Array(4).fill(`charge ${k.charge}`), `refundAll ${k.compensation}`, `release ${k.stock}`]);
    expect(h.payment.paymentsOf(order.orderId)).toHaveLength(1);
    expect(h.payment.netCharged(order.orderId)).toBe(0);
  });
});

// ------------------------------------------------------------- CreateOrder

describe("CreateOrder idempotency", () => {
  it("a replay (same request_id, same content) returns the same order and starts no second saga", async () => {
    const h = replica();
    const req = request({
      items: [
        { sku: "MESH-MUG", quantity: 1 },
        { sku: "MESH-CAP", quantity: 2 },
      ],
    });
    const first = await h.orders.create(req, never());
    const before = await counts();
    const again = await h.orders.create({ ...req, items: [...req.items].reverse() }, never());
    expect(again.orderId).toBe(first.orderId);
    expect(again.version).toBe(first.version);
    expect(again.history).toEqual(first.history);
    expect(h.inventory.script.count("reserve")).toBe(1);
    expect(h.payment.script.count("charge")).toBe(1);
    // Nothing was written.
    expect(await counts()).toEqual(before);
  });

  it("a replay while the saga runs waits for the same outcome", async () => {
    const h = replica();
    const hold = h.payment.script.hold("charge");
    const req = request();
    const first = h.orders.create(req, never());
    await hold.reached;
    const second = h.orders.create(req, never());
    await sleep(100);
    hold.release();
    const [a, b] = await Promise.all([first, second]);
    expect(b.orderId).toBe(a.orderId);
    expect(b.state).toBe("CONFIRMED");
    expect(h.inventory.script.count("reserve")).toBe(1);
    expect(h.payment.script.count("charge")).toBe(1);
  });

  it("the same request_id with different content is a ConflictError and writes nothing", async () => {
    const h = replica();
    const req = request();
    const first = await h.orders.create(req, never());
    const before = await counts();
    for (const changed of [
      { ...req, items: [{ sku: "MESH-MUG", quantity: 3 }] },
      { ...req, customerId: unique("other") },
      { ...req, paymentMethod: "pm_card_mastercard" },
    ]) {
      await expect(h.orders.create(changed, never())).rejects.toBeInstanceOf(ConflictError);
    }
    expect(await counts()).toEqual(before);
    expect((await h.orders.get(first.orderId)).version).toBe(first.version);
    expect(h.inventory.script.count("reserve")).toBe(1);
  });

  it("10 racing duplicates: one order, one saga, one reserve", async () => {
    const h = replica();
    const req = request();
    const results = await Promise.all(Array.from({ length: 10 }, () => h.orders.create(req, never())));
    expect(new Set(results.map((o) => o.orderId)).size).toBe(1);
    expect(results.every((o) => o.state === "CONFIRMED")).toBe(true);
    const { rows } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM orders WHERE request_id = $1", [req.requestId]);
    expect(rows[0]!.n).toBe(1);
    expect(h.inventory.script.count("reserve")).toBe(1);
    expect(h.payment.script.count("charge")).toBe(1);
    expect(h.inventory.script.count("commit")).toBe(1);
  });

  it("10 racing duplicates across two replicas: still one order and one reserve", async () => {
    const inventory = new FakeInventory();
    const payment = new FakePayment();
    const a = replica({ inventory, payment });
    const b = replica({ inventory, payment });
    const req = request();
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).orders.create(req, never())));
    expect(new Set(results.map((o) => o.orderId)).size).toBe(1);
    expect(inventory.script.count("reserve")).toBe(1);
    expect(payment.script.count("charge")).toBe(1);
  });
});

// ------------------------------------------------------------- CancelOrder

describe("CancelOrder (rows 14-17)", () => {
  it("a confirmed order: CANCELLATION_REQUESTED, refund, return, CANCELLED", async () => {
    const h = replica();
    const confirmed = await h.orders.create(request(), never());
    const k = keys(confirmed.orderId);
    const cancelled = await h.orders.cancel(confirmed.orderId, "changed my mind", never());

    expect(cancelled.state).toBe("CANCELLED");
    expect(types(cancelled).slice(5)).toEqual(["CANCELLATION_REQUESTED", "PAYMENT_REFUNDED", "STOCK_RETURNED", "ORDER_CANCELLED"]);
    expect(states(cancelled).slice(5)).toEqual(["CANCELLING", "CANCELLING", "CANCELLING", "CANCELLED"]);
    expect(cancelled.failureReason).toBe("changed my mind");
    expect(callOrder(h).slice(3)).toEqual([`refundAll ${k.cancellation}`, `returnStock ${k.stock}`]);
    expect(h.payment.refundsOf(confirmed.orderId)).toEqual([{ key: k.cancellation, amountMinor: 2800 }]);
    expect(eventOf(cancelled, "PAYMENT_REFUNDED")).toEqual({ type: "PAYMENT_REFUNDED", paymentId: confirmed.paymentId, refundedMinor: 2800 });
    expect(h.payment.netCharged(confirmed.orderId)).toBe(0);
    expect(h.inventory.stock("MESH-MUG")).toMatchObject({ onHand: 100, reserved: 0, sold: 0 });
    expect(await sagaRunOf(confirmed.orderId)).toBeUndefined();
    await expectProjectionInStep(cancelled);
  });

  it("a replayed cancel returns the cancelled order and does nothing", async () => {
    const h = replica();
    const confirmed = await h.orders.create(request(), never());
    const first = await h.orders.cancel(confirmed.orderId, "", never());
    const callsBefore = h.payment.calls.length + h.inventory.calls.length;
    const again = await h.orders.cancel(confirmed.orderId, "", never());
    expect(again.state).toBe("CANCELLED");
    expect(again.version).toBe(first.version);
    expect(h.payment.calls.length + h.inventory.calls.length).toBe(callsBefore);
    expect(first.failureReason).toBe("cancelled by the customer");
  });

  it("cancellation steps that fail are retried until done, with the same keys", async () => {
    const h = replica();
    const confirmed = await h.orders.create(request(), never());
    const k = keys(confirmed.orderId);
    h.payment.script.failNext("refundAll", { kind: "transient", afterEffect: true }, 2);
    h.inventory.script.failNext("returnStock", { kind: "transient" }, 2);
    const cancelled = await h.orders.cancel(confirmed.orderId, "retry me", never());
    expect(cancelled.state).toBe("CANCELLED");
    expect(callOrder(h).slice(3)).toEqual([...Array(3).fill(`refundAll ${k.cancellation}`), ...Array(3).fill(`returnStock ${k.stock}`)]);
    expect(h.payment.refundsOf(confirmed.orderId)).toHaveLength(1);
    expect(h.payment.netCharged(confirmed.orderId)).toBe(0);
    expect(h.inventory.stock("MESH-MUG").sold).toBe(0);
  });

  it("any state but CONFIRMED (and CANCELLING/CANCELLED) is refused with the reason, and nothing is written", async () => {
    const h = replica();
    const rejected = await h.orders.create(request({ items: [{ sku: "MESH-STICKER-GOLD", quantity: 11 }] }), never());
    const declined = await h.orders.create(request({ paymentMethod: "pm_card_declined" }), never());
    h.inventory.script.failNext("reserve", { kind: "transient" });
    const failed = await h.orders.create(request(), never());
    for (const order of [rejected, declined, failed]) {
      const error = await h.orders.cancel(order.orderId, "", never()).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(RefusedError);
      expect((error as RefusedError).message).toMatch(new RegExp(`order is ${order.state.toLowerCase()}`));
      expect((error as RefusedError).violations[0]).toMatchObject({ type: "ORDER_STATE", subject: order.orderId });
      expect((await h.orders.get(order.orderId)).version).toBe(order.version);
    }

    // Still running: refused as well.
    const hold = h.payment.script.hold("charge");
    const req = request();
    const running = h.orders.create(req, never());
    await hold.reached;
    const { orderId } = (await store.findByRequestId(req.requestId))!;
    await expect(h.orders.cancel(orderId, "", never())).rejects.toThrow(/still being placed \(pending\)/);
    hold.release();
    expect((await running).state).toBe("CONFIRMED");

    await expect(h.orders.cancel("ord_does_not_exist", "", never())).rejects.toBeInstanceOf(NotFoundError);
  });

  it("racing cancels: one cancellation, one refund, every caller gets the cancelled order", async () => {
    const inventory = new FakeInventory();
    const payment = new FakePayment();
    const a = replica({ inventory, payment });
    const b = replica({ inventory, payment });
    const confirmed = await a.orders.create(request(), never());
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => (i % 2 ? a : b).orders.cancel(confirmed.orderId, "race", never())));
    expect(results.every((o) => o.state === "CANCELLED")).toBe(true);
    const order = await a.orders.get(confirmed.orderId);
    expect(types(order).filter((t) => t === "CANCELLATION_REQUESTED")).toHaveLength(1);
    expect(types(order).filter((t) => t === "PAYMENT_REFUNDED")).toHaveLength(1);
    expect(payment.refundsOf(confirmed.orderId)).toHaveLength(1);
    expect(payment.netCharged(confirmed.orderId)).toBe(0);
    expect(inventory.stock("MESH-MUG")).toMatchObject({ onHand: 100, reserved: 0, sold: 0 });
  });

  it("a cancel while the cancellation runs waits for it", async () => {
    const h = replica();
    const confirmed = await h.orders.create(request(), never());
    const hold = h.inventory.script.hold("returnStock");
    const first = h.orders.cancel(confirmed.orderId, "", never());
    await hold.reached;
    const second = h.orders.cancel(confirmed.orderId, "", never());
    await sleep(100);
    hold.release();
    const [x, y] = await Promise.all([first, second]);
    expect(x.state).toBe("CANCELLED");
    expect(y.state).toBe("CANCELLED");
    expect(h.payment.script.count("refundAll")).toBe(1);
  });
});

// ------------------------------------------------------------- WatchOrder

describe("waiting for the outcome", () => {
  // A waiter that read the order before the saga's last append, and started
  // listening after it, used to sleep until its fallback re-read (a second
  // in the service): with no fallback within the wait, it would give up.
  it("never misses the change that ends the saga: CreateOrder and WatchOrder wake on it", async () => {
    const h = replica({ pollMs: 3_600_000, maxWaitMs: 15_000 });
    const orders = await Promise.all(Array.from({ length: 30 }, () => h.orders.create(request({ items: [{ sku: "MESH-CAP", quantity: 1 }] }), never())));
    expect(orders.map((o) => o.state)).toEqual(orders.map(() => "CONFIRMED"));
    const watched = await Promise.all(
      orders.slice(0, 5).map(async (order) => {
        let last: OrderState | undefined;
        for await (const { event } of h.orders.watch(order.orderId, never())) last = event.stateAfter;
        return last;
      }),
    );
    expect(watched).toEqual(watched.map(() => "CONFIRMED"));
  });
});

describe("WatchOrder", () => {
  it("a final order: the history, each with the order folded up to it, then the end", async () => {
    const h = replica();
    const order = await h.orders.create(request(), never());
    const seen: { sequence: number; state: OrderState; orderState: OrderState }[] = [];
    for await (const { event, order: folded } of h.orders.watch(order.orderId, never())) {
      seen.push({ sequence: event.sequence, state: event.stateAfter, orderState: folded.state });
    }
    expect(seen.map((s) => s.sequence)).toEqual([1, 2, 3, 4, 5]);
    expect(seen.map((s) => s.state)).toEqual(states(order));
    expect(seen.every((s) => s.state === s.orderState)).toBe(true);
  });

  it("a running order: the history so far, then live events, until it is final", async () => {
    const h = replica();
    const hold = h.payment.script.hold("charge");
    const req = request();
    const created = h.orders.create(req, never());
    await hold.reached;
    const { orderId } = (await store.findByRequestId(req.requestId))!;

    const stream = h.orders.watch(orderId, never());
    const first = await stream.next();
    expect(first.value!.event.data.type).toBe("ORDER_PLACED");
    // The forward steps are in the log with the outcome: nothing more until then.
    const second = stream.next();
    const pending = await Promise.race([second.then(() => "arrived"), sleep(200).then(() => "waiting")]);
    expect(pending).toBe("waiting");

    hold.release();
    const rest = [(await second).value!.event.data.type];
    for await (const { event } of stream) rest.push(event.data.type);
    expect(rest).toEqual(["STOCK_RESERVED", "PAYMENT_CAPTURED", "RESERVATION_COMMITTED", "ORDER_CONFIRMED"]);
    expect((await created).state).toBe("CONFIRMED");
  });

  it("a cancellation in progress is followed until CANCELLED", async () => {
    const h = replica();
    const confirmed = await h.orders.create(request(), never());
    const hold = h.inventory.script.hold("returnStock");
    const cancelling = h.orders.cancel(confirmed.orderId, "", never());
    await hold.reached;
    const seen: string[] = [];
    const watching = (async () => {
      for await (const { event } of h.orders.watch(confirmed.orderId, never())) seen.push(event.data.type);
    })();
    await eventually("the watcher to catch up", async () => (seen.length >= 6 ? true : undefined));
    hold.release();
    await watching;
    await cancelling;
    expect(seen.slice(-4)).toEqual(["CANCELLATION_REQUESTED", "PAYMENT_REFUNDED", "STOCK_RETURNED", "ORDER_CANCELLED"]);
  });

  it("an unknown order is NotFoundError; an aborted watch ends", async () => {
    const h = replica();
    await expect(h.orders.watch("ord_missing", never()).next()).rejects.toBeInstanceOf(NotFoundError);

    const hold = h.payment.script.hold("charge");
    const req = request();
    const created = h.orders.create(req, never());
    await hold.reached;
    const { orderId } = (await store.findByRequestId(req.requestId))!;
    const abort = new AbortController();
    const seen: string[] = [];
    const watching = (async () => {
      for await (const { event } of h.orders.watch(orderId, abort.signal)) seen.push(event.data.type);
    })();
    await eventually("the history", async () => (seen.length === 1 ? true : undefined));
    abort.abort();
    await watching;
    expect(seen).toEqual(["ORDER_PLACED"]);
    hold.release();
    await created;
  });
});

// ------------------------------------------------------------- who waits

describe("the caller stops waiting, never the saga", () => {
  it("a CreateOrder whose caller gives up mid-saga ends with StillRunningError; the order still completes", async () => {
    const h = replica();
    const hold = h.payment.script.hold("charge");
    const caller = new AbortController();
    const req = request();
    const created = h.orders.create(req, caller.signal);
    await hold.reached;
    caller.abort();
    const error = await created.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StillRunningError);
    expect((error as Error).message).toMatch(/still pending/);

    hold.release();
    const { orderId } = (await store.findByRequestId(req.requestId))!;
    const order = await finalOrder(h, orderId);
    expect(order.state).toBe("CONFIRMED");
    expect(h.payment.script.count("charge")).toBe(1);
  });

  it("the wait is bounded by maxWaitMs whatever the caller's deadline", async () => {
    const h = replica({ maxWaitMs: 300 });
    const hold = h.inventory.script.hold("commit");
    const req = request();
    await expect(h.orders.create(req, never())).rejects.toBeInstanceOf(StillRunningError);
    await hold.reached;
    hold.release();
    const { orderId } = (await store.findByRequestId(req.requestId))!;
    expect((await finalOrder(h, orderId)).state).toBe("CONFIRMED");
  });

  it("a CancelOrder whose caller gives up: StillRunningError, the cancellation completes", async () => {
    const h = replica();
    const confirmed = await h.orders.create(request(), never());
    const hold = h.inventory.script.hold("returnStock");
    const caller = new AbortController();
    const cancelling = h.orders.cancel(confirmed.orderId, "", caller.signal);
    await hold.reached;
    caller.abort();
    await expect(cancelling).rejects.toBeInstanceOf(StillRunningError);
    hold.release();
    expect((await finalOrder(h, confirmed.orderId)).state).toBe("CANCELLED");
  });
});

// ------------------------------------------------------------- recovery

/** An order placed by a replica that died right after `steps` (its lease already run out). */
async function abandoned(steps: "placed" | "reserved" | "charge-failed", inventory: FakeInventory, payment: FakePayment): Promise<string> {
  const req = request();
  const { orderId } = await store.place(req, unique("dead-replica"), 1);
  if (steps !== "placed") {
    const outcome = await inventory.reserve(`${orderId}.stock`, req.items, { minMinor: 1, maxMinor: 100_000_000 });
    if (outcome.kind !== "reserved") throw new Error("fake inventory refused");
    await appendEvents(orderId, [
      { type: "STOCK_RESERVED", reservationId: `${orderId}.stock`, lines: outcome.lines, currencyCode: outcome.currencyCode, totalMinor: outcome.totalMinor },
    ]);
    if (steps === "charge-failed") {
      // It charged, lost the answer, recorded the failure, and died.
      await payment.charge({
        idempotencyKey: `${orderId}.charge`,
        customerId: req.customerId,
        currencyCode: "USD",
        amountMinor: outcome.totalMinor,
        paymentMethod: req.paymentMethod,
        orderId,
      });
      await appendEvents(orderId, [{ type: "STEP_FAILED", step: "charge", reason: "charging: UNAVAILABLE" }]);
    }
  }
  await sleep(20);
  return orderId;
}

describe("recovery: one driver per saga", () => {
  it("an order left mid-saga with an expired lease is claimed by claimAbandoned and completed", async () => {
    const h = replica();
    const orderId = await abandoned("reserved", h.inventory, h.payment);
    const { claimed } = await store.claimAbandoned(h.owner, 30_000, 100);
    expect(claimed).toContain(orderId);
    expect(await sagaRunOf(orderId)).toMatchObject({ owner: h.owner, expired: false });
    // Claimed once: a second claim finds nothing to take, and says when the lease it saw runs out.
    const again = await store.claimAbandoned(unique("other"), 30_000, 100);
    expect(again.claimed).not.toContain(orderId);
    expect(again.nextLeaseEnd!.getTime()).toBeGreaterThan(Date.now());

    h.saga.start(orderId);
    const order = await finalOrder(h, orderId);
    expect(order.state).toBe("CONFIRMED");
    // The reserve was the dead replica's; the new driver charged and committed once.
    expect(h.inventory.script.trace("reserve", "commit")).toEqual([`reserve ${orderId}.stock`, `commit ${orderId}.stock`]);
    expect(h.payment.script.count("charge")).toBe(1);
    expect(await sagaRunOf(orderId)).toBeUndefined();
  });

  it("an abandoned compensation is finished: the charge is refunded, the stock released", async () => {
    const h = replica();
    const orderId = await abandoned("charge-failed", h.inventory, h.payment);
    expect((await store.claimAbandoned(h.owner, 30_000, 100)).claimed).toContain(orderId);
    h.saga.start(orderId);
    const order = await finalOrder(h, orderId);
    expect(order.state).toBe("FAILED");
    expect(h.payment.paymentsOf(orderId)).toHaveLength(1);
    expect(h.payment.netCharged(orderId)).toBe(0);
    expect(h.inventory.totalReserved).toBe(0);
  });

  it("a live lease is not claimed; the owner takes its own back after a restart (claimOwn)", async () => {
    const owner = unique("restarted-replica");
    const req = request();
    const { orderId } = await store.place(req, owner, 60_000);
    expect((await store.claimAbandoned(unique("thief"), 30_000, 100)).claimed).not.toContain(orderId);
    expect(await store.claimOwn(unique("someone-else"), 30_000)).not.toContain(orderId);

    const h = replica({ owner });
    expect(await store.claimOwn(owner, 30_000)).toEqual([orderId]);
    h.saga.start(orderId);
    expect((await finalOrder(h, orderId)).state).toBe("CONFIRMED");
  });

  it("the recovery task claims and drives abandoned sagas until stopped", async () => {
    const h = replica();
    const first = await abandoned("placed", h.inventory, h.payment);
    const second = await abandoned("reserved", h.inventory, h.payment);
    const stop = new AbortController();
    const task = sagaRecovery(h.saga, store, { owner: h.owner, leaseMs: 30_000, intervalMs: 50, batch: 10 }, logger);
    const running = task.run(stop.signal);
    expect((await finalOrder(h, first)).state).toBe("CONFIRMED");
    expect((await finalOrder(h, second)).state).toBe("CONFIRMED");
    stop.abort();
    await running;
    expect(h.inventory.script.count("reserve")).toBe(2);
    expect(h.payment.script.count("charge")).toBe(2);
  });

  it("a driver that lost its lease stops: two drivers racing on one order produce one effect per step", async () => {
    // One inventory and one payment, two replicas; each replica's calls are tagged.
    const inventory = new FakeInventory();
    const payment = new FakePayment();
    const calls: string[] = [];
    const a = replica({ owner: "replica-a", inventory, payment, ports: tagged("A", inventory, payment, calls), leaseMs: 200 });
    const b = replica({ owner: "replica-b", inventory, payment, ports: tagged("B", inventory, payment, calls) });

    // A starts the saga and is stuck in its reserve call until its lease runs out.
    const hold = inventory.script.hold("reserve");
    const req = request();
    const createdByA = a.orders.create(req, never());
    await hold.reached;
    const { orderId } = (await store.findByRequestId(req.requestId))!;
    await eventually("A's lease to run out", async () => ((await sagaRunOf(orderId))?.expired ? true : undefined));

    // B takes the saga over; it reserves (a replay for inventory once A's
    // call lands) and is held in its charge.
    expect((await store.claimAbandoned("replica-b", 30_000, 100)).claimed).toContain(orderId);
    const bCharge = payment.script.hold("charge");
    b.saga.start(orderId);
    await bCharge.reached;
    // The reserve is in B's memory: the log has it with the outcome.
    expect((await b.orders.get(orderId)).state).toBe("PENDING");

    // A's reserve now returns; its lease is past its middle, it cannot
    // renew the lease B holds, and it stops before charging.
    hold.release();
    await a.saga.drained();
    expect(a.saga.active).toBe(0);
    expect(calls).toEqual(["A reserve", "B reserve", "B charge"]);

    bCharge.release();
    expect((await finalOrder(b, orderId)).state).toBe("CONFIRMED");
    // A's caller was waiting on the order, not on A's driver: it gets the outcome.
    expect((await createdByA).state).toBe("CONFIRMED");

    const order = await b.orders.get(orderId);
    expect(types(order)).toEqual(["ORDER_PLACED", "STOCK_RESERVED", "PAYMENT_CAPTURED", "RESERVATION_COMMITTED", "ORDER_CONFIRMED"]);
    // A called once (its held reserve) and nothing after losing the saga.
    expect(calls).toEqual(["A reserve", "B reserve", "B charge", "B commit"]);
    expect(inventory.created).toBe(1);
    expect(payment.paymentsOf(orderId)).toHaveLength(1);
    expect(inventory.stock("MESH-MUG")).toMatchObject({ onHand: 98, reserved: 0, sold: 2 });
  });

  it("two drivers appending the same step at once: one append wins, the loser re-reads and adds nothing", async () => {
    const inventory = new FakeInventory();
    const payment = new FakePayment();
    const calls: string[] = [];
    // Both think they own the saga (same owner name: a lease that both renew), and both are held in the charge.
    const a = replica({ owner: "twin", inventory, payment, ports: tagged("A", inventory, payment, calls) });
    const b = replica({ owner: "twin", inventory, payment, ports: tagged("B", inventory, payment, calls) });
    const { orderId } = await store.place(request(), "twin", 30_000);
    const holdA = payment.script.hold("charge");
    const holdB = payment.script.hold("charge");
    a.saga.start(orderId);
    await holdA.reached;
    b.saga.start(orderId);
    await holdB.reached;
    // Both charged under the same key; both try to append PAYMENT_CAPTURED at version 2.
    holdA.release();
    holdB.release();
    await Promise.all([a.saga.drained(), b.saga.drained()]);
    const order = await finalOrder(a, orderId);
    expect(order.state).toBe("CONFIRMED");
    expect(types(order)).toEqual(["ORDER_PLACED", "STOCK_RESERVED", "PAYMENT_CAPTURED", "RESERVATION_COMMITTED", "ORDER_CONFIRMED"]);
    expect(payment.paymentsOf(orderId)).toHaveLength(1);
    expect(inventory.created).toBe(1);
    expect(inventory.stock("MESH-MUG").sold).toBe(2);
  });

  it("on shutdown a driver finishes the step in hand, appends it, and hands the saga back at once", async () => {
    const inventory = new FakeInventory();
    const payment = new FakePayment();
    const a = replica({ inventory, payment });
    const hold = payment.script.hold("charge");
    const caller = new AbortController();
    const req = request();
    const created = a.orders.create(req, caller.signal);
    await hold.reached;
    const { orderId } = (await store.findByRequestId(req.requestId))!;

    a.stop.abort();
    hold.release();
    await a.saga.drained();
    const stopped = await a.orders.get(orderId);
    expect(stopped.state).toBe("PAYMENT_CAPTURED");
    expect(await sagaRunOf(orderId)).toMatchObject({ owner: a.owner, expired: true });
    caller.abort();
    await expect(created).rejects.toBeInstanceOf(StillRunningError);

    const b = replica({ inventory, payment });
    expect((await store.claimAbandoned(b.owner, 30_000, 100)).claimed).toContain(orderId);
    b.saga.start(orderId);
    expect((await finalOrder(b, orderId)).state).toBe("CONFIRMED");
    expect(payment.script.count("charge")).toBe(1);
    expect(inventory.script.count("commit")).toBe(1);
  });
});

/** Ports over shared fakes that note which replica made each call. */
function tagged(tag: string, inventory: FakeInventory, payment: FakePayment, calls: string[]): { inventory: InventoryPort; payment: PaymentPort } {
  const note = <T>(method: string, run: () => Promise<T>) => {
    calls.push(`${tag} ${method}`);
    return run();
  };
  return {
    inventory: {
      reserve: (id, items, bounds) => note("reserve", () => inventory.reserve(id, items, bounds)),
      commit: (id) => note("commit", () => inventory.commit(id)),
      release: (id) => note("release", () => inventory.release(id)),
      returnStock: (id) => note("returnStock", () => inventory.returnStock(id)),
    },
    payment: {
      charge: (r) => note("charge", () => payment.charge(r)),
      refundAll: (key, id, reason) => note("refundAll", () => payment.refundAll(key, id, reason)),
    },
  };
}

// ------------------------------------------------------------- event store

describe("the event log and its projection", () => {
  it("two appends at the same version: one wins, the other is a ConcurrentAppendError", async () => {
    const writer = unique("writer");
    const placed = await store.place(request(), writer, 60_000);
    if (!placed.created) throw new Error("not placed");
    const next = (order: Order, data: OrderEventData) =>
      applyEvent(order, { sequence: order.version + 1, data, stateAfter: stateAfter(order.state, data), occurredAt: new Date() });
    const renew: RunChange = { run: "renew", leaseMs: 60_000 };
    const results = await Promise.allSettled([
      store.append(next(placed.order, { type: "STEP_FAILED", step: "reserve", reason: "writer one" }), 1, { driver: writer, change: renew }),
      store.append(next(placed.order, { type: "STEP_FAILED", step: "reserve", reason: "writer two" }), 1, { driver: writer, change: renew }),
    ]);
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    const lost = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
    expect(lost.reason).toBeInstanceOf(ConcurrentAppendError);
    // A stale writer is refused as well.
    await expect(store.append(next(placed.order, { type: "STOCK_RELEASED", detail: "stale" }), 1, { change: renew })).rejects.toBeInstanceOf(
      ConcurrentAppendError,
    );
    // A driver that does not own the run writes nothing.
    const order = (await store.load(placed.orderId))!;
    expect(order.version).toBe(2);
    expect(await store.append(next(order, { type: "STOCK_RELEASED", detail: "not mine" }), 2, { driver: unique("thief"), change: renew })).toBe(false);
    expect((await store.load(order.orderId))!.version).toBe(2);
    // Finish it so no other test's recovery picks it up.
    await appendEvents(
      order.orderId,
      [
        { type: "STOCK_RELEASED", detail: "test" },
        { type: "ORDER_FAILED", reason: "test" },
      ],
      { run: "end" },
    );
    expect(await sagaRunOf(order.orderId)).toBeUndefined();
  });

  it("a cancellation re-creates the saga run that the confirmation removed", async () => {
    const h = replica();
    const confirmed = await h.orders.create(request(), never());
    expect(await sagaRunOf(confirmed.orderId)).toBeUndefined();
    const hold = h.inventory.script.hold("returnStock");
    const cancelling = h.orders.cancel(confirmed.orderId, "", never());
    await hold.reached;
    expect(await sagaRunOf(confirmed.orderId)).toMatchObject({ owner: h.owner, expired: false });
    hold.release();
    await cancelling;
    expect(await sagaRunOf(confirmed.orderId)).toBeUndefined();
  });

  it("the projection is rewritten with every append and matches the log", async () => {
    const h = replica();
    const hold = h.payment.script.hold("charge");
    const req = request();
    const created = h.orders.create(req, never());
    await hold.reached;
    const { orderId } = (await store.findByRequestId(req.requestId))!;
    const midway = await h.orders.get(orderId);
    await expectProjectionInStep(midway);
    // Not priced yet (the reserve is in the saga's memory until the outcome): the lines are the items.
    expect(midway.lines).toBeUndefined();
    expect((await projectionOf(orderId)).lines).toEqual(midway.items);
    hold.release();
    await expectProjectionInStep(fold((await created).history));
  });
});

// ------------------------------------------------------------- ListOrders

describe("ListOrders", () => {
  it("pages through a customer's orders newest first, from the projection", async () => {
    const h = replica();
    const customerId = unique("lister");
    const created: Order[] = [];
    for (let i = 0; i < 5; i++) {
      created.push(await h.orders.create(request({ customerId, paymentMethod: i === 2 ? "pm_card_declined" : "pm_card_visa" }), never()));
    }
    await h.orders.create(request(), never()); // another customer's order

    const seen: string[] = [];
    const pageSizes: number[] = [];
    let after: { createdAt: string; orderId: string } | undefined;
    for (;;) {
      const page = await h.orders.list(customerId, 2, after);
      pageSizes.push(page.orders.length);
      seen.push(...page.orders.map((o) => o.orderId));
      for (const summary of page.orders) {
        const full = created.find((o) => o.orderId === summary.orderId)!;
        expect(summary).toMatchObject({
          customerId,
          state: full.state,
          totalMinor: full.totalMinor,
          currencyCode: full.currencyCode,
          paymentId: full.paymentId,
          lines: full.lines,
          items: full.items,
          reservationId: `${full.orderId}.stock`,
        });
      }
      const last = page.orders.at(-1);
      if (!page.more || !last) break;
      after = { createdAt: last.createdAt.toISOString(), orderId: last.orderId };
    }
    expect(pageSizes).toEqual([2, 2, 1]);
    expect(seen).toEqual(created.map((o) => o.orderId).reverse());
    expect((await h.orders.list(customerId, 10)).orders.map((o) => o.state)).toEqual(["CONFIRMED", "CONFIRMED", "REJECTED", "CONFIRMED", "CONFIRMED"]);

    // It reads the read model, not the log: a marker put into the projection shows up.
    await db.query("UPDATE orders SET failure_reason = 'from-the-projection' WHERE order_id = $1", [created[0]!.orderId]);
    const listed = (await h.orders.list(customerId, 10)).orders.find((o) => o.orderId === created[0]!.orderId)!;
    expect(listed.failureReason).toBe("from-the-projection");
    expect((await h.orders.get(created[0]!.orderId)).failureReason).toBeUndefined();

    expect(await h.orders.list(unique("nobody"), 10)).toEqual({ orders: [], more: false });
  });

  it("orders placed in the same millisecond still page without loss or repeat", async () => {
    const customerId = unique("same-ms");
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push((await store.place(request({ customerId }), unique("lister"), 60_000)).orderId);
    await db.query("UPDATE orders SET created_at = '2026-01-01T00:00:00Z' WHERE customer_id = $1", [customerId]);
    const h = replica();
    const seen: string[] = [];
    let after: { createdAt: string; orderId: string } | undefined;
    for (;;) {
      const page = await h.orders.list(customerId, 3, after);
      seen.push(...page.orders.map((o) => o.orderId));
      const last = page.orders.at(-1);
      if (!page.more || !last) break;
      after = { createdAt: last.createdAt.toISOString(), orderId: last.orderId };
    }
    expect(seen).toEqual([...ids].sort().reverse());
    // Finish them so no recovery picks them up later.
    for (const id of ids)
      await appendEvents(
        id,
        [
          { type: "STOCK_UNAVAILABLE", reason: "test" },
          { type: "ORDER_REJECTED", reason: "test" },
        ],
        { run: "end" },
      );
  });
});

// ---------------------------------------------------------------- overload

/** The error pg-pool gives a caller that queued for a connection longer than the pool waits. */
const poolExhausted = () => new Error("timeout exceeded when trying to connect");

/** The shared store, with some of its methods failing as an exhausted pool does (`times` each; forever when omitted). */
function busyStore(methods: (keyof EventStore)[], times = Number.POSITIVE_INFINITY): EventStore & { failed: Map<string, number> } {
  const failed = new Map<string, number>();
  return new Proxy(store, {
    get(target, property, receiver) {
      if (property === "failed") return failed;
      const value: unknown = Reflect.get(target, property, receiver);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        if (methods.includes(property as keyof EventStore) && (failed.get(String(property)) ?? 0) < times) {
          failed.set(String(property), (failed.get(String(property)) ?? 0) + 1);
          return Promise.reject(poolExhausted());
        }
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  }) as EventStore & { failed: Map<string, number> };
}

function capturingLogger(): { logger: Logger; lines: { level: number; msg: string }[] } {
  const lines: { level: number; msg: string }[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split("\n").filter(Boolean)) lines.push(JSON.parse(line) as { level: number; msg: string });
      done();
    },
  });
  return { logger: createLogger({ service: "order-saga-test", version: "test", level: "debug", destination }), lines };
}

describe("under overload", () => {
  it("refuses a checkout beyond its limit before anything is written or called, and keeps the place until the saga ends", async () => {
    const admission = new Admission("checkouts", { limit: 1, queue: 0, queueTimeoutMs: 1 });
    const h = replica({ admission, maxWaitMs: 200 });
    const hold = h.inventory.script.hold("reserve");
    const first = request();
    const placing = h.orders.create(first, never());
    await hold.reached;

    const second = request();
    await expect(h.orders.create(second, never())).rejects.toBeInstanceOf(OverloadedError);
    expect(await store.findByRequestId(second.requestId)).toBeUndefined();
    expect(h.inventory.script.count("reserve")).toBe(1);
    expect(h.payment.calls).toEqual([]);

    // The first caller stops waiting; its saga still holds the place.
    await expect(placing).rejects.toBeInstanceOf(StillRunningError);
    await expect(h.orders.create(request(), never())).rejects.toBeInstanceOf(OverloadedError);
    expect(admission.active).toBe(1);

    hold.release();
    await eventually("the place freed when the saga ended", async () => (admission.active === 0 ? true : undefined));
    const placed = await h.orders.get((await store.findByRequestId(first.requestId))!.orderId);
    expect(placed.state).toBe("CONFIRMED");
    expect((await h.orders.create(second, never())).state).toBe("CONFIRMED");
  });

  it("answers a placed order with its outcome while the database cannot be read, never with a database error", async () => {
    const reads = busyStore(["load", "eventsAfter", "loadRun"]);
    const h = replica({ ordersStore: reads, pollMs: 20 });
    const hold = h.payment.script.hold("charge");
    const placing = h.orders.create(request(), never());
    await hold.reached;
    // The waiter's fallback reads fail meanwhile, as a call's would with every connection busy.
    await eventually("failed reads", async () => ((reads.failed.get("load") ?? 0) + (reads.failed.get("eventsAfter") ?? 0) >= 3 ? true : undefined));
    hold.release();
    expect((await placing).state).toBe("CONFIRMED");
  });

  it("tells a caller whose placed order it cannot read in time that the order goes on (DEADLINE_EXCEEDED), not that it failed", async () => {
    const reads = busyStore(["load", "eventsAfter", "loadRun"]);
    const h = replica({ ordersStore: reads, pollMs: 20, maxWaitMs: 300 });
    const hold = h.payment.script.hold("charge");
    const placing = h.orders.create(request(), never());
    await hold.reached;
    const error = await placing.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StillRunningError);
    expect((error as Error).message).toMatch(/is still pending; follow it with GetOrder or WatchOrder$/);
    hold.release();
  });

  it("waits out an exhausted pool while recording the saga's progress, without calling it a crash", async () => {
    const { logger: captured, lines } = capturingLogger();
    const writes = busyStore(["append"], 3);
    const h = replica({ sagaStore: writes, logger: captured });
    const order = await h.orders.create(request(), never());
    expect(order.state).toBe("CONFIRMED");
    expect(writes.failed.get("append")).toBe(3);
    expect((await h.orders.get(order.orderId)).state).toBe("CONFIRMED");
    expect(lines.filter((l) => l.msg === "saga progress not recorded yet: database pool busy, will retry")).toHaveLength(3);
    expect(lines.some((l) => l.msg === "saga driver crashed" || l.level >= 50)).toBe(false);
  });
});
