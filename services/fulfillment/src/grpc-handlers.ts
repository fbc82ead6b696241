import { SpanAttributes, annotateSpan, decodePageToken, encodePageToken, pageSize, validate } from "@meshcart/lib";
import {
  ShipmentEventType,
  ShipmentState as ShipmentStateMessage,
  type FulfillmentServiceImplementation,
  type Shipment as ShipmentMessage,
  type ShipmentEvent as ShipmentEventMessage,
} from "@meshcart/contracts/meshcart/fulfillment/v1/fulfillment.js";
import type { Fulfillment } from "./fulfillment.js";
import type { Shipment, ShipmentHistoryEntry, ShipmentState } from "./shipment-state.js";

const STATE_MESSAGE: Record<ShipmentState, ShipmentStateMessage> = {
  PENDING: ShipmentStateMessage.SHIPMENT_STATE_PENDING,
  PACKED: ShipmentStateMessage.SHIPMENT_STATE_PACKED,
  SHIPPED: ShipmentStateMessage.SHIPMENT_STATE_SHIPPED,
  CANCELLED: ShipmentStateMessage.SHIPMENT_STATE_CANCELLED,
};

const STATE_OF_MESSAGE = new Map<ShipmentStateMessage, ShipmentState>(
  Object.entries(STATE_MESSAGE).map(([state, message]) => [message, state as ShipmentState]),
);

const EVENT_MESSAGE: Record<ShipmentHistoryEntry["type"], ShipmentEventType> = {
  CREATED: ShipmentEventType.SHIPMENT_EVENT_TYPE_CREATED,
  PACKED: ShipmentEventType.SHIPMENT_EVENT_TYPE_PACKED,
  SHIPPED: ShipmentEventType.SHIPMENT_EVENT_TYPE_SHIPPED,
  CANCELLED: ShipmentEventType.SHIPMENT_EVENT_TYPE_CANCELLED,
  CANCEL_TOO_LATE: ShipmentEventType.SHIPMENT_EVENT_TYPE_CANCEL_TOO_LATE,
};

/** The read API. Shipments are made by the order events, never by a call. */
export function fulfillmentHandlers(fulfillment: Fulfillment): FulfillmentServiceImplementation {
  return {
    async getShipment(request) {
      validate((v) => v.id("order_id", request.orderId));
      annotateSpan({ [SpanAttributes.orderId]: request.orderId });
      const { shipment, history } = await fulfillment.get(request.orderId);
      return { shipment: shipmentMessage(shipment, history) };
    },

    async listShipments(request) {
      const limit = pageSize(request.pageSize);
      const state = request.state === ShipmentStateMessage.SHIPMENT_STATE_UNSPECIFIED ? undefined : STATE_OF_MESSAGE.get(request.state);
      validate((v) => {
        if (request.state !== ShipmentStateMessage.SHIPMENT_STATE_UNSPECIFIED && !state) v.add("state", "is not a shipment state");
      });
      const after = decodePageToken(request.pageToken, isPosition);
      const page = await fulfillment.list(limit, state, after && { createdAt: after.c, shipmentId: after.s });
      const last = page.shipments.at(-1);
      return {
        shipments: page.shipments.map((s) => shipmentMessage(s, [])),
        nextPageToken: page.more && last ? encodePageToken({ c: last.createdAt.toISOString(), s: last.shipmentId }) : "",
      };
    },

    async *watchShipment(request, context) {
      validate((v) => v.id("order_id", request.orderId));
      annotateSpan({ [SpanAttributes.orderId]: request.orderId });
      for await (const { entry, shipment } of fulfillment.watch(request.orderId, context.signal)) {
        yield { event: entryMessage(entry), shipment: shipmentMessage(shipment, []) };
      }
    },
  };
}

function isPosition(value: unknown): value is { c: string; s: string } {
  if (typeof value !== "object" || value === null) return false;
  const { c, s } = value as Record<string, unknown>;
  return typeof c === "string" && !Number.isNaN(Date.parse(c)) && typeof s === "string" && s.length > 0 && s.length <= 200;
}

export function shipmentMessage(shipment: Shipment, history: ShipmentHistoryEntry[]): ShipmentMessage {
  return {
    shipmentId: shipment.shipmentId,
    orderId: shipment.orderId,
    customerId: shipment.customerId,
    state: STATE_MESSAGE[shipment.state],
    lines: shipment.lines,
    trackingNumber: shipment.trackingNumber ?? "",
    cancelledTooLate: shipment.cancelledTooLate,
    createdAt: shipment.createdAt,
    updatedAt: shipment.updatedAt,
    history: history.map(entryMessage),
  };
}

function entryMessage(entry: ShipmentHistoryEntry): ShipmentEventMessage {
  return {
    sequence: entry.sequence,
    type: EVENT_MESSAGE[entry.type],
    stateAfter: STATE_MESSAGE[entry.stateAfter],
    detail: entry.detail,
    occurredAt: entry.occurredAt,
  };
}
