import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { Status } from "nice-grpc";
import { ShipmentEventType, ShipmentState } from "@meshcart/contracts/meshcart/fulfillment/v1/fulfillment.js";
import { OrderStatus } from "@meshcart/contracts/meshcart/storefront/v1/storefront.js";
import { Shop } from "@meshcart/testing/shop.js";
import { BrokerProbe, as, eventually, fulfillmentOf, storefrontOf, unique } from "./support/events.js";

/**
 * The whole event-driven path with every service a real process (their
 * compiled dist/) and a broker of the test's own: the storefront places
 * an order, order's outbox relay publishes its confirmation, fulfillment
 * ships it on its timer, and both the storefront (GetOrderDetails,
 * TrackOrder) and fulfillment's own API show the shipment. Then what must
 * not happen: a shipment for an order never confirmed, a cancellation
 * lost, an event applied twice, an order's events out of order.
 */

vi.setConfig({ testTimeout: 60_000, hookTimeout: 120_000 });

let shop: Shop;
let probe: BrokerProbe;

beforeAll(async () => {
  shop = await Shop.start({ prefix: "choreo" });
  probe = await BrokerProbe.open(shop);
}, 120_000);

afterAll(async () => {
  await probe?.close();
  await shop?.stop();
}, 60_000);

async function place(customer: string, paymentMethod = "pm_card_visa", items = [{ sku: "MESH-MUG", quantity: 1 }]) {
  const { order } = await storefrontOf(shop).placeOrder({ requestId: unique("req"), items, paymentMethod }, { metadata: await as(customer) });
  return order!;
}

async function shipmentOf(orderId: string) {
  return (await fulfillmentOf(shop).getShipment({ orderId })).shipment!;
}

describe("a confirmed order is shipped, through the broker", () => {
  it("gets one shipment that goes PENDING, PACKED, SHIPPED, seen through fulfillment's API and the storefront", async () => {
    const customer = unique("shopper");
    const order = await place(customer, "pm_card_visa", [{ sku: "MESH-MUG", quantity: 2 }]);
    expect(order.status).toBe(OrderStatus.ORDER_STATUS_CONFIRMED);

    const shipped = await eventually("the shipment to be shipped", async () => {
      const s = await shipmentOf(order.orderId).catch(() => undefined);
      return s?.state === ShipmentState.SHIPMENT_STATE_SHIPPED ? s : undefined;
    });
    expect(shipped.lines).toEqual([{ sku: "MESH-MUG", quantity: 2 }]);
    expect(shipped.customerId).toBe(customer);
    expect(shipped.trackingNumber).toMatch(/^MC\d{10}$/);
    expect(shipped.history.map((e) => e.type)).toEqual([
      ShipmentEventType.SHIPMENT_EVENT_TYPE_CREATED,
      ShipmentEventType.SHIPMENT_EVENT_TYPE_PACKED,
      ShipmentEventType.SHIPMENT_EVENT_TYPE_SHIPPED,
    ]);

    const details = await storefrontOf(shop).getOrderDetails({ orderId: order.orderId }, { metadata: await as(customer) });
    expect(details.shipmentStatus?.code).toBe(Status.OK);
    expect(details.shipment).toMatchObject({
      shipmentId: shipped.shipmentId,
      status: "SHIPPED",
      trackingNumber: shipped.trackingNumber,
      cancelledTooLate: false,
    });

    // The order's one event in the stream: its confirmation, under its event id, with the trace context.
    const events = await probe.orderEvents(order.orderId);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ subject: "meshcart.orders.confirmed", msgId: `${order.orderId}.${events[0]!.event.sequence}` });
    expect(events[0]!.event.eventId).toBe(events[0]!.msgId);
    expect(events[0]!.event.payload?.$case).toBe("confirmed");
  });

  it("TrackOrder goes on from the order's confirmation to the shipment's steps", async () => {
    const customer = unique("tracker");
    const order = await place(customer);
    const updates: string[] = [];
    for await (const message of storefrontOf(shop).trackOrder({ orderId: order.orderId }, { metadata: await as(customer) })) {
      updates.push(message.update ? `order ${message.update.event}` : `shipment ${message.shipmentUpdate!.event} ${message.shipmentUpdate!.shipment!.status}`);
      if (message.shipmentUpdate) expect(message.order?.status).toBe(OrderStatus.ORDER_STATUS_CONFIRMED);
    }
    expect(updates.at(0)).toBe("order ORDER_PLACED");
    expect(updates.filter((u) => u.startsWith("shipment"))).toEqual(["shipment CREATED PENDING", "shipment PACKED PACKED", "shipment SHIPPED SHIPPED"]);
  });

  it("a rejected order is published for others and gets no shipment; the storefront's part says none", async () => {
    const customer = unique("declined");
    const order = await place(customer, "pm_card_declined");
    expect(order.status).toBe(OrderStatus.ORDER_STATUS_REJECTED);
    const events = await eventually("the rejection to be published", async () => {
      const found = await probe.orderEvents(order.orderId);
      return found.length > 0 ? found : undefined;
    });
    expect(events.map((e) => e.subject)).toEqual(["meshcart.orders.rejected"]);
    await expect(fulfillmentOf(shop).getShipment({ orderId: order.orderId })).rejects.toMatchObject({ code: Status.NOT_FOUND });
    const details = await storefrontOf(shop).getOrderDetails({ orderId: order.orderId }, { metadata: await as(customer) });
    expect(details.shipmentStatus?.code).toBe(Status.OK);
    expect(details.shipment).toBeUndefined();
  });
});

describe("cancellations", () => {
  it("a cancellation after the parcel left is recorded on the shipment as too late, not lost", async () => {
    const customer = unique("late");
    const order = await place(customer);
    await eventually("the shipment to be shipped", async () =>
      (await shipmentOf(order.orderId).catch(() => undefined))?.state === ShipmentState.SHIPMENT_STATE_SHIPPED ? true : undefined,
    );
    await storefrontOf(shop).cancelOrder({ orderId: order.orderId, reason: "changed my mind" }, { metadata: await as(customer) });
    const shipment = await eventually("the late cancellation to be recorded", async () => {
      const s = await shipmentOf(order.orderId);
      return s.cancelledTooLate ? s : undefined;
    });
    expect(shipment.state).toBe(ShipmentState.SHIPMENT_STATE_SHIPPED);
    expect(shipment.history.at(-1)).toMatchObject({ type: ShipmentEventType.SHIPMENT_EVENT_TYPE_CANCEL_TOO_LATE });
    expect(shipment.history.at(-1)!.detail).toContain("changed my mind");
    // In the stream, in the order's order: the confirmation, then the cancellation.
    expect((await probe.orderEvents(order.orderId)).map((e) => e.subject)).toEqual(["meshcart.orders.confirmed", "meshcart.orders.cancelled"]);
  });

  it("a cancellation before packing cancels the shipment (fulfillment with slow steps)", async () => {
    await shop.stopService("fulfillment");
    await shop.restart("fulfillment", { FULFILLMENT_PACK_AFTER_MS: "60000" });
    try {
      const customer = unique("early");
      const order = await place(customer);
      await eventually("the shipment", async () => shipmentOf(order.orderId).catch(() => undefined));
      await storefrontOf(shop).cancelOrder({ orderId: order.orderId, reason: "too slow" }, { metadata: await as(customer) });
      const shipment = await eventually("the shipment to be cancelled", async () => {
        const s = await shipmentOf(order.orderId);
        return s.state === ShipmentState.SHIPMENT_STATE_CANCELLED ? s : undefined;
      });
      expect(shipment.history.map((e) => e.type)).toEqual([ShipmentEventType.SHIPMENT_EVENT_TYPE_CREATED, ShipmentEventType.SHIPMENT_EVENT_TYPE_CANCELLED]);
      expect(shipment.trackingNumber).toBe("");
    } finally {
      await shop.stopService("fulfillment");
      await shop.restart("fulfillment");
    }
  });
});

describe("the shop afterwards", () => {
  it("make verify's checks find every event published and applied once, and nothing wrong", async () => {
    const report = await eventually("every event to be applied", async () => {
      const r = await shop.verify();
      return r.pending.length === 0 ? r : undefined;
    });
    expect(report.violations).toEqual([]);
    expect(report.checked.shipments).toBeGreaterThan(0);
    expect(shop.errorLines()).toEqual([]);
  });
});
