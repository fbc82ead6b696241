import { describe, expect, it } from "vitest";
import { checkInvariants, formatReport, type Snapshot } from "../src/verify.js";

/** A consistent world: one confirmed, one rejected (declined), one cancelled, one running order. */
function consistent(): Snapshot {
  return {
    orders: [
      { order_id: "ord_a", state: "CONFIRMED", has_live_saga: false },
      { order_id: "ord_b", state: "REJECTED", has_live_saga: false },
      { order_id: "ord_c", state: "CANCELLED", has_live_saga: false },
      { order_id: "ord_d", state: "STOCK_RESERVED", has_live_saga: true },
    ],
    payments: [
      { payment_id: "pay_a", order_id: "ord_a", status: "CAPTURED", amount_minor: 500, refunded_minor: 0, refunds_sum: 0 },
      { payment_id: "pay_b", order_id: "ord_b", status: "DECLINED", amount_minor: 300, refunded_minor: 0, refunds_sum: 0 },
      { payment_id: "pay_c", order_id: "ord_c", status: "REFUNDED", amount_minor: 700, refunded_minor: 700, refunds_sum: 700 },
    ],
    reservations: [
      { reservation_id: "ord_a.stock", state: "COMMITTED" },
      { reservation_id: "ord_b.stock", state: "RELEASED" },
      { reservation_id: "ord_c.stock", state: "RETURNED" },
      { reservation_id: "ord_d.stock", state: "HELD" },
    ],
    products: [
      // 2 sold (ord_a), 3 held (ord_d), 1 returned (ord_c): on_hand = 10 + 5 - 2
      { sku: "MESH-MUG", initial: 10, restocked: 5, on_hand: 13, reserved: 3, sold: 2, held_lines: 3, committed_lines: 2 },
    ],
  };
}

describe("make verify's invariants", () => {
  it("finds nothing wrong in a consistent snapshot and reports the counts", () => {
    const report = checkInvariants(consistent());
    expect(report.violations).toEqual([]);
    expect(report.states).toEqual({ CONFIRMED: 1, REJECTED: 1, CANCELLED: 1, STOCK_RESERVED: 1 });
    expect(formatReport(report)).toContain("violations: 0");
  });

  const broken: [string, (s: Snapshot) => void, RegExp][] = [
    ["an unfinished order nobody drives", (s) => (s.orders[3]!.has_live_saga = false), /ord_d .* no saga will resume it/],
    ["a confirmed order charged twice", (s) => s.payments.push({ ...s.payments[0]!, payment_id: "pay_a2" }), /ord_a .* 2 captured charges/],
    ["a confirmed order without a charge", (s) => (s.payments = s.payments.filter((p) => p.order_id !== "ord_a")), /ord_a .* 0 captured charges/],
    ["a confirmed order whose stock was not committed", (s) => (s.reservations[0]!.state = "HELD"), /ord_a .* reservation state HELD/],
    ["a rejected order that kept money", (s) => (s.payments[1]!.status = "CAPTURED"), /ord_b .* net charge of 300/],
    ["a cancelled order that kept stock", (s) => (s.reservations[2]!.state = "COMMITTED"), /ord_c .* still holds stock/],
    [
      "a cancelled order refunded in part",
      (s) => Object.assign(s.payments[2]!, { status: "PARTIALLY_REFUNDED", refunded_minor: 600, refunds_sum: 600 }),
      /ord_c .* net charge of 100/,
    ],
    ["a payment for an unknown order", (s) => s.payments.push({ ...s.payments[1]!, payment_id: "pay_x", order_id: "ord_x" }), /pay_x references order ord_x/],
    ["refunds above the charge", (s) => (s.payments[2]!.refunds_sum = 900), /pay_c refunded more than it charged/],
    ["refund records that disagree with the payment", (s) => (s.payments[2]!.refunds_sum = 600), /pay_c records 700 refunded but its refunds add up to 600/],
    ["a ledger that does not balance", (s) => (s.products[0]!.on_hand = 12), /initial \+ restocked \(15\) != on_hand \+ sold \(14\)/],
    ["more reserved than on hand", (s) => Object.assign(s.products[0]!, { reserved: 14, held_lines: 14 }), /reserved 14 is outside 0..on_hand/],
    ["reserved units without live reservations", (s) => (s.products[0]!.held_lines = 1), /reserved 3 != units of live reservations 1/],
    ["sold units without committed reservations", (s) => (s.products[0]!.committed_lines = 5), /sold 2 != units of committed reservations 5/],
  ];

  it.each(broken)("reports %s", (_name, breakIt, expected) => {
    const snapshot = consistent();
    breakIt(snapshot);
    const report = checkInvariants(snapshot);
    expect(
      report.violations.some((v) => expected.test(v)),
      report.violations.join("\n"),
    ).toBe(true);
  });
});
