import { Metadata, type CallContext } from "nice-grpc";
import type * as Kit from "@meshcart/lib";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { DEADLINE_METADATA_KEY, createLogger, createServiceClient, mintShopperToken, openChannel } from "@meshcart/lib";
import { InventoryServiceDefinition, type InventoryServiceImplementation } from "@meshcart/contracts/meshcart/inventory/v1/inventory.js";
import { OrderServiceDefinition, type OrderServiceImplementation } from "@meshcart/contracts/meshcart/order/v1/order.js";
import { Backends } from "../src/backends.js";
import { storefrontHandlers } from "../src/grpc-handlers.js";
import { TokenVerifier } from "../src/tokens.js";
import { Stub } from "./support/stubs.js";

// The kit's client and channel builders, counted (and otherwise unchanged).
vi.mock("@meshcart/lib", async (importOriginal) => {
  const lib = await importOriginal<typeof Kit>();
  return { ...lib, createServiceClient: vi.fn(lib.createServiceClient), openChannel: vi.fn(lib.openChannel) };
});

const logger = createLogger({ service: "test", version: "test", level: "silent" });
const signing = { secret: "unit-test-signing-key-0123456789abcdef", issuer: "meshcart-test", audience: "meshcart-storefront-test" };
const tokens = new TokenVerifier(signing);
const deadlines = { defaultMs: 1_500, maxMs: 3_000, streamMaxMs: 60_000 };

let inventory: Stub;
let orders: Stub;

beforeAll(async () => {
  inventory = await Stub.start(
    InventoryServiceDefinition,
    () =>
      ({
        listProducts: async () => ({ products: [], nextPageToken: "" }),
      }) satisfies Partial<InventoryServiceImplementation>,
  );
  orders = await Stub.start(
    OrderServiceDefinition,
    () =>
      ({
        listOrders: async () => ({ orders: [], nextPageToken: "" }),
      }) satisfies Partial<OrderServiceImplementation>,
  );
});

afterAll(async () => {
  await Promise.all([inventory?.close(), orders?.close()]);
});

/** A storefront call's context, with the deadline its caller gave (as the kit's interceptor passes it on). */
function incoming(deadline: Date, authorization?: string): CallContext {
  const metadata = Metadata({ [DEADLINE_METADATA_KEY]: String(deadline.getTime()) });
  if (authorization) metadata.set("authorization", authorization);
  return { metadata, peer: "test", header: Metadata(), sendHeader: () => undefined, trailer: Metadata(), signal: new AbortController().signal };
}

describe("the storefront's backends", () => {
  it("builds one client and one channel per backend, whatever the number of calls, each call with its own deadline on the wire", async () => {
    vi.mocked(createServiceClient).mockClear();
    vi.mocked(openChannel).mockClear();
    const backends = new Backends({ order: orders.address, inventory: inventory.address, payment: "127.0.0.1:9", fulfillment: "127.0.0.1:9" }, logger, {
      fallbackTimeoutMs: 60_000,
    });
    try {
      const handlers = storefrontHandlers({ backends, tokens, deadlines, partTimeoutMs: 500, logger });
      expect(vi.mocked(createServiceClient)).toHaveBeenCalledTimes(4);
      expect(vi.mocked(openChannel)).toHaveBeenCalledTimes(4);
      const token = await mintShopperToken({ ...signing, customerId: "alice", ttlSeconds: 60 });

      const calls = 25;
      for (let i = 0; i < calls; i++) {
        // Deadlines of 1.0 s to 2.2 s, each call its own.
        const givenMs = 1_000 + i * 50;
        await handlers.listProducts({ pageSize: 0, pageToken: "" }, incoming(new Date(Date.now() + givenMs)));
        await handlers.listOrders({ pageSize: 0, pageToken: "" }, incoming(new Date(Date.now() + givenMs), `Bearer ${token}`));
        for (const stub of [inventory, orders]) {
          const remaining = stub.received.at(-1)!.remainingMs;
          expect(remaining, `call ${i}`).toBeLessThanOrEqual(givenMs);
          expect(remaining, `call ${i}`).toBeGreaterThan(givenMs - 500);
        }
      }
      expect(inventory.calls("ListProducts")).toHaveLength(calls);
      expect(orders.calls("ListOrders")).toHaveLength(calls);
      // Nothing more was built per call.
      expect(vi.mocked(createServiceClient)).toHaveBeenCalledTimes(4);
      expect(vi.mocked(openChannel)).toHaveBeenCalledTimes(4);
    } finally {
      backends.close();
    }
  });
});
