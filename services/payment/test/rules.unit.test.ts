import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { PAYMENT_METHODS, isPaymentMethod } from "@meshcart/lib";
import {
  RulesError,
  capturedStatus,
  chargeDifferences,
  chargeOutcome,
  decideRefund,
  featuresOf,
  refundDifferences,
  type ChargeTerms,
  type RefundablePayment,
} from "../src/rules.js";

const captured = (amountMinor: number, refundedMinor = 0): RefundablePayment => ({
  status: capturedStatus(amountMinor, refundedMinor),
  currencyCode: "USD",
  amountMinor,
  refundedMinor,
});

const v1 = featuresOf("v1");
const v2 = featuresOf("v2");

describe("charge outcomes", () => {
  it("follows the table of test payment methods on every version", () => {
    for (const features of [v1, v2]) {
      expect(chargeOutcome("pm_card_visa", features)).toEqual({ status: "CAPTURED" });
      expect(chargeOutcome("pm_card_mastercard", features)).toEqual({ status: "CAPTURED" });
      expect(chargeOutcome("pm_card_declined", features)).toEqual({ status: "DECLINED", reason: "CARD_DECLINED" });
      expect(chargeOutcome("pm_card_insufficient_funds", features)).toEqual({ status: "DECLINED", reason: "INSUFFICIENT_FUNDS" });
    }
    for (const method of PAYMENT_METHODS) for (const features of [v1, v2]) expect(chargeOutcome(method, features).status).toMatch(/^(CAPTURED|DECLINED)$/);
  });

  it("declines pm_card_risky where the risk screen runs (v2), captures it where it does not (v1)", () => {
    expect(chargeOutcome("pm_card_risky", v1)).toEqual({ status: "CAPTURED" });
    expect(chargeOutcome("pm_card_risky", v2)).toEqual({ status: "DECLINED", reason: "RISK_SCREEN" });
  });

  it("gives the risk screen to v2 and later, not to v1 or unnumbered versions", () => {
    for (const version of ["v2", "v3", "v10"]) expect(featuresOf(version), version).toEqual({ riskScreen: true });
    for (const version of ["v1", "v0", "dev", "", "v2-rc1", "V2", "2"]) expect(featuresOf(version), version).toEqual({ riskScreen: false });
  });

  it("knows no other method, not even inherited property names", () => {
    for (const method of ["pm_card_amex", "", "PM_CARD_VISA", "toString", "constructor", "__proto__"]) {
      expect(isPaymentMethod(method)).toBe(false);
      expect(() => chargeOutcome(method, v2)).toThrow(RulesError);
    }
  });
});

describe("refund decisions", () => {
  it("refunds part, then the rest, then refuses", () => {
    const first = decideRefund(captured(1000), { currencyCode: "USD", minorUnits: 300 });
    expect(first).toEqual({ kind: "refund", amountMinor: 300, refundedMinor: 300, status: "PARTIALLY_REFUNDED" });
    const rest = decideRefund(captured(1000, 300), undefined);
    expect(rest).toEqual({ kind: "refund", amountMinor: 700, refundedMinor: 1000, status: "REFUNDED" });
    const none = decideRefund(captured(1000, 1000), undefined);
    expect(none).toMatchObject({ kind: "refuse", refusal: "NOTHING_LEFT" });
    expect(decideRefund(captured(1000, 1000), { currencyCode: "USD", minorUnits: 1 })).toMatchObject({
      kind: "refuse",
      refusal: "NOTHING_LEFT",
    });
  });

  it("refunds exactly what is left, and not one minor unit more", () => {
    expect(decideRefund(captured(1000, 400), { currencyCode: "USD", minorUnits: 600 })).toMatchObject({
      kind: "refund",
      status: "REFUNDED",
    });
    const over = decideRefund(captured(1000, 400), { currencyCode: "USD", minorUnits: 601 });
    expect(over).toMatchObject({ kind: "refuse", refusal: "EXCEEDS_REMAINING" });
    expect(over.kind === "refuse" && over.reason).toContain("600");
  });

  it("refuses declined payments and other currencies", () => {
    const declined: RefundablePayment = { status: "DECLINED", currencyCode: "USD", amountMinor: 500, refundedMinor: 0 };
    expect(decideRefund(declined, undefined)).toMatchObject({ kind: "refuse", refusal: "DECLINED" });
    expect(decideRefund(declined, { currencyCode: "USD", minorUnits: 1 })).toMatchObject({ kind: "refuse", refusal: "DECLINED" });
    expect(decideRefund(captured(500), { currencyCode: "EUR", minorUnits: 1 })).toMatchObject({
      kind: "refuse",
      refusal: "CURRENCY",
    });
  });

  it("never lets the refunded sum pass the amount, whatever the sequence of refunds", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 100_000_000 }),
        fc.array(fc.option(fc.integer({ min: 1, max: 100_000_000 }), { nil: undefined }), { maxLength: 30 }),
        (amount, requests) => {
          let payment = captured(amount);
          let given = 0;
          for (const minorUnits of requests) {
            const decision = decideRefund(payment, minorUnits === undefined ? undefined : { currencyCode: "USD", minorUnits });
            if (decision.kind === "refuse") {
              expect(decision.refusal).toBe(payment.refundedMinor === amount ? "NOTHING_LEFT" : "EXCEEDS_REMAINING");
              continue;
            }
            given += decision.amountMinor;
            payment = { ...payment, refundedMinor: decision.refundedMinor, status: decision.status };
            expect(decision.refundedMinor).toBe(given);
            expect(decision.refundedMinor).toBeLessThanOrEqual(amount);
            expect(decision.status).toBe(capturedStatus(amount, given));
          }
          expect(given).toBe(payment.refundedMinor);
        },
      ),
    );
  });

  it("derives the status from the refunded sum", () => {
    expect(capturedStatus(100, 0)).toBe("CAPTURED");
    expect(capturedStatus(100, 1)).toBe("PARTIALLY_REFUNDED");
    expect(capturedStatus(100, 99)).toBe("PARTIALLY_REFUNDED");
    expect(capturedStatus(100, 100)).toBe("REFUNDED");
  });
});

describe("idempotency key reuse", () => {
  const terms: ChargeTerms = {
    customerId: "ann",
    currencyCode: "USD",
    amountMinor: 1000,
    paymentMethod: "pm_card_visa",
    orderId: "order-1",
  };

  it("names every charge field that differs", () => {
    expect(chargeDifferences(terms, { ...terms })).toEqual([]);
    expect(chargeDifferences(terms, { ...terms, customerId: "bob" })).toEqual(["customer_id"]);
    expect(chargeDifferences(terms, { ...terms, amountMinor: 1001 })).toEqual(["amount.minor_units"]);
    expect(chargeDifferences(terms, { ...terms, currencyCode: "EUR" })).toEqual(["amount.currency_code"]);
    expect(chargeDifferences(terms, { ...terms, paymentMethod: "pm_card_mastercard" })).toEqual(["payment_method"]);
    expect(chargeDifferences(terms, { ...terms, orderId: "order-2" })).toEqual(["order_id"]);
    expect(chargeDifferences(terms, { ...terms, customerId: "bob", orderId: "order-2" })).toEqual(["customer_id", "order_id"]);
  });

  it("tells an explicit amount from everything left", () => {
    const all = { paymentId: "pay_1", amount: undefined, reason: "" };
    const some = { paymentId: "pay_1", amount: { currencyCode: "USD", minorUnits: 5 }, reason: "" };
    expect(refundDifferences(all, { ...all })).toEqual([]);
    expect(refundDifferences(some, { ...some, amount: { currencyCode: "USD", minorUnits: 5 } })).toEqual([]);
    expect(refundDifferences(all, some)).toEqual(["amount"]);
    expect(refundDifferences(some, all)).toEqual(["amount"]);
    expect(refundDifferences(some, { ...some, amount: { currencyCode: "USD", minorUnits: 6 } })).toEqual(["amount.minor_units"]);
    expect(refundDifferences(some, { ...some, amount: { currencyCode: "EUR", minorUnits: 5 } })).toEqual(["amount.currency_code"]);
    expect(refundDifferences(some, { ...some, paymentId: "pay_2", reason: "broken" })).toEqual(["payment_id", "reason"]);
  });
});
