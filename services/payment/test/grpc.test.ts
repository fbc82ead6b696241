import { hostname } from "node:os";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ClientError, Status, createChannel, createClientFactory, type Channel } from "nice-grpc";
import { BadRequest, PreconditionFailure, RichClientError, errorDetailsClientMiddleware } from "nice-grpc-error-details";
import { Database, createLogger } from "@meshcart/lib";
import {
  DeclineReason,
  PaymentServiceDefinition,
  PaymentStatus,
  type ChargeRequest,
  type PaymentServiceClient,
} from "@meshcart/contracts/meshcart/payment/v1/payment.js";
import { createTestDatabase } from "@meshcart/testing/database.js";
import { freePort } from "@meshcart/stack/net.js";
import { startService, type ServiceProcess } from "@meshcart/stack/processes.js";

const ENTRY = fileURLToPath(new URL("../dist/main.js", import.meta.url));
const logger = createLogger({ service: "payment-grpc-test", version: "test", level: "silent" });

interface Running {
  process: ServiceProcess;
  channel: Channel;
  client: PaymentServiceClient;
  adminPort: number;
}

let testDb: { url: string; drop(): Promise<void> };
let db: Database;
let v1: Running;
let v2: Running;

/** Starts the compiled service as its own process, as a pod would run it. */
async function start(version: string, extraEnv: Record<string, string> = {}): Promise<Running> {
  const grpcPort = await freePort();
  const adminPort = await freePort();
  const process = await startService({
    name: `payment-${version}`,
    entry: ENTRY,
    adminPort,
    env: {
      GRPC_PORT: String(grpcPort),
      ADMIN_PORT: String(adminPort),
      DATABASE_URL: testDb.url,
      SERVICE_VERSION: version,
      LOG_LEVEL: "warn",
      ...extraEnv,
    },
  });
  const channel = createChannel(`127.0.0.1:${grpcPort}`);
  const client = createClientFactory().use(errorDetailsClientMiddleware).create(PaymentServiceDefinition, channel);
  return { process, channel, client, adminPort };
}

beforeAll(async () => {
  testDb = await createTestDatabase("payment_grpc");
  // Both versions start together on one database, as during a canary
  // rollout: they apply the migration once between them.
  [v1, v2] = await Promise.all([start("v1", { POD_NAME: "payment-v1-7d9f8-abcde" }), start("v2", { POD_NAME: "" })]);
  db = new Database({ url: testDb.url, poolMax: 2, statementTimeoutMs: 5_000, applicationName: "payment-grpc-test", logger });
});

afterAll(async () => {
  for (const running of [v1, v2]) {
    running?.channel.close();
    await running?.process.stop();
  }
  await db?.close();
  await testDb?.drop();
});

// ---------------------------------------------------------------- helpers

let serial = 0;
function unique(prefix: string): string {
  serial += 1;
  return `${prefix}-${serial}-${Math.random().toString(36).slice(2, 8)}`;
}

function chargeRequest(overrides: Partial<ChargeRequest> = {}): ChargeRequest {
  return {
    idempotencyKey: unique("charge"),
    customerId: unique("customer"),
    amount: { currencyCode: "USD", minorUnits: 1999 },
    paymentMethod: "pm_card_visa",
    orderId: unique("order"),
    ...overrides,
  };
}

/** The status and field violations a call failed with. */
async function failure(call: Promise<unknown>): Promise<{ code: Status; message: string; fields: Record<string, string> }> {
  try {
    await call;
  } catch (error) {
    expect(error).toBeInstanceOf(ClientError);
    const { code, details } = error as ClientError;
    const extra = error instanceof RichClientError ? error.extra : [];
    const fields: Record<string, string> = {};
    for (const detail of extra) {
      if (detail.$type !== BadRequest.$type) continue;
      for (const violation of (detail as BadRequest).fieldViolations) fields[violation.field] = violation.description;
    }
    return { code, message: details, fields };
  }
  throw new Error("expected the call to fail, but it succeeded");
}

async function rowCounts(): Promise<{ payments: number; refunds: number }> {
  const { rows } = await db.query<{ payments: number; refunds: number }>(
    "SELECT (SELECT count(*)::int FROM payments) AS payments, (SELECT count(*)::int FROM refunds) AS refunds",
  );
  return rows[0]!;
}

// ---------------------------------------------------------------- tests

describe("payment over gRPC", () => {
  it("charges and names the version and instance that served it", async () => {
    const request = chargeRequest();
    const response = await v1.client.charge(request);
    expect(response.replayed).toBe(false);
    expect(response.servedBy).toEqual({ version: "v1", instance: "payment-v1-7d9f8-abcde" });
    expect(response.payment).toMatchObject({
      idempotencyKey: request.idempotencyKey,
      orderId: request.orderId,
      customerId: request.customerId,
      amount: { currencyCode: "USD", minorUnits: 1999 },
      paymentMethod: "pm_card_visa",
      status: PaymentStatus.PAYMENT_STATUS_CAPTURED,
      declineReason: DeclineReason.DECLINE_REASON_UNSPECIFIED,
      refunded: { currencyCode: "USD", minorUnits: 0 },
      refunds: [],
      chargedByVersion: "v1",
    });
    expect(response.payment?.createdAt).toBeInstanceOf(Date);

    // Without POD_NAME the instance is host:pid.
    const fromV2 = await v2.client.getPayment({ paymentId: response.payment!.paymentId });
    expect(fromV2.servedBy).toEqual({ version: "v2", instance: `${hostname()}:${v2.process.pid}` });
    expect(fromV2.payment).toEqual(response.payment);
  });

  it("answers a decline as a normal response", async () => {
    const response = await v2.client.charge(chargeRequest({ paymentMethod: "pm_card_insufficient_funds" }));
    expect(response.payment).toMatchObject({
      status: PaymentStatus.PAYMENT_STATUS_DECLINED,
      declineReason: DeclineReason.DECLINE_REASON_INSUFFICIENT_FUNDS,
      chargedByVersion: "v2",
    });
  });

  it("sees v1's idempotency keys from v2: a retry on the canary replays, never charges again", async () => {
    const request = chargeRequest();
    const first = await v1.client.charge(request);
    const retry = await v2.client.charge(request);
    expect(retry.replayed).toBe(true);
    expect(retry.servedBy?.version).toBe("v2");
    expect(retry.payment).toEqual(first.payment);
    expect(retry.payment?.chargedByVersion).toBe("v1");

    const declined = chargeRequest({ paymentMethod: "pm_card_declined" });
    const declinedOnV2 = await v2.client.charge(declined);
    const declinedOnV1 = await v1.client.charge(declined);
    expect(declinedOnV1).toMatchObject({ replayed: true, servedBy: { version: "v1" } });
    expect(declinedOnV1.payment).toEqual(declinedOnV2.payment);
    expect(declinedOnV1.payment?.chargedByVersion).toBe("v2");
  });

  it("v2 declines pm_card_risky with RISK_SCREEN, v1 captures it: the canary's one difference in behaviour", async () => {
    const onV1 = await v1.client.charge(chargeRequest({ paymentMethod: "pm_card_risky" }));
    expect(onV1).toMatchObject({ replayed: false, servedBy: { version: "v1" } });
    expect(onV1.payment).toMatchObject({
      status: PaymentStatus.PAYMENT_STATUS_CAPTURED,
      declineReason: DeclineReason.DECLINE_REASON_UNSPECIFIED,
      chargedByVersion: "v1",
    });

    const onV2 = await v2.client.charge(chargeRequest({ paymentMethod: "pm_card_risky" }));
    expect(onV2).toMatchObject({ replayed: false, servedBy: { version: "v2" } });
    expect(onV2.payment).toMatchObject({
      status: PaymentStatus.PAYMENT_STATUS_DECLINED,
      declineReason: DeclineReason.DECLINE_REASON_RISK_SCREEN,
      refunded: { currencyCode: "USD", minorUnits: 0 },
      chargedByVersion: "v2",
    });
    // v2 declined it, so neither version can refund it.
    const refund = await failure(v1.client.refund({ idempotencyKey: unique("refund"), paymentId: onV2.payment!.paymentId, reason: "" }));
    expect(refund.code).toBe(Status.FAILED_PRECONDITION);

    // The decline is counted by its reason on the version that made it.
    const metrics = await (await fetch(`http://127.0.0.1:${v2.adminPort}/metrics`)).text();
    expect(metrics).toMatch(/^meshcart_payment_declines_total\{[^}]*reason="risk_screen"[^}]*\} [1-9]/m);
  });

  it("replays across versions: key K captured by v1 is the same capture on v2, not a risk decline", async () => {
    const request = chargeRequest({ paymentMethod: "pm_card_risky" });
    const first = await v1.client.charge(request);
    expect(first.payment?.status).toBe(PaymentStatus.PAYMENT_STATUS_CAPTURED);

    const retry = await v2.client.charge(request);
    expect(retry.replayed).toBe(true);
    expect(retry.servedBy?.version).toBe("v2");
    expect(retry.payment).toEqual(first.payment);
    expect(retry.payment).toMatchObject({ status: PaymentStatus.PAYMENT_STATUS_CAPTURED, chargedByVersion: "v1" });

    // And the other way round: v2's risk decline stays a decline on v1.
    const declined = chargeRequest({ paymentMethod: "pm_card_risky" });
    const onV2 = await v2.client.charge(declined);
    const onV1 = await v1.client.charge(declined);
    expect(onV1).toMatchObject({ replayed: true, servedBy: { version: "v1" } });
    expect(onV1.payment).toEqual(onV2.payment);
    expect(onV1.payment?.declineReason).toBe(DeclineReason.DECLINE_REASON_RISK_SCREEN);

    const { rows } = await db.query("SELECT 1 FROM payments WHERE idempotency_key = ANY($1::text[])", [[request.idempotencyKey, declined.idempotencyKey]]);
    expect(rows).toHaveLength(2);
  });

  it("charges once when duplicates race across both versions", async () => {
    const request = chargeRequest();
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? v1 : v2).client.charge(request)));
    expect(results.filter((r) => !r.replayed)).toHaveLength(1);
    expect(new Set(results.map((r) => r.payment?.paymentId)).size).toBe(1);
    const { rows } = await db.query("SELECT 1 FROM payments WHERE idempotency_key = $1", [request.idempotencyKey]);
    expect(rows).toHaveLength(1);
  });

  it("answers ALREADY_EXISTS for a key reused with another amount, on the other version", async () => {
    const request = chargeRequest();
    await v1.client.charge(request);
    const refused = await failure(v2.client.charge({ ...request, amount: { currencyCode: "USD", minorUnits: 2000 } }));
    expect(refused.code).toBe(Status.ALREADY_EXISTS);
    expect(refused.message).toContain(request.idempotencyKey);
    expect(refused.message).toContain("amount.minor_units");
  });

  it("refunds, replays refunds across versions, and refuses what cannot be refunded", async () => {
    const { payment } = await v1.client.charge(chargeRequest({ amount: { currencyCode: "EUR", minorUnits: 1000 } }));
    const paymentId = payment!.paymentId;
    const refundKey = unique("refund");
    const partial = await v1.client.refund({
      idempotencyKey: refundKey,
      paymentId,
      amount: { currencyCode: "EUR", minorUnits: 400 },
      reason: "scratched",
    });
    expect(partial.replayed).toBe(false);
    expect(partial.refund).toMatchObject({ idempotencyKey: refundKey, amount: { currencyCode: "EUR", minorUnits: 400 }, reason: "scratched" });
    expect(partial.payment).toMatchObject({
      status: PaymentStatus.PAYMENT_STATUS_PARTIALLY_REFUNDED,
      refunded: { currencyCode: "EUR", minorUnits: 400 },
    });

    const replay = await v2.client.refund({
      idempotencyKey: refundKey,
      paymentId,
      amount: { currencyCode: "EUR", minorUnits: 400 },
      reason: "scratched",
    });
    expect(replay).toMatchObject({ replayed: true, refund: partial.refund, servedBy: { version: "v2" } });

    const over = await failure(v2.client.refund({ idempotencyKey: unique("refund"), paymentId, amount: { currencyCode: "EUR", minorUnits: 601 }, reason: "" }));
    expect(over.code).toBe(Status.FAILED_PRECONDITION);

    const rest = await v2.client.refund({ idempotencyKey: unique("refund"), paymentId, reason: "" });
    expect(rest.refund?.amount).toEqual({ currencyCode: "EUR", minorUnits: 600 });
    expect(rest.payment).toMatchObject({ status: PaymentStatus.PAYMENT_STATUS_REFUNDED, refunded: { minorUnits: 1000 } });
    expect(rest.payment?.refunds.map((r) => r.refundId)).toEqual([partial.refund!.refundId, rest.refund!.refundId]);

    const nothingLeft = await v1.client.refund({ idempotencyKey: unique("refund"), paymentId, reason: "" }).catch((e: unknown) => e);
    expect(nothingLeft).toBeInstanceOf(RichClientError);
    expect((nothingLeft as RichClientError).code).toBe(Status.FAILED_PRECONDITION);
    const precondition = (nothingLeft as RichClientError).extra.find((d) => d.$type === PreconditionFailure.$type) as PreconditionFailure;
    expect(precondition.violations[0]).toMatchObject({ type: "NOTHING_LEFT_TO_REFUND", subject: paymentId });

    const { payment: declined } = await v1.client.charge(chargeRequest({ paymentMethod: "pm_card_declined" }));
    const ofDecline = await failure(v1.client.refund({ idempotencyKey: unique("refund"), paymentId: declined!.paymentId, reason: "" }));
    expect(ofDecline.code).toBe(Status.FAILED_PRECONDITION);

    const unknown = await failure(v1.client.refund({ idempotencyKey: unique("refund"), paymentId: "pay_nope", reason: "" }));
    expect(unknown.code).toBe(Status.NOT_FOUND);
    expect((await failure(v2.client.getPayment({ paymentId: "pay_nope" }))).code).toBe(Status.NOT_FOUND);

    const reused = await failure(v1.client.refund({ idempotencyKey: refundKey, paymentId, reason: "scratched" }));
    expect(reused.code).toBe(Status.ALREADY_EXISTS);
  });

  it("lists an order's and a customer's payments, newest first, page by page", async () => {
    const customerId = unique("lister");
    const orderId = unique("order");
    const made: string[] = [];
    for (let i = 0; i < 5; i++) {
      const { payment } = await (i % 2 === 0 ? v1 : v2).client.charge(chargeRequest({ customerId, orderId: i < 3 ? orderId : unique("order") }));
      made.push(payment!.paymentId);
    }
    const listed: string[] = [];
    let pageToken = "";
    do {
      const page = await v2.client.listPayments({ filter: { $case: "customerId", value: customerId }, pageSize: 2, pageToken });
      expect(page.servedBy?.version).toBe("v2");
      expect(page.payments.length).toBeLessThanOrEqual(2);
      listed.push(...page.payments.map((p) => p.paymentId));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(listed).toEqual([...made].reverse());

    const byOrder = await v1.client.listPayments({ filter: { $case: "orderId", value: orderId } });
    expect(byOrder.payments.map((p) => p.paymentId)).toEqual(made.slice(0, 3).reverse());
    expect(byOrder.nextPageToken).toBe("");
  });

  it("refuses bad input with every field violation at once, and writes nothing", async () => {
    const { payment } = await v1.client.charge(chargeRequest());
    const before = await rowCounts();

    const everything = await failure(v1.client.charge({ idempotencyKey: "", customerId: "", amount: undefined, paymentMethod: "", orderId: "" }));
    expect(everything.code).toBe(Status.INVALID_ARGUMENT);
    expect(Object.keys(everything.fields).sort()).toEqual(["amount", "customer_id", "idempotency_key", "order_id", "payment_method"]);
    expect(everything.fields.idempotency_key).toBe("is required");

    const missingKey = await failure(v1.client.charge(chargeRequest({ idempotencyKey: "" })));
    expect(missingKey.code).toBe(Status.INVALID_ARGUMENT);
    expect(Object.keys(missingKey.fields)).toEqual(["idempotency_key"]);

    const badKey = await failure(v1.client.charge(chargeRequest({ idempotencyKey: "has spaces", customerId: "x".repeat(65) })));
    expect(Object.keys(badKey.fields).sort()).toEqual(["customer_id", "idempotency_key"]);

    const unknownMethod = await failure(v2.client.charge(chargeRequest({ paymentMethod: "pm_card_amex" })));
    expect(unknownMethod.code).toBe(Status.INVALID_ARGUMENT);
    expect(Object.keys(unknownMethod.fields)).toEqual(["payment_method"]);
    expect(unknownMethod.fields.payment_method).toContain("pm_card_visa");

    for (const [amount, fields] of [
      [{ currencyCode: "USD", minorUnits: 0 }, ["amount.minor_units"]],
      [{ currencyCode: "USD", minorUnits: -100 }, ["amount.minor_units"]],
      [{ currencyCode: "USD", minorUnits: 100_000_001 }, ["amount.minor_units"]],
      [{ currencyCode: "usd", minorUnits: 100 }, ["amount.currency_code"]],
      [{ currencyCode: "", minorUnits: 0 }, ["amount.currency_code", "amount.minor_units"]],
    ] as const) {
      const refused = await failure(v1.client.charge(chargeRequest({ amount })));
      expect(refused.code, JSON.stringify(amount)).toBe(Status.INVALID_ARGUMENT);
      expect(Object.keys(refused.fields).sort(), JSON.stringify(amount)).toEqual(fields);
    }
    const badRefund = await failure(
      v1.client.refund({
        idempotencyKey: "",
        paymentId: payment!.paymentId,
        amount: { currencyCode: "USD", minorUnits: 0 },
        reason: "r".repeat(501),
      }),
    );
    expect(badRefund.code).toBe(Status.INVALID_ARGUMENT);
    expect(Object.keys(badRefund.fields).sort()).toEqual(["amount.minor_units", "idempotency_key", "reason"]);
    const nulReason = await failure(
      v1.client.refund({ idempotencyKey: "nul-reason", paymentId: payment!.paymentId, amount: { currencyCode: "USD", minorUnits: 1 }, reason: "a\u0000b" }),
    );
    expect(nulReason.code).toBe(Status.INVALID_ARGUMENT);
    expect(Object.keys(nulReason.fields)).toEqual(["reason"]);

    const noFilter = await failure(v2.client.listPayments({ pageSize: 101, pageToken: "not-a-token" }));
    expect(noFilter.code).toBe(Status.INVALID_ARGUMENT);
    expect(Object.keys(noFilter.fields).sort()).toEqual(["filter", "page_size", "page_token"]);
    const emptyFilter = await failure(v2.client.listPayments({ filter: { $case: "orderId", value: "" } }));
    expect(Object.keys(emptyFilter.fields)).toEqual(["order_id"]);
    const badCustomer = await failure(v2.client.listPayments({ filter: { $case: "customerId", value: "no spaces allowed" } }));
    expect(Object.keys(badCustomer.fields)).toEqual(["customer_id"]);
    expect((await failure(v2.client.getPayment({ paymentId: "" }))).fields).toEqual({ payment_id: "is required" });

    expect(await rowCounts()).toEqual(before);

    // The bounds are inclusive: the largest amount allowed is taken.
    const largest = await v1.client.charge(chargeRequest({ amount: { currencyCode: "JPY", minorUnits: 100_000_000 } }));
    expect(largest.payment?.amount?.minorUnits).toBe(100_000_000);
  });

  it("logged no error along the way", async () => {
    expect(v1.process.logs().filter((line) => /"level":"(error|fatal)"/.test(line))).toEqual([]);
    expect(v2.process.logs().filter((line) => /"level":"(error|fatal)"/.test(line))).toEqual([]);
  });
});
