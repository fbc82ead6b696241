import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { Status } from "nice-grpc";
import { Admission, CHARGE_AMOUNT, Database, createLogger, createServiceClient, migrate, openChannel } from "@meshcart/lib";
import { InventoryServiceDefinition, ReservationState } from "@meshcart/contracts/meshcart/inventory/v1/inventory.js";
import { OrderState, type CreateOrderRequest, type Order } from "@meshcart/contracts/meshcart/order/v1/order.js";
import { PaymentServiceDefinition, PaymentStatus } from "@meshcart/contracts/meshcart/payment/v1/payment.js";
import { EventStore } from "../src/event-store.js";
import { GrpcInventory, GrpcPayment } from "../src/grpc-adapters.js";
import { OrderNotifier } from "../src/order-notifier.js";
import { Orders } from "../src/orders.js";
import { TransientFailure, type InventoryPort, type PaymentPort } from "../src/ports.js";
import { Saga } from "../src/saga.js";
import { TestDatabases } from "./support/database.js";
import { Mesh, errorLines, eventStates, eventTypes, refusal, stateName } from "./support/services.js";
import { eventually, unique } from "./support/wait.js";

/**
 * Inventory, payment and order as three real processes over gRPC on
 * loopback, each with its own Postgres database: the checkout as a client
 * sees it. Row numbers refer to docs/order-saga.md.
 */

// Bounds (not targets) also when vitest runs without the repository's vitest.config.ts.
vi.setConfig({ testTimeout: 60_000, hookTimeout: 120_000 });

const databases = new TestDatabases();
let mesh: Mesh;

beforeAll(async () => {
  mesh = await Mesh.create(databases, "order_services");
  await Promise.all([mesh.startInventory(), mesh.startPayment()]);
  await mesh.startOrder();
}, 120_000);

afterAll(async () => {
  await mesh?.close();
  await databases.dropAll();
}, 60_000);

function createRequest(overrides: Partial<CreateOrderRequest> = {}): CreateOrderRequest {
  return {
    requestId: unique("req"),
    customerId: unique("cust"),
    items: [{ sku: "MESH-MUG", quantity: 2 }],
    paymentMethod: "pm_card_visa",
    ...overrides,
  };
}

async function create(overrides: Partial<CreateOrderRequest> = {}): Promise<Order> {
  const { order } = await mesh.order.createOrder(createRequest(overrides));
  return order!;
}

async function unitPrice(sku: string): Promise<number> {
  const { product } = await mesh.inventory.getProduct({ sku });
  return product!.unitPrice!.minorUnits;
}

describe("checkout over gRPC", () => {
  it("happy path: CONFIRMED, priced by inventory (the request carries no price), charged once, stock sold", async () => {
    const mugBefore = await mesh.stock("MESH-MUG");
    const capBefore = await mesh.stock("MESH-CAP");
    const [mugPrice, capPrice] = [await unitPrice("MESH-MUG"), await unitPrice("MESH-CAP")];
    const order = await create({
      items: [
        { sku: "MESH-MUG", quantity: 2 },
        { sku: "MESH-CAP", quantity: 1 },
      ],
    });

    expect(stateName(order.state)).toBe("CONFIRMED");
    expect(eventTypes(order)).toEqual(["ORDER_PLACED", "STOCK_RESERVED", "PAYMENT_CAPTURED", "RESERVATION_COMMITTED", "ORDER_CONFIRMED"]);
    expect(eventStates(order)).toEqual(["PENDING", "STOCK_RESERVED", "PAYMENT_CAPTURED", "PAYMENT_CAPTURED", "CONFIRMED"]);
    expect(order.lines).toEqual([
      { sku: "MESH-MUG", quantity: 2, unitPrice: { currencyCode: "USD", minorUnits: mugPrice }, lineTotal: { currencyCode: "USD", minorUnits: 2 * mugPrice } },
      { sku: "MESH-CAP", quantity: 1, unitPrice: { currencyCode: "USD", minorUnits: capPrice }, lineTotal: { currencyCode: "USD", minorUnits: capPrice } },
    ]);
    const total = 2 * mugPrice + capPrice;
    expect(order.total).toEqual({ currencyCode: "USD", minorUnits: total });
    expect(order.reservationId).toBe(`${order.orderId}.stock`);
    expect(order.failureReason).toBe("");

    const { reservation } = await mesh.inventory.getReservation({ reservationId: order.reservationId });
    expect(reservation!.state).toBe(ReservationState.RESERVATION_STATE_COMMITTED);
    const { payment } = await mesh.payment.getPayment({ paymentId: order.paymentId });
    expect(payment).toMatchObject({
      idempotencyKey: `${order.orderId}.charge`,
      orderId: order.orderId,
      customerId: order.customerId,
      status: PaymentStatus.PAYMENT_STATUS_CAPTURED,
      amount: { currencyCode: "USD", minorUnits: total },
    });
    expect(await mesh.paymentsOf(order.orderId)).toHaveLength(1);

    const mugAfter = await mesh.stock("MESH-MUG");
    const capAfter = await mesh.stock("MESH-CAP");
    expect(mugAfter).toMatchObject({ sold: mugBefore.sold + 2, onHand: mugBefore.onHand - 2, reserved: mugBefore.reserved });
    expect(capAfter).toMatchObject({ sold: capBefore.sold + 1, onHand: capBefore.onHand - 1, reserved: capBefore.reserved });
  });

  it("declined (row 6, 11, 12): REJECTED, the reservation released, nothing sold, the decline on record", async () => {
    for (const [method, reason] of [
      ["pm_card_declined", "payment declined: card declined"],
      ["pm_card_insufficient_funds", "payment declined: insufficient funds"],
    ] as const) {
      const before = await mesh.stock("MESH-MUG");
      const order = await create({ paymentMethod: method });
      expect(stateName(order.state)).toBe("REJECTED");
      expect(eventTypes(order)).toEqual(["ORDER_PLACED", "STOCK_RESERVED", "PAYMENT_DECLINED", "STOCK_RELEASED", "ORDER_REJECTED"]);
      expect(order.failureReason).toBe(reason);
      const { reservation } = await mesh.inventory.getReservation({ reservationId: order.reservationId });
      expect(reservation!.state).toBe(ReservationState.RESERVATION_STATE_RELEASED);
      expect(await mesh.stock("MESH-MUG")).toEqual(before);
      const payments = await mesh.paymentsOf(order.orderId);
      expect(payments.map((p) => p.status)).toEqual([PaymentStatus.PAYMENT_STATUS_DECLINED]);
      expect(payments[0]!.refunds).toEqual([]);
    }
  });

  it("out of stock (row 3): REJECTED, nothing held, nothing charged", async () => {
    const before = await mesh.stock("MESH-STICKER-GOLD");
    const order = await create({ items: [{ sku: "MESH-STICKER-GOLD", quantity: before.available + 1 }] });
    expect(stateName(order.state)).toBe("REJECTED");
    expect(eventTypes(order)).toEqual(["ORDER_PLACED", "STOCK_UNAVAILABLE", "ORDER_REJECTED"]);
    expect(order.failureReason).toMatch(/MESH-STICKER-GOLD/);
    expect(order.total).toBeUndefined();
    expect(await mesh.stock("MESH-STICKER-GOLD")).toEqual(before);
    expect(await mesh.paymentsOf(order.orderId)).toEqual([]);

    // The scarce sticker: what is left sells once, the next order is refused.
    const all = await create({ items: [{ sku: "MESH-STICKER-GOLD", quantity: before.available }] });
    expect(stateName(all.state)).toBe("CONFIRMED");
    const none = await create({ items: [{ sku: "MESH-STICKER-GOLD", quantity: 1 }] });
    expect(stateName(none.state)).toBe("REJECTED");
    expect(await mesh.stock("MESH-STICKER-GOLD")).toMatchObject({ available: 0, reserved: 0, sold: before.sold + before.available });
  });

  it("bad input: INVALID_ARGUMENT with every field violation, and nothing written anywhere", async () => {
    const customerId = unique("bad-input");
    const ordersBefore = await mesh.orderDbCounts();
    const mugBefore = await mesh.stock("MESH-MUG");
    const cases: [string, Partial<CreateOrderRequest>, string[]][] = [
      ["no items", { items: [] }, ["items"]],
      ["quantity 0", { items: [{ sku: "MESH-MUG", quantity: 0 }] }, ["items[0].quantity"]],
      ["quantity -3", { items: [{ sku: "MESH-MUG", quantity: -3 }] }, ["items[0].quantity"]],
      ["quantity 1001", { items: [{ sku: "MESH-MUG", quantity: 1001 }] }, ["items[0].quantity"]],
      [
        "duplicate SKUs",
        {
          items: [
            { sku: "MESH-MUG", quantity: 1 },
            { sku: "MESH-CAP", quantity: 1 },
            { sku: "MESH-MUG", quantity: 2 },
          ],
        },
        ["items[2].sku"],
      ],
      ["request_id of 129 characters", { requestId: "r".repeat(129) }, ["request_id"]],
      ["missing request_id", { requestId: "" }, ["request_id"]],
      ["malformed request_id", { requestId: "has spaces" }, ["request_id"]],
      ["missing customer_id", { customerId: "" }, ["customer_id"]],
      ["missing payment method", { paymentMethod: "" }, ["payment_method"]],
      ["unknown payment method", { paymentMethod: "pm_card_amex" }, ["payment_method"]],
      ["malformed SKU", { items: [{ sku: "no spaces", quantity: 1 }] }, ["items[0].sku"]],
      [
        "everything at once",
        { requestId: "", customerId: "", items: [{ sku: "", quantity: 0 }], paymentMethod: "pm_bitcoin" },
        ["customer_id", "items[0].quantity", "items[0].sku", "payment_method", "request_id"],
      ],
    ];
    for (const [name, overrides, fields] of cases) {
      const refused = await refusal(mesh.order.createOrder(createRequest({ customerId, ...overrides })));
      expect(refused.code, name).toBe(Status.INVALID_ARGUMENT);
      expect(Object.keys(refused.fields).sort(), name).toEqual(fields);
    }
    const quantity = await refusal(mesh.order.createOrder(createRequest({ customerId, items: [{ sku: "MESH-MUG", quantity: 1001 }] })));
    expect(quantity.fields["items[0].quantity"]).toBe("must be a whole number from 1 to 1000");
    const method = await refusal(mesh.order.createOrder(createRequest({ customerId, paymentMethod: "pm_card_amex" })));
    expect(method.fields.payment_method).toContain("pm_card_visa");

    const { orders } = await mesh.order.listOrders({ customerId, pageSize: 0, pageToken: "" });
    expect(orders).toEqual([]);
    expect(await mesh.orderDbCounts()).toEqual(ordersBefore);
    expect(await mesh.stock("MESH-MUG")).toEqual(mugBefore);
  });

  it("the limits themselves are accepted: quantity 1000 and a 128-character request_id", async () => {
    const requestId = `${"r".repeat(118)}${Date.now().toString(36)}`.padEnd(128, "0").slice(-128);
    const order = await create({ requestId, items: [{ sku: "MESH-SOCKS", quantity: 1000 }] });
    expect(order.requestId).toHaveLength(128);
    expect(stateName(order.state)).toBe("CONFIRMED");
    expect(order.lines[0]!.quantity).toBe(1000);
  });

  it("an unknown SKU is the reserve's refusal: the order is REJECTED with the reason, nothing held, nothing charged", async () => {
    const mugBefore = await mesh.stock("MESH-MUG");
    const order = await create({
      items: [
        { sku: "MESH-MUG", quantity: 1 },
        { sku: "MESH-UNICORN", quantity: 1 },
      ],
    });
    expect(stateName(order.state)).toBe("REJECTED");
    expect(eventTypes(order)).toEqual(["ORDER_PLACED", "STOCK_UNAVAILABLE", "ORDER_REJECTED"]);
    expect(order.failureReason).toMatch(/product MESH-UNICORN not found/);
    expect(await mesh.stock("MESH-MUG")).toEqual(mugBefore);
    expect(await mesh.paymentsOf(order.orderId)).toEqual([]);
    await expect(mesh.inventory.getReservation({ reservationId: order.reservationId })).rejects.toMatchObject({ code: Status.NOT_FOUND });
  });

  it("a replay returns the same order; the same request_id with other content is ALREADY_EXISTS", async () => {
    const request = createRequest();
    const first = (await mesh.order.createOrder(request)).order!;
    const again = (await mesh.order.createOrder(request)).order!;
    expect(again.orderId).toBe(first.orderId);
    expect(again.history).toEqual(first.history);
    expect(await mesh.paymentsOf(first.orderId)).toHaveLength(1);

    const conflict = await refusal(mesh.order.createOrder({ ...request, items: [{ sku: "MESH-MUG", quantity: 5 }] }));
    expect(conflict.code).toBe(Status.ALREADY_EXISTS);
    expect((await mesh.order.listOrders({ customerId: request.customerId, pageSize: 0, pageToken: "" })).orders).toHaveLength(1);
  });

  it("10 racing duplicate CreateOrders: one order, one payment", async () => {
    const request = createRequest();
    const before = await mesh.stock("MESH-MUG");
    const results = await Promise.all(Array.from({ length: 10 }, () => mesh.order.createOrder(request)));
    const ids = new Set(results.map((r) => r.order!.orderId));
    expect(ids.size).toBe(1);
    const [orderId] = [...ids];
    expect(results.every((r) => r.order!.state === OrderState.ORDER_STATE_CONFIRMED)).toBe(true);
    const payments = await mesh.paymentsOf(orderId!);
    expect(payments).toHaveLength(1);
    expect(payments[0]!.status).toBe(PaymentStatus.PAYMENT_STATUS_CAPTURED);
    expect((await mesh.order.listOrders({ customerId: request.customerId, pageSize: 0, pageToken: "" })).orders).toHaveLength(1);
    expect((await mesh.stock("MESH-MUG")).sold).toBe(before.sold + 2);
  });
});

describe("reading orders over gRPC", () => {
  it("GetOrder returns the order with its history; NOT_FOUND and INVALID_ARGUMENT otherwise", async () => {
    const created = await create();
    const { order } = await mesh.order.getOrder({ orderId: created.orderId });
    expect(order).toEqual(created);
    expect(order!.history.map((e) => e.sequence)).toEqual([1, 2, 3, 4, 5]);
    expect(order!.history.every((e) => e.occurredAt instanceof Date)).toBe(true);
    expect(order!.history[1]!.detail).toMatch(/1 line\(s\) reserved, total 2800 USD/);

    expect((await refusal(mesh.order.getOrder({ orderId: "ord_missing" }))).code).toBe(Status.NOT_FOUND);
    const bad = await refusal(mesh.order.getOrder({ orderId: "" }));
    expect(bad.code).toBe(Status.INVALID_ARGUMENT);
    expect(Object.keys(bad.fields)).toEqual(["order_id"]);
  });

  it("WatchOrder streams the history of a final order and ends; NOT_FOUND for an unknown one", async () => {
    const created = await create();
    const seen: { type: string; state: OrderState; orderState: OrderState }[] = [];
    for await (const message of mesh.order.watchOrder({ orderId: created.orderId })) {
      seen.push({ type: String(message.event!.type), state: message.event!.stateAfter, orderState: message.order!.state });
    }
    expect(seen.map((s) => s.state)).toEqual(created.history.map((e) => e.stateAfter));
    expect(seen.every((s) => s.state === s.orderState)).toBe(true);

    const unknown = await refusal(
      (async () => {
        for await (const _ of mesh.order.watchOrder({ orderId: "ord_missing" })) void _;
      })(),
    );
    expect(unknown.code).toBe(Status.NOT_FOUND);
  });

  it("ListOrders pages a customer's orders newest first; a foreign page token is INVALID_ARGUMENT", async () => {
    const customerId = unique("lister");
    const made: string[] = [];
    for (let i = 0; i < 3; i++) made.push((await create({ customerId })).orderId);
    const seen: string[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const page = await mesh.order.listOrders({ customerId, pageSize: 2, pageToken });
      seen.push(...page.orders.map((o) => o.orderId));
      expect(page.orders.every((o) => o.history.length === 0 && o.state === OrderState.ORDER_STATE_CONFIRMED)).toBe(true);
      pageToken = page.nextPageToken;
      pages += 1;
    } while (pageToken);
    expect(pages).toBe(2);
    expect(seen).toEqual([...made].reverse());

    const bad = await refusal(mesh.order.listOrders({ customerId, pageSize: 2, pageToken: "not-a-token" }));
    expect(bad.code).toBe(Status.INVALID_ARGUMENT);
    expect(Object.keys(bad.fields)).toEqual(["page_token"]);
    // Well-formed tokens with a time JavaScript reads and Postgres refuses (found by fuzzing).
    for (const createdAt of ["-000001-01-01T00:00:00.000Z", "0000-01-01T00:00:00.000Z", "2026-13-01T00:00:00.000Z", "2026-12-04"]) {
      const forged = Buffer.from(JSON.stringify({ createdAt, orderId: "ord_x" })).toString("base64url");
      const refused = await refusal(mesh.order.listOrders({ customerId, pageSize: 2, pageToken: forged }));
      expect(refused.code, createdAt).toBe(Status.INVALID_ARGUMENT);
      expect(Object.keys(refused.fields)).toEqual(["page_token"]);
    }
  });
});

describe("cancelling over gRPC (rows 14-17)", () => {
  it("a confirmed order: refunded, stock returned, CANCELLED; a replay changes nothing", async () => {
    const before = await mesh.stock("MESH-MUG");
    const created = await create();
    const { order } = await mesh.order.cancelOrder({ orderId: created.orderId, reason: "changed my mind" });
    expect(stateName(order!.state)).toBe("CANCELLED");
    expect(eventTypes(order!).slice(5)).toEqual(["CANCELLATION_REQUESTED", "PAYMENT_REFUNDED", "STOCK_RETURNED", "ORDER_CANCELLED"]);
    expect(order!.failureReason).toBe("changed my mind");

    const { payment } = await mesh.payment.getPayment({ paymentId: created.paymentId });
    expect(payment!.status).toBe(PaymentStatus.PAYMENT_STATUS_REFUNDED);
    expect(payment!.refunds.map((r) => [r.idempotencyKey, r.amount!.minorUnits])).toEqual([[`${created.orderId}.refund.cancellation`, 2800]]);
    const { reservation } = await mesh.inventory.getReservation({ reservationId: created.reservationId });
    expect(reservation!.state).toBe(ReservationState.RESERVATION_STATE_RETURNED);
    expect(await mesh.stock("MESH-MUG")).toEqual(before);

    const again = await mesh.order.cancelOrder({ orderId: created.orderId, reason: "" });
    expect(again.order).toEqual(order);
    expect((await mesh.payment.getPayment({ paymentId: created.paymentId })).payment!.refunds).toHaveLength(1);
  });

  it("WatchOrder follows a cancellation to CANCELLED", async () => {
    const created = await create();
    const cancelling = mesh.order.cancelOrder({ orderId: created.orderId, reason: "" });
    await eventually("the cancellation to start", async () => {
      const { order } = await mesh.order.getOrder({ orderId: created.orderId });
      return order!.state === OrderState.ORDER_STATE_CONFIRMED ? undefined : true;
    });
    const types: string[] = [];
    for await (const message of mesh.order.watchOrder({ orderId: created.orderId })) types.push(stateName(message.event!.stateAfter));
    expect(types.at(-1)).toBe("CANCELLED");
    expect(types.slice(-4)).toEqual(["CANCELLING", "CANCELLING", "CANCELLING", "CANCELLED"]);
    await cancelling;
  });

  it("a rejected order cannot be cancelled: FAILED_PRECONDITION with the reason", async () => {
    const rejected = await create({ paymentMethod: "pm_card_declined" });
    const refused = await refusal(mesh.order.cancelOrder({ orderId: rejected.orderId, reason: "" }));
    expect(refused.code).toBe(Status.FAILED_PRECONDITION);
    expect(refused.details).toMatch(/order is rejected/);
    expect(refused.preconditions).toEqual([{ type: "ORDER_STATE", subject: rejected.orderId, description: expect.stringMatching(/rejected/) }]);
    expect((await refusal(mesh.order.cancelOrder({ orderId: "ord_missing", reason: "" }))).code).toBe(Status.NOT_FOUND);
    const long = await refusal(mesh.order.cancelOrder({ orderId: rejected.orderId, reason: "x".repeat(501) }));
    expect(Object.keys(long.fields)).toEqual(["reason"]);
    // Postgres keeps no NUL in text: refused up front, not INTERNAL from the database (found by fuzzing).
    const confirmed = await create();
    const nul = await refusal(mesh.order.cancelOrder({ orderId: confirmed.orderId, reason: "late\u0000delivery" }));
    expect(nul.code).toBe(Status.INVALID_ARGUMENT);
    expect(nul.fields).toEqual({ reason: "must not contain NUL characters" });
    expect(stateName((await mesh.order.getOrder({ orderId: confirmed.orderId })).order!.state)).toBe("CONFIRMED");
  });
});

// ------------------------------------------------------------- lost answers

/**
 * The saga in this process, over the real inventory and payment through the
 * real gRPC adapters (grpc-adapters.ts), with a call lost on the way: either
 * before it reaches the service, or after the service acted (the answer is
 * lost). This is docs/order-saga.md's "When an answer was lost" against the
 * services' real idempotency and refusals.
 */
describe("lost answers against the real services", () => {
  const logger = createLogger({ service: "order-lost-answers-test", version: "test", level: "silent" });
  let db: Database;
  let notifier: OrderNotifier;
  let orders: Orders;
  let saga: Saga;
  const stopping = new AbortController();
  /** method → where its next call is lost */
  const lose = new Map<string, "before" | "after">();
  const closers: (() => void)[] = [];

  function lossy<T extends object>(port: T): T {
    return new Proxy(port, {
      get(target, property, receiver) {
        const value = Reflect.get(target, property, receiver);
        if (typeof value !== "function") return value;
        return async (...args: unknown[]) => {
          const where = lose.get(String(property));
          lose.delete(String(property));
          if (where === "before") throw new TransientFailure(`${String(property)}: UNAVAILABLE (lost on the way)`);
          const result = await value.apply(target, args);
          if (where === "after") throw new TransientFailure(`${String(property)}: DEADLINE_EXCEEDED (answer lost)`);
          return result;
        };
      },
    });
  }

  beforeAll(async () => {
    const database = await databases.create("order_lost_answers");
    db = new Database({ url: database.url, poolMax: 5, statementTimeoutMs: 10_000, applicationName: "order-lost-answers", logger });
    await migrate(db, fileURLToPath(new URL("../migrations", import.meta.url)), logger);
    const settings = { attemptTimeoutMs: 5_000, retries: 0 };
    const inventoryChannel = openChannel(mesh.inventoryAddress);
    const paymentChannel = openChannel(mesh.paymentAddress);
    closers.push(
      () => inventoryChannel.close(),
      () => paymentChannel.close(),
    );
    const inventory: InventoryPort = lossy(
      new GrpcInventory(createServiceClient(InventoryServiceDefinition, inventoryChannel, { address: mesh.inventoryAddress, ...settings }, logger)),
    );
    const payment: PaymentPort = lossy(
      new GrpcPayment(createServiceClient(PaymentServiceDefinition, paymentChannel, { address: mesh.paymentAddress, ...settings }, logger)),
    );
    const store = new EventStore(db);
    notifier = new OrderNotifier(database.url, logger);
    notifier.start();
    saga = new Saga({
      store,
      inventory,
      payment,
      settings: {
        owner: "lost-answers",
        leaseMs: 30_000,
        retryBaseMs: 10,
        retryMaxMs: 100,
        undoAttempts: 10,
        chargeBounds: { minMinor: CHARGE_AMOUNT.minMinorUnits, maxMinor: CHARGE_AMOUNT.maxMinorUnits },
      },
      logger,
      stopping: stopping.signal,
      onAppend: (order) => notifier.notify(order),
    });
    orders = new Orders(
      store,
      saga,
      notifier,
      { owner: "lost-answers", leaseMs: 30_000, maxWaitMs: 20_000, pollMs: 50 },
      new Admission("checkouts", { limit: 1_000, queue: 0, queueTimeoutMs: 1 }),
    );
  }, 60_000);

  afterAll(async () => {
    stopping.abort();
    await saga?.drained();
    await notifier?.stop();
    await db?.close();
    for (const close of closers) close();
  });

  async function checkout(paymentMethod = "pm_card_visa") {
    const request = { requestId: unique("lost"), customerId: unique("cust"), items: [{ sku: "MESH-MUG", quantity: 3 }], paymentMethod };
    return orders.create(request, new AbortController().signal);
  }

  async function reservation(orderId: string) {
    return (await mesh.inventory.getReservation({ reservationId: `${orderId}.stock` })).reservation!;
  }

  it("happy path through the adapters: prices from inventory, CONFIRMED", async () => {
    const order = await checkout();
    expect(order.state).toBe("CONFIRMED");
    expect(order.lines).toEqual([{ sku: "MESH-MUG", quantity: 3, unitPriceMinor: await unitPrice("MESH-MUG") }]);
    expect((await reservation(order.orderId)).state).toBe(ReservationState.RESERVATION_STATE_COMMITTED);
  });

  it("a reserve lost on the way: inventory does not know it, so the release fences it (reserve + release)", async () => {
    const before = await mesh.stock("MESH-MUG");
    lose.set("reserve", "before");
    const order = await checkout();
    expect(order.state).toBe("FAILED");
    expect(order.history.find((e) => e.data.type === "STOCK_RELEASED")!.data).toMatchObject({ detail: "late reservation fenced and released" });
    expect((await reservation(order.orderId)).state).toBe(ReservationState.RESERVATION_STATE_RELEASED);
    // The late original attempt finds the released reservation and holds nothing.
    const late = await mesh.inventory.reserveStock({ reservationId: `${order.orderId}.stock`, items: order.items, ttl: undefined });
    expect(late.reservation!.state).toBe(ReservationState.RESERVATION_STATE_RELEASED);
    expect(await mesh.stock("MESH-MUG")).toEqual(before);
    expect(await mesh.paymentsOf(order.orderId)).toEqual([]);
  });

  it("reservation in doubt (inventory reserved, the answer was lost): released", async () => {
    const before = await mesh.stock("MESH-MUG");
    lose.set("reserve", "after");
    const order = await checkout();
    expect(order.state).toBe("FAILED");
    expect(order.history.find((e) => e.data.type === "STOCK_RELEASED")!.data).toMatchObject({ detail: "reservation released" });
    expect((await reservation(order.orderId)).state).toBe(ReservationState.RESERVATION_STATE_RELEASED);
    expect(await mesh.stock("MESH-MUG")).toEqual(before);
  });

  it("a charge lost on the way: the refund step's charge takes it now, then refunds it in full", async () => {
    const before = await mesh.stock("MESH-MUG");
    lose.set("charge", "before");
    const order = await checkout();
    expect(order.state).toBe("FAILED");
    const payments = await mesh.paymentsOf(order.orderId);
    expect(payments).toHaveLength(1);
    expect(payments[0]).toMatchObject({ idempotencyKey: `${order.orderId}.charge`, status: PaymentStatus.PAYMENT_STATUS_REFUNDED });
    expect(payments[0]!.refunds.map((r) => r.idempotencyKey)).toEqual([`${order.orderId}.refund.compensation`]);
    expect(await mesh.netCharged(order.orderId)).toBe(0);
    expect(await mesh.stock("MESH-MUG")).toEqual(before);
  });

  it("charge in doubt (payment charged, the answer was lost): the same payment is found and refunded", async () => {
    lose.set("charge", "after");
    const order = await checkout();
    expect(order.state).toBe("FAILED");
    const payments = await mesh.paymentsOf(order.orderId);
    expect(payments).toHaveLength(1);
    expect(payments[0]!.status).toBe(PaymentStatus.PAYMENT_STATUS_REFUNDED);
    expect(order.paymentId).toBe(payments[0]!.paymentId);
    expect(await mesh.netCharged(order.orderId)).toBe(0);
    // A late original attempt replays the refunded payment: still one payment, nothing taken.
    const late = await mesh.payment.charge({
      idempotencyKey: `${order.orderId}.charge`,
      customerId: order.customerId,
      amount: { currencyCode: "USD", minorUnits: order.totalMinor! },
      paymentMethod: "pm_card_visa",
      orderId: order.orderId,
    });
    expect(late.replayed).toBe(true);
    expect(await mesh.paymentsOf(order.orderId)).toHaveLength(1);
  });

  it("a declined charge in doubt: nothing to refund", async () => {
    lose.set("charge", "after");
    const order = await checkout("pm_card_declined");
    expect(order.state).toBe("FAILED");
    expect(order.history.find((e) => e.data.type === "PAYMENT_REFUNDED")!.data).toMatchObject({ refundedMinor: 0 });
    expect((await mesh.paymentsOf(order.orderId)).map((p) => [p.status, p.refunds.length])).toEqual([[PaymentStatus.PAYMENT_STATUS_DECLINED, 0]]);
  });

  it("commit in doubt (inventory committed, the answer was lost): the release is refused, the stock is returned", async () => {
    const before = await mesh.stock("MESH-MUG");
    lose.set("commit", "after");
    const order = await checkout();
    expect(order.state).toBe("FAILED");
    expect(order.history.find((e) => e.data.type === "STOCK_RELEASED")!.data).toMatchObject({ detail: "reservation had been committed: stock returned" });
    expect((await reservation(order.orderId)).state).toBe(ReservationState.RESERVATION_STATE_RETURNED);
    expect(await mesh.stock("MESH-MUG")).toEqual(before);
    expect(await mesh.netCharged(order.orderId)).toBe(0);
  });

  it("a compensation refund whose answer was lost is retried and replays: one refund", async () => {
    lose.set("commit", "before");
    lose.set("refundAll", "after");
    const order = await checkout();
    expect(order.state).toBe("FAILED");
    const [payment] = await mesh.paymentsOf(order.orderId);
    expect(payment!.refunds).toHaveLength(1);
    expect(order.history.find((e) => e.data.type === "PAYMENT_REFUNDED")!.data).toMatchObject({ refundedMinor: order.totalMinor });
    expect((await reservation(order.orderId)).state).toBe(ReservationState.RESERVATION_STATE_RELEASED);
  });

  it("a cancellation whose refund and return answers were lost: one refund, stock back once", async () => {
    const before = await mesh.stock("MESH-MUG");
    const order = await checkout();
    lose.set("refundAll", "after");
    lose.set("returnStock", "after");
    const cancelled = await orders.cancel(order.orderId, "lost answers", new AbortController().signal);
    expect(cancelled.state).toBe("CANCELLED");
    const [payment] = await mesh.paymentsOf(order.orderId);
    expect(payment!.refunds.map((r) => r.idempotencyKey)).toEqual([`${order.orderId}.refund.cancellation`]);
    expect((await reservation(order.orderId)).state).toBe(ReservationState.RESERVATION_STATE_RETURNED);
    expect(await mesh.stock("MESH-MUG")).toEqual(before);
  });
});

describe("afterwards", () => {
  it("the stock ledger holds, nothing is left reserved, and no process logged an error", async () => {
    expect(await mesh.ledgerViolations()).toEqual([]);
    const { products } = await mesh.inventory.listProducts({ pageSize: 100, pageToken: "" });
    expect(products.map((p) => [p.sku, p.stock!.reserved])).toEqual(products.map((p) => [p.sku, 0]));
    expect((await mesh.orderDbCounts()).runs).toBe(0);
    expect(errorLines(mesh.logs("order"))).toEqual([]);
    expect(errorLines(mesh.logs("inventory"))).toEqual([]);
    expect(errorLines(mesh.logs("payment"))).toEqual([]);
  });
});
