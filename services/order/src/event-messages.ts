import { orderEventSubject, type OrderEventKind } from "@meshcart/lib/events";
import { OrderEvent } from "@meshcart/contracts/meshcart/events/v1/order_events.js";
import type { PublishedEventType, UnpublishedEvent } from "./outbox-store.js";

/** What the relay publishes for one event of the log: subject, id and body. */
export interface EventMessage {
  subject: string;
  /** "<order_id>.<sequence>": stable, so a republished event is recognised (Nats-Msg-Id). */
  eventId: string;
  body: Uint8Array;
}

const KIND: Record<PublishedEventType, OrderEventKind> = {
  ORDER_CONFIRMED: "confirmed",
  ORDER_CANCELLED: "cancelled",
  ORDER_REJECTED: "rejected",
  ORDER_FAILED: "failed",
};

export function eventIdOf(event: Pick<UnpublishedEvent, "orderId" | "sequence">): string {
  return `${event.orderId}.${event.sequence}`;
}

/** The meshcart.events.v1.OrderEvent of a logged event. */
export function eventMessage(event: UnpublishedEvent): EventMessage {
  const eventId = eventIdOf(event);
  const payload = ((): OrderEvent["payload"] => {
    switch (event.type) {
      case "ORDER_CONFIRMED":
        return {
          $case: "confirmed",
          value: {
            lines: event.lines,
            total: event.currencyCode && event.totalMinor !== null ? { currencyCode: event.currencyCode, minorUnits: event.totalMinor } : undefined,
            paymentId: event.paymentId ?? "",
          },
        };
      case "ORDER_CANCELLED":
        return { $case: "cancelled", value: { reason: event.reason } };
      case "ORDER_REJECTED":
        return { $case: "rejected", value: { reason: event.reason } };
      case "ORDER_FAILED":
        return { $case: "failed", value: { reason: event.reason } };
    }
  })();
  const body = OrderEvent.encode({
    eventId,
    orderId: event.orderId,
    sequence: event.sequence,
    occurredAt: event.occurredAt,
    customerId: event.customerId,
    payload,
  }).finish();
  return { subject: orderEventSubject(KIND[event.type]), eventId, body };
}
