import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { ShipmentState } from "@meshcart/contracts/meshcart/fulfillment/v1/fulfillment.js";
import { dashboardQueries, unexported } from "@meshcart/testing/dashboard.js";
import { parseExposition, type Exposition } from "@meshcart/testing/prometheus.js";
import { Shop } from "@meshcart/testing/shop.js";
import { as, eventually, fulfillmentOf, storefrontOf, unique } from "./support/events.js";

/**
 * The event path's metrics on the real services after a known set of
 * orders: the outbox's (order) and the consumer's and shipments'
 * (fulfillment) figures match what happened, and every query of the
 * Grafana dashboard finds what the services export.
 */

vi.setConfig({ testTimeout: 60_000, hookTimeout: 120_000 });

const DASHBOARD = fileURLToPath(new URL("../../../dashboards/meshcart.json", import.meta.url));
const SERVICES = ["inventory", "payment", "order", "fulfillment", "storefront"] as const;

let shop: Shop;
const scraped = new Map<string, Exposition>();

async function scrape(name: (typeof SERVICES)[number]): Promise<Exposition> {
  return parseExposition(await (await fetch(`${shop.adminUrl(name)}/metrics`)).text());
}

beforeAll(async () => {
  shop = await Shop.start({ prefix: "events_metrics" });
  const storefront = storefrontOf(shop);
  const place = async (customer: string, paymentMethod: string) =>
    (await storefront.placeOrder({ requestId: unique("req"), items: [{ sku: "MESH-MUG", quantity: 1 }], paymentMethod }, { metadata: await as(customer) }))
      .order!;
  const shipped = await place("metrics-a", "pm_card_visa");
  const cancelled = await place("metrics-b", "pm_card_visa");
  await place("metrics-c", "pm_card_declined");
  await eventually("the first shipment shipped", async () =>
    (await fulfillmentOf(shop).getShipment({ orderId: shipped.orderId })).shipment?.state === ShipmentState.SHIPMENT_STATE_SHIPPED ? true : undefined,
  );
  await eventually("the second shipment", async () => (await fulfillmentOf(shop).getShipment({ orderId: cancelled.orderId })).shipment);
  await storefront.cancelOrder({ orderId: cancelled.orderId, reason: "metrics" }, { metadata: await as("metrics-b") });
  await eventually("every event applied", async () => ((await shop.verify()).pending.length === 0 ? true : undefined));
  for (const name of SERVICES) scraped.set(name, await scrape(name));
}, 120_000);

afterAll(async () => {
  await shop?.stop();
}, 60_000);

describe("the event path's metrics", () => {
  it("order's outbox: four events published and stored, none waiting, this replica publishing", () => {
    const order = scraped.get("order")!;
    // Two confirmations, a rejection, a cancellation.
    expect(order.sum("meshcart_order_outbox_published_total", { result: "stored" })).toBe(4);
    expect(order.sum("meshcart_order_outbox_published_total", { result: "duplicate" })).toBe(0);
    expect(order.sum("meshcart_order_outbox_backlog_events")).toBe(0);
    expect(order.sum("meshcart_order_outbox_oldest_age_seconds")).toBe(0);
    expect(order.sum("meshcart_order_outbox_relay_leader")).toBe(1);
    expect(order.sum("meshcart_order_outbox_delay_seconds_count")).toBe(4);
  });

  it("fulfillment: the events by outcome, the shipments by state, no lag and no dead letter", () => {
    const fulfillment = scraped.get("fulfillment")!;
    expect(fulfillment.sum("meshcart_fulfillment_events_total", { kind: "confirmed", outcome: "created" })).toBe(2);
    // Cancelled before or after the parcel left, depending on the timer: either way one.
    expect(
      fulfillment.sum("meshcart_fulfillment_events_total", { kind: "cancelled", outcome: "cancelled" }) +
        fulfillment.sum("meshcart_fulfillment_events_total", { kind: "cancelled", outcome: "cancel_too_late" }),
    ).toBe(1);
    expect(fulfillment.sum("meshcart_fulfillment_shipments")).toBe(2);
    expect(
      fulfillment
        .samples("meshcart_fulfillment_shipments")
        .map((s) => s.labels.state)
        .sort(),
    ).toEqual(["CANCELLED", "PACKED", "PENDING", "SHIPPED"]);
    expect(fulfillment.sum("meshcart_fulfillment_dead_letters_total")).toBe(0);
    expect(fulfillment.sum("meshcart_fulfillment_consumer_pending_messages")).toBe(0);
    expect(fulfillment.sum("meshcart_fulfillment_broker_connected")).toBe(1);
    expect(fulfillment.sum("meshcart_fulfillment_event_delay_seconds_count")).toBe(3);
  });

  it("the Grafana dashboard queries only metrics, and labels, that the services export", () => {
    const queries = dashboardQueries(DASHBOARD);
    expect(queries.filter((q) => /meshcart_(order_outbox|fulfillment)_/.test(q.expr)).length).toBeGreaterThan(10);
    expect(unexported(queries, scraped.values())).toEqual([]);
  });
});
