import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { Status } from "nice-grpc";
import { ReservationState } from "@meshcart/contracts/meshcart/inventory/v1/inventory.js";
import { OrderState, type CreateOrderRequest } from "@meshcart/contracts/meshcart/order/v1/order.js";
import { PaymentStatus } from "@meshcart/contracts/meshcart/payment/v1/payment.js";
import { ConfigError, createLogger, loadConfig } from "@meshcart/lib";
import { CRASH_POINTS, crashHook, type CrashPoint } from "../src/chaos.js";
import { orderConfig } from "../src/config.js";
import { TestDatabases } from "./support/database.js";
import { Mesh, errorLines, eventTypes, refusal, stateName } from "./support/services.js";
import { eventually, unique } from "./support/wait.js";

/**
 * kill -9 of the order service at every step of the saga (the
 * ORDER_CRASH_POINT chaos hook, src/chaos.ts), then a restart without it:
 * every saga completes or compensates, with exactly one charge and a
 * consistent stock ledger. Then a replica on another port taking over
 * after the lease, and payment or inventory going away mid-saga.
 */

// Bounds (not targets) also when vitest runs without the repository's vitest.config.ts.
vi.setConfig({ testTimeout: 60_000, hookTimeout: 120_000 });

const databases = new TestDatabases();
let mesh: Mesh;

beforeAll(async () => {
  mesh = await Mesh.create(databases, "order_crash");
  await Promise.all([mesh.startInventory(), mesh.startPayment()]);
}, 120_000);

// Each scenario starts from inventory and payment up and no order replica,
// so that one failing scenario does not take the next ones with it.
afterEach(async () => {
  if (mesh.isRunning("order")) await mesh.stop("order");
  if (!mesh.isRunning("inventory")) await mesh.startInventory();
  if (!mesh.isRunning("payment")) await mesh.startPayment();
});

afterAll(async () => {
  await mesh?.close();
  await databases.dropAll();
}, 60_000);

function createRequest(overrides: Partial<CreateOrderRequest> = {}): CreateOrderRequest {
  return {
    requestId: unique("req"),
    customerId: unique("crash"),
    items: [{ sku: "MESH-MUG", quantity: 2 }],
    paymentMethod: "pm_card_visa",
    ...overrides,
  };
}

/** A call to the order service that dies with it: it must fail, however. */
async function diesWith(call: Promise<unknown>): Promise<void> {
  const failed = await refusal(call);
  expect(failed.code).toBeGreaterThan(0);
}

/** Waits for the order process to kill itself at `point`; checks it was that point. */
async function crashedAt(point: CrashPoint): Promise<void> {
  const process = mesh.process("order");
  const status = await mesh.crashed("order");
  expect(status).toEqual({ code: null, signal: "SIGKILL" });
  expect(process.logs().some((line) => line.includes("chaos: killing this process") && line.includes(`"crash_point":"${point}"`))).toBe(true);
}

/** The one order of a customer, read from the order database while the service is down. */
async function theOrderOf(customerId: string): Promise<{ order_id: string; state: string; version: number }> {
  const rows = await mesh.ordersOfCustomer(customerId);
  expect(rows).toHaveLength(1);
  return rows[0]!;
}

async function reservationState(reservationId: string): Promise<ReservationState | "NOT_FOUND"> {
  try {
    const { reservation } = await mesh.inventory.getReservation({ reservationId });
    return reservation!.state;
  } catch {
    return "NOT_FOUND";
  }
}

/**
 * Leases far longer than any scenario: a saga whose driver died can then
 * only move on because the restarted replica takes its own sagas back at
 * start (claimOwn), not because recovery found the lease expired.
 */
const LONG_LEASE = { ORDER_SAGA_LEASE_MS: "120000" };

/** Restarts the order service (same port, hence same lease owner) without a crash point. */
async function restartOrder(env: Record<string, string> = {}): Promise<void> {
  const process = await mesh.startOrder({ ...LONG_LEASE, ...env });
  // It takes its own sagas back at start, without waiting for the lease to run out.
  await eventually("the restarted replica to resume its saga", async () =>
    process.logs().some((l) => l.includes("resuming this replica's unfinished sagas")) ? true : undefined,
  );
}

/** What every scenario must leave behind: a sound stock ledger, nothing held for the order, no saga run left. */
async function expectSettled(orderId: string): Promise<void> {
  expect(await mesh.ledgerViolations()).toEqual([]);
  expect(await reservationState(`${orderId}.stock`)).not.toBe(ReservationState.RESERVATION_STATE_HELD);
  expect(await mesh.sagaRunOf(orderId)).toBeUndefined();
}

interface ForwardCase {
  point: CrashPoint;
  /** State of the order in the log when the process died: forward steps are recorded with the outcome. */
  stateAtCrash: string;
  /** What the other services hold at that moment: the effect of the step, or not yet. */
  reservationAtCrash: ReservationState | "NOT_FOUND";
  paymentsAtCrash: number;
}

const FORWARD: ForwardCase[] = [
  { point: "before:reserve", stateAtCrash: "PENDING", reservationAtCrash: "NOT_FOUND", paymentsAtCrash: 0 },
  { point: "after:reserve", stateAtCrash: "PENDING", reservationAtCrash: ReservationState.RESERVATION_STATE_HELD, paymentsAtCrash: 0 },
  { point: "before:charge", stateAtCrash: "PENDING", reservationAtCrash: ReservationState.RESERVATION_STATE_HELD, paymentsAtCrash: 0 },
  { point: "after:charge", stateAtCrash: "PENDING", reservationAtCrash: ReservationState.RESERVATION_STATE_HELD, paymentsAtCrash: 1 },
  { point: "before:commit", stateAtCrash: "PENDING", reservationAtCrash: ReservationState.RESERVATION_STATE_HELD, paymentsAtCrash: 1 },
  { point: "after:commit", stateAtCrash: "PENDING", reservationAtCrash: ReservationState.RESERVATION_STATE_COMMITTED, paymentsAtCrash: 1 },
];

describe("the crash hook (ORDER_CRASH_POINT)", () => {
  const env = { DATABASE_URL: "postgres://u:p@127.0.0.1:5432/orders" };

  it("is off unless set, and accepts exactly the documented points", () => {
    expect(loadConfig(orderConfig, env).ORDER_CRASH_POINT).toBeUndefined();
    expect(loadConfig(orderConfig, { ...env, ORDER_CRASH_POINT: "" }).ORDER_CRASH_POINT).toBeUndefined();
    for (const point of CRASH_POINTS) expect(loadConfig(orderConfig, { ...env, ORDER_CRASH_POINT: point }).ORDER_CRASH_POINT).toBe(point);
    expect([...CRASH_POINTS]).toEqual(["reserve", "charge", "commit", "refund", "release", "return"].flatMap((step) => [`before:${step}`, `after:${step}`]));
    for (const bad of ["after:ship", "before", "BEFORE:RESERVE", "yes"]) {
      expect(() => loadConfig(orderConfig, { ...env, ORDER_CRASH_POINT: bad })).toThrow(ConfigError);
    }
    expect(() => loadConfig(orderConfig, { ...env, ORDER_CRASH_POINT: "after:ship" })).toThrow(/ORDER_CRASH_POINT: must be one of before:reserve/);
  });

  it("kills the process with SIGKILL at its point only", () => {
    const kill = vi.spyOn(process, "kill").mockImplementation(() => true);
    try {
      const logger = createLogger({ service: "crash-hook-test", version: "test", level: "silent" });
      crashHook(undefined, logger)("before:reserve");
      const hook = crashHook("after:charge", logger);
      for (const point of CRASH_POINTS.filter((p) => p !== "after:charge")) hook(point);
      expect(kill).not.toHaveBeenCalled();
      hook("after:charge");
      expect(kill).toHaveBeenCalledWith(process.pid, "SIGKILL");
    } finally {
      kill.mockRestore();
    }
  });
});

describe("kill -9 mid-checkout, restart on the same port: the saga completes", () => {
  it.each(FORWARD)("$point", async ({ point, stateAtCrash, reservationAtCrash, paymentsAtCrash }) => {
    const before = await mesh.stock("MESH-MUG");
    await mesh.startOrder({ ...LONG_LEASE, ORDER_CRASH_POINT: point });
    const request = createRequest();
    await diesWith(mesh.order.createOrder(request, { signal: AbortSignal.timeout(20_000) }));
    await crashedAt(point);

    // The moment of death: the log is behind what the other services did ("after:" = the answer was lost).
    const dead = await theOrderOf(request.customerId);
    expect(dead.state).toBe(stateAtCrash);
    expect(await reservationState(`${dead.order_id}.stock`)).toBe(reservationAtCrash);
    expect(await mesh.paymentsOf(dead.order_id)).toHaveLength(paymentsAtCrash);

    await restartOrder();
    const order = await mesh.finalOrder(dead.order_id);
    expect(stateName(order.state)).toBe("CONFIRMED");
    expect(eventTypes(order)).toEqual(["ORDER_PLACED", "STOCK_RESERVED", "PAYMENT_CAPTURED", "RESERVATION_COMMITTED", "ORDER_CONFIRMED"]);
    // A replay of CreateOrder now answers with the same order.
    expect((await mesh.order.createOrder(request)).order!.orderId).toBe(order.orderId);

    const payments = await mesh.paymentsOf(order.orderId);
    expect(payments).toHaveLength(1);
    expect(payments[0]).toMatchObject({ status: PaymentStatus.PAYMENT_STATUS_CAPTURED, paymentId: order.paymentId, amount: order.total });
    expect(await reservationState(order.reservationId)).toBe(ReservationState.RESERVATION_STATE_COMMITTED);
    const after = await mesh.stock("MESH-MUG");
    expect(after).toMatchObject({ sold: before.sold + 2, onHand: before.onHand - 2 });
    await expectSettled(order.orderId);
    await mesh.stop("order");
  });
});

describe("kill -9 mid-compensation and mid-cancellation: the undo completes", () => {
  it.each(["before:release", "after:release"] as const)("%s (a declined payment being compensated)", async (point) => {
    const before = await mesh.stock("MESH-MUG");
    await mesh.startOrder({ ...LONG_LEASE, ORDER_CRASH_POINT: point });
    const request = createRequest({ paymentMethod: "pm_card_declined" });
    await diesWith(mesh.order.createOrder(request, { signal: AbortSignal.timeout(20_000) }));
    await crashedAt(point);

    const dead = await theOrderOf(request.customerId);
    expect(dead.state).toBe("COMPENSATING");
    expect(await reservationState(`${dead.order_id}.stock`)).toBe(
      point === "before:release" ? ReservationState.RESERVATION_STATE_HELD : ReservationState.RESERVATION_STATE_RELEASED,
    );

    await restartOrder();
    const order = await mesh.finalOrder(dead.order_id);
    expect(stateName(order.state)).toBe("REJECTED");
    expect(eventTypes(order)).toEqual(["ORDER_PLACED", "STOCK_RESERVED", "PAYMENT_DECLINED", "STOCK_RELEASED", "ORDER_REJECTED"]);
    expect((await mesh.paymentsOf(order.orderId)).map((p) => p.status)).toEqual([PaymentStatus.PAYMENT_STATUS_DECLINED]);
    expect(await reservationState(order.reservationId)).toBe(ReservationState.RESERVATION_STATE_RELEASED);
    expect(await mesh.stock("MESH-MUG")).toEqual(before);
    await expectSettled(order.orderId);
    await mesh.stop("order");
  });

  // The cancellation's two steps, and what each crash point leaves behind.
  const CAPTURED = PaymentStatus.PAYMENT_STATUS_CAPTURED;
  const REFUNDED = PaymentStatus.PAYMENT_STATUS_REFUNDED;
  const COMMITTED = ReservationState.RESERVATION_STATE_COMMITTED;
  const RETURNED = ReservationState.RESERVATION_STATE_RETURNED;
  it.each([
    { point: "before:refund", step: "refund", paymentAtCrash: CAPTURED, reservationAtCrash: COMMITTED },
    { point: "after:refund", step: "refund", paymentAtCrash: REFUNDED, reservationAtCrash: COMMITTED },
    { point: "before:return", step: "stock return", paymentAtCrash: REFUNDED, reservationAtCrash: COMMITTED },
    { point: "after:return", step: "stock return", paymentAtCrash: REFUNDED, reservationAtCrash: RETURNED },
  ] as const)("$point (a cancellation's $step)", async ({ point, paymentAtCrash, reservationAtCrash }) => {
    const before = await mesh.stock("MESH-MUG");
    await mesh.startOrder({ ...LONG_LEASE, ORDER_CRASH_POINT: point });
    const request = createRequest();
    const confirmed = (await mesh.order.createOrder(request)).order!;
    expect(stateName(confirmed.state)).toBe("CONFIRMED");
    await diesWith(mesh.order.cancelOrder({ orderId: confirmed.orderId, reason: "crash me" }, { signal: AbortSignal.timeout(20_000) }));
    await crashedAt(point);

    expect((await theOrderOf(request.customerId)).state).toBe("CANCELLING");
    const [atCrash] = await mesh.paymentsOf(confirmed.orderId);
    expect(atCrash!.status).toBe(paymentAtCrash);
    expect(await reservationState(confirmed.reservationId)).toBe(reservationAtCrash);

    await restartOrder();
    const order = await mesh.finalOrder(confirmed.orderId);
    expect(stateName(order.state)).toBe("CANCELLED");
    expect(eventTypes(order).slice(5)).toEqual(["CANCELLATION_REQUESTED", "PAYMENT_REFUNDED", "STOCK_RETURNED", "ORDER_CANCELLED"]);
    // One refund under its derived key, the units back once: the retried steps acted once.
    const payments = await mesh.paymentsOf(order.orderId);
    expect(payments).toHaveLength(1);
    expect(payments[0]!.status).toBe(REFUNDED);
    expect(payments[0]!.refunds.map((r) => [r.idempotencyKey, r.amount!.minorUnits])).toEqual([
      [`${order.orderId}.refund.cancellation`, order.total!.minorUnits],
    ]);
    expect(await mesh.netCharged(order.orderId)).toBe(0);
    expect(await reservationState(order.reservationId)).toBe(RETURNED);
    expect(await mesh.stock("MESH-MUG")).toEqual(before);
    await expectSettled(order.orderId);
    await mesh.stop("order");
  });
});

describe("another replica takes over a dead one's saga", () => {
  it("a replica on another port claims the saga once the lease (1.5 s) ran out, and completes it", async () => {
    const before = await mesh.stock("MESH-MUG");
    await mesh.startOrder({ ORDER_CRASH_POINT: "after:charge" });
    const request = createRequest();
    await diesWith(mesh.order.createOrder(request, { signal: AbortSignal.timeout(20_000) }));
    await crashedAt("after:charge");
    const dead = await theOrderOf(request.customerId);
    expect(dead.state).toBe("PENDING");

    // Not the dead one's port: another lease owner, which must wait for the lease.
    const replica = await mesh.startOrderReplica();
    try {
      const order = await eventually(
        "the other replica to finish the saga",
        async () => {
          const { order } = await replica.client.getOrder({ orderId: dead.order_id });
          return order!.state === OrderState.ORDER_STATE_CONFIRMED ? order! : undefined;
        },
        30_000,
        100,
      );
      expect(replica.process.logs().some((l) => l.includes("recovering abandoned sagas"))).toBe(true);
      expect(replica.process.logs().some((l) => l.includes("resuming this replica's unfinished sagas"))).toBe(false);
      const payments = await mesh.paymentsOf(order.orderId);
      expect(payments).toHaveLength(1);
      expect(payments[0]!.paymentId).toBe(order.paymentId);
      expect(await mesh.stock("MESH-MUG")).toMatchObject({ sold: before.sold + 2 });
      await expectSettled(order.orderId);
    } finally {
      replica.close();
      await replica.process.stop();
    }
  });
});

describe("a dependency goes away mid-saga", () => {
  const flaky = { ORDER_CLIENT_RETRIES: "1", ORDER_STEP_TIMEOUT_MS: "500", ORDER_RETRY_MAX_MS: "300", ORDER_MAX_WAIT_MS: "2000" };

  it("payment down during the charge: STEP_FAILED, the refund waits for payment, then FAILED with nothing charged and the stock released", async () => {
    const before = await mesh.stock("MESH-MUG");
    await mesh.startOrder(flaky);
    await mesh.stop("payment");
    const request = createRequest();

    // The caller's wait ends first; the saga goes on.
    const waited = await refusal(mesh.order.createOrder(request));
    expect(waited.code).toBe(Status.DEADLINE_EXCEEDED);
    const { order_id: orderId } = await theOrderOf(request.customerId);
    const stuck = await eventually("the charge to count as failed", async () => {
      const { order } = await mesh.order.getOrder({ orderId });
      return order!.state === OrderState.ORDER_STATE_COMPENSATING ? order! : undefined;
    });
    expect(eventTypes(stuck)).toEqual(["ORDER_PLACED", "STOCK_RESERVED", "STEP_FAILED"]);
    expect(eventTypes(stuck).slice(-1)).toEqual(["STEP_FAILED"]);
    expect(stuck.failureReason).toMatch(/charging: UNAVAILABLE/);

    // Compensation settles the charge in doubt first: it keeps retrying while payment is away.
    await eventually("a few refund retries", async () =>
      mesh.logs("order").filter((l) => l.includes("saga step failed, will retry") && l.includes('"step":"refund"')).length >= 2 ? true : undefined,
    );
    expect(eventTypes((await mesh.order.getOrder({ orderId })).order!).slice(-1)).toEqual(["STEP_FAILED"]);
    // Money first, then stock (reverse order): the hold stays until the refund step is done.
    expect(await reservationState(`${orderId}.stock`)).toBe(ReservationState.RESERVATION_STATE_HELD);

    await mesh.startPayment();
    const order = await mesh.finalOrder(orderId);
    expect(stateName(order.state)).toBe("FAILED");
    expect(eventTypes(order)).toEqual(["ORDER_PLACED", "STOCK_RESERVED", "STEP_FAILED", "PAYMENT_REFUNDED", "STOCK_RELEASED", "ORDER_FAILED"]);
    // The settling charge was taken under the order's key and refunded in full: net zero, one payment.
    const payments = await mesh.paymentsOf(orderId);
    expect(payments).toHaveLength(1);
    expect(payments[0]).toMatchObject({ idempotencyKey: `${orderId}.charge`, status: PaymentStatus.PAYMENT_STATUS_REFUNDED, amount: order.total });
    expect(payments[0]!.refunds.map((r) => r.idempotencyKey)).toEqual([`${orderId}.refund.compensation`]);
    expect(await mesh.netCharged(orderId)).toBe(0);
    expect(await reservationState(order.reservationId)).toBe(ReservationState.RESERVATION_STATE_RELEASED);
    expect(await mesh.stock("MESH-MUG")).toEqual(before);
    // A late retry of the original charge finds the refunded payment: still nothing taken.
    const late = await mesh.payment.charge({
      idempotencyKey: `${orderId}.charge`,
      customerId: order.customerId,
      amount: order.total,
      paymentMethod: order.paymentMethod,
      orderId,
    });
    expect(late.replayed).toBe(true);
    expect(await mesh.netCharged(orderId)).toBe(0);
    await expectSettled(order.orderId);
    await mesh.stop("order");
  });

  it("inventory down when a saga is resumed: the repeated reserve waits for inventory (a charge may have followed it), then the checkout completes", async () => {
    const before = await mesh.stock("MESH-MUG");
    // Reserve and charge, then die just before the commit: the log still says PENDING...
    await mesh.startOrder({ ...LONG_LEASE, ORDER_CRASH_POINT: "before:commit" });
    const request = createRequest();
    await diesWith(mesh.order.createOrder(request, { signal: AbortSignal.timeout(20_000) }));
    await crashedAt("before:commit");
    const { order_id: orderId } = await theOrderOf(request.customerId);
    expect(await mesh.paymentsOf(orderId)).toHaveLength(1);

    // ...and resume it with inventory away. Taking the reserve's failure for
    // "nothing reserved" would compensate without the refund the charge needs.
    await mesh.stop("inventory");
    await restartOrder(flaky);
    await eventually("a few retries of the repeated reserve", async () =>
      mesh.logs("order").filter((l) => l.includes("saga step failed, will retry") && l.includes('"step":"reserve"') && l.includes(orderId)).length >= 2
        ? true
        : undefined,
    );
    const waiting = (await mesh.order.getOrder({ orderId })).order!;
    expect(eventTypes(waiting)).toEqual(["ORDER_PLACED"]);

    // Meanwhile a new order is placed, and its reserve fails after the
    // clients' retries: nothing was charged for it, so it ends FAILED once
    // inventory answers its release.
    const meanwhile = createRequest();
    expect((await refusal(mesh.order.createOrder(meanwhile))).code).toBe(Status.DEADLINE_EXCEEDED);

    await mesh.startInventory();
    const order = await mesh.finalOrder(orderId);
    expect(stateName(order.state)).toBe("CONFIRMED");
    expect(eventTypes(order)).toEqual(["ORDER_PLACED", "STOCK_RESERVED", "PAYMENT_CAPTURED", "RESERVATION_COMMITTED", "ORDER_CONFIRMED"]);
    const payments = await mesh.paymentsOf(orderId);
    expect(payments).toHaveLength(1);
    expect(payments[0]!.status).toBe(PaymentStatus.PAYMENT_STATUS_CAPTURED);
    expect(await reservationState(order.reservationId)).toBe(ReservationState.RESERVATION_STATE_COMMITTED);
    expect(await mesh.stock("MESH-MUG")).toMatchObject({ sold: before.sold + 2 });
    await expectSettled(order.orderId);

    const other = await mesh.finalOrder((await theOrderOf(meanwhile.customerId)).order_id);
    expect(stateName(other.state)).toBe("FAILED");
    expect(eventTypes(other)).toEqual(["ORDER_PLACED", "STEP_FAILED", "STOCK_RELEASED", "ORDER_FAILED"]);
    expect(await mesh.paymentsOf(other.orderId)).toEqual([]);
    await expectSettled(other.orderId);
    await mesh.stop("order");
  });
});

describe("graceful shutdown mid-saga", () => {
  it("SIGTERM while a compensation waits for payment: clean exit, the saga handed back at once, another replica finishes it", async () => {
    const before = await mesh.stock("MESH-MUG");
    // A long lease: only the hand-over at shutdown lets another replica in within the test's bounds.
    await mesh.startOrder({
      ORDER_CLIENT_RETRIES: "1",
      ORDER_STEP_TIMEOUT_MS: "500",
      ORDER_RETRY_MAX_MS: "300",
      ORDER_MAX_WAIT_MS: "1000",
      ORDER_SAGA_LEASE_MS: "120000",
    });
    await mesh.stop("payment");
    const request = createRequest();
    expect((await refusal(mesh.order.createOrder(request))).code).toBe(Status.DEADLINE_EXCEEDED);
    const { order_id: orderId } = await theOrderOf(request.customerId);
    await eventually("the refund to be retried", async () =>
      mesh.logs("order").some((l) => l.includes("saga step failed, will retry") && l.includes(orderId)) ? true : undefined,
    );
    expect((await mesh.sagaRunOf(orderId))?.expired).toBe(false);

    const process = mesh.process("order");
    expect(await mesh.stop("order")).toEqual({ code: 0, signal: null });
    expect(process.logs().some((l) => l.includes("saga handed over at shutdown") && l.includes(orderId))).toBe(true);
    expect(await mesh.sagaRunOf(orderId)).toMatchObject({ expired: true });

    await mesh.startPayment();
    const replica = await mesh.startOrderReplica({ ORDER_SAGA_LEASE_MS: "120000" });
    try {
      const order = await eventually(
        "the other replica to finish the compensation",
        async () => {
          const { order } = await replica.client.getOrder({ orderId });
          return order!.state === OrderState.ORDER_STATE_FAILED ? order! : undefined;
        },
        30_000,
        100,
      );
      expect(eventTypes(order)).toEqual(["ORDER_PLACED", "STOCK_RESERVED", "STEP_FAILED", "PAYMENT_REFUNDED", "STOCK_RELEASED", "ORDER_FAILED"]);
      expect(await mesh.netCharged(orderId)).toBe(0);
      expect(await mesh.stock("MESH-MUG")).toEqual(before);
      await expectSettled(order.orderId);
    } finally {
      replica.close();
      await replica.process.stop();
    }
  });
});

describe("afterwards", () => {
  it("one payment per order at most, and no process logged an error", async () => {
    expect((await mesh.orderDbCounts()).runs).toBe(0);
    const { products } = await mesh.inventory.listProducts({ pageSize: 100, pageToken: "" });
    expect(products.filter((p) => p.stock!.reserved !== 0).map((p) => p.sku)).toEqual([]);
    const ids = (await mesh.orderSql.query<{ order_id: string }>("SELECT order_id FROM orders")).rows.map((r) => r.order_id);
    expect(ids.length).toBeGreaterThanOrEqual(12);
    for (const id of ids) expect((await mesh.paymentsOf(id)).length).toBeLessThanOrEqual(1);
    expect(errorLines(mesh.logs("order"))).toEqual([]);
    expect(errorLines(mesh.logs("inventory"))).toEqual([]);
    expect(errorLines(mesh.logs("payment"))).toEqual([]);
  });
});
