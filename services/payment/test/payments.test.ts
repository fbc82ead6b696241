import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConflictError, Database, NotFoundError, RefusedError, createLogger, migrate } from "@meshcart/lib";
import { createTestDatabase } from "@meshcart/testing/database.js";
import { Payments, type ChargeRequest, type Payment } from "../src/payments.js";

const MIGRATIONS = fileURLToPath(new URL("../migrations", import.meta.url));
const logger = createLogger({ service: "payment-test", version: "test", level: "silent" });

let testDb: { url: string; drop(): Promise<void> };
let db: Database;
/** A second pool: another process (the v2 canary) on the same database. */
let db2: Database;
/** What v1 serves. */
let payments: Payments;
/** What v2 serves, on its own connections. */
let canary: Payments;

function openPool(url: string, name: string): Database {
  return new Database({ url, poolMax: 12, statementTimeoutMs: 20_000, applicationName: name, logger });
}

beforeAll(async () => {
  testDb = await createTestDatabase("payment_domain");
  db = openPool(testDb.url, "payment-test-v1");
  db2 = openPool(testDb.url, "payment-test-v2");
  await migrate(db, MIGRATIONS, logger);
  payments = new Payments(db, "v1");
  canary = new Payments(db2, "v2");
});

afterAll(async () => {
  await db2?.close();
  await db?.close();
  await testDb?.drop();
});

// ---------------------------------------------------------------- helpers

let serial = 0;
/** A name no other test uses, so tests sharing the database never see each other's rows. */
function unique(prefix: string): string {
  serial += 1;
  return `${prefix}-${serial}-${Math.random().toString(36).slice(2, 8)}`;
}

function chargeRequest(overrides: Partial<ChargeRequest> = {}): ChargeRequest {
  return {
    idempotencyKey: unique("charge"),
    customerId: unique("customer"),
    currencyCode: "USD",
    amountMinor: 1000,
    paymentMethod: "pm_card_visa",
    orderId: unique("order"),
    ...overrides,
  };
}

async function captured(amountMinor = 1000): Promise<Payment> {
  const { payment } = await payments.charge(chargeRequest({ amountMinor }));
  expect(payment.status).toBe("CAPTURED");
  return payment;
}

async function count(sql: string, values: unknown[]): Promise<number> {
  const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n ${sql}`, values);
  return rows[0]!.n;
}

const paymentRows = (key: string) => count("FROM payments WHERE idempotency_key = $1", [key]);
const refundRows = (paymentId: string) => count("FROM refunds WHERE payment_id = $1", [paymentId]);

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected a rejection, but the call succeeded");
}

// ---------------------------------------------------------------- charges

describe("charge", () => {
  it.each(["pm_card_visa", "pm_card_mastercard"])("captures with %s and records who charged", async (paymentMethod) => {
    const request = chargeRequest({ paymentMethod, amountMinor: 4999, currencyCode: "EUR" });
    const { payment, replayed } = await payments.charge(request);
    expect(replayed).toBe(false);
    expect(payment).toMatchObject({
      idempotencyKey: request.idempotencyKey,
      orderId: request.orderId,
      customerId: request.customerId,
      currencyCode: "EUR",
      amountMinor: 4999,
      paymentMethod,
      status: "CAPTURED",
      declineReason: undefined,
      refundedMinor: 0,
      refunds: [],
      chargedByVersion: "v1",
    });
    expect(payment.paymentId).toMatch(/^pay_[0-9a-f]{32}$/);
    expect(payment.createdAt).toBeInstanceOf(Date);
    expect(await payments.get(payment.paymentId)).toEqual(payment);
  });

  it.each([
    ["pm_card_declined", "CARD_DECLINED"],
    ["pm_card_insufficient_funds", "INSUFFICIENT_FUNDS"],
  ] as const)("records a decline with %s as a normal result, and replays it", async (paymentMethod, reason) => {
    const request = chargeRequest({ paymentMethod });
    const first = await payments.charge(request);
    expect(first.replayed).toBe(false);
    expect(first.payment).toMatchObject({ status: "DECLINED", declineReason: reason, refundedMinor: 0 });
    expect(await paymentRows(request.idempotencyKey)).toBe(1);

    const again = await payments.charge(request);
    expect(again.replayed).toBe(true);
    expect(again.payment).toEqual(first.payment);
  });

  it("returns the first result for the same key, on either version, and charges once", async () => {
    const request = chargeRequest();
    const first = await payments.charge(request);
    const second = await payments.charge({ ...request });
    const onCanary = await canary.charge({ ...request });
    expect(second).toEqual({ payment: first.payment, replayed: true });
    expect(onCanary).toEqual({ payment: first.payment, replayed: true });
    expect(onCanary.payment.chargedByVersion).toBe("v1");
    expect(await paymentRows(request.idempotencyKey)).toBe(1);
  });

  it("screens for risk on v2 only: pm_card_risky is captured by v1 and declined by v2", async () => {
    const onV1 = await payments.charge(chargeRequest({ paymentMethod: "pm_card_risky" }));
    expect(onV1.payment).toMatchObject({ status: "CAPTURED", declineReason: undefined, chargedByVersion: "v1" });

    const request = chargeRequest({ paymentMethod: "pm_card_risky" });
    const onV2 = await canary.charge(request);
    expect(onV2.replayed).toBe(false);
    expect(onV2.payment).toMatchObject({ status: "DECLINED", declineReason: "RISK_SCREEN", refundedMinor: 0, chargedByVersion: "v2" });
    // Stored like any decline: it replays, takes nothing, refunds nothing.
    expect(await payments.get(onV2.payment.paymentId)).toEqual(onV2.payment);
    const error = await rejection(payments.refund({ idempotencyKey: unique("refund"), paymentId: onV2.payment.paymentId, amount: undefined, reason: "" }));
    expect((error as RefusedError).violations[0]?.type).toBe("PAYMENT_DECLINED");

    // Every other method does the same on both versions.
    for (const method of ["pm_card_visa", "pm_card_mastercard", "pm_card_declined", "pm_card_insufficient_funds"]) {
      const [a, b] = await Promise.all([payments.charge(chargeRequest({ paymentMethod: method })), canary.charge(chargeRequest({ paymentMethod: method }))]);
      expect([b.payment.status, b.payment.declineReason], method).toEqual([a.payment.status, a.payment.declineReason]);
    }
  });

  it("keeps the first version's decision for a key: a retry on the other version replays it, never screens again", async () => {
    // Captured by v1, retried on v2: the same capture, not a risk decline.
    const capturedFirst = chargeRequest({ paymentMethod: "pm_card_risky" });
    const onV1 = await payments.charge(capturedFirst);
    expect(onV1.payment.status).toBe("CAPTURED");
    const retryOnV2 = await canary.charge({ ...capturedFirst });
    expect(retryOnV2).toEqual({ payment: onV1.payment, replayed: true });
    expect(retryOnV2.payment).toMatchObject({ status: "CAPTURED", chargedByVersion: "v1" });

    // Declined by v2's screen, retried on v1: the same decline, not a capture.
    const declinedFirst = chargeRequest({ paymentMethod: "pm_card_risky" });
    const onV2 = await canary.charge(declinedFirst);
    const retryOnV1 = await payments.charge({ ...declinedFirst });
    expect(retryOnV1).toEqual({ payment: onV2.payment, replayed: true });
    expect(retryOnV1.payment).toMatchObject({ status: "DECLINED", declineReason: "RISK_SCREEN", chargedByVersion: "v2" });

    for (const key of [capturedFirst.idempotencyKey, declinedFirst.idempotencyKey]) expect(await paymentRows(key)).toBe(1);
  });

  it("decides once when duplicates of a risky charge race across both versions", async () => {
    const request = chargeRequest({ paymentMethod: "pm_card_risky" });
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? payments : canary).charge({ ...request })));
    const first = results.find((r) => !r.replayed)!;
    expect(results.filter((r) => !r.replayed)).toHaveLength(1);
    // Whoever won decided for every caller, on either version.
    expect(first.payment.status).toBe(first.payment.chargedByVersion === "v2" ? "DECLINED" : "CAPTURED");
    for (const result of results) expect(result.payment).toEqual(first.payment);
    expect(await paymentRows(request.idempotencyKey)).toBe(1);
  });

  it("serialises racing duplicates: one charge, every caller sees it", async () => {
    const request = chargeRequest();
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? payments : canary).charge({ ...request })));
    expect(results.filter((r) => !r.replayed)).toHaveLength(1);
    expect(new Set(results.map((r) => r.payment.paymentId)).size).toBe(1);
    expect(await paymentRows(request.idempotencyKey)).toBe(1);
  });

  it("serialises racing duplicate declines too", async () => {
    const request = chargeRequest({ paymentMethod: "pm_card_insufficient_funds" });
    const results = await Promise.all(Array.from({ length: 8 }, () => payments.charge({ ...request })));
    expect(results.filter((r) => !r.replayed)).toHaveLength(1);
    expect(results.every((r) => r.payment.status === "DECLINED")).toBe(true);
    expect(await paymentRows(request.idempotencyKey)).toBe(1);
  });

  it.each([
    ["amount.minor_units", { amountMinor: 1001 }],
    ["amount.currency_code", { currencyCode: "EUR" }],
    ["customer_id", { customerId: "someone-else" }],
    ["payment_method", { paymentMethod: "pm_card_mastercard" }],
    ["order_id", { orderId: "another-order" }],
  ] as const)("refuses the same key with a different %s and writes nothing", async (field, change) => {
    const request = chargeRequest();
    const first = await payments.charge(request);
    const error = await rejection(canary.charge({ ...request, ...change }));
    expect(error).toBeInstanceOf(ConflictError);
    expect((error as Error).message).toContain(request.idempotencyKey);
    expect((error as Error).message).toContain(first.payment.paymentId);
    expect((error as Error).message).toContain(field);
    expect(await paymentRows(request.idempotencyKey)).toBe(1);
    expect(await payments.get(first.payment.paymentId)).toEqual(first.payment);
  });

  it("refuses a changed decline too: a declined key is still used", async () => {
    const request = chargeRequest({ paymentMethod: "pm_card_declined" });
    await payments.charge(request);
    const error = await rejection(payments.charge({ ...request, paymentMethod: "pm_card_visa" }));
    expect(error).toBeInstanceOf(ConflictError);
    expect(await count("FROM payments WHERE idempotency_key = $1 AND status = 'CAPTURED'", [request.idempotencyKey])).toBe(0);
  });

  it("answers NOT_FOUND for an unknown payment", async () => {
    const error = await rejection(payments.get("pay_does_not_exist"));
    expect(error).toBeInstanceOf(NotFoundError);
  });
});

// ---------------------------------------------------------------- refunds

describe("refund", () => {
  it("refunds in part, then the rest by default, moving the status along", async () => {
    const payment = await captured(1000);
    const partial = await payments.refund({
      idempotencyKey: unique("refund"),
      paymentId: payment.paymentId,
      amount: { currencyCode: "USD", minorUnits: 300 },
      reason: "one item damaged",
    });
    expect(partial.replayed).toBe(false);
    expect(partial.refund).toMatchObject({ amountMinor: 300, currencyCode: "USD", reason: "one item damaged", refundedByVersion: "v1" });
    expect(partial.refund.refundId).toMatch(/^ref_[0-9a-f]{32}$/);
    expect(partial.payment).toMatchObject({ status: "PARTIALLY_REFUNDED", refundedMinor: 300 });
    expect(partial.payment.refunds).toEqual([partial.refund]);

    const rest = await canary.refund({ idempotencyKey: unique("refund"), paymentId: payment.paymentId, amount: undefined, reason: "" });
    expect(rest.refund.amountMinor).toBe(700);
    expect(rest.refund.refundedByVersion).toBe("v2");
    expect(rest.payment).toMatchObject({ status: "REFUNDED", refundedMinor: 1000, chargedByVersion: "v1" });
    expect(rest.payment.refunds.map((r) => r.refundId)).toEqual([partial.refund.refundId, rest.refund.refundId]);
    expect(await payments.get(payment.paymentId)).toEqual(rest.payment);
  });

  it("refunds everything at once by default", async () => {
    const payment = await captured(2500);
    const { refund, payment: after } = await payments.refund({
      idempotencyKey: unique("refund"),
      paymentId: payment.paymentId,
      amount: undefined,
      reason: "order cancelled",
    });
    expect(refund.amountMinor).toBe(2500);
    expect(after).toMatchObject({ status: "REFUNDED", refundedMinor: 2500 });
  });

  it("refuses a refund when nothing is left, with or without an amount", async () => {
    const payment = await captured(500);
    await payments.refund({ idempotencyKey: unique("refund"), paymentId: payment.paymentId, amount: undefined, reason: "" });
    for (const amount of [undefined, { currencyCode: "USD", minorUnits: 1 }]) {
      const error = await rejection(payments.refund({ idempotencyKey: unique("refund"), paymentId: payment.paymentId, amount, reason: "" }));
      expect(error).toBeInstanceOf(RefusedError);
      expect((error as RefusedError).violations[0]).toMatchObject({ type: "NOTHING_LEFT_TO_REFUND", subject: payment.paymentId });
    }
    expect(await refundRows(payment.paymentId)).toBe(1);
  });

  it("refuses more than is left and writes nothing", async () => {
    const payment = await captured(1000);
    await payments.refund({
      idempotencyKey: unique("refund"),
      paymentId: payment.paymentId,
      amount: { currencyCode: "USD", minorUnits: 600 },
      reason: "",
    });
    const error = await rejection(
      payments.refund({
        idempotencyKey: unique("refund"),
        paymentId: payment.paymentId,
        amount: { currencyCode: "USD", minorUnits: 401 },
        reason: "",
      }),
    );
    expect(error).toBeInstanceOf(RefusedError);
    expect((error as RefusedError).violations[0]?.type).toBe("REFUND_EXCEEDS_REMAINING");
    expect((error as Error).message).toContain("400");
    expect(await refundRows(payment.paymentId)).toBe(1);
    expect(await payments.get(payment.paymentId)).toMatchObject({ status: "PARTIALLY_REFUNDED", refundedMinor: 600 });
  });

  it("refuses a refund of a declined payment", async () => {
    const { payment } = await payments.charge(chargeRequest({ paymentMethod: "pm_card_declined" }));
    const error = await rejection(payments.refund({ idempotencyKey: unique("refund"), paymentId: payment.paymentId, amount: undefined, reason: "" }));
    expect(error).toBeInstanceOf(RefusedError);
    expect((error as RefusedError).violations[0]?.type).toBe("PAYMENT_DECLINED");
    expect(await refundRows(payment.paymentId)).toBe(0);
  });

  it("refuses a refund in another currency than the payment's", async () => {
    const payment = await captured(1000);
    const error = await rejection(
      payments.refund({
        idempotencyKey: unique("refund"),
        paymentId: payment.paymentId,
        amount: { currencyCode: "EUR", minorUnits: 100 },
        reason: "",
      }),
    );
    expect(error).toBeInstanceOf(RefusedError);
    expect((error as RefusedError).violations[0]?.type).toBe("CURRENCY_MISMATCH");
    expect(await refundRows(payment.paymentId)).toBe(0);
  });

  it("answers NOT_FOUND for an unknown payment", async () => {
    const error = await rejection(payments.refund({ idempotencyKey: unique("refund"), paymentId: "pay_unknown", amount: undefined, reason: "" }));
    expect(error).toBeInstanceOf(NotFoundError);
  });

  it("replays a refund under its key, on either version, and gives back once", async () => {
    const payment = await captured(1000);
    const request = {
      idempotencyKey: unique("refund"),
      paymentId: payment.paymentId,
      amount: { currencyCode: "USD", minorUnits: 250 },
      reason: "late delivery",
    };
    const first = await payments.refund(request);
    const again = await canary.refund({ ...request });
    expect(again.replayed).toBe(true);
    expect(again.refund).toEqual(first.refund);
    expect(again.payment).toEqual(first.payment);
    expect(await refundRows(payment.paymentId)).toBe(1);
    expect((await payments.get(payment.paymentId)).refundedMinor).toBe(250);
  });

  it("replays a refund of everything left as that refund, even once nothing is left", async () => {
    const payment = await captured(800);
    const request = { idempotencyKey: unique("refund"), paymentId: payment.paymentId, amount: undefined, reason: "" };
    const first = await payments.refund(request);
    const again = await payments.refund({ ...request });
    expect(again).toEqual({ ...first, replayed: true });
    expect(await refundRows(payment.paymentId)).toBe(1);
  });

  it("replays a refund whatever the payment's state became since", async () => {
    const payment = await captured(1000);
    const request = {
      idempotencyKey: unique("refund"),
      paymentId: payment.paymentId,
      amount: { currencyCode: "USD", minorUnits: 100 },
      reason: "",
    };
    const first = await payments.refund(request);
    const rest = await payments.refund({ idempotencyKey: unique("refund"), paymentId: payment.paymentId, amount: undefined, reason: "" });
    const again = await payments.refund({ ...request });
    expect(again.replayed).toBe(true);
    expect(again.refund).toEqual(first.refund);
    expect(again.payment).toEqual(rest.payment);
  });

  it.each([
    ["amount.minor_units", { amount: { currencyCode: "USD", minorUnits: 101 } }],
    ["amount", { amount: undefined }],
    ["reason", { reason: "changed my mind" }],
  ] as const)("refuses the same refund key with a different %s", async (field, change) => {
    const payment = await captured(1000);
    const request = {
      idempotencyKey: unique("refund"),
      paymentId: payment.paymentId,
      amount: { currencyCode: "USD", minorUnits: 100 } as { currencyCode: string; minorUnits: number } | undefined,
      reason: "",
    };
    const first = await payments.refund(request);
    const error = await rejection(payments.refund({ ...request, ...change }));
    expect(error).toBeInstanceOf(ConflictError);
    expect((error as Error).message).toContain(first.refund.refundId);
    expect((error as Error).message).toContain(field);
    expect(await refundRows(payment.paymentId)).toBe(1);
  });

  it("refuses a refund key reused for another payment", async () => {
    const one = await captured(1000);
    const other = await captured(1000);
    const key = unique("refund");
    await payments.refund({ idempotencyKey: key, paymentId: one.paymentId, amount: undefined, reason: "" });
    const error = await rejection(payments.refund({ idempotencyKey: key, paymentId: other.paymentId, amount: undefined, reason: "" }));
    expect(error).toBeInstanceOf(ConflictError);
    expect((error as Error).message).toContain("payment_id");
    expect(await refundRows(other.paymentId)).toBe(0);
    expect((await payments.get(other.paymentId)).status).toBe("CAPTURED");
  });

  it("never gives back more than was taken when refunds with different keys race", async () => {
    const payment = await captured(1000);
    const outcomes = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) =>
        (i % 2 === 0 ? payments : canary).refund({
          idempotencyKey: unique("refund"),
          paymentId: payment.paymentId,
          amount: { currencyCode: "USD", minorUnits: 300 },
          reason: "",
        }),
      ),
    );
    const fulfilled = outcomes.filter((o) => o.status === "fulfilled");
    const rejected = outcomes.filter((o) => o.status === "rejected");
    expect(fulfilled).toHaveLength(3);
    for (const o of rejected) expect(o.reason).toBeInstanceOf(RefusedError);
    const after = await payments.get(payment.paymentId);
    expect(after).toMatchObject({ status: "PARTIALLY_REFUNDED", refundedMinor: 900 });
    expect(after.refunds).toHaveLength(3);
    expect(after.refunds.reduce((sum, r) => sum + r.amountMinor, 0)).toBe(900);
  });

  it("gives back exactly once when racing refunds of everything left use different keys", async () => {
    const payment = await captured(1000);
    const outcomes = await Promise.allSettled(
      Array.from({ length: 6 }, (_, i) =>
        (i % 2 === 0 ? payments : canary).refund({
          idempotencyKey: unique("refund"),
          paymentId: payment.paymentId,
          amount: undefined,
          reason: "",
        }),
      ),
    );
    expect(outcomes.filter((o) => o.status === "fulfilled")).toHaveLength(1);
    const after = await payments.get(payment.paymentId);
    expect(after).toMatchObject({ status: "REFUNDED", refundedMinor: 1000 });
    expect(after.refunds).toHaveLength(1);
  });

  it("serialises racing duplicates of one refund: one refund, every caller sees it", async () => {
    const payment = await captured(1000);
    const request = {
      idempotencyKey: unique("refund"),
      paymentId: payment.paymentId,
      amount: { currencyCode: "USD", minorUnits: 400 },
      reason: "",
    };
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? payments : canary).refund({ ...request })));
    expect(results.filter((r) => !r.replayed)).toHaveLength(1);
    expect(new Set(results.map((r) => r.refund.refundId)).size).toBe(1);
    expect(await refundRows(payment.paymentId)).toBe(1);
    expect((await payments.get(payment.paymentId)).refundedMinor).toBe(400);
  });

  it("keeps refunds within the charge even if the code were bypassed (CHECK constraints)", async () => {
    const payment = await captured(1000);
    await expect(db.query("UPDATE payments SET refunded_minor = 1001, status = 'REFUNDED' WHERE payment_id = $1", [payment.paymentId])).rejects.toThrow(
      /refunded_within_amount|status_matches_money/,
    );
    await expect(db.query("UPDATE payments SET refunded_minor = 10 WHERE payment_id = $1", [payment.paymentId])).rejects.toThrow(/status_matches_money/);
  });
});

// ---------------------------------------------------------------- listing

describe("list", () => {
  it("pages through a customer's and an order's payments, newest first", async () => {
    const customerId = unique("lister");
    const orderA = unique("order-a");
    const orderB = unique("order-b");
    const made: Payment[] = [];
    for (let i = 0; i < 7; i++) {
      const method = i === 3 ? "pm_card_declined" : "pm_card_visa";
      const { payment } = await payments.charge(
        chargeRequest({ customerId, orderId: i % 2 === 0 ? orderA : orderB, paymentMethod: method, amountMinor: 100 + i }),
      );
      made.push(payment);
    }
    // Another customer's payment must not show up.
    await payments.charge(chargeRequest({ orderId: unique("order-c") }));
    const refunded = await payments.refund({ idempotencyKey: unique("refund"), paymentId: made[0]!.paymentId, amount: undefined, reason: "" });

    const seen: Payment[] = [];
    let before: number | undefined;
    let pages = 0;
    do {
      const page = await canary.list({ customerId }, 3, before);
      expect(page.payments.length).toBeLessThanOrEqual(3);
      seen.push(...page.payments);
      before = page.next;
      pages += 1;
    } while (before !== undefined);
    expect(pages).toBe(3);
    expect(seen.map((p) => p.paymentId)).toEqual(made.map((p) => p.paymentId).reverse());
    // Listed payments carry their refunds like GetPayment does.
    expect(seen.at(-1)).toEqual(refunded.payment);

    const byOrder = await payments.list({ orderId: orderB }, 20);
    expect(byOrder.next).toBeUndefined();
    expect(byOrder.payments.map((p) => p.paymentId)).toEqual(
      made
        .filter((_, i) => i % 2 === 1)
        .map((p) => p.paymentId)
        .reverse(),
    );

    const exact = await payments.list({ orderId: orderA }, 4);
    expect(exact.payments).toHaveLength(4);
    expect(exact.next).toBeUndefined();

    expect(await payments.list({ customerId: unique("nobody") }, 20)).toEqual({ payments: [], next: undefined });
  });
});
