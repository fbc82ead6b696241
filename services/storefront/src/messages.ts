import type { Product as InventoryProduct } from "@meshcart/contracts/meshcart/inventory/v1/inventory.js";
import { OrderEventType, OrderState, type Order as InternalOrder, type OrderEvent } from "@meshcart/contracts/meshcart/order/v1/order.js";
import { ShipmentEventType, ShipmentState, type Shipment, type ShipmentEvent } from "@meshcart/contracts/meshcart/fulfillment/v1/fulfillment.js";
import { DeclineReason as PaymentDeclineReason, PaymentStatus, type Payment } from "@meshcart/contracts/meshcart/payment/v1/payment.js";
import {
  DeclineReason,
  OrderStatus,
  type Order,
  type OrderUpdate,
  type PaymentSummary,
  type Product,
  type ShipmentSummary,
  type ShipmentUpdate,
} from "@meshcart/contracts/meshcart/storefront/v1/storefront.js";

/**
 * The storefront's own messages, made from the internal ones. The public
 * contract names what a shopper cares about; saga states, reservation ids
 * and idempotency keys stay inside.
 */

const STATUS_OF_STATE: Record<OrderState, OrderStatus> = {
  [OrderState.ORDER_STATE_UNSPECIFIED]: OrderStatus.ORDER_STATUS_UNSPECIFIED,
  [OrderState.ORDER_STATE_PENDING]: OrderStatus.ORDER_STATUS_PROCESSING,
  [OrderState.ORDER_STATE_STOCK_RESERVED]: OrderStatus.ORDER_STATUS_PROCESSING,
  [OrderState.ORDER_STATE_PAYMENT_CAPTURED]: OrderStatus.ORDER_STATUS_PROCESSING,
  [OrderState.ORDER_STATE_COMPENSATING]: OrderStatus.ORDER_STATUS_PROCESSING,
  [OrderState.ORDER_STATE_CONFIRMED]: OrderStatus.ORDER_STATUS_CONFIRMED,
  [OrderState.ORDER_STATE_REJECTED]: OrderStatus.ORDER_STATUS_REJECTED,
  [OrderState.ORDER_STATE_FAILED]: OrderStatus.ORDER_STATUS_FAILED,
  [OrderState.ORDER_STATE_CANCELLING]: OrderStatus.ORDER_STATUS_CANCELLING,
  [OrderState.ORDER_STATE_CANCELLED]: OrderStatus.ORDER_STATUS_CANCELLED,
  [OrderState.UNRECOGNIZED]: OrderStatus.ORDER_STATUS_PROCESSING,
};

export function orderStatus(state: OrderState): OrderStatus {
  return STATUS_OF_STATE[state] ?? OrderStatus.ORDER_STATUS_PROCESSING;
}

function stateName(state: OrderState): string {
  return OrderState[state] ?? "ORDER_STATE_UNSPECIFIED";
}

export function orderUpdate(event: OrderEvent): OrderUpdate {
  return {
    sequence: event.sequence,
    event: (OrderEventType[event.type] ?? "UNKNOWN").replace(/^ORDER_EVENT_TYPE_/, ""),
    status: orderStatus(event.stateAfter),
    detail: event.detail,
    occurredAt: event.occurredAt,
  };
}

export function publicOrder(order: InternalOrder, withHistory: boolean): Order {
  return {
    orderId: order.orderId,
    status: orderStatus(order.state),
    state: stateName(order.state),
    lines: order.lines.map((line) => ({
      sku: line.sku,
      quantity: line.quantity,
      unitPrice: line.unitPrice,
      lineTotal: line.lineTotal,
    })),
    total: order.total,
    reason: order.failureReason,
    createdAt: order.createdAt,
    updatedAt: order.updatedAt,
    history: withHistory ? order.history.map(orderUpdate) : [],
  };
}

export function publicProduct(product: InventoryProduct): Product {
  return {
    sku: product.sku,
    name: product.name,
    description: product.description,
    price: product.unitPrice,
    available: product.stock?.available ?? 0,
  };
}

/**
 * Payment's decline reasons in the storefront's own enum: the internal one
 * may grow a reason the public contract has not named yet, which a shopper
 * then sees as a decline without a reason rather than a number of payment's.
 */
const DECLINE_REASONS: Record<PaymentDeclineReason, DeclineReason> = {
  [PaymentDeclineReason.DECLINE_REASON_UNSPECIFIED]: DeclineReason.DECLINE_REASON_UNSPECIFIED,
  [PaymentDeclineReason.DECLINE_REASON_CARD_DECLINED]: DeclineReason.DECLINE_REASON_CARD_DECLINED,
  [PaymentDeclineReason.DECLINE_REASON_INSUFFICIENT_FUNDS]: DeclineReason.DECLINE_REASON_INSUFFICIENT_FUNDS,
  [PaymentDeclineReason.DECLINE_REASON_RISK_SCREEN]: DeclineReason.DECLINE_REASON_RISK_SCREEN,
  [PaymentDeclineReason.UNRECOGNIZED]: DeclineReason.DECLINE_REASON_UNSPECIFIED,
};

export function paymentSummary(payment: Payment): PaymentSummary {
  return {
    paymentId: payment.paymentId,
    status: (PaymentStatus[payment.status] ?? "PAYMENT_STATUS_UNSPECIFIED").replace(/^PAYMENT_STATUS_/, ""),
    amount: payment.amount,
    refunded: payment.refunded,
    chargedByVersion: payment.chargedByVersion,
    declineReason: DECLINE_REASONS[payment.declineReason] ?? DeclineReason.DECLINE_REASON_UNSPECIFIED,
  };
}

/** Fulfillment's shipment as the shopper sees it: where the parcel is, not how fulfillment works. */
export function shipmentSummary(shipment: Shipment): ShipmentSummary {
  return {
    shipmentId: shipment.shipmentId,
    status: (ShipmentState[shipment.state] ?? "SHIPMENT_STATE_UNSPECIFIED").replace(/^SHIPMENT_STATE_/, ""),
    trackingNumber: shipment.trackingNumber,
    cancelledTooLate: shipment.cancelledTooLate,
    updatedAt: shipment.updatedAt,
  };
}

export function shipmentUpdate(event: ShipmentEvent, shipment: Shipment): ShipmentUpdate {
  return {
    event: (ShipmentEventType[event.type] ?? "UNKNOWN").replace(/^SHIPMENT_EVENT_TYPE_/, ""),
    detail: event.detail,
    occurredAt: event.occurredAt,
    shipment: shipmentSummary(shipment),
  };
}
