import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { Status } from "nice-grpc";
import { jetstream } from "@nats-io/jetstream";
import { headers } from "@nats-io/transport-node";
import { ShipmentEventType, ShipmentState } from "@meshcart/contracts/meshcart/fulfillment/v1/fulfillment.js";
import { OrderEvent } from "@meshcart/contracts/meshcart/events/v1/order_events.js";
import { OrderStatus } from "@meshcart/contracts/meshcart/storefront/v1/storefront.js";
import { parseExposition, type Exposition } from "@meshcart/testing/prometheus.js";
import { Shop } from "@meshcart/testing/shop.js";
import { BrokerProbe, as, eventually, fulfillmentOf, storefrontOf, unique } from "./support/events.js";

/**
 * The failures the event path must survive, each with real processes and a
 * real broker: a crash of order between the commit and the publication,
 * and between the broker's acknowledgement and the mark; a crash of
 * fulfillment between its commit and its acknowledgement; the broker away
 * under checkouts; a message that can never be applied; an event
 * delivered twice. Afterwards: every confirmed order has exactly one
 * shipment, nothing lost, nothing applied twice (make verify's checks).
 */

vi.setConfig({ testTimeout: 90_000, hookTimeout: 120_000 });

const MAX_DELIVERIES = 3;
let shop: Shop;
let probe: BrokerProbe;

beforeAll(async () => {
  shop = await Shop.start({ prefix: "events_fail", env: { fulfillment: { FULFILLMENT_MAX_DELIVERIES: String(MAX_DELIVERIES) } } });
  probe = await BrokerProbe.open(shop);
}, 120_000);

afterAll(async () => {
  await probe?.close();
  await shop?.stop();
}, 60_000);

async function metrics(name: "order" | "fulfillment"): Promise<Exposition> {
  return parseExposition(await (await fetch(`${shop.adminUrl(name)}/metrics`)).text());
}

async function place(customer: string) {
  const { order } = await storefrontOf(shop).placeOrder(
    { requestId: unique("req"), items: [{ sku: "MESH-NOTEBOOK", quantity: 1 }], paymentMethod: "pm_card_visa" },
    { metadata: await as(customer) },
  );
  return order!;
}

/** The order of a customer, read from order's database (the service may be dead). */
async function orderIdOf(customer: string): Promise<string> {
  return eventually(`the order of ${customer}`, async () => {
    const { rows } = await shop
      .sql("order")
      .query<{ order_id: string; state: string }>("SELECT order_id, state FROM orders WHERE customer_id = $1", [customer]);
    return rows[0]?.state === "CONFIRMED" ? rows[0].order_id : undefined;
  });
}

async function shipped(orderId: string) {
  return eventually(`order ${orderId}'s shipment`, async () => {
    const { shipment } = await fulfillmentOf(shop)
      .getShipment({ orderId })
      .catch(() => ({ shipment: undefined }));
    return shipment && shipment.state !== ShipmentState.SHIPMENT_STATE_PENDING ? shipment : undefined;
  });
}

/** Places an order through a storefront whose order service dies on the way; resolves once the call has ended either way. */
async function placeThroughCrash(customer: string): Promise<void> {
  await place(customer).catch(() => undefined);
}

describe("order dies around the publication", () => {
  it("kill -9 between the commit and the publication: the restarted relay publishes the event, and it is shipped", async () => {
    await shop.stopService("order");
    await shop.restart("order", { ORDER_OUTBOX_CRASH_POINT: "before:publish" });
    const customer = unique("crash-before");
    await placeThroughCrash(customer);
    expect(await shop.crashed("order")).toEqual({ code: null, signal: "SIGKILL" });
    const orderId = await orderIdOf(customer);
    expect(await probe.orderEvents(orderId)).toEqual([]);
    const { rows } = await shop.sql("order").query("SELECT published_at FROM order_events WHERE order_id = $1 AND type = 'ORDER_CONFIRMED'", [orderId]);
    expect(rows).toEqual([{ published_at: null }]);

    await shop.restart("order", { ORDER_OUTBOX_CRASH_POINT: "" });
    const shipment = await shipped(orderId);
    expect(shipment.history.filter((e) => e.type === ShipmentEventType.SHIPMENT_EVENT_TYPE_CREATED)).toHaveLength(1);
    expect(await probe.orderEvents(orderId)).toHaveLength(1);
  });

  it("kill -9 between the broker's acknowledgement and the mark: published again under the same id, stored once, shipped once", async () => {
    await shop.stopService("order");
    await shop.restart("order", { ORDER_OUTBOX_CRASH_POINT: "after:publish" });
    const customer = unique("crash-after");
    await placeThroughCrash(customer);
    await shop.crashed("order");
    const orderId = await orderIdOf(customer);
    // In the stream, and still unmarked in the log.
    expect(await probe.orderEvents(orderId)).toHaveLength(1);
    const { rows } = await shop.sql("order").query("SELECT published_at FROM order_events WHERE order_id = $1 AND type = 'ORDER_CONFIRMED'", [orderId]);
    expect(rows).toEqual([{ published_at: null }]);

    await shop.restart("order", { ORDER_OUTBOX_CRASH_POINT: "" });
    await eventually("the event to be marked published", async () => {
      const marked = await shop
        .sql("order")
        .query("SELECT 1 FROM order_events WHERE order_id = $1 AND type = 'ORDER_CONFIRMED' AND published_at IS NOT NULL", [orderId]);
      return marked.rowCount === 1 ? true : undefined;
    });
    // The republication was recognised by the stream (Nats-Msg-Id) and counted as such.
    expect((await metrics("order")).sum("meshcart_order_outbox_published_total", { result: "duplicate" })).toBeGreaterThanOrEqual(1);
    expect(await probe.orderEvents(orderId)).toHaveLength(1);
    const shipment = await shipped(orderId);
    expect(shipment.history.filter((e) => e.type === ShipmentEventType.SHIPMENT_EVENT_TYPE_CREATED)).toHaveLength(1);
  });
});

describe("fulfillment dies mid-handling", () => {
  it("kill -9 after its commit, before its acknowledgement: the redelivery finds the event id and changes nothing", async () => {
    await shop.stopService("fulfillment");
    await shop.restart("fulfillment", { FULFILLMENT_CRASH_POINT: "after:apply" });
    const customer = unique("ful-crash");
    const order = await place(customer);
    expect(order.status).toBe(OrderStatus.ORDER_STATUS_CONFIRMED);
    expect(await shop.crashed("fulfillment")).toEqual({ code: null, signal: "SIGKILL" });
    // Committed before the crash.
    const { rows } = await shop.sql("fulfillment").query("SELECT outcome FROM processed_events WHERE order_id = $1", [order.orderId]);
    expect(rows).toEqual([{ outcome: "created" }]);

    await shop.restart("fulfillment", { FULFILLMENT_CRASH_POINT: "" });
    await eventually("the redelivery to be handled", async () => {
      const m = await metrics("fulfillment");
      return m.sum("meshcart_fulfillment_events_total", { outcome: "duplicate" }) >= 1 ? true : undefined;
    });
    expect((await metrics("fulfillment")).sum("meshcart_fulfillment_redeliveries_total")).toBeGreaterThanOrEqual(1);
    const shipment = await shipped(order.orderId);
    expect(shipment.history.filter((e) => e.type === ShipmentEventType.SHIPMENT_EVENT_TYPE_CREATED)).toHaveLength(1);
  });

  it("the same event delivered again under another message id (past the stream's duplicate window) is applied once", async () => {
    const customer = unique("twice");
    const order = await place(customer);
    await shipped(order.orderId);
    const [original] = await probe.orderEvents(order.orderId);
    const copy = headers();
    copy.set("Nats-Msg-Id", `${original!.msgId}.again`);
    await jetstream(probe.connection).publish("meshcart.orders.confirmed", OrderEvent.encode(original!.event).finish(), { headers: copy });
    await eventually("the copy to be handled", async () => {
      const { rows } = await shop
        .sql("fulfillment")
        .query("SELECT count(*)::int AS n FROM shipment_events e JOIN shipments s USING (shipment_id) WHERE s.order_id = $1", [order.orderId]);
      const m = await metrics("fulfillment");
      return m.sum("meshcart_fulfillment_events_total", { kind: "confirmed", outcome: "duplicate" }) >= 2 ? rows : undefined;
    });
    const { rows } = await shop
      .sql("fulfillment")
      .query("SELECT count(*)::int AS n FROM shipment_events e JOIN shipments s USING (shipment_id) WHERE s.order_id = $1 AND e.type = 'CREATED'", [
        order.orderId,
      ]);
    expect(rows).toEqual([{ n: 1 }]);
  });
});

describe("a poison message", () => {
  it(`is tried ${MAX_DELIVERIES} times, then dead-lettered: published to meshcart.deadletter.fulfillment, recorded, counted and logged`, async () => {
    const poison = new TextEncoder().encode("not an order event");
    const ack = await jetstream(probe.connection).publish("meshcart.orders.confirmed", poison, { msgID: unique("poison") });
    const letter = await eventually("the dead letter", async () => {
      const { rows } = await shop
        .sql("fulfillment")
        .query("SELECT stream_sequence, subject, attempts, reason FROM dead_letters WHERE stream_sequence = $1", [ack.seq]);
      return rows[0];
    });
    expect(letter).toMatchObject({ subject: "meshcart.orders.confirmed", attempts: MAX_DELIVERIES });
    expect(letter.reason).toContain("not a meshcart.events.v1.OrderEvent");
    const dead = await probe.messages("MESHCART_DEAD_LETTERS", "meshcart.deadletter.fulfillment");
    const mine = dead.find((m) => m.header.get("Meshcart-Original-Sequence") === String(ack.seq));
    expect(mine).toBeDefined();
    expect(new TextDecoder().decode(mine!.data)).toBe("not an order event");
    expect(mine!.header.get("Meshcart-Attempts")).toBe(String(MAX_DELIVERIES));
    expect((await metrics("fulfillment")).sum("meshcart_fulfillment_dead_letters_total")).toBe(1);
    expect(shop.logs("fulfillment").some((line) => line.includes('"level":"error"') && line.includes("dead-lettered"))).toBe(true);
    // Given up on: not delivered again.
    const before = (await metrics("fulfillment")).sum("meshcart_fulfillment_delivery_failures_total");
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect((await metrics("fulfillment")).sum("meshcart_fulfillment_delivery_failures_total")).toBe(before);
    // make verify reports it for an operator.
    expect((await shop.verify()).violations.some((v) => v.includes(`stream sequence ${ack.seq}`) && v.includes("dead-lettered"))).toBe(true);
    await shop.sql("fulfillment").query("DELETE FROM dead_letters WHERE stream_sequence = $1", [ack.seq]);
  });
});

describe("the broker away", () => {
  it("checkouts go on; the events wait in the outbox and are delivered once the broker is back", async () => {
    await shop.nats.pause();
    const customers = [unique("outage"), unique("outage")];
    try {
      for (const customer of customers) {
        const order = await place(customer);
        expect(order.status, "a checkout never waits for the broker").toBe(OrderStatus.ORDER_STATUS_CONFIRMED);
      }
      const backlog = await eventually("the outbox backlog to show", async () => {
        const waiting = (await metrics("order")).sum("meshcart_order_outbox_backlog_events");
        return waiting >= customers.length ? waiting : undefined;
      });
      expect(backlog).toBeGreaterThanOrEqual(customers.length);
      // Fulfillment still answers from its database, and is still ready.
      await expect(fulfillmentOf(shop).getShipment({ orderId: "ord_unknown" })).rejects.toMatchObject({ code: Status.NOT_FOUND });
      expect((await fetch(`${shop.adminUrl("fulfillment")}/readyz`)).status).toBe(200);
    } finally {
      await shop.nats.resume();
    }
    for (const customer of customers) await shipped(await orderIdOf(customer));
    await eventually("the backlog to drain", async () => ((await metrics("order")).sum("meshcart_order_outbox_backlog_events") === 0 ? true : undefined));
  });
});

describe("afterwards", () => {
  it("every confirmed order has exactly one shipment; no event lost or applied twice (make verify)", async () => {
    const report = await eventually("every event to be applied", async () => {
      const r = await shop.verify();
      return r.pending.length === 0 ? r : undefined;
    });
    expect(report.violations).toEqual([]);
  });
});
