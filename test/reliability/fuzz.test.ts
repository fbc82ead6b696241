import fc from "fast-check";
import { Status } from "nice-grpc";
import { HealthDefinition } from "nice-grpc-server-health";
import { createClient } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PAYMENT_METHODS, mintShopperToken } from "@meshcart/lib";
import { FulfillmentServiceDefinition } from "@meshcart/contracts/meshcart/fulfillment/v1/fulfillment.js";
import { InventoryServiceDefinition } from "@meshcart/contracts/meshcart/inventory/v1/inventory.js";
import { OrderServiceDefinition } from "@meshcart/contracts/meshcart/order/v1/order.js";
import { PaymentServiceDefinition } from "@meshcart/contracts/meshcart/payment/v1/payment.js";
import { StorefrontServiceDefinition } from "@meshcart/contracts/meshcart/storefront/v1/storefront.js";
import {
  callRaw,
  decode,
  encode,
  fuzzParameters,
  int64Fields,
  meshcartRpcs,
  messageArbitrary,
  unknownFieldPadding,
  withMetadata,
  type Outcome,
  type Rpc,
} from "@meshcart/testing/fuzz.js";
import { Shop, SHOP_TOKENS, type ShopService } from "@meshcart/testing/shop.js";
import { checkInvariants, readSnapshot } from "@meshcart/stack/verify.js";
import { demoCatalogue } from "../../services/inventory/src/catalogue.js";

/**
 * Hostile input against every RPC of every service, all running as real
 * processes over their own databases. The RPCs and the shape of their
 * messages come from the descriptor set (dev/testing/src/fuzz.ts), so a new
 * RPC or field is covered without a change here. For each RPC:
 *
 * - messages generated from its schema (random and edge-case values: empty
 *   and huge strings, NUL, lone surrogates, forged page tokens, negative,
 *   zero and huge numbers, int64 beyond 2^53, unknown enum numbers, huge
 *   repeated fields): never INTERNAL or UNKNOWN, only the statuses of the
 *   error contract, and a refused call writes nothing;
 * - every 64-bit integer field beyond 2^53: INVALID_ARGUMENT naming it;
 * - random bytes as the message: never INTERNAL, INVALID_ARGUMENT when the
 *   generated decoder cannot read them;
 * - a message over GRPC_MAX_MESSAGE_BYTES: RESOURCE_EXHAUSTED;
 *
 * and afterwards every service is SERVING, logged no error, and make
 * verify's invariants hold. FUZZ_RUNS raises the runs per property,
 * FUZZ_SEED replays a failure (its seed is in the report).
 */

const RUNS = fuzzParameters(12);
const RAW_RUNS = fuzzParameters(8);
/** The services' default GRPC_MAX_MESSAGE_BYTES. */
const MAX_MESSAGE_BYTES = 1024 * 1024;
const SHOPPER = "fuzz-shopper";
/** A few keys, so that generated calls also replay and conflict with each other. */
const FRESH_KEYS = Array.from({ length: 8 }, (_, i) => `fuzz-key-${i}`);

/** What a generated message may end with: the error contract, nothing else. */
const CONTRACT = new Set([Status.OK, Status.INVALID_ARGUMENT, Status.NOT_FOUND, Status.FAILED_PRECONDITION, Status.ALREADY_EXISTS]);

const SERVICE_OF: Record<string, ShopService> = {
  [InventoryServiceDefinition.fullName]: "inventory",
  [PaymentServiceDefinition.fullName]: "payment",
  [OrderServiceDefinition.fullName]: "order",
  [StorefrontServiceDefinition.fullName]: "storefront",
  [FulfillmentServiceDefinition.fullName]: "fulfillment",
};

/** The generated decoders the services run, by RPC path: the oracle for "cannot be decoded". */
const DECODERS = new Map<string, (bytes: Uint8Array) => unknown>(
  [InventoryServiceDefinition, PaymentServiceDefinition, OrderServiceDefinition, StorefrontServiceDefinition, FulfillmentServiceDefinition].flatMap(
    (definition) =>
      Object.values(definition.methods).map(
        (method) => [`/${definition.fullName}/${method.name}`, (bytes: Uint8Array) => method.requestType.decode(bytes)] as const,
      ),
  ),
);

let shop: Shop;
let metadata: Record<string, string>;

/** Ids that earlier calls created, so that generated calls reach real records. */
const known = { orders: new Set<string>(), reservations: new Set<string>(), payments: new Set<string>() };
/** Payments the fuzz took directly from payment, outside any order: not the saga's to account for. */
const directPayments = new Set<string>();
const figures = { calls: 0, byCode: new Map<string, number>() };

const vocabulary = {
  strings: () => [
    ...demoCatalogue.map((p) => p.sku),
    ...PAYMENT_METHODS,
    "USD",
    "EUR",
    SHOPPER,
    "fuzz-1",
    ...known.orders,
    ...known.reservations,
    ...known.payments,
  ],
  tokenKeys: ["sku", "createdAt", "orderId", "before"],
  forField: (name: string): readonly string[] => {
    switch (name) {
      case "sku":
        return demoCatalogue.map((p) => p.sku);
      case "payment_method":
        return PAYMENT_METHODS;
      case "currency_code":
        return ["USD", "EUR"];
      case "customer_id":
        return [SHOPPER];
      case "order_id":
        return [...known.orders];
      case "reservation_id":
        return [...known.reservations];
      case "payment_id":
        return [...known.payments];
      case "request_id":
      case "idempotency_key":
      case "restock_id":
        return FRESH_KEYS;
      case "reason":
        return ["changed my mind", "trop cher \u{1F600}", "late\u0000delivery", "x".repeat(500)];
      default:
        return [];
    }
  },
};

function serviceOf(rpc: Rpc): ShopService {
  const service = SERVICE_OF[rpc.service];
  if (!service) throw new Error(`${rpc.service} is not started by this suite: add it to SERVICE_OF`);
  return service;
}

async function call(rpc: Rpc, bytes: Uint8Array): Promise<Outcome> {
  const outcome = await callRaw(shop.channel(serviceOf(rpc)), rpc, bytes, withMetadata(rpc.service === StorefrontServiceDefinition.fullName ? metadata : {}));
  figures.calls += 1;
  const code = Status[outcome.code];
  figures.byCode.set(code, (figures.byCode.get(code) ?? 0) + 1);
  if (outcome.code === Status.OK) harvest(rpc, outcome.responses);
  return outcome;
}

/** Remembers the ids a successful call returned (only where the fuzz may act on them without breaking an order's books). */
function harvest(rpc: Rpc, responses: Uint8Array[]): void {
  for (const bytes of responses) {
    const response = decode(rpc.output, bytes);
    if (rpc.path.endsWith("InventoryService/ReserveStock")) {
      const id = (response.reservation as { reservationId?: string } | undefined)?.reservationId;
      if (id) known.reservations.add(id);
    }
    if (rpc.path.endsWith("PaymentService/Charge")) {
      const id = (response.payment as { paymentId?: string } | undefined)?.paymentId;
      if (id) {
        known.payments.add(id);
        directPayments.add(id);
      }
    }
    if (serviceOf(rpc) === "order" || serviceOf(rpc) === "storefront") {
      const id = (response.order as { orderId?: string } | undefined)?.orderId;
      if (id) known.orders.add(id);
    }
  }
}

/**
 * What a refused call must leave as it was: every table's rows and the
 * books (stock on hand, sold, restocked; final reservation states; refunds).
 * Held stock is left out: the expiry sweeper frees it on its own schedule.
 */
async function fingerprint(): Promise<Record<string, unknown>> {
  const [inventory, payment, order] = await Promise.all([
    shop.sql("inventory").query(`SELECT (SELECT count(*) FROM reservations) AS reservations, (SELECT count(*) FROM reservation_lines) AS lines,
        (SELECT count(*) FROM restocks) AS restocks, (SELECT count(*) FROM products) AS products,
        (SELECT sum(on_hand) FROM products) AS on_hand, (SELECT sum(sold) FROM products) AS sold, (SELECT sum(restocked) FROM products) AS restocked,
        (SELECT count(*) FROM reservations WHERE state IN ('COMMITTED', 'RELEASED', 'RETURNED')) AS settled`),
    shop.sql("payment").query(`SELECT (SELECT count(*) FROM payments) AS payments, (SELECT count(*) FROM refunds) AS refunds,
        (SELECT coalesce(sum(refunded_minor), 0) FROM payments) AS refunded`),
    shop.sql("order").query(`SELECT (SELECT count(*) FROM orders) AS orders, (SELECT count(*) FROM order_events) AS events,
        (SELECT count(*) FROM saga_runs) AS runs`),
  ]);
  return { ...inventory.rows[0], ...payment.rows[0], ...order.rows[0] };
}

async function expectServing(): Promise<void> {
  for (const name of ["inventory", "payment", "order", "storefront"] as const) {
    const health = createClient(HealthDefinition, shop.channel(name));
    expect(await health.check({ service: "" }), `${name} health`).toEqual({ status: 1 });
  }
}

function describeOutcome(rpc: Rpc, outcome: Outcome): string {
  return `${rpc.path} answered ${Status[outcome.code]}: ${outcome.details}`;
}

beforeAll(async () => {
  shop = await Shop.start({ prefix: "fuzz" });
  metadata = { authorization: `Bearer ${await mintShopperToken({ ...SHOP_TOKENS, customerId: SHOPPER, ttlSeconds: 3600 })}` };
  // Real orders to aim at: one confirmed, one declined.
  const placeOrder = meshcartRpcs().find((r) => r.path === `/${StorefrontServiceDefinition.fullName}/PlaceOrder`)!;
  for (const paymentMethod of ["pm_card_visa", "pm_card_declined"]) {
    const outcome = await call(
      placeOrder,
      encode(placeOrder.input, { requestId: `seed-${paymentMethod}`, items: [{ sku: "MESH-MUG", quantity: 1n }], paymentMethod }),
    );
    expect(outcome.code, describeOutcome(placeOrder, outcome)).toBe(Status.OK);
  }
});

afterAll(async () => {
  const summary = [...figures.byCode.entries()].map(([code, n]) => `${code} ${n}`).join(", ");
  console.log(`fuzz: ${meshcartRpcs().length} RPCs, ${figures.calls} calls (${summary})`);
  await shop?.stop();
});

const rpcs = meshcartRpcs();

describe("every RPC is in the descriptor set and served by a service under test", () => {
  it("the descriptor set and the generated definitions agree", () => {
    expect(rpcs.map((r) => r.path).sort()).toEqual([...DECODERS.keys()].sort());
    for (const rpc of rpcs) expect(() => serviceOf(rpc)).not.toThrow();
  });
});

describe.each(rpcs.map((rpc) => [rpc.path, rpc] as const))("%s", (_path, rpc) => {
  it("generated messages: only the error contract's statuses, and a refused call writes nothing", async () => {
    await fc.assert(
      fc.asyncProperty(messageArbitrary(rpc.input, vocabulary), async (init) => {
        const bytes = encode(rpc.input, init);
        const before = await fingerprint();
        const outcome = await call(rpc, bytes);
        if (bytes.length > MAX_MESSAGE_BYTES) {
          expect(outcome.code, describeOutcome(rpc, outcome)).toBe(Status.RESOURCE_EXHAUSTED);
        } else {
          expect(CONTRACT.has(outcome.code), describeOutcome(rpc, outcome)).toBe(true);
        }
        if (outcome.code === Status.INVALID_ARGUMENT) expect(outcome.violations.length, describeOutcome(rpc, outcome)).toBeGreaterThan(0);
        if (outcome.code !== Status.OK) expect(await fingerprint(), `${describeOutcome(rpc, outcome)} and wrote`).toEqual(before);
      }),
      RUNS,
    );
  });

  it("a 64-bit integer beyond 2^53 anywhere in the request: INVALID_ARGUMENT naming the field", async () => {
    for (const value of [2n ** 53n, 2n ** 63n - 1n, -(2n ** 63n)]) {
      for (const { path, init } of int64Fields(rpc.input, value)) {
        const before = await fingerprint();
        const outcome = await call(rpc, encode(rpc.input, init));
        expect(outcome.code, `${path} = ${value}: ${describeOutcome(rpc, outcome)}`).toBe(Status.INVALID_ARGUMENT);
        expect(outcome.violations.map((v) => v.field)).toEqual([path]);
        expect(await fingerprint()).toEqual(before);
      }
    }
  });

  it("random bytes as the message: never INTERNAL, INVALID_ARGUMENT when they cannot be decoded", async () => {
    const decoder = DECODERS.get(rpc.path)!;
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 96 }), async (bytes) => {
        let decodable = true;
        try {
          decoder(bytes);
        } catch {
          decodable = false;
        }
        const before = await fingerprint();
        const outcome = await call(rpc, bytes);
        if (!decodable) expect(outcome.code, describeOutcome(rpc, outcome)).toBe(Status.INVALID_ARGUMENT);
        else expect(CONTRACT.has(outcome.code), describeOutcome(rpc, outcome)).toBe(true);
        if (outcome.code !== Status.OK) expect(await fingerprint()).toEqual(before);
      }),
      RAW_RUNS,
    );
  });

  it("over the size limit: RESOURCE_EXHAUSTED; just under it: judged by the service", async () => {
    const before = await fingerprint();
    const over = await call(rpc, unknownFieldPadding(MAX_MESSAGE_BYTES));
    expect(over.code, describeOutcome(rpc, over)).toBe(Status.RESOURCE_EXHAUSTED);
    const under = await call(rpc, unknownFieldPadding(MAX_MESSAGE_BYTES - 64));
    expect(CONTRACT.has(under.code), describeOutcome(rpc, under)).toBe(true);
    if (under.code !== Status.OK) expect(await fingerprint()).toEqual(before);
    await expectServing();
  });
});

describe("afterwards", () => {
  it("every service is SERVING and logged no error", async () => {
    await expectServing();
    expect(shop.errorLines()).toEqual([]);
  });

  it("make verify's invariants hold (payments the fuzz took directly, outside any order, aside)", async () => {
    const snapshot = await readSnapshot(shop.databaseUrls);
    const report = checkInvariants({ ...snapshot, payments: snapshot.payments.filter((p) => !directPayments.has(p.payment_id)) });
    expect(report.violations).toEqual([]);
    expect(report.checked.orders).toBeGreaterThan(0);
  });
});
