import fc from "fast-check";
import { Status } from "nice-grpc";
import { describe, expect, it } from "vitest";
import { CHARGE_AMOUNT, createLogger } from "@meshcart/lib";
import { CRASH_POINTS, type CrashPoint } from "../src/chaos.js";
import { FAILURE_CLASSES, GrpcInventory, GrpcPayment } from "../src/grpc-adapters.js";
import { applyEvent, isFinal, type Order } from "../src/order-state.js";
import { Saga } from "../src/saga.js";
import { MemoryStore, ModelInventory, ModelPayments, type MethodScript, type Scripts } from "./support/model-services.js";

/**
 * The saga driver against every answer a step can get: the real driver
 * and its real gRPC adapters over in-memory models of inventory and payment
 * (support/model-services.ts), each call of which is scripted to fail with
 * any status code, before or after acting, a few times or forever; with a
 * crash (the driver dies at any crash point, a second replica recovers the
 * run) and a cancellation of confirmed orders. Whatever the script, every
 * saga ends in a final state, its run removed. With the answers a real
 * service can give (transient and broken failures, truthful refusals), it
 * also ends consistent: nothing held or taken for an order that is not
 * confirmed, one charge and a sold hold for one that is, unless a step was
 * given up, which the order then says.
 */

const logger = createLogger({ service: "saga-property", version: "test", level: "silent" });
const ALL_CODES = (Object.keys(FAILURE_CLASSES).map(Number) as Exclude<Status, Status.OK>[]).sort((a, b) => a - b);
const byClass = (kind: "transient" | "refused" | "broken") => ALL_CODES.filter((code) => FAILURE_CLASSES[code] === kind);
const INVENTORY_METHODS = ["ReserveStock", "CommitReservation", "ReleaseReservation", "GetReservation", "ReturnStock"];
const PAYMENT_METHODS = ["Charge", "Refund", "GetPayment"];
const UNDO_ATTEMPTS = 3;
const CATALOGUE = { "MESH-MUG": { price: 1400, stock: 5 }, "MESH-CAP": { price: 1900, stock: 5 } };
/** Far more calls than any script can cause without a loop (a few per step, each undo step at most UNDO_ATTEMPTS broken answers). */
const CALL_BUDGET = 500;

class Crash extends Error {}

interface Case {
  scripts: Scripts;
  quantity: number;
  paymentMethod: "pm_card_visa" | "pm_card_declined";
  expiresBeforeCommit: boolean;
  maxAmountMinor: number;
  crashAt: CrashPoint | undefined;
  cancel: boolean;
}

/** `value` with weight 3, `otherwise` with weight 1. */
function mostly<T>(value: fc.Arbitrary<T>, otherwise: fc.Arbitrary<T>): fc.Arbitrary<T> {
  return fc.oneof({ arbitrary: value, weight: 3 }, { arbitrary: otherwise, weight: 1 });
}

function scriptOf(codes: readonly Exclude<Status, Status.OK>[], tails: readonly Exclude<Status, Status.OK>[]): fc.Arbitrary<MethodScript> {
  const failure = fc.record({ code: fc.constantFrom(...codes), acts: fc.boolean() });
  return fc.record({
    // Each call answered by the script or (null) by the model, so failures can come after successes (a repeated step).
    failures: fc.array(fc.oneof(failure, fc.constant(null)), { maxLength: 5 }),
    // A status forever: never a transient one (a saga waits for a service that is away, as long as it is away).
    tail: tails.length > 0 ? mostly(fc.constant(undefined), fc.constantFrom(...tails)) : fc.constant(undefined),
  });
}

function caseOf(codes: readonly Exclude<Status, Status.OK>[], tails: readonly Exclude<Status, Status.OK>[]): fc.Arbitrary<Case> {
  const scripts = fc.record(Object.fromEntries([...INVENTORY_METHODS, ...PAYMENT_METHODS].map((m) => [m, scriptOf(codes, tails)])), {
    requiredKeys: [],
  }) as fc.Arbitrary<Scripts>;
  // Mostly orders that can succeed, so that the scripts, not the business refusals, decide the way.
  return fc.record({
    scripts,
    quantity: mostly(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 6, max: 7 })),
    paymentMethod: mostly(fc.constant("pm_card_visa" as const), fc.constant("pm_card_declined" as const)),
    expiresBeforeCommit: mostly(fc.constant(false), fc.constant(true)),
    maxAmountMinor: mostly(fc.constant<number>(CHARGE_AMOUNT.maxMinorUnits), fc.constant(1_000)),
    crashAt: fc.oneof(fc.constant(undefined), fc.constantFrom(...CRASH_POINTS)),
    cancel: fc.boolean(),
  });
}

/** Runs one order through the driver (and a recovering replica after a crash), then its cancellation when confirmed. */
async function runCase(c: Case): Promise<{ order: Order; store: MemoryStore; inventory: ModelInventory; payment: ModelPayments }> {
  const inventory = new ModelInventory(c.scripts, CATALOGUE, c.expiresBeforeCommit);
  const payment = new ModelPayments(c.scripts, c.maxAmountMinor);
  const store = new MemoryStore();
  let crashed = false;
  const stop = new AbortController();
  const replica = (owner: string, crashAt?: CrashPoint) =>
    new Saga({
      store,
      inventory: new GrpcInventory(inventory.client()),
      payment: new GrpcPayment(payment.client()),
      settings: {
        owner,
        leaseMs: 60_000,
        retryBaseMs: 1,
        retryMaxMs: 2,
        undoAttempts: UNDO_ATTEMPTS,
        chargeBounds: { minMinor: CHARGE_AMOUNT.minMinorUnits, maxMinor: CHARGE_AMOUNT.maxMinorUnits },
        crash: (point) => {
          if (point === crashAt && !crashed) {
            crashed = true;
            throw new Crash(`crashed at ${point}`);
          }
        },
      },
      logger,
      stopping: stop.signal,
    });
  /** A saga that keeps calling is looping: it is stopped, and the case fails. */
  const ended = async (saga: Saga) => {
    let timer: NodeJS.Timeout | undefined;
    const looping = new Promise<"looping">((resolve) => {
      timer = setInterval(() => {
        if (inventory.script.calls.length + payment.script.calls.length > CALL_BUDGET) resolve("looping");
      }, 5);
    });
    const outcome = await Promise.race([saga.drained().then(() => "ended" as const), looping]);
    clearInterval(timer);
    if (outcome === "looping") {
      stop.abort();
      await saga.drained();
      throw new Error(`the saga made more than ${CALL_BUDGET} calls: ${[...inventory.script.calls, ...payment.script.calls].slice(-12).join(", ")}, ...`);
    }
  };

  /** Drives the order's run to its end; after a crash, a second replica takes it over and drives it. */
  const drive = async (orderId: string, known?: Order) => {
    const first = replica("replica-a", c.crashAt);
    first.start(orderId, "started", known ? { order: known, context: {}, leaseEndsAt: Date.now() + 60_000 } : undefined);
    await ended(first);
    if (!isFinal((await store.loadRun(orderId))!.order.state)) {
      expect(crashed, "a run stopped before its order was final without a crash").toBe(true);
      expect(store.claim(orderId, "replica-b")).toBe(true);
      const second = replica("replica-b");
      second.start(orderId, "recovered");
      await ended(second);
    }
    return (await store.loadRun(orderId))!.order;
  };

  const orderId = "ord_model";
  const placed = store.place(
    { requestId: "req", customerId: "cust", items: [{ sku: "MESH-MUG", quantity: c.quantity }], paymentMethod: c.paymentMethod },
    orderId,
    "replica-a",
  );
  let order = await drive(orderId, placed);
  if (c.cancel && order.state === "CONFIRMED") {
    const requested = applyEvent(order, {
      sequence: order.version + 1,
      data: { type: "CANCELLATION_REQUESTED", reason: "" },
      stateAfter: "CANCELLING",
      occurredAt: new Date(),
    });
    await store.append(requested, order.version, { change: { run: "start", owner: "replica-a", leaseMs: 60_000 } });
    order = await drive(orderId);
  }
  return { order, store, inventory, payment };
}

/** What a final order says about money and stock must be true of the services, unless a step was given up (and it says so). */
function expectConsistent({ order, inventory, payment }: Awaited<ReturnType<typeof runCase>>): void {
  const abandoned = order.history.filter((e) => e.data.type === "STEP_ABANDONED");
  if (abandoned.length > 0) {
    expect(order.failureReason).toMatch(/needs an operator/);
    return;
  }
  const reservation = inventory.reservations.get(order.reservationId);
  const held = inventory.heldUnits();
  expect(held.counted).toBe(held.byReservations);
  const charged = [...payment.payments.values()].filter((p) => p.orderId === order.orderId && p.status !== "DECLINED");
  switch (order.state) {
    case "CONFIRMED":
      expect(reservation?.state).toBe("COMMITTED");
      expect(charged).toHaveLength(1);
      expect(payment.net(order.orderId)).toBe(order.totalMinor);
      expect(order.paymentId).toBe(charged[0]!.paymentId);
      break;
    case "CANCELLED":
      expect(reservation?.state).toBe("RETURNED");
      expect(payment.net(order.orderId)).toBe(0);
      break;
    default:
      expect(["REJECTED", "FAILED"]).toContain(order.state);
      expect(payment.net(order.orderId)).toBe(0);
      expect(["HELD", "COMMITTED"]).not.toContain(reservation?.state);
      expect(held.counted).toBe(0);
  }
  // One charge and one hold per order, whatever was repeated.
  expect([...payment.payments.values()].filter((p) => p.orderId === order.orderId).length).toBeLessThanOrEqual(1);
  expect(inventory.reservations.size).toBeLessThanOrEqual(1);
}

describe("the saga driver against scripted answers", () => {
  it("classifies every status code", () => {
    expect(ALL_CODES).toHaveLength(16);
    expect(
      byClass("transient")
        .map((c) => Status[c])
        .sort(),
    ).toEqual(["ABORTED", "CANCELLED", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "UNAVAILABLE"]);
    expect(
      byClass("refused")
        .map((c) => Status[c])
        .sort(),
    ).toEqual(["ALREADY_EXISTS", "FAILED_PRECONDITION", "INVALID_ARGUMENT", "NOT_FOUND", "OUT_OF_RANGE"]);
    expect(
      byClass("broken")
        .map((c) => Status[c])
        .sort(),
    ).toEqual(["DATA_LOSS", "INTERNAL", "PERMISSION_DENIED", "UNAUTHENTICATED", "UNIMPLEMENTED", "UNKNOWN"]);
  });

  it("every step × every status code, before or after acting, a few times or forever, with or without a crash: the saga ends", async () => {
    await fc.assert(
      fc.asyncProperty(caseOf(ALL_CODES, [...byClass("refused"), ...byClass("broken")]), async (c) => {
        const { order, store } = await runCase(c);
        expect(isFinal(order.state)).toBe(true);
        expect(store.runs.has(order.orderId)).toBe(false);
        // The log is one append-only sequence.
        expect(order.history.map((e) => e.sequence)).toEqual(order.history.map((_, i) => i + 1));
      }),
      { numRuns: 1_000 },
    );
  }, 120_000);

  it("with the answers a real service gives (transient and broken failures, truthful refusals): it ends consistent, or says what it gave up", async () => {
    await fc.assert(
      fc.asyncProperty(caseOf([...byClass("transient"), ...byClass("broken")], byClass("broken")), async (c) => {
        const result = await runCase(c);
        expect(isFinal(result.order.state)).toBe(true);
        expectConsistent(result);
      }),
      { numRuns: 1_000 },
    );
  }, 120_000);

  it.each(["after:charge", "before:commit", "after:commit"] as const)(
    "crashed at %s, the recovered run's reserve cannot reach inventory a while: it waits, and the checkout completes (the charge is not left behind)",
    async (crashAt) => {
      const unavailable = { code: Status.UNAVAILABLE, acts: false } as const;
      const result = await runCase({
        scripts: { ReserveStock: { failures: [null, unavailable, unavailable, unavailable, unavailable] } },
        quantity: 2,
        paymentMethod: "pm_card_visa",
        expiresBeforeCommit: false,
        maxAmountMinor: CHARGE_AMOUNT.maxMinorUnits,
        crashAt,
        cancel: false,
      });
      expect(result.order.state).toBe("CONFIRMED");
      expect(result.inventory.script.count("ReserveStock")).toBe(6);
      expectConsistent(result);
    },
  );

  it("crashed after the charge, the recovered run's reserve keeps failing in a way retrying does not fix: given up, and the order says a charge may need an operator", async () => {
    const result = await runCase({
      scripts: { ReserveStock: { failures: [null], tail: Status.INTERNAL } },
      quantity: 2,
      paymentMethod: "pm_card_visa",
      expiresBeforeCommit: false,
      maxAmountMinor: CHARGE_AMOUNT.maxMinorUnits,
      crashAt: "after:charge",
      cancel: false,
    });
    expect(result.order.state).toBe("FAILED");
    expect(result.order.history.map((e) => e.data.type)).toEqual(["ORDER_PLACED", "STEP_FAILED", "STEP_ABANDONED", "STOCK_RELEASED", "ORDER_FAILED"]);
    expect(result.order.failureReason).toMatch(/refund was not confirmed and needs an operator \(a charge under ord_model\.charge may exist/);
    expect(result.inventory.script.count("ReserveStock")).toBe(1 + UNDO_ATTEMPTS);
  });

  it("every transient code, and every broken one for fewer than the attempts allowed, still ends consistent with nothing given up", async () => {
    for (const code of [...byClass("transient"), ...byClass("broken")]) {
      for (const method of [...INVENTORY_METHODS, ...PAYMENT_METHODS]) {
        for (const acts of [false, true]) {
          const failures = Array.from({ length: UNDO_ATTEMPTS - 1 }, () => ({ code, acts }));
          const result = await runCase({
            scripts: { [method]: { failures } },
            quantity: 2,
            paymentMethod: "pm_card_visa",
            expiresBeforeCommit: false,
            maxAmountMinor: CHARGE_AMOUNT.maxMinorUnits,
            crashAt: undefined,
            cancel: true,
          });
          expect(isFinal(result.order.state), `${Status[code]} on ${method}`).toBe(true);
          expect(
            result.order.history.map((e) => e.data.type),
            `${Status[code]} on ${method}`,
          ).not.toContain("STEP_ABANDONED");
          expectConsistent(result);
        }
      }
    }
  }, 120_000);
});
