import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  FINAL_STATES,
  chargeKeyFor,
  fold,
  isFinal,
  nextStep,
  refundKeyFor,
  reservationIdFor,
  stateAfter,
  type NextStep,
  type OrderEvent,
  type OrderEventData,
  type OrderState,
} from "../src/order-state.js";

/**
 * The pure rules of docs/order-saga.md: for every row of the transition
 * table, the step nextStep picks in the "from" state, the state the row's
 * events fold to, and what comes next; stateAfter for every event; the
 * final states; the order of compensation and cancellation.
 */

const ORDER_ID = "ord_0123456789abcdef";
const T0 = new Date("2026-01-01T00:00:00.000Z");

const placed: OrderEventData = {
  type: "ORDER_PLACED",
  orderId: ORDER_ID,
  requestId: "req-1",
  customerId: "cust-1",
  items: [
    { sku: "MESH-MUG", quantity: 2 },
    { sku: "MESH-CAP", quantity: 1 },
  ],
  paymentMethod: "pm_card_visa",
};
const reserved: OrderEventData = {
  type: "STOCK_RESERVED",
  reservationId: `${ORDER_ID}.stock`,
  lines: [
    { sku: "MESH-MUG", quantity: 2, unitPriceMinor: 1400 },
    { sku: "MESH-CAP", quantity: 1, unitPriceMinor: 1900 },
  ],
  currencyCode: "USD",
  totalMinor: 4700,
};
const unavailable: OrderEventData = { type: "STOCK_UNAVAILABLE", reason: "not enough stock of MESH-MUG" };
const captured: OrderEventData = { type: "PAYMENT_CAPTURED", paymentId: "pay_1" };
const declined: OrderEventData = { type: "PAYMENT_DECLINED", paymentId: "pay_1", reason: "payment declined: card declined" };
const committed: OrderEventData = { type: "RESERVATION_COMMITTED" };
const confirmed: OrderEventData = { type: "ORDER_CONFIRMED" };
const failedAt = (step: "reserve" | "charge" | "commit"): OrderEventData => ({ type: "STEP_FAILED", step, reason: `${step}: UNAVAILABLE` });
const refunded: OrderEventData = { type: "PAYMENT_REFUNDED", paymentId: "pay_1", refundedMinor: 4700 };
const released: OrderEventData = { type: "STOCK_RELEASED", detail: "reservation released" };
const returned: OrderEventData = { type: "STOCK_RETURNED" };
const abandoned = (step: "refund" | "release" | "return"): OrderEventData => ({ type: "STEP_ABANDONED", step, reason: "INTERNAL boom" });
const rejected = (reason: string): Extract<OrderEventData, { type: "ORDER_REJECTED" }> => ({ type: "ORDER_REJECTED", reason });
const failed = (reason: string): Extract<OrderEventData, { type: "ORDER_FAILED" }> => ({ type: "ORDER_FAILED", reason });
const cancellationRequested: OrderEventData = { type: "CANCELLATION_REQUESTED", reason: "changed my mind" };
const cancelled: Extract<OrderEventData, { type: "ORDER_CANCELLED" }> = { type: "ORDER_CANCELLED" };

/** A log as the event store writes it: consecutive sequences, stateAfter from the rules. */
function log(...data: OrderEventData[]): OrderEvent[] {
  const events: OrderEvent[] = [];
  let state: OrderState | undefined;
  data.forEach((d, i) => {
    state = stateAfter(state, d);
    events.push({ sequence: i + 1, data: d, stateAfter: state, occurredAt: new Date(T0.getTime() + i * 1000) });
  });
  return events;
}

const placedToReserved = [placed, reserved];
const placedToCaptured = [placed, reserved, captured];
const confirmedLog = [placed, reserved, captured, committed, confirmed];

interface Row {
  row: number;
  from: OrderState | undefined;
  /** Events that lead to the row's "from" state. */
  before: OrderEventData[];
  /** What nextStep says in the "from" state (the row's trigger); undefined for caller-triggered rows. */
  trigger?: NextStep["kind"];
  appended: OrderEventData[];
  to: OrderState;
  /** What nextStep says afterwards. */
  then: NextStep;
}

const ROWS: Row[] = [
  { row: 1, from: undefined, before: [], appended: [placed], to: "PENDING", then: { kind: "reserve" } },
  { row: 2, from: "PENDING", before: [placed], trigger: "reserve", appended: [reserved], to: "STOCK_RESERVED", then: { kind: "charge" } },
  {
    row: 3,
    from: "PENDING",
    before: [placed],
    trigger: "reserve",
    appended: [unavailable, rejected("not enough stock of MESH-MUG")],
    to: "REJECTED",
    then: { kind: "none" },
  },
  { row: 4, from: "PENDING", before: [placed], trigger: "reserve", appended: [failedAt("reserve")], to: "COMPENSATING", then: { kind: "release" } },
  { row: 5, from: "STOCK_RESERVED", before: placedToReserved, trigger: "charge", appended: [captured], to: "PAYMENT_CAPTURED", then: { kind: "commit" } },
  // A declined charge took nothing: compensation starts with the release.
  { row: 6, from: "STOCK_RESERVED", before: placedToReserved, trigger: "charge", appended: [declined], to: "COMPENSATING", then: { kind: "release" } },
  {
    row: 7,
    from: "STOCK_RESERVED",
    before: placedToReserved,
    trigger: "charge",
    appended: [failedAt("charge")],
    to: "COMPENSATING",
    then: { kind: "refund", purpose: "compensation" },
  },
  { row: 8, from: "PAYMENT_CAPTURED", before: placedToCaptured, trigger: "commit", appended: [committed, confirmed], to: "CONFIRMED", then: { kind: "none" } },
  {
    row: 9,
    from: "PAYMENT_CAPTURED",
    before: placedToCaptured,
    trigger: "commit",
    appended: [failedAt("commit")],
    to: "COMPENSATING",
    then: { kind: "refund", purpose: "compensation" },
  },
  {
    row: 10,
    from: "COMPENSATING",
    before: [...placedToCaptured, failedAt("commit")],
    trigger: "refund",
    appended: [refunded],
    to: "COMPENSATING",
    then: { kind: "release" },
  },
  {
    row: 11,
    from: "COMPENSATING",
    before: [...placedToCaptured, failedAt("commit"), refunded],
    trigger: "release",
    appended: [released],
    to: "COMPENSATING",
    then: { kind: "finish", event: failed("commit: UNAVAILABLE") },
  },
  {
    row: 12,
    from: "COMPENSATING",
    before: [...placedToReserved, declined, released],
    trigger: "finish",
    appended: [rejected("payment declined: card declined")],
    to: "REJECTED",
    then: { kind: "none" },
  },
  {
    row: 13,
    from: "COMPENSATING",
    before: [...placedToCaptured, failedAt("commit"), refunded, released],
    trigger: "finish",
    appended: [failed("commit: UNAVAILABLE")],
    to: "FAILED",
    then: { kind: "none" },
  },
  {
    row: 14,
    from: "CONFIRMED",
    before: confirmedLog,
    appended: [cancellationRequested],
    to: "CANCELLING",
    then: { kind: "refund", purpose: "cancellation" },
  },
  {
    row: 15,
    from: "CANCELLING",
    before: [...confirmedLog, cancellationRequested],
    trigger: "refund",
    appended: [refunded],
    to: "CANCELLING",
    then: { kind: "return" },
  },
  {
    row: 16,
    from: "CANCELLING",
    before: [...confirmedLog, cancellationRequested, refunded],
    trigger: "return",
    appended: [returned],
    to: "CANCELLING",
    then: { kind: "finish", event: cancelled },
  },
  {
    row: 17,
    from: "CANCELLING",
    before: [...confirmedLog, cancellationRequested, refunded, returned],
    trigger: "finish",
    appended: [cancelled],
    to: "CANCELLED",
    then: { kind: "none" },
  },
];

describe("the transition table, row by row", () => {
  it("covers all 17 rows", () => {
    expect(ROWS.map((r) => r.row)).toEqual(Array.from({ length: 17 }, (_, i) => i + 1));
  });

  it.each(ROWS)("row $row: $from → $to", ({ from, before, trigger, appended, to, then }) => {
    if (before.length > 0) {
      const start = fold(log(...before));
      expect(start.state).toBe(from);
      // Saga-triggered rows: the "from" state asks for exactly this step.
      if (trigger) expect(nextStep(start).kind).toBe(trigger);
      else expect(["none", "reserve"]).toContain(nextStep(start).kind);
    }
    const events = log(...before, ...appended);
    const order = fold(events);
    expect(order.state).toBe(to);
    // Every appended event but the last stays within the "from" state or
    // moves on the way to "to"; the last one lands on "to".
    expect(events.at(-1)!.stateAfter).toBe(to);
    expect(order.version).toBe(events.length);
    expect(nextStep(order)).toEqual(then);
    expect(isFinal(to)).toBe(then.kind === "none");
  });

  it("row 1: ORDER_PLACED folds into a PENDING order with the request and the derived reservation id", () => {
    const order = fold(log(placed));
    expect(order).toMatchObject({
      orderId: ORDER_ID,
      requestId: "req-1",
      customerId: "cust-1",
      items: [
        { sku: "MESH-MUG", quantity: 2 },
        { sku: "MESH-CAP", quantity: 1 },
      ],
      paymentMethod: "pm_card_visa",
      state: "PENDING",
      reservationId: `${ORDER_ID}.stock`,
      chargeAttempted: false,
      refunded: false,
      stockReleased: false,
      stockReturned: false,
      version: 1,
      createdAt: T0,
      updatedAt: T0,
    });
    expect(order.lines).toBeUndefined();
    expect(order.totalMinor).toBeUndefined();
  });

  it("row 2: STOCK_RESERVED brings the priced lines, currency and total", () => {
    const order = fold(log(placed, reserved));
    expect(order.lines).toEqual([
      { sku: "MESH-MUG", quantity: 2, unitPriceMinor: 1400 },
      { sku: "MESH-CAP", quantity: 1, unitPriceMinor: 1900 },
    ]);
    expect(order.currencyCode).toBe("USD");
    expect(order.totalMinor).toBe(4700);
    expect(order.updatedAt).toEqual(new Date(T0.getTime() + 1000));
  });

  it("row 3: the rejection keeps the reason; STOCK_UNAVAILABLE alone stays PENDING", () => {
    const events = log(placed, unavailable, rejected("not enough stock of MESH-MUG"));
    expect(events.map((e) => e.stateAfter)).toEqual(["PENDING", "PENDING", "REJECTED"]);
    expect(fold(events).failureReason).toBe("not enough stock of MESH-MUG");
    expect(fold(events).chargeAttempted).toBe(false);
  });

  it("row 4: a failed reserve compensates without a refund (no charge was attempted)", () => {
    const order = fold(log(placed, failedAt("reserve")));
    expect(order).toMatchObject({ chargeAttempted: false, compensationCause: "failed", failureReason: "reserve: UNAVAILABLE" });
    expect(nextStep(order)).toEqual({ kind: "release" });
  });

  it("row 5: a capture records the payment id", () => {
    const order = fold(log(placed, reserved, captured));
    expect(order).toMatchObject({ paymentId: "pay_1", chargeAttempted: true });
  });

  it("row 6: a decline records the payment, the reason and the cause", () => {
    const order = fold(log(placed, reserved, declined));
    expect(order).toMatchObject({ paymentId: "pay_1", compensationCause: "declined", failureReason: "payment declined: card declined" });
  });

  it("row 7: a failed charge counts as attempted even without a payment id (charge in doubt)", () => {
    const order = fold(log(placed, reserved, failedAt("charge")));
    expect(order.paymentId).toBeUndefined();
    expect(order).toMatchObject({ chargeAttempted: true, compensationCause: "failed" });
  });

  it("row 8: commit appends RESERVATION_COMMITTED (state kept) then ORDER_CONFIRMED", () => {
    const events = log(...confirmedLog);
    expect(events.slice(3).map((e) => e.stateAfter)).toEqual(["PAYMENT_CAPTURED", "CONFIRMED"]);
  });

  it("row 14: the cancellation reason becomes the failure reason (a default when empty)", () => {
    expect(fold(log(...confirmedLog, cancellationRequested)).failureReason).toBe("changed my mind");
    expect(fold(log(...confirmedLog, { type: "CANCELLATION_REQUESTED", reason: "" })).failureReason).toBe("cancelled by the customer");
  });
});

describe("stateAfter", () => {
  const cases: [OrderState | undefined, OrderEventData, OrderState][] = [
    [undefined, placed, "PENDING"],
    ["PENDING", reserved, "STOCK_RESERVED"],
    ["PENDING", unavailable, "PENDING"],
    ["PENDING", rejected("x"), "REJECTED"],
    ["PENDING", failedAt("reserve"), "COMPENSATING"],
    ["STOCK_RESERVED", captured, "PAYMENT_CAPTURED"],
    ["STOCK_RESERVED", declined, "COMPENSATING"],
    ["STOCK_RESERVED", failedAt("charge"), "COMPENSATING"],
    ["PAYMENT_CAPTURED", committed, "PAYMENT_CAPTURED"],
    ["PAYMENT_CAPTURED", confirmed, "CONFIRMED"],
    ["PAYMENT_CAPTURED", failedAt("commit"), "COMPENSATING"],
    ["COMPENSATING", refunded, "COMPENSATING"],
    ["COMPENSATING", released, "COMPENSATING"],
    ["COMPENSATING", rejected("x"), "REJECTED"],
    ["COMPENSATING", failed("x"), "FAILED"],
    ["CONFIRMED", cancellationRequested, "CANCELLING"],
    ["CANCELLING", refunded, "CANCELLING"],
    ["CANCELLING", returned, "CANCELLING"],
    ["CANCELLING", cancelled, "CANCELLED"],
    ["COMPENSATING", abandoned("release"), "COMPENSATING"],
    ["CANCELLING", abandoned("refund"), "CANCELLING"],
  ];

  it.each(cases)("%s + %o → %s", (before, event, after) => {
    expect(stateAfter(before, event)).toBe(after);
  });

  it("covers every event type", () => {
    const types = new Set(cases.map(([, e]) => e.type));
    expect([...types].sort()).toEqual(
      [
        "ORDER_PLACED",
        "STOCK_RESERVED",
        "STOCK_UNAVAILABLE",
        "PAYMENT_CAPTURED",
        "PAYMENT_DECLINED",
        "RESERVATION_COMMITTED",
        "ORDER_CONFIRMED",
        "STEP_FAILED",
        "PAYMENT_REFUNDED",
        "STOCK_RELEASED",
        "STOCK_RETURNED",
        "ORDER_REJECTED",
        "ORDER_FAILED",
        "CANCELLATION_REQUESTED",
        "ORDER_CANCELLED",
        "STEP_ABANDONED",
      ].sort(),
    );
  });

  it.each([unavailable, committed, refunded, released, returned])("$type cannot be an order's first event", (event) => {
    expect(() => stateAfter(undefined, event)).toThrow(/first event/);
  });
});

describe("fold", () => {
  it("refuses a log that does not start with ORDER_PLACED", () => {
    expect(() => fold([])).toThrow(/ORDER_PLACED/);
    expect(() => fold([{ sequence: 1, data: reserved, stateAfter: "STOCK_RESERVED", occurredAt: T0 }])).toThrow(/ORDER_PLACED/);
  });

  it("takes the state of each event from its recorded stateAfter and the version from the last sequence", () => {
    const events = log(placed, reserved);
    const order = fold(events);
    expect(order.state).toBe("STOCK_RESERVED");
    expect(order.version).toBe(2);
    expect(order.history).toEqual(events);
  });

  it("a refund in compensation of a charge in doubt records the payment it found", () => {
    const order = fold(log(placed, reserved, failedAt("charge"), { type: "PAYMENT_REFUNDED", paymentId: "pay_late", refundedMinor: 4700 }));
    expect(order).toMatchObject({ refunded: true, paymentId: "pay_late" });
    expect(nextStep(order)).toEqual({ kind: "release" });
  });
});

describe("final states", () => {
  it("are exactly CONFIRMED, REJECTED, FAILED and CANCELLED", () => {
    expect([...FINAL_STATES].sort()).toEqual(["CANCELLED", "CONFIRMED", "FAILED", "REJECTED"]);
    const all: OrderState[] = ["PENDING", "STOCK_RESERVED", "PAYMENT_CAPTURED", "CONFIRMED", "REJECTED", "COMPENSATING", "FAILED", "CANCELLING", "CANCELLED"];
    expect(all.filter(isFinal).sort()).toEqual(["CANCELLED", "CONFIRMED", "FAILED", "REJECTED"]);
  });

  it.each([
    ["CONFIRMED", confirmedLog],
    ["REJECTED", [placed, unavailable, rejected("no stock")]],
    ["REJECTED", [...placedToReserved, declined, released, rejected("declined")]],
    ["FAILED", [placed, failedAt("reserve"), released, failed("x")]],
    ["CANCELLED", [...confirmedLog, cancellationRequested, refunded, returned, cancelled]],
  ] as [OrderState, OrderEventData[]][])("%s has no next step", (state, data) => {
    const order = fold(log(...data));
    expect(order.state).toBe(state);
    expect(nextStep(order)).toEqual({ kind: "none" });
  });
});

describe("derived keys", () => {
  it("derive every idempotency key from the order id", () => {
    expect(reservationIdFor(ORDER_ID)).toBe(`${ORDER_ID}.stock`);
    expect(chargeKeyFor(ORDER_ID)).toBe(`${ORDER_ID}.charge`);
    expect(refundKeyFor(ORDER_ID, "compensation")).toBe(`${ORDER_ID}.refund.compensation`);
    expect(refundKeyFor(ORDER_ID, "cancellation")).toBe(`${ORDER_ID}.refund.cancellation`);
  });
});

/** Runs the saga's decisions against scripted outcomes, appending what each step would. */
type Outcome = "ok" | "unavailable" | "declined" | "error";

function simulate(outcomes: { reserve: Outcome; charge: Outcome; commit: Outcome }, cancelAfterConfirm: boolean): { steps: string[]; events: OrderEvent[] } {
  let data: OrderEventData[] = [placed];
  const steps: string[] = [];
  for (let guard = 0; guard < 20; guard++) {
    let order = fold(log(...data));
    if (order.state === "CONFIRMED" && cancelAfterConfirm && !data.includes(cancellationRequested)) {
      data = [...data, cancellationRequested];
      order = fold(log(...data));
    }
    const step = nextStep(order);
    if (step.kind === "none") return { steps, events: log(...data) };
    steps.push(step.kind === "refund" ? `refund:${step.purpose}` : step.kind);
    switch (step.kind) {
      case "reserve":
        data.push(
          ...(outcomes.reserve === "ok" ? [reserved] : outcomes.reserve === "unavailable" ? [unavailable, rejected("no stock")] : [failedAt("reserve")]),
        );
        break;
      case "charge":
        data.push(outcomes.charge === "ok" ? captured : outcomes.charge === "declined" ? declined : failedAt("charge"));
        break;
      case "commit":
        data.push(...(outcomes.commit === "ok" ? [committed, confirmed] : [failedAt("commit")]));
        break;
      case "refund":
        data.push(refunded);
        break;
      case "release":
        data.push(released);
        break;
      case "return":
        data.push(returned);
        break;
      case "finish":
        data.push(step.event);
        break;
    }
  }
  throw new Error("the saga did not end");
}

describe("compensation and cancellation order", () => {
  it("refund comes before release after a failed charge or commit", () => {
    expect(simulate({ reserve: "ok", charge: "error", commit: "ok" }, false).steps).toEqual(["reserve", "charge", "refund:compensation", "release", "finish"]);
    expect(simulate({ reserve: "ok", charge: "ok", commit: "error" }, false).steps).toEqual([
      "reserve",
      "charge",
      "commit",
      "refund:compensation",
      "release",
      "finish",
    ]);
  });

  it("no refund after a decline, and the order ends REJECTED", () => {
    const { steps, events } = simulate({ reserve: "ok", charge: "declined", commit: "ok" }, false);
    expect(steps).toEqual(["reserve", "charge", "release", "finish"]);
    expect(events.at(-1)!.data.type).toBe("ORDER_REJECTED");
  });

  it("no refund after a failed reserve, and the order ends FAILED", () => {
    const { steps, events } = simulate({ reserve: "error", charge: "ok", commit: "ok" }, false);
    expect(steps).toEqual(["reserve", "release", "finish"]);
    expect(events.at(-1)!.data.type).toBe("ORDER_FAILED");
  });

  it("cancellation: refund, then return, then ORDER_CANCELLED", () => {
    const { steps, events } = simulate({ reserve: "ok", charge: "ok", commit: "ok" }, true);
    expect(steps).toEqual(["reserve", "charge", "commit", "refund:cancellation", "return", "finish"]);
    expect(events.slice(-4).map((e) => e.data.type)).toEqual(["CANCELLATION_REQUESTED", "PAYMENT_REFUNDED", "STOCK_RETURNED", "ORDER_CANCELLED"]);
    expect(events.at(-1)!.stateAfter).toBe("CANCELLED");
  });

  it("every outcome combination ends in a final state; a refund happens exactly when a charge may exist for a technical failure", () => {
    const outcome = (values: Outcome[]) => fc.constantFrom(...values);
    fc.assert(
      fc.property(
        outcome(["ok", "unavailable", "error"]),
        outcome(["ok", "declined", "error"]),
        outcome(["ok", "error"]),
        fc.boolean(),
        (reserve, charge, commit, cancel) => {
          const { steps, events } = simulate({ reserve, charge, commit }, cancel);
          const final = events.at(-1)!.stateAfter;
          expect(isFinal(final)).toBe(true);
          // Forward steps run in order and stop at the first failure.
          const forward = steps.filter((s) => ["reserve", "charge", "commit"].includes(s));
          expect(["reserve", "charge", "commit"].slice(0, forward.length)).toEqual(forward);
          const refundIndex = steps.indexOf("refund:compensation");
          const releaseIndex = steps.indexOf("release");
          const chargeFailed = forward.includes("charge") && (charge === "error" || (charge === "ok" && commit === "error"));
          expect(refundIndex >= 0).toBe(reserve === "ok" && chargeFailed);
          if (refundIndex >= 0) expect(refundIndex).toBeLessThan(releaseIndex);
          if (reserve === "ok" && charge === "declined") expect(steps).not.toContain("refund:compensation");
          // A compensation releases stock exactly once and never returns it.
          if (events.some((e) => e.stateAfter === "COMPENSATING")) {
            expect(steps.filter((s) => s === "release")).toHaveLength(1);
            expect(steps).not.toContain("return");
          }
          const expected =
            reserve === "unavailable"
              ? "REJECTED"
              : reserve === "error"
                ? "FAILED"
                : charge === "declined"
                  ? "REJECTED"
                  : charge === "error" || commit === "error"
                    ? "FAILED"
                    : cancel
                      ? "CANCELLED"
                      : "CONFIRMED";
          expect(final).toBe(expected);
          // The log is one append-only sequence.
          expect(events.map((e) => e.sequence)).toEqual(events.map((_, i) => i + 1));
        },
      ),
    );
  });
});
