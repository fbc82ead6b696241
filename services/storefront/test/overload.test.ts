import { Status, type CallContext } from "nice-grpc";
import { RetryInfo, RichClientError } from "nice-grpc-error-details";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { resourceExhausted } from "@meshcart/lib";
import { InventoryServiceDefinition } from "@meshcart/contracts/meshcart/inventory/v1/inventory.js";
import { OrderServiceDefinition, type OrderServiceImplementation } from "@meshcart/contracts/meshcart/order/v1/order.js";
import { PaymentServiceDefinition } from "@meshcart/contracts/meshcart/payment/v1/payment.js";
import { bearer, refusal, Stack, token, type Refusal } from "./support/stack.js";
import { hangUntilCancelled, Stub } from "./support/stubs.js";

/**
 * The edge under overload, against a stub order service: a call beyond
 * STOREFRONT_MAX_CALLS and the queue is refused with RESOURCE_EXHAUSTED
 * before it reaches the service behind, and a RESOURCE_EXHAUSTED from the
 * service behind reaches the shopper as it is (never UNAVAILABLE, which
 * reads as an outage and which the mesh retries).
 */

/** How the stub order service answers CreateOrder. */
let createMode: "hang" | "shed" = "hang";
const SHED_MESSAGE = "the shop is busy: checkouts are at capacity (32 in progress, 16 waiting); nothing was done, try again in about 200 ms";

let orders: Stub;
let inventory: Stub;
let payment: Stub;
let stack: Stack;

beforeAll(async () => {
  orders = await Stub.start(OrderServiceDefinition, (hooks): Partial<OrderServiceImplementation> => ({
    async createOrder(_request, context: CallContext) {
      if (createMode === "shed") throw resourceExhausted(SHED_MESSAGE, 200);
      return hangUntilCancelled(context.signal, "CreateOrder", hooks);
    },
  }));
  inventory = await Stub.start(InventoryServiceDefinition, () => ({}));
  payment = await Stub.start(PaymentServiceDefinition, () => ({}));
  stack = Stack.empty();
  await stack.startStorefront({
    ORDER_ADDRESS: orders.address,
    INVENTORY_ADDRESS: inventory.address,
    PAYMENT_ADDRESS: payment.address,
    STOREFRONT_MAX_CALLS: "1",
    STOREFRONT_CALL_QUEUE: "0",
  });
});

afterAll(async () => {
  await stack?.close();
  await Promise.all([orders?.close(), inventory?.close(), payment?.close()]);
});

const place = (requestId: string) => async (metadata: Awaited<ReturnType<typeof bearer>>, signal?: AbortSignal) =>
  stack.storefront.placeOrder(
    { requestId, items: [{ sku: "MESH-MUG", quantity: 1 }], paymentMethod: "pm_card_visa" },
    { metadata, ...(signal ? { signal } : {}) },
  );

function retryDelayMs(error: unknown): number | undefined {
  const info = error instanceof RichClientError ? error.extra.find((d) => d.$type === RetryInfo.$type) : undefined;
  const delay = (info as RetryInfo | undefined)?.retryDelay;
  return delay ? delay.seconds * 1_000 + delay.nanos / 1e6 : undefined;
}

async function shed(call: () => Promise<unknown>): Promise<{ refused: Refusal; retryAfterMs: number | undefined }> {
  try {
    await call();
  } catch (error) {
    return { refused: await refusal(() => Promise.reject(error)), retryAfterMs: retryDelayMs(error) };
  }
  throw new Error("expected a refusal");
}

describe("the edge at capacity", () => {
  it("refuses a call beyond its limit with RESOURCE_EXHAUSTED, a retry hint, and without calling the service behind", async () => {
    createMode = "hang";
    const alice = bearer(await token("alice"));
    const holding = new AbortController();
    const first = place("overload-first")(alice, holding.signal).catch((error: unknown) => error);
    // The first call is with the order service (and holds the one place) before the second comes.
    for (let i = 0; i < 200 && orders.calls("CreateOrder").length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 25));
    expect(orders.calls("CreateOrder")).toHaveLength(1);

    const { refused, retryAfterMs } = await shed(() => place("overload-second")(alice));
    expect(refused.code).toBe(Status.RESOURCE_EXHAUSTED);
    expect(refused.details).toMatch(/^the shop is busy: calls are at capacity \(1 in progress, 0 waiting\); nothing was done, try again in about/);
    expect(retryAfterMs).toBeGreaterThan(0);
    // Refused before it reached order: no second CreateOrder.
    expect(orders.calls("CreateOrder")).toHaveLength(1);

    holding.abort();
    await first;
    // The place is free again once the cancelled call has left the storefront: a later call reaches order.
    createMode = "shed";
    for (let i = 0; i < 200 && orders.calls("CreateOrder").length < 2; i++) {
      await shed(() => place(`overload-third-${i}`)(alice));
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    expect(orders.calls("CreateOrder")).toHaveLength(2);
  });

  it("passes the service's RESOURCE_EXHAUSTED through with its message and RetryInfo", async () => {
    createMode = "shed";
    const { refused, retryAfterMs } = await shed(async () => place("overload-passed")(bearer(await token("bob"))));
    expect(refused.code).toBe(Status.RESOURCE_EXHAUSTED);
    expect(refused.details).toBe(SHED_MESSAGE);
    expect(retryAfterMs).toBe(200);
    const metrics = await stack.metrics("storefront");
    expect(metrics.sum("meshcart_admission_shed_total", { scope: "calls", reason: "queue_full" })).toBeGreaterThanOrEqual(1);
  });
});
