import {
  CHARGE_AMOUNT,
  MAX_PAGE_SIZE,
  MAX_REASON_LENGTH,
  SpanAttributes,
  annotateSpan,
  decodePageToken,
  encodePageToken,
  pageSize,
  validate,
  type Violations,
} from "@meshcart/lib";
import type { Money } from "@meshcart/contracts/meshcart/common/v1/money.js";
import {
  DeclineReason,
  PaymentStatus,
  type Payment as PaymentMessage,
  type PaymentServiceImplementation,
  type RefundRecord,
  type ServedBy,
} from "@meshcart/contracts/meshcart/payment/v1/payment.js";
import { PaymentMetrics } from "./metrics.js";
import type { Payment, PaymentFilter, Payments, Refund } from "./payments.js";
import { type DeclineReason as Decline, type PaymentStatus as Status } from "./rules.js";

const CURRENCY_CODE = /^[A-Z]{3}$/;

/**
 * Translates gRPC requests into calls on the Payments domain and its
 * results back into messages. Every request is validated completely here,
 * before the domain runs, so bad input writes nothing. `served` names this
 * process in every response.
 */
export function paymentHandlers(payments: Payments, served: ServedBy, metrics: PaymentMetrics = new PaymentMetrics()): PaymentServiceImplementation {
  return {
    async charge(request) {
      validate((v) => {
        v.id("idempotency_key", request.idempotencyKey);
        v.customerId("customer_id", request.customerId);
        checkMoney(v, "amount", request.amount, true);
        v.paymentMethod("payment_method", request.paymentMethod);
        v.id("order_id", request.orderId);
      });
      const amount = request.amount!;
      const { payment, replayed } = await payments.charge({
        idempotencyKey: request.idempotencyKey,
        customerId: request.customerId,
        currencyCode: amount.currencyCode,
        amountMinor: amount.minorUnits,
        paymentMethod: request.paymentMethod,
        orderId: request.orderId,
      });
      if (!replayed) metrics.charged(payment.status, payment.declineReason);
      annotateSpan({
        [SpanAttributes.orderId]: request.orderId,
        [SpanAttributes.paymentId]: payment.paymentId,
        [SpanAttributes.paymentOutcome]: payment.status === "DECLINED" ? "declined" : "captured",
        [SpanAttributes.replayed]: replayed,
        ...(payment.declineReason ? { [SpanAttributes.declineReason]: payment.declineReason.toLowerCase() } : {}),
      });
      return { payment: paymentMessage(payment), replayed, servedBy: served };
    },

    async refund(request) {
      validate((v) => {
        v.id("idempotency_key", request.idempotencyKey);
        v.id("payment_id", request.paymentId);
        checkMoney(v, "amount", request.amount, false);
        v.text("reason", request.reason, MAX_REASON_LENGTH);
      });
      const { refund, payment, replayed } = await payments.refund({
        idempotencyKey: request.idempotencyKey,
        paymentId: request.paymentId,
        amount: request.amount ? { currencyCode: request.amount.currencyCode, minorUnits: request.amount.minorUnits } : undefined,
        reason: request.reason,
      });
      if (!replayed) metrics.refunds.inc();
      annotateSpan({ [SpanAttributes.paymentId]: request.paymentId, [SpanAttributes.orderId]: payment.orderId, [SpanAttributes.replayed]: replayed });
      return { refund: refundMessage(refund), payment: paymentMessage(payment), replayed, servedBy: served };
    },

    async getPayment(request) {
      validate((v) => v.id("payment_id", request.paymentId));
      return { payment: paymentMessage(await payments.get(request.paymentId)), servedBy: served };
    },

    async listPayments(request) {
      let filter: PaymentFilter | undefined;
      let position: { before: number } | undefined;
      validate((v) => {
        // `filter` is a oneof: the wire cannot carry both (the last one
        // decoded wins), so "exactly one" comes down to "not none".
        const given = request.filter;
        if (!given) {
          v.add("filter", "set exactly one of order_id and customer_id");
        } else if (given.$case === "orderId") {
          v.id("order_id", given.value);
          filter = { orderId: given.value };
        } else {
          v.customerId("customer_id", given.value);
          filter = { customerId: given.value };
        }
        v.integer("page_size", request.pageSize, 0, MAX_PAGE_SIZE);
        try {
          position = decodePageToken(request.pageToken, isPosition);
        } catch {
          v.add("page_token", "is not a token returned by this API");
        }
      });
      const page = await payments.list(filter!, pageSize(request.pageSize), position?.before);
      return {
        payments: page.payments.map(paymentMessage),
        nextPageToken: page.next === undefined ? "" : encodePageToken({ before: page.next }),
        servedBy: served,
      };
    },
  };
}

/** An amount: a currency code and the minor units a charge may take (CHARGE_AMOUNT). */
function checkMoney(v: Violations, field: string, amount: Money | undefined, required: boolean): void {
  if (!amount) {
    if (required) v.add(field, "is required");
    return;
  }
  if (!CURRENCY_CODE.test(amount.currencyCode)) {
    v.add(`${field}.currency_code`, "must be three upper-case letters (ISO 4217), e.g. USD");
  }
  v.integer(`${field}.minor_units`, amount.minorUnits, CHARGE_AMOUNT.minMinorUnits, CHARGE_AMOUNT.maxMinorUnits);
}

function isPosition(value: unknown): value is { before: number } {
  const before = (value as { before?: unknown } | null)?.before;
  return typeof value === "object" && typeof before === "number" && Number.isSafeInteger(before) && before > 0;
}

function money(currencyCode: string, minorUnits: number): Money {
  return { currencyCode, minorUnits };
}

const STATUSES: Record<Status, PaymentStatus> = {
  CAPTURED: PaymentStatus.PAYMENT_STATUS_CAPTURED,
  DECLINED: PaymentStatus.PAYMENT_STATUS_DECLINED,
  PARTIALLY_REFUNDED: PaymentStatus.PAYMENT_STATUS_PARTIALLY_REFUNDED,
  REFUNDED: PaymentStatus.PAYMENT_STATUS_REFUNDED,
};

const DECLINE_REASONS: Record<Decline, DeclineReason> = {
  CARD_DECLINED: DeclineReason.DECLINE_REASON_CARD_DECLINED,
  INSUFFICIENT_FUNDS: DeclineReason.DECLINE_REASON_INSUFFICIENT_FUNDS,
  RISK_SCREEN: DeclineReason.DECLINE_REASON_RISK_SCREEN,
};

export function paymentMessage(payment: Payment): PaymentMessage {
  return {
    paymentId: payment.paymentId,
    idempotencyKey: payment.idempotencyKey,
    orderId: payment.orderId,
    customerId: payment.customerId,
    amount: money(payment.currencyCode, payment.amountMinor),
    paymentMethod: payment.paymentMethod,
    status: STATUSES[payment.status],
    declineReason: payment.declineReason ? DECLINE_REASONS[payment.declineReason] : DeclineReason.DECLINE_REASON_UNSPECIFIED,
    refunded: money(payment.currencyCode, payment.refundedMinor),
    refunds: payment.refunds.map(refundMessage),
    createdAt: payment.createdAt,
    chargedByVersion: payment.chargedByVersion,
  };
}

export function refundMessage(refund: Refund): RefundRecord {
  return {
    refundId: refund.refundId,
    idempotencyKey: refund.idempotencyKey,
    amount: money(refund.currencyCode, refund.amountMinor),
    reason: refund.reason,
    createdAt: refund.createdAt,
  };
}
