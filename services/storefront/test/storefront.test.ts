import { randomUUID } from "node:crypto";
import { Metadata, Status } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OrderState } from "@meshcart/contracts/meshcart/order/v1/order.js";
import { OrderStatus, type Order, type PlaceOrderRequest } from "@meshcart/contracts/meshcart/storefront/v1/storefront.js";
import { OtlpReceiver } from "@meshcart/testing/otlp-receiver.js";
import { bearer, collect, refusal, Stack, token, withHeader } from "./support/stack.js";
import { sleep } from "@meshcart/lib";

/**
 * The storefront as a shopper's client sees it, in front of the real
 * inventory, payment and order processes: authentication and ownership,
 * correlation ids through every service's logs, validation at the edge,
 * and composition when a backend is away.
 */

let stack: Stack;
let receiver: OtlpReceiver;
let alice: Metadata;
let bob: Metadata;
const S = "meshcart.storefront.v1.StorefrontService";

beforeAll(async () => {
  receiver = await OtlpReceiver.start();
  stack = await Stack.withBackends("storefront", {
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
    OTEL_EXPORTER_OTLP_PROTOCOL: "grpc",
    OTEL_BSP_SCHEDULE_DELAY: "100",
  });
  await stack.startStorefront({ GRPC_MAX_MESSAGE_BYTES: String(64 * 1024) });
  alice = bearer(await token("alice"));
  bob = bearer(await token("bob"));
});

afterAll(async () => {
  await stack?.close();
  await receiver?.stop();
});

function unique(prefix: string): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

function placeRequest(overrides: Partial<PlaceOrderRequest> = {}): PlaceOrderRequest {
  return { requestId: unique("req"), items: [{ sku: "MESH-MUG", quantity: 1 }], paymentMethod: "pm_card_visa", ...overrides };
}

async function place(who: Metadata, overrides: Partial<PlaceOrderRequest> = {}): Promise<Order> {
  const { order } = await stack.storefront.placeOrder(placeRequest(overrides), { metadata: who });
  return order!;
}

describe("authentication", () => {
  it("refuses every shopper call without a token, with UNAUTHENTICATED", async () => {
    const sf = stack.storefront;
    const orderId = "ord_00000000000000000000000000000000";
    const calls = [
      (o: object) => sf.placeOrder(placeRequest(), o),
      (o: object) => sf.getOrder({ orderId }, o),
      (o: object) => sf.listOrders({ pageSize: 0, pageToken: "" }, o),
      (o: object) => collect(sf.trackOrder({ orderId }, o)),
      (o: object) => sf.cancelOrder({ orderId, reason: "" }, o),
      (o: object) => sf.getOrderDetails({ orderId }, o),
    ];
    for (const call of calls) {
      const refused = await refusal(call);
      expect(refused.code).toBe(Status.UNAUTHENTICATED);
      expect(refused.details).toMatch(/authorization: Bearer/);
    }
  });

  it("refuses malformed, forged, expired and foreign tokens", async () => {
    const cases: [Metadata, RegExp][] = [
      [bearer("not-a-jwt"), /malformed/],
      [Metadata({ authorization: "Basic YWxpY2U6c2VjcmV0" }), /Bearer/],
      [bearer(await token("alice", { secret: "somebody-elses-signing-key-0123456789" })), /signature/],
      [bearer(await token("alice", { ttlSeconds: 60, now: new Date(Date.now() - 3_600_000) })), /expired/],
      [bearer(await token("alice", { audience: "another-api" })), /aud/],
      [bearer(await token("alice", { issuer: "another-issuer" })), /iss/],
    ];
    for (const [metadata, reason] of cases) {
      const refused = await refusal((o) => stack.storefront.listOrders({ pageSize: 0, pageToken: "" }, o), metadata);
      expect(refused.code).toBe(Status.UNAUTHENTICATED);
      expect(refused.details).toMatch(reason);
    }
  });

  it("lets anyone browse the catalogue, but checks a token that comes along", async () => {
    const { products } = await stack.storefront.listProducts({ pageSize: 5, pageToken: "" });
    expect(products).toHaveLength(5);
    expect(products[0]).toMatchObject({ sku: expect.any(String), price: { currencyCode: "USD" } });
    const { product } = await stack.storefront.getProduct({ sku: "MESH-TSHIRT" }, { metadata: alice });
    expect(product).toMatchObject({ sku: "MESH-TSHIRT", available: expect.any(Number) });
    expect((await refusal((o) => stack.storefront.listProducts({ pageSize: 5, pageToken: "" }, o), bearer("forged"))).code).toBe(Status.UNAUTHENTICATED);
  });
});

describe("a shopper's own orders", () => {
  let order: Order;

  beforeAll(async () => {
    order = await place(alice);
  });

  it("places, reads, tracks and lists an order as the token's customer", async () => {
    expect(order.status).toBe(OrderStatus.ORDER_STATUS_CONFIRMED);
    expect(order.state).toBe("ORDER_STATE_CONFIRMED");
    expect(order.history.map((u) => u.event)).toEqual(["ORDER_PLACED", "STOCK_RESERVED", "PAYMENT_CAPTURED", "RESERVATION_COMMITTED", "ORDER_CONFIRMED"]);
    const internal = (await stack.order.getOrder({ orderId: order.orderId })).order!;
    expect(internal.customerId).toBe("alice");

    const { order: read } = await stack.storefront.getOrder({ orderId: order.orderId }, { metadata: alice });
    expect(read).toMatchObject({ orderId: order.orderId, status: OrderStatus.ORDER_STATUS_CONFIRMED });
    expect(read!.history).toHaveLength(5);

    // The order's steps, then (it is confirmed) its shipment's, until the parcel has left.
    const updates = await collect(stack.storefront.trackOrder({ orderId: order.orderId }, { metadata: alice }));
    expect(updates.filter((u) => u.update).map((u) => u.update!.event)).toEqual(order.history.map((u) => u.event));
    expect(updates.filter((u) => u.shipmentUpdate).map((u) => `${u.shipmentUpdate!.event} ${u.shipmentUpdate!.shipment!.status}`)).toEqual([
      "CREATED PENDING",
      "PACKED PACKED",
      "SHIPPED SHIPPED",
    ]);
    expect(updates.findIndex((u) => u.shipmentUpdate)).toBe(order.history.length);
    expect(updates.at(-1)!.order!.status).toBe(OrderStatus.ORDER_STATUS_CONFIRMED);

    const { orders } = await stack.storefront.listOrders({ pageSize: 100, pageToken: "" }, { metadata: alice });
    expect(orders.map((o) => o.orderId)).toContain(order.orderId);
  });

  it("answers NOT_FOUND for another shopper's order, exactly as for an order that does not exist", async () => {
    const missing = "ord_0123456789abcdef0123456789abcdef";
    const sf = stack.storefront;
    const calls = (orderId: string) => [
      (o: object) => sf.getOrder({ orderId }, o),
      (o: object) => collect(sf.trackOrder({ orderId }, o)),
      (o: object) => sf.cancelOrder({ orderId, reason: "not mine" }, o),
      (o: object) => sf.getOrderDetails({ orderId }, o),
    ];
    for (const call of calls(order.orderId)) {
      const refused = await refusal(call, bob);
      expect(refused.code).toBe(Status.NOT_FOUND);
      expect(refused.details).toBe(`order ${order.orderId} not found`);
    }
    for (const call of calls(missing)) {
      const refused = await refusal(call, bob);
      expect(refused.code).toBe(Status.NOT_FOUND);
      expect(refused.details).toBe(`order ${missing} not found`);
    }
    const { orders } = await sf.listOrders({ pageSize: 100, pageToken: "" }, { metadata: bob });
    expect(orders.map((o) => o.orderId)).not.toContain(order.orderId);
    // bob's cancel did nothing.
    expect((await stack.order.getOrder({ orderId: order.orderId })).order!.state).toBe(OrderState.ORDER_STATE_CONFIRMED);
  });

  it("keeps two shoppers' equal request_ids apart, and replays each shopper's own", async () => {
    const requestId = unique("same-key");
    const forAlice = await place(alice, { requestId });
    const forBob = await place(bob, { requestId });
    expect(forBob.orderId).not.toBe(forAlice.orderId);
    expect((await place(alice, { requestId })).orderId).toBe(forAlice.orderId);
    expect((await stack.order.getOrder({ orderId: forAlice.orderId })).order!.requestId).toBe(`alice:${requestId}`);
    // Same key, different content: refused, with order's own message.
    const refused = await refusal((o) => stack.storefront.placeOrder(placeRequest({ requestId, paymentMethod: "pm_card_mastercard" }), o), alice);
    expect(refused.code).toBe(Status.ALREADY_EXISTS);
    // A customer id with "@" gets a hashed key that order accepts.
    const carol = bearer(await token("carol@example.com"));
    const forCarol = await place(carol, { requestId });
    expect(forCarol.status).toBe(OrderStatus.ORDER_STATUS_CONFIRMED);
    expect((await stack.order.getOrder({ orderId: forCarol.orderId })).order!.requestId).toMatch(/^sf\.[A-Za-z0-9_-]+$/);
  });

  it("uses the x-request-id as the idempotency key when request_id is empty", async () => {
    const requestId = unique("retry");
    const metadata = bearer(await token("alice"), { "x-request-id": requestId });
    const first = (await stack.storefront.placeOrder(placeRequest({ requestId: "" }), { metadata })).order!;
    const again = (await stack.storefront.placeOrder(placeRequest({ requestId: "" }), { metadata })).order!;
    expect(again.orderId).toBe(first.orderId);
    expect((await stack.order.getOrder({ orderId: first.orderId })).order!.requestId).toBe(`alice:${requestId}`);
  });

  it("passes the business outcomes through: declined, out of stock, unknown SKU, not cancellable", async () => {
    const declined = await place(alice, { paymentMethod: "pm_card_declined" });
    expect(declined.status).toBe(OrderStatus.ORDER_STATUS_REJECTED);
    expect(declined.reason).toMatch(/declined/);
    // An unknown SKU is inventory's refusal of the reservation: a rejected order, with the reason.
    const unknown = await place(alice, { items: [{ sku: "NO-SUCH-SKU", quantity: 1 }] });
    expect(unknown.status).toBe(OrderStatus.ORDER_STATUS_REJECTED);
    expect(unknown.reason).toMatch(/NO-SUCH-SKU/);
    const notCancellable = await refusal((o) => stack.storefront.cancelOrder({ orderId: declined.orderId, reason: "" }, o), alice);
    expect(notCancellable.code).toBe(Status.FAILED_PRECONDITION);
  });

  it("cancels the shopper's confirmed order", async () => {
    const placed = await place(alice);
    const { order: cancelled } = await stack.storefront.cancelOrder({ orderId: placed.orderId, reason: "changed my mind" }, { metadata: alice });
    expect(cancelled!.status).toBe(OrderStatus.ORDER_STATUS_CANCELLED);
    expect(cancelled!.history.map((u) => u.event)).toContain("PAYMENT_REFUNDED");
  });
});

describe("validation at the edge", () => {
  it("refuses bad input with every field violation, before any service behind is called", async () => {
    const requestId = unique("bad-input");
    const metadata = bearer(await token("alice"), { "x-request-id": requestId });
    const refused = await refusal(
      (o) =>
        stack.storefront.placeOrder(
          {
            requestId: "has spaces",
            items: [
              { sku: "MESH-MUG", quantity: 0 },
              { sku: "MESH-MUG", quantity: 1 },
            ],
            paymentMethod: "pm_cash",
          },
          o,
        ),
      metadata,
    );
    expect(refused.code).toBe(Status.INVALID_ARGUMENT);
    expect(Object.keys(refused.fields).sort()).toEqual(["items[0].quantity", "items[1].sku", "payment_method", "request_id"]);
    // The storefront logged the refusal; order never heard of the request.
    expect(stack.linesWith("storefront", requestId).some((l) => l.code === "INVALID_ARGUMENT")).toBe(true);
    expect(stack.linesWith("order", requestId)).toEqual([]);

    const others = [
      refusal((o) => stack.storefront.getOrder({ orderId: "" }, o), alice),
      refusal((o) => stack.storefront.cancelOrder({ orderId: "ord_1", reason: "x".repeat(501) }, o), alice),
      refusal((o) => stack.storefront.cancelOrder({ orderId: "ord_1", reason: "nul\u0000" }, o), alice),
      refusal((o) => stack.storefront.listProducts({ pageSize: 101, pageToken: "" }, o)),
      refusal((o) => stack.storefront.getProduct({ sku: "no spaces allowed" }, o)),
    ];
    const fields = (await Promise.all(others)).map((r) => (r.code === Status.INVALID_ARGUMENT ? Object.keys(r.fields) : r.code));
    expect(fields).toEqual([["order_id"], ["reason"], ["reason"], ["page_size"], ["sku"]]);
  });

  it("refuses a request larger than the size limit with RESOURCE_EXHAUSTED", async () => {
    const refused = await refusal((o) => stack.storefront.placeOrder(placeRequest({ paymentMethod: "x".repeat(100 * 1024) }), o), alice);
    expect(refused.code).toBe(Status.RESOURCE_EXHAUSTED);
  });
});

describe("correlation ids", () => {
  it("returns the caller's x-request-id, and every service logs the request with it", async () => {
    const requestId = unique("support-ticket");
    const metadata = bearer(await token("alice"), { "x-request-id": requestId });
    const { result, header } = await withHeader((o) => stack.storefront.placeOrder(placeRequest(), o), metadata);
    expect(result.order!.status).toBe(OrderStatus.ORDER_STATUS_CONFIRMED);
    expect(header.get("x-request-id")).toBe(requestId);
    await withHeader((o) => stack.storefront.getOrderDetails({ orderId: result.order!.orderId }, o), metadata);

    for (const name of ["storefront", "order", "inventory", "payment"] as const) {
      const lines = stack.linesWith(name, requestId);
      expect(lines.length, `${name} logged nothing with correlation_id ${requestId}`).toBeGreaterThan(0);
    }
    // Every service saw the same id; storefront's own lines name the public method.
    expect(stack.linesWith("storefront", requestId).map((l) => l.grpc_method)).toContain(`/${S}/PlaceOrder`);
    expect(stack.linesWith("payment", requestId).map((l) => l.grpc_method)).toContain("/meshcart.payment.v1.PaymentService/Charge");
    expect(stack.linesWith("inventory", requestId).map((l) => l.grpc_method)).toContain("/meshcart.inventory.v1.InventoryService/ReserveStock");

    // In the trace too: one trace from the storefront down, each service's
    // server span carrying the id as an attribute.
    const services = ["storefront", "order", "inventory", "payment"];
    const spans = await receiver.waitFor(`spans of every service with correlation id ${requestId}`, (all) => {
      const tagged = all.filter((span) => span.kind === "SERVER" && span.attributes["meshcart.correlation_id"] === requestId);
      return services.every((service) => tagged.some((span) => span.service === service)) ? tagged : undefined;
    });
    const placing = spans.find((span) => span.service === "storefront" && span.name.endsWith("PlaceOrder"))!;
    expect(placing).toBeDefined();
    for (const service of ["order", "inventory", "payment"]) {
      expect(spans.filter((span) => span.service === service).map((span) => span.traceId)).toContain(placing.traceId);
    }
    // The edge between the processes: PlaceOrder's server span is the parent
    // of the storefront's CreateOrder client span, which is the parent of
    // order's CreateOrder server span.
    const edge = await receiver.waitFor("storefront → order under PlaceOrder", (all) => {
      const client = all.find(
        (span) => span.service === "storefront" && span.kind === "CLIENT" && span.parentSpanId === placing.spanId && span.name.endsWith("CreateOrder"),
      );
      const server = client && all.find((span) => span.service === "order" && span.kind === "SERVER" && span.parentSpanId === client.spanId);
      return server ? { client, server } : undefined;
    });
    expect(edge.server.name).toMatch(/CreateOrder$/);
    expect(edge.server.traceId).toBe(placing.traceId);
  });

  it("makes one when the caller brings none, returns it, and passes it on", async () => {
    const { result, header } = await withHeader((o) => stack.storefront.placeOrder(placeRequest(), o), alice);
    const generated = header.get("x-request-id");
    expect(generated).toMatch(/^[0-9a-f-]{36}$/);
    expect(stack.linesWith("storefront", generated!).length).toBeGreaterThan(0);
    expect(stack.linesWith("order", generated!).length).toBeGreaterThan(0);
    // Without request_id and x-request-id, the generated id was the key.
    expect((await stack.order.getOrder({ orderId: result.order!.orderId })).order!.requestId).toMatch(/^alice:req-/);
  });

  it("returns it on refusals too", async () => {
    const requestId = unique("refused");
    const refused = await refusal((o) => stack.storefront.getOrder({ orderId: "ord_1" }, o), Metadata({ "x-request-id": requestId }));
    expect(refused.code).toBe(Status.UNAUTHENTICATED);
    expect(refused.header.get("x-request-id")).toBe(requestId);
  });
});

describe("metrics", () => {
  it("counts each call it answers and each call it makes behind the edge, by method and code", async () => {
    const before = await stack.metrics("storefront");
    await stack.storefront.listProducts({ pageSize: 2, pageToken: "" });
    await stack.storefront.listProducts({ pageSize: 2, pageToken: "" });
    await place(alice);
    const unknown = await refusal((o) => stack.storefront.getOrder({ orderId: "ord_0000000000000000" }, o), alice);
    expect(unknown.code).toBe(Status.NOT_FOUND);
    const after = await stack.metrics("storefront");

    const delta = (name: string, labels: Record<string, string>) => after.sum(name, labels) - before.sum(name, labels);
    const served = (method: string, code: string) => delta("grpc_server_handled_total", { grpc_service: S, grpc_method: method, grpc_code: code });
    expect(served("ListProducts", "OK")).toBe(2);
    expect(served("PlaceOrder", "OK")).toBe(1);
    expect(served("GetOrder", "NOT_FOUND")).toBe(1);
    // Behind the edge: inventory for the catalogue, order for the checkout and the lookup.
    const made = (service: string, method: string, code: string) =>
      delta("grpc_client_handled_total", {
        grpc_service: `meshcart.${service}.v1.${service[0]!.toUpperCase()}${service.slice(1)}Service`,
        grpc_method: method,
        grpc_code: code,
      });
    expect(made("inventory", "ListProducts", "OK")).toBe(2);
    expect(made("order", "CreateOrder", "OK")).toBe(1);
    expect(made("order", "GetOrder", "NOT_FOUND")).toBe(1);
  });
});

describe("composition", () => {
  it("composes order, payment and products", async () => {
    const placed = await place(alice, {
      items: [
        { sku: "MESH-MUG", quantity: 2 },
        { sku: "MESH-CAP", quantity: 1 },
      ],
    });
    const details = await stack.storefront.getOrderDetails({ orderId: placed.orderId }, { metadata: alice });
    expect(details.order!.orderId).toBe(placed.orderId);
    expect(details.paymentStatus!.code).toBe(Status.OK);
    expect(details.payment).toMatchObject({ status: "CAPTURED", amount: placed.total, chargedByVersion: "v1" });
    expect(details.productsStatus!.code).toBe(Status.OK);
    expect(details.lines.map((l) => [l.line!.sku, l.product?.name])).toEqual([
      ["MESH-MUG", expect.any(String)],
      ["MESH-CAP", expect.any(String)],
    ]);
  });

  it("answers with a part's status instead of failing when payment or inventory is away", async () => {
    const placed = await place(alice);
    const details = () => stack.storefront.getOrderDetails({ orderId: placed.orderId }, { metadata: alice });

    await stack.stop("payment");
    try {
      const partial = await details();
      expect(partial.order!.status).toBe(OrderStatus.ORDER_STATUS_CONFIRMED);
      expect(partial.payment).toBeUndefined();
      expect(partial.paymentStatus).toMatchObject({ code: Status.UNAVAILABLE, message: expect.stringMatching(/payment/) });
      expect(partial.productsStatus!.code).toBe(Status.OK);
      expect(partial.lines[0]!.product?.sku).toBe("MESH-MUG");
    } finally {
      await stack.start("payment");
    }
    // The storefront's channel reconnects (after its backoff).
    await eventually("the payment part to be back", async () => ((await details()).paymentStatus!.code === Status.OK ? true : undefined));

    await stack.stop("inventory");
    try {
      const partial = await details();
      expect(partial.order!.orderId).toBe(placed.orderId);
      expect(partial.productsStatus).toMatchObject({ code: Status.UNAVAILABLE, message: expect.stringMatching(/inventory/) });
      expect(partial.lines).toHaveLength(1);
      expect(partial.lines[0]!.product).toBeUndefined();
      expect(partial.lines[0]!.line!.sku).toBe("MESH-MUG");
      expect(partial.paymentStatus!.code).toBe(Status.OK);
      expect(partial.payment!.status).toBe("CAPTURED");
    } finally {
      await stack.start("inventory");
    }
    await eventually("the products part to be back", async () => ((await details()).productsStatus!.code === Status.OK ? true : undefined));
  });

  it("fails the call when the order itself cannot be read: UNAVAILABLE", async () => {
    const placed = await place(alice);
    await stack.stop("order");
    try {
      const refused = await refusal((o) => stack.storefront.getOrderDetails({ orderId: placed.orderId }, o), alice);
      expect(refused.code).toBe(Status.UNAVAILABLE);
      expect(refused.details).toBe("order is unavailable, try again");
    } finally {
      await stack.start("order");
    }
  });
});

/** Polls until `probe` returns a value; the bound only keeps a broken test from hanging. */
async function eventually<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}
