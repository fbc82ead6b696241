import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { OtlpReceiver, type ReceivedSpan } from "@meshcart/testing/otlp-receiver.js";
import { Shop } from "@meshcart/testing/shop.js";
import { as, eventually, fulfillmentOf, storefrontOf, unique } from "./support/events.js";

/**
 * The trace of an order across the broker, with every service exporting
 * over OTLP/gRPC to a real receiver: order's publication of the
 * confirmation is a PRODUCER span in the checkout's trace, fulfillment's
 * handling a CONSUMER span that is its child (the traceparent travels in
 * the message's headers), with fulfillment's statements under it; the
 * timer's later steps are traces of their own, linked to that handling.
 */

vi.setConfig({ testTimeout: 60_000, hookTimeout: 120_000 });

let receiver: OtlpReceiver;
let shop: Shop;

beforeAll(async () => {
  receiver = await OtlpReceiver.start();
  shop = await Shop.start({
    prefix: "events_trace",
    common: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, OTEL_EXPORTER_OTLP_PROTOCOL: "grpc", OTEL_BSP_SCHEDULE_DELAY: "100" },
  });
}, 120_000);

afterAll(async () => {
  await shop?.stop();
  await receiver?.stop();
}, 60_000);

function one(spans: ReceivedSpan[], what: string, match: (s: ReceivedSpan) => boolean): ReceivedSpan {
  const found = spans.filter(match);
  if (found.length !== 1) {
    throw new Error(`expected one ${what}, found ${found.length} among:\n  ${spans.map((s) => `${s.service} ${s.kind} ${s.name}`).join("\n  ")}`);
  }
  return found[0]!;
}

describe("an order's trace across the broker", () => {
  it("goes from the shopper's call through order's publication to fulfillment's handling; the timer's steps link back to it", async () => {
    const traceId = randomBytes(16).toString("hex");
    const customer = unique("traced");
    const metadata = await as(customer);
    metadata.set("traceparent", `00-${traceId}-${randomBytes(8).toString("hex")}-01`);
    const { order } = await storefrontOf(shop).placeOrder(
      { requestId: unique("req"), items: [{ sku: "MESH-MUG", quantity: 1 }], paymentMethod: "pm_card_visa" },
      { metadata },
    );
    const orderId = order!.orderId;
    await eventually("the shipment to be shipped", async () =>
      (await fulfillmentOf(shop).getShipment({ orderId })).shipment?.trackingNumber ? true : undefined,
    );

    const trace = await receiver.waitFor("fulfillment's handling in the order's trace", (spans) => {
      const mine = spans.filter((s) => s.traceId === traceId);
      return mine.some((s) => s.service === "fulfillment" && s.kind === "CONSUMER") ? mine : undefined;
    });
    const createOrder = one(trace, "order's CreateOrder server span", (s) => s.service === "order" && s.kind === "SERVER" && s.name.endsWith("/CreateOrder"));
    const publish = one(trace, "order's publication", (s) => s.service === "order" && s.kind === "PRODUCER");
    expect(publish.name).toBe("publish meshcart.orders.confirmed");
    expect(publish.parentSpanId).toBe(createOrder.spanId);
    expect(publish.attributes).toMatchObject({
      "messaging.system": "nats",
      "messaging.destination.name": "meshcart.orders.confirmed",
      "meshcart.order.id": orderId,
    });
    expect(publish.attributes["messaging.message.id"]).toMatch(new RegExp(`^${orderId}\\.\\d+$`));

    const process = one(trace, "fulfillment's handling", (s) => s.service === "fulfillment" && s.kind === "CONSUMER");
    expect(process.name).toBe("process meshcart.orders.confirmed");
    expect(process.parentSpanId, "a child of the publication: one trace across the broker").toBe(publish.spanId);
    expect(process.attributes).toMatchObject({
      "messaging.consumer.group.name": "fulfillment",
      "messaging.message.id": publish.attributes["messaging.message.id"],
      "meshcart.order.id": orderId,
      "meshcart.fulfillment.outcome": "created",
    });
    // Fulfillment's statements run inside the handling.
    const statements = trace.filter((s) => s.service === "fulfillment" && s.parentSpanId === process.spanId);
    expect(statements.length).toBeGreaterThan(0);

    const steps = await receiver.waitFor("the timer's two steps", (spans) => {
      const found = spans.filter((s) => s.service === "fulfillment" && s.name === "fulfillment.advance" && s.attributes["meshcart.order.id"] === orderId);
      return found.length === 2 ? found : undefined;
    });
    for (const step of steps) {
      expect(step.traceId, "a step of the timer is a trace of its own").not.toBe(traceId);
      expect(step.links).toEqual([expect.objectContaining({ traceId, spanId: process.spanId })]);
    }
    expect(steps.map((s) => s.attributes["meshcart.shipment.state"]).sort()).toEqual(["PACKED", "SHIPPED"]);
  });
});
