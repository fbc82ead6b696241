import { createClient, Status } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InventoryServiceDefinition } from "@meshcart/contracts/meshcart/inventory/v1/inventory.js";
import { PaymentServiceDefinition } from "@meshcart/contracts/meshcart/payment/v1/payment.js";
import { Shop } from "@meshcart/testing/shop.js";

/**
 * A retry after the first attempt committed, for every mutating RPC of
 * inventory and payment (the calls the saga and its compensations make,
 * and the operator's Restock): the "after-commit" fault does the work, then
 * fails the call, as a lost answer would. Retries while the fault stays,
 * then racing retries once it is lifted, must all land on that one effect.
 * The services run as processes over their own databases; the effects are
 * read from those databases.
 */

const SKU = "MESH-NOTEBOOK";
const RACING_RETRIES = 5;

let shop: Shop;
let inventory: ReturnType<typeof createClient<typeof InventoryServiceDefinition>>;
let payment: ReturnType<typeof createClient<typeof PaymentServiceDefinition>>;
let counter = 0;

beforeAll(async () => {
  shop = await Shop.start({ prefix: "retries", services: ["inventory", "payment"] });
  inventory = createClient(InventoryServiceDefinition, shop.channel("inventory"));
  payment = createClient(PaymentServiceDefinition, shop.channel("payment"));
}, 120_000);

afterAll(async () => {
  await shop?.stop();
});

async function code(call: Promise<unknown>): Promise<Status> {
  try {
    await call;
    return Status.OK;
  } catch (error) {
    return (error as { code?: Status }).code ?? Status.UNKNOWN;
  }
}

/** The product's ledger, and whether it balances. */
async function ledger() {
  const { rows } = await shop.sql("inventory").query("select initial, restocked, on_hand, reserved, sold from products where sku = $1", [SKU]);
  const p = rows[0] as Record<string, string>;
  const [initial, restocked, onHand, reserved, sold] = [p.initial, p.restocked, p.on_hand, p.reserved, p.sold].map(Number) as [
    number,
    number,
    number,
    number,
    number,
  ];
  expect(initial + restocked, "initial + restocked = on_hand + sold").toBe(onHand + sold);
  expect(reserved).toBeGreaterThanOrEqual(0);
  expect(reserved).toBeLessThanOrEqual(onHand);
  return { restocked, onHand, reserved, sold };
}

async function reservation(id: string) {
  const { rows } = await shop.sql("inventory").query("select state from reservations where reservation_id = $1", [id]);
  return { ledger: await ledger(), states: rows.map((r: { state: string }) => r.state) };
}

async function payments(key: string) {
  const { rows } = await shop.sql("payment").query("select payment_id, amount_minor, status from payments where idempotency_key = $1", [key]);
  return rows;
}

async function refunds(paymentId: string) {
  const { rows } = await shop.sql("payment").query("select idempotency_key, amount_minor from refunds where payment_id = $1 order by seq", [paymentId]);
  return rows;
}

const reserve = (id: string) => inventory.reserveStock({ reservationId: id, items: [{ sku: SKU, quantity: 2 }] });
const charge = (key: string) =>
  payment.charge({
    idempotencyKey: key,
    customerId: "retry-shopper",
    amount: { currencyCode: "USD", minorUnits: 2400 },
    paymentMethod: "pm_card_visa",
    orderId: `ord_${key}`,
  });

interface Case {
  service: "inventory" | "payment";
  method: string;
  /** What must exist before the call (a hold to commit, a charge to refund); returns what the call needs. */
  prepare(id: string): Promise<string>;
  call(id: string, prepared: string): Promise<unknown>;
  /** The call's effect, as the database holds it. */
  effect(id: string, prepared: string): Promise<unknown>;
}

const cases: Case[] = [
  { service: "inventory", method: "ReserveStock", prepare: async () => "", call: (id) => reserve(id), effect: (id) => reservation(id) },
  {
    service: "inventory",
    method: "CommitReservation",
    prepare: async (id) => {
      await reserve(id);
      return "";
    },
    call: (id) => inventory.commitReservation({ reservationId: id }),
    effect: (id) => reservation(id),
  },
  {
    service: "inventory",
    method: "ReleaseReservation",
    prepare: async (id) => {
      await reserve(id);
      return "";
    },
    call: (id) => inventory.releaseReservation({ reservationId: id }),
    effect: (id) => reservation(id),
  },
  {
    service: "inventory",
    method: "ReturnStock",
    prepare: async (id) => {
      await reserve(id);
      await inventory.commitReservation({ reservationId: id });
      return "";
    },
    call: (id) => inventory.returnStock({ reservationId: id }),
    effect: (id) => reservation(id),
  },
  {
    service: "inventory",
    method: "Restock",
    prepare: async () => "",
    call: (id) => inventory.restock({ restockId: id, sku: SKU, quantity: 7 }),
    effect: async (id) => ({
      ledger: await ledger(),
      rows: (await shop.sql("inventory").query("select quantity from restocks where restock_id = $1", [id])).rows,
    }),
  },
  { service: "payment", method: "Charge", prepare: async () => "", call: (id) => charge(id), effect: (id) => payments(id) },
  {
    service: "payment",
    method: "Refund",
    prepare: async (id) => (await charge(`${id}.charge`)).payment!.paymentId,
    call: (id, paymentId) => payment.refund({ idempotencyKey: id, paymentId, amount: { currencyCode: "USD", minorUnits: 1000 }, reason: "retried refund" }),
    effect: async (_id, paymentId) => ({ refunds: await refunds(paymentId), payment: (await payment.getPayment({ paymentId })).payment?.refunded }),
  },
];

describe("a retry after the first attempt committed has no second effect", () => {
  it.each(cases)("$service $method", async (c) => {
    const id = `retry-${c.method}-${++counter}`;
    const prepared = await c.prepare(id);
    const before = await c.effect(id, prepared);

    await shop.faults(c.service, { [c.method]: { rate: 1, code: "UNAVAILABLE", mode: "after-commit" } });
    try {
      // The caller sees a failure, yet the work is done.
      expect(await code(c.call(id, prepared))).toBe(Status.UNAVAILABLE);
      const once = await c.effect(id, prepared);
      expect(once).not.toEqual(before);
      // Retried while the answer keeps getting lost: still that one effect.
      expect(await code(c.call(id, prepared))).toBe(Status.UNAVAILABLE);
      expect(await c.effect(id, prepared)).toEqual(once);
    } finally {
      await shop.faults(c.service, {});
    }

    const once = await c.effect(id, prepared);
    // Racing retries once the answers get through: each is answered, none acts again.
    const codes = await Promise.all(Array.from({ length: RACING_RETRIES }, () => code(c.call(id, prepared))));
    expect(codes).toEqual(codes.map(() => Status.OK));
    expect(await c.effect(id, prepared)).toEqual(once);
  });

  it("left no service logging an error", () => {
    expect(shop.errorLines()).toEqual([]);
  });
});
