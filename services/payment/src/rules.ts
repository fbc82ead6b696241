/**
 * The payment rules: what a payment method does with a charge, how refunds
 * move a payment's refunded sum and status, and when a repeated idempotency
 * key asks for something else than its first use. Pure functions: the
 * Payments module runs them on rows it holds locked, and the migration's
 * CHECK constraints restate the same invariants as a second line of defence.
 *
 * Invariants (hold before and after every refund):
 *   0 <= refunded <= amount
 *   DECLINED           => refunded = 0
 *   CAPTURED           => refunded = 0
 *   PARTIALLY_REFUNDED => 0 < refunded < amount
 *   REFUNDED           => refunded = amount
 */

import { isPaymentMethod, type PaymentMethod } from "@meshcart/lib";

export type PaymentStatus = "CAPTURED" | "DECLINED" | "PARTIALLY_REFUNDED" | "REFUNDED";
export type DeclineReason = "CARD_DECLINED" | "INSUFFICIENT_FUNDS" | "RISK_SCREEN";

export const DECLINE_REASONS: readonly DeclineReason[] = ["CARD_DECLINED", "INSUFFICIENT_FUNDS", "RISK_SCREEN"];

export type ChargeOutcome = { status: "CAPTURED" } | { status: "DECLINED"; reason: DeclineReason };

/**
 * What one version of the service does differently from another. v1 and v2
 * run the same image; SERVICE_VERSION alone tells them apart, so that a
 * canary shows a real difference in behaviour and not only in a label.
 */
export interface Features {
  /** Charges with a method the risk screen flags are declined (RISK_SCREEN). */
  riskScreen: boolean;
}

/**
 * The features of a version: the risk screen came with v2, so versions
 * "v2", "v3", ... have it; "v1" and versions without a number (make dev's
 * "dev") do not, and behave as the stable version.
 */
export function featuresOf(version: string): Features {
  const numbered = /^v(\d+)$/.exec(version);
  return { riskScreen: numbered !== null && Number(numbered[1]) >= 2 };
}

/**
 * What each test payment method does (the table in payment.proto; the
 * methods are the kit's PAYMENT_METHODS, and this record must give each one
 * an outcome). The outcome depends on the method and on the version's
 * features alone, so a charge can be decided inside the database
 * transaction that records it. A replay never decides again: it returns the
 * recorded outcome, so a retry that lands on the other version finds the
 * first version's decision.
 */
const OUTCOMES: Readonly<Record<PaymentMethod, ChargeOutcome>> = {
  pm_card_visa: { status: "CAPTURED" },
  pm_card_mastercard: { status: "CAPTURED" },
  pm_card_declined: { status: "DECLINED", reason: "CARD_DECLINED" },
  pm_card_insufficient_funds: { status: "DECLINED", reason: "INSUFFICIENT_FUNDS" },
  // A good card that the risk screen flags: captured where there is no screen.
  pm_card_risky: { status: "CAPTURED" },
};

/** Methods the risk screen declines. */
const FLAGGED_BY_RISK_SCREEN: ReadonlySet<PaymentMethod> = new Set(["pm_card_risky"]);

export class RulesError extends Error {
  override name = "RulesError";
}

/**
 * What charging with `method` does on a version with `features`. Unknown
 * methods are refused by validation first.
 */
export function chargeOutcome(method: string, features: Features): ChargeOutcome {
  if (!isPaymentMethod(method)) throw new RulesError(`unknown payment method ${method}`);
  if (features.riskScreen && FLAGGED_BY_RISK_SCREEN.has(method)) return { status: "DECLINED", reason: "RISK_SCREEN" };
  return OUTCOMES[method];
}

/** The status that goes with `refunded` of a captured `amount`. */
export function capturedStatus(amount: number, refunded: number): PaymentStatus {
  if (refunded === 0) return "CAPTURED";
  return refunded === amount ? "REFUNDED" : "PARTIALLY_REFUNDED";
}

/** The part of a payment's money that a refund decision reads. */
export interface RefundablePayment {
  status: PaymentStatus;
  currencyCode: string;
  amountMinor: number;
  refundedMinor: number;
}

export interface Money {
  currencyCode: string;
  minorUnits: number;
}

export type RefundRefusal = "DECLINED" | "CURRENCY" | "NOTHING_LEFT" | "EXCEEDS_REMAINING";

/**
 * What a refund of `requested` (undefined: everything left) does to
 * `payment`: either the amount to give back with the payment's new refunded
 * sum and status, or why it cannot happen.
 */
export type RefundDecision =
  { kind: "refund"; amountMinor: number; refundedMinor: number; status: PaymentStatus } | { kind: "refuse"; refusal: RefundRefusal; reason: string };

export function remaining(payment: RefundablePayment): number {
  return payment.status === "DECLINED" ? 0 : payment.amountMinor - payment.refundedMinor;
}

export function decideRefund(payment: RefundablePayment, requested: Money | undefined): RefundDecision {
  if (payment.status === "DECLINED") {
    return { kind: "refuse", refusal: "DECLINED", reason: "the payment was declined: nothing was taken, so nothing can be refunded" };
  }
  const left = remaining(payment);
  if (requested && requested.currencyCode !== payment.currencyCode) {
    return {
      kind: "refuse",
      refusal: "CURRENCY",
      reason: `the payment is in ${payment.currencyCode}, the refund asks for ${requested.currencyCode}`,
    };
  }
  if (left === 0) return { kind: "refuse", refusal: "NOTHING_LEFT", reason: "the payment is already refunded in full" };
  const amount = requested ? requested.minorUnits : left;
  if (!Number.isSafeInteger(amount) || amount <= 0) throw new RulesError(`refund amount ${amount} is not a positive whole number`);
  if (amount > left) {
    return {
      kind: "refuse",
      refusal: "EXCEEDS_REMAINING",
      reason: `the refund of ${amount} exceeds the ${left} ${payment.currencyCode} minor units not yet refunded`,
    };
  }
  const refunded = payment.refundedMinor + amount;
  return { kind: "refund", amountMinor: amount, refundedMinor: refunded, status: capturedStatus(payment.amountMinor, refunded) };
}

/** What a Charge asks for; the same key must always ask for the same. */
export interface ChargeTerms {
  customerId: string;
  currencyCode: string;
  amountMinor: number;
  paymentMethod: string;
  orderId: string;
}

/** The proto names of the fields where `again` differs from `first`; empty for a true replay. */
export function chargeDifferences(first: ChargeTerms, again: ChargeTerms): string[] {
  const differences: string[] = [];
  if (first.customerId !== again.customerId) differences.push("customer_id");
  if (first.amountMinor !== again.amountMinor) differences.push("amount.minor_units");
  if (first.currencyCode !== again.currencyCode) differences.push("amount.currency_code");
  if (first.paymentMethod !== again.paymentMethod) differences.push("payment_method");
  if (first.orderId !== again.orderId) differences.push("order_id");
  return differences;
}

/** What a Refund asks for; `amount` undefined means everything left. */
export interface RefundTerms {
  paymentId: string;
  amount: Money | undefined;
  reason: string;
}

export function refundDifferences(first: RefundTerms, again: RefundTerms): string[] {
  const differences: string[] = [];
  if (first.paymentId !== again.paymentId) differences.push("payment_id");
  if (!first.amount || !again.amount) {
    // One of them asked for "everything left", the other for an amount.
    if (first.amount !== again.amount) differences.push("amount");
  } else {
    if (first.amount.minorUnits !== again.amount.minorUnits) differences.push("amount.minor_units");
    if (first.amount.currencyCode !== again.amount.currencyCode) differences.push("amount.currency_code");
  }
  if (first.reason !== again.reason) differences.push("reason");
  return differences;
}
