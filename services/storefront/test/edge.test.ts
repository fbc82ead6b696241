import { ServerError, Status, Metadata } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEADLINE_METADATA_KEY } from "@meshcart/lib";
import {
  FulfillmentServiceDefinition,
  ShipmentEventType,
  ShipmentState,
  type FulfillmentServiceImplementation,
  type Shipment,
} from "@meshcart/contracts/meshcart/fulfillment/v1/fulfillment.js";
import {
  InventoryServiceDefinition,
  type InventoryServiceImplementation,
  type Product as InventoryProduct,
} from "@meshcart/contracts/meshcart/inventory/v1/inventory.js";
import {
  OrderEventType,
  OrderServiceDefinition,
  OrderState,
  type Order as InternalOrder,
  type OrderServiceImplementation,
} from "@meshcart/contracts/meshcart/order/v1/order.js";
import { PaymentServiceDefinition, type PaymentServiceImplementation } from "@meshcart/contracts/meshcart/payment/v1/payment.js";
import { bearer, collect, refusal, Stack, token } from "./support/stack.js";
import { hangUntilCancelled, Stub } from "./support/stubs.js";

/**
 * The storefront's deadlines and composition against stub services that
 * record the deadline each call carried on the wire (grpc-timeout, as
 * grpc-js parsed it) and that can be made slow or silent. No database.
 */

const DEFAULT_MS = 1_500;
const MAX_MS = 3_000;
const STREAM_MAX_MS = 60_000;
const PART_MS = 500;

const product: InventoryProduct = {
  sku: "MESH-MUG",
  name: "Retry Budget Mug",
  description: "Holds 350 ml.",
  unitPrice: { currencyCode: "USD", minorUnits: 1400 },
  stock: { onHand: 10, reserved: 0, available: 10, sold: 0, initial: 10, restocked: 0 },
};

const order: InternalOrder = {
  orderId: "ord_stub",
  requestId: "alice:stub",
  customerId: "alice",
  state: OrderState.ORDER_STATE_CONFIRMED,
  lines: [{ sku: "MESH-MUG", quantity: 1, unitPrice: product.unitPrice, lineTotal: product.unitPrice }],
  total: product.unitPrice,
  paymentMethod: "pm_card_visa",
  reservationId: "ord_stub.stock",
  paymentId: "pay_stub",
  failureReason: "",
  createdAt: new Date(),
  updatedAt: new Date(),
  history: [],
};

const shipment: Shipment = {
  shipmentId: "shp_stub",
  orderId: "ord_stub",
  customerId: "alice",
  state: ShipmentState.SHIPMENT_STATE_SHIPPED,
  lines: [{ sku: "MESH-MUG", quantity: 1 }],
  trackingNumber: "MC0000000001",
  cancelledTooLate: false,
  createdAt: new Date(),
  updatedAt: new Date(),
  history: [],
};

/** How the stub inventory answers GetProduct. */
let getProductMode: "answer" | "hang" = "answer";

let inventory: Stub;
let orders: Stub;
let payment: Stub;
let fulfillment: Stub;
let stack: Stack;
let alice: Metadata;

beforeAll(async () => {
  inventory = await Stub.start(InventoryServiceDefinition, (hooks): Partial<InventoryServiceImplementation> => ({
    async listProducts() {
      return { products: [product], nextPageToken: "" };
    },
    async getProduct(request, context) {
      if (getProductMode === "hang") return hangUntilCancelled(context.signal, "GetProduct", hooks);
      if (request.sku !== product.sku) throw new ServerError(Status.NOT_FOUND, `product ${request.sku} not found`);
      return { product };
    },
  }));
  orders = await Stub.start(OrderServiceDefinition, (): Partial<OrderServiceImplementation> => ({
    async getOrder() {
      return { order };
    },
    async *watchOrder() {
      yield {
        event: {
          sequence: 1,
          type: OrderEventType.ORDER_EVENT_TYPE_ORDER_CONFIRMED,
          stateAfter: OrderState.ORDER_STATE_CONFIRMED,
          detail: "",
          occurredAt: new Date(),
        },
        order,
      };
    },
  }));
  // A payment service that never answers in time: the slow backend.
  payment = await Stub.start(PaymentServiceDefinition, (hooks): Partial<PaymentServiceImplementation> => ({
    async listPayments(_request, context) {
      return hangUntilCancelled(context.signal, "ListPayments", hooks);
    },
  }));
  // A shipment that has left already: TrackOrder's shipment part is one message.
  fulfillment = await Stub.start(FulfillmentServiceDefinition, (): Partial<FulfillmentServiceImplementation> => ({
    async getShipment() {
      return { shipment };
    },
    async *watchShipment() {
      yield {
        event: {
          sequence: 3,
          type: ShipmentEventType.SHIPMENT_EVENT_TYPE_SHIPPED,
          stateAfter: ShipmentState.SHIPMENT_STATE_SHIPPED,
          detail: "",
          occurredAt: new Date(),
        },
        shipment,
      };
    },
  }));
  stack = Stack.empty();
  await stack.startStorefront({
    ORDER_ADDRESS: orders.address,
    FULFILLMENT_ADDRESS: fulfillment.address,
    INVENTORY_ADDRESS: inventory.address,
    PAYMENT_ADDRESS: payment.address,
    STOREFRONT_DEFAULT_DEADLINE_MS: String(DEFAULT_MS),
    STOREFRONT_MAX_DEADLINE_MS: String(MAX_MS),
    STOREFRONT_MAX_STREAM_MS: String(STREAM_MAX_MS),
    STOREFRONT_PART_TIMEOUT_MS: String(PART_MS),
    GRPC_MAX_MESSAGE_BYTES: String(64 * 1024),
  });
  alice = bearer(await token("alice"));
});

afterAll(async () => {
  await stack?.close();
  await Promise.all([inventory?.close(), orders?.close(), payment?.close(), fulfillment?.close()]);
});

/** The wire deadline of the last call a stub received on a method. */
function lastRemaining(stub: Stub, method: string): number {
  const calls = stub.calls(method);
  expect(calls.length, `${method} was not called`).toBeGreaterThan(0);
  return calls.at(-1)!.remainingMs;
}

describe("deadlines", () => {
  it("gives a call that brings no deadline the default, and passes it on the wire", async () => {
    await stack.storefront.listProducts({ pageSize: 0, pageToken: "" });
    const remaining = lastRemaining(inventory, "ListProducts");
    expect(remaining).toBeGreaterThan(0);
    expect(remaining).toBeLessThanOrEqual(DEFAULT_MS);
  });

  // The grpc-timeout header is how every gRPC client sends its deadline.
  it("caps a huge deadline, and passes a shorter one on as it is", async () => {
    const client = stack.storefront;
    await client.listProducts({ pageSize: 0, pageToken: "" }, { metadata: Metadata({ "grpc-timeout": "1H" }) });
    const capped = lastRemaining(inventory, "ListProducts");
    expect(capped).toBeLessThanOrEqual(MAX_MS);
    expect(capped).toBeGreaterThan(DEFAULT_MS);

    await client.listProducts({ pageSize: 0, pageToken: "" }, { metadata: Metadata({ "grpc-timeout": "800m" }) });
    const shorter = lastRemaining(inventory, "ListProducts");
    expect(shorter).toBeGreaterThan(0);
    expect(shorter).toBeLessThanOrEqual(800);
  });

  it("cannot be forged through the kit's internal metadata key", async () => {
    await stack.storefront.listProducts({ pageSize: 0, pageToken: "" }, { metadata: Metadata({ [DEADLINE_METADATA_KEY]: String(Date.now() + 3_600_000) }) });
    expect(lastRemaining(inventory, "ListProducts")).toBeLessThanOrEqual(DEFAULT_MS);
  });

  it("ends a call that brings no deadline when the service behind never answers, and cancels it there", async () => {
    getProductMode = "hang";
    try {
      const refused = await refusal((o) => stack.storefront.getProduct({ sku: "MESH-MUG" }, o));
      expect(refused.code).toBe(Status.DEADLINE_EXCEEDED);
      expect(refused.details).toMatch(/inventory did not answer/);
      expect(inventory.cancelled).toContain("GetProduct");
    } finally {
      getProductMode = "answer";
    }
  });

  it("gives TrackOrder the stream bound, not the unary default that would cut it", async () => {
    const updates = await collect(stack.storefront.trackOrder({ orderId: order.orderId }, { metadata: alice }));
    expect(updates.map((u) => u.update?.event ?? `shipment ${u.shipmentUpdate?.event}`)).toEqual(["ORDER_CONFIRMED", "shipment SHIPPED"]);
    // The order's stream and the shipment's that follows it, both with the stream's bound.
    for (const [stub, method] of [
      [orders, "WatchOrder"],
      [fulfillment, "WatchShipment"],
    ] as const) {
      const remaining = lastRemaining(stub, method);
      expect(remaining, method).toBeGreaterThan(DEFAULT_MS);
      expect(remaining, method).toBeLessThanOrEqual(STREAM_MAX_MS);
    }
    // The ownership check before it is an ordinary call.
    expect(lastRemaining(orders, "GetOrder")).toBeLessThanOrEqual(DEFAULT_MS);
  });

  it("passes the correlation id to the services behind", async () => {
    await stack.storefront.listProducts({ pageSize: 0, pageToken: "" }, { metadata: Metadata({ "x-request-id": "edge-test-1" }) });
    expect(inventory.calls("ListProducts").at(-1)!.requestId).toBe("edge-test-1");
  });
});

describe("composition with a slow backend", () => {
  it("answers within the caller's deadline with the parts it has and a DEADLINE_EXCEEDED part", async () => {
    // The caller waits at most 3 s; payment would never answer.
    const details = await stack.storefront.getOrderDetails(
      { orderId: order.orderId },
      { metadata: Metadata({ authorization: alice.get("authorization")!, "grpc-timeout": "3S" }) },
    );
    expect(details.order!.orderId).toBe(order.orderId);
    expect(details.payment).toBeUndefined();
    expect(details.paymentStatus).toMatchObject({ code: Status.DEADLINE_EXCEEDED, message: expect.stringMatching(/payment/) });
    expect(details.productsStatus!.code).toBe(Status.OK);
    expect(details.lines[0]!.product!.name).toBe(product.name);
    expect(details.shipmentStatus!.code).toBe(Status.OK);
    expect(details.shipment).toMatchObject({ shipmentId: "shp_stub", status: "SHIPPED", trackingNumber: "MC0000000001" });
    expect(lastRemaining(fulfillment, "GetShipment")).toBeLessThanOrEqual(PART_MS);
    // The part was given its own, shorter deadline, and payment was told to stop.
    expect(lastRemaining(payment, "ListPayments")).toBeLessThanOrEqual(PART_MS);
    expect(payment.cancelled).toContain("ListPayments");
  });
});

describe("request size", () => {
  it("refuses a request larger than GRPC_MAX_MESSAGE_BYTES with RESOURCE_EXHAUSTED", async () => {
    const refused = await refusal((o) => stack.storefront.listProducts({ pageSize: 0, pageToken: "x".repeat(100 * 1024) }, o));
    expect(refused.code).toBe(Status.RESOURCE_EXHAUSTED);
  });
});
