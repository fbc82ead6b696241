import { ITEM_LINES, MAX_REASON_LENGTH, SpanAttributes, annotateSpan, decodePageToken, encodePageToken, pageSize, validate } from "@meshcart/lib";
import {
  OrderEventType,
  OrderState as OrderStateMessage,
  type Order as OrderMessage,
  type OrderEvent as OrderEventMessage,
  type OrderServiceImplementation,
} from "@meshcart/contracts/meshcart/order/v1/order.js";
import type { Orders } from "./orders.js";
import type { Order, OrderEvent, OrderEventType as EventType, OrderState, OrderSummary } from "./order-state.js";

/**
 * Translates the OrderService API into the Orders use cases. Requests are
 * validated completely before anything is written.
 */
export function orderHandlers(orders: Orders): OrderServiceImplementation {
  return {
    async createOrder(request, context) {
      validate((v) => {
        v.id("request_id", request.requestId);
        v.customerId("customer_id", request.customerId);
        v.itemLines("items", request.items, ITEM_LINES);
        // Refused here, before an order exists, rather than deep in the saga.
        v.paymentMethod("payment_method", request.paymentMethod);
      });
      const order = await orders.create(
        {
          requestId: request.requestId,
          customerId: request.customerId,
          items: request.items.map((i) => ({ sku: i.sku, quantity: i.quantity })),
          paymentMethod: request.paymentMethod,
        },
        context.signal,
      );
      annotateSpan({ [SpanAttributes.orderState]: order.state });
      return { order: orderMessage(order, order.history) };
    },

    async getOrder(request) {
      validate((v) => v.id("order_id", request.orderId));
      annotateSpan({ [SpanAttributes.orderId]: request.orderId });
      const order = await orders.get(request.orderId);
      return { order: orderMessage(order, order.history) };
    },

    async listOrders(request) {
      const limit = pageSize(request.pageSize);
      validate((v) => v.customerId("customer_id", request.customerId));
      const after = decodePageToken(request.pageToken, isPosition);
      const page = await orders.list(request.customerId, limit, after);
      const last = page.orders.at(-1);
      return {
        orders: page.orders.map((o) => orderMessage(o, [])),
        nextPageToken: page.more && last ? encodePageToken({ createdAt: last.createdAt.toISOString(), orderId: last.orderId }) : "",
      };
    },

    async cancelOrder(request, context) {
      validate((v) => {
        v.id("order_id", request.orderId);
        v.text("reason", request.reason, MAX_REASON_LENGTH);
      });
      annotateSpan({ [SpanAttributes.orderId]: request.orderId });
      const order = await orders.cancel(request.orderId, request.reason, context.signal);
      annotateSpan({ [SpanAttributes.orderState]: order.state });
      return { order: orderMessage(order, order.history) };
    },

    async *watchOrder(request, context) {
      validate((v) => v.id("order_id", request.orderId));
      annotateSpan({ [SpanAttributes.orderId]: request.orderId });
      for await (const { event, order } of orders.watch(request.orderId, context.signal)) {
        yield { event: eventMessage(event), order: orderMessage(order, []) };
      }
    },
  };
}

/** Exactly what ListOrders writes into its tokens: toISOString() of a time Postgres can hold (years 0001-9999). */
const TOKEN_TIME = /^(?!0000)\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

function isPosition(value: unknown): value is { createdAt: string; orderId: string } {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  // A forged time that JavaScript reads but Postgres refuses (year -1) would
  // fail the query: INTERNAL for what is bad input (found by fuzzing).
  const time = typeof v.createdAt === "string" && TOKEN_TIME.test(v.createdAt) ? new Date(v.createdAt) : undefined;
  return time !== undefined && !Number.isNaN(time.getTime()) && time.toISOString() === v.createdAt && typeof v.orderId === "string";
}

const STATES: Record<OrderState, OrderStateMessage> = {
  PENDING: OrderStateMessage.ORDER_STATE_PENDING,
  STOCK_RESERVED: OrderStateMessage.ORDER_STATE_STOCK_RESERVED,
  PAYMENT_CAPTURED: OrderStateMessage.ORDER_STATE_PAYMENT_CAPTURED,
  CONFIRMED: OrderStateMessage.ORDER_STATE_CONFIRMED,
  REJECTED: OrderStateMessage.ORDER_STATE_REJECTED,
  COMPENSATING: OrderStateMessage.ORDER_STATE_COMPENSATING,
  FAILED: OrderStateMessage.ORDER_STATE_FAILED,
  CANCELLING: OrderStateMessage.ORDER_STATE_CANCELLING,
  CANCELLED: OrderStateMessage.ORDER_STATE_CANCELLED,
};

const EVENT_TYPES: Record<EventType, OrderEventType> = {
  ORDER_PLACED: OrderEventType.ORDER_EVENT_TYPE_ORDER_PLACED,
  STOCK_RESERVED: OrderEventType.ORDER_EVENT_TYPE_STOCK_RESERVED,
  STOCK_UNAVAILABLE: OrderEventType.ORDER_EVENT_TYPE_STOCK_UNAVAILABLE,
  PAYMENT_CAPTURED: OrderEventType.ORDER_EVENT_TYPE_PAYMENT_CAPTURED,
  PAYMENT_DECLINED: OrderEventType.ORDER_EVENT_TYPE_PAYMENT_DECLINED,
  RESERVATION_COMMITTED: OrderEventType.ORDER_EVENT_TYPE_RESERVATION_COMMITTED,
  ORDER_CONFIRMED: OrderEventType.ORDER_EVENT_TYPE_ORDER_CONFIRMED,
  STEP_FAILED: OrderEventType.ORDER_EVENT_TYPE_STEP_FAILED,
  PAYMENT_REFUNDED: OrderEventType.ORDER_EVENT_TYPE_PAYMENT_REFUNDED,
  STOCK_RELEASED: OrderEventType.ORDER_EVENT_TYPE_STOCK_RELEASED,
  STOCK_RETURNED: OrderEventType.ORDER_EVENT_TYPE_STOCK_RETURNED,
  ORDER_REJECTED: OrderEventType.ORDER_EVENT_TYPE_ORDER_REJECTED,
  ORDER_FAILED: OrderEventType.ORDER_EVENT_TYPE_ORDER_FAILED,
  CANCELLATION_REQUESTED: OrderEventType.ORDER_EVENT_TYPE_CANCELLATION_REQUESTED,
  ORDER_CANCELLED: OrderEventType.ORDER_EVENT_TYPE_ORDER_CANCELLED,
  STEP_ABANDONED: OrderEventType.ORDER_EVENT_TYPE_STEP_ABANDONED,
};

/** The human-readable part of an event, for the history. */
function eventDetail(event: OrderEvent): string {
  const data = event.data;
  switch (data.type) {
    case "STOCK_UNAVAILABLE":
    case "ORDER_REJECTED":
    case "ORDER_FAILED":
    case "CANCELLATION_REQUESTED":
    case "STEP_FAILED":
    case "PAYMENT_DECLINED":
      return data.reason;
    case "STOCK_RESERVED":
      return `${data.lines.length} line(s) reserved, total ${data.totalMinor} ${data.currencyCode}`;
    case "PAYMENT_CAPTURED":
      return `payment ${data.paymentId}`;
    case "PAYMENT_REFUNDED":
      return data.refundedMinor > 0 ? `refunded ${data.refundedMinor} on ${data.paymentId}` : (data.detail ?? "nothing to refund");
    case "STOCK_RELEASED":
      return data.detail;
    case "STOCK_RETURNED":
      return data.detail ?? "";
    case "STEP_ABANDONED":
      return `${data.step} given up: ${data.reason}`;
    default:
      return "";
  }
}

export function eventMessage(event: OrderEvent): OrderEventMessage {
  return {
    sequence: event.sequence,
    type: EVENT_TYPES[event.data.type],
    stateAfter: STATES[event.stateAfter],
    detail: eventDetail(event),
    occurredAt: event.occurredAt,
  };
}

export function orderMessage(order: Order | OrderSummary, history: OrderEvent[]): OrderMessage {
  const money = (minor: number | undefined) =>
    minor === undefined || !order.currencyCode ? undefined : { currencyCode: order.currencyCode, minorUnits: minor };
  return {
    orderId: order.orderId,
    requestId: order.requestId,
    customerId: order.customerId,
    state: STATES[order.state],
    lines: order.lines
      ? order.lines.map((l) => ({
          sku: l.sku,
          quantity: l.quantity,
          unitPrice: money(l.unitPriceMinor),
          lineTotal: money(l.unitPriceMinor * l.quantity),
        }))
      : order.items.map((i) => ({ sku: i.sku, quantity: i.quantity, unitPrice: undefined, lineTotal: undefined })),
    total: money(order.totalMinor),
    paymentMethod: order.paymentMethod,
    reservationId: order.reservationId,
    paymentId: order.paymentId ?? "",
    failureReason: order.failureReason ?? "",
    createdAt: order.createdAt,
    updatedAt: order.updatedAt,
    history: history.map(eventMessage),
  };
}
