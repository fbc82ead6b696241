import { fileURLToPath } from "node:url";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ClientError, Status, createChannel, createClient, type Channel } from "nice-grpc";
import { PaymentServiceDefinition, type ChargeRequest, type PaymentServiceClient } from "@meshcart/contracts/meshcart/payment/v1/payment.js";
import { freePort } from "@meshcart/stack/net.js";
import { startService, type ServiceProcess } from "@meshcart/stack/processes.js";
import { OtlpReceiver } from "@meshcart/testing/otlp-receiver.js";
import { parseExposition } from "@meshcart/testing/prometheus.js";
import { createTestDatabase, type TestDatabase } from "@meshcart/testing/database.js";

/**
 * Fault injection in the real payment process (its compiled entry): rules
 * from FAULTS at start, changed at runtime on the fault-control port, seen
 * by direct gRPC calls, on /metrics and as span events; a `before` fault
 * leaves no payment behind, an `after-commit` one leaves exactly one, which
 * a retry with the same idempotency key finds.
 */

const ENTRY = fileURLToPath(new URL("../dist/main.js", import.meta.url));

let testDb: TestDatabase;
let sql: pg.Pool;
let receiver: OtlpReceiver;
let service: ServiceProcess;
let channel: Channel;
let client: PaymentServiceClient;
let adminPort: number;
let faultPort: number;

let counter = 0;
function charge(overrides: Partial<ChargeRequest> = {}): ChargeRequest {
  counter += 1;
  return {
    idempotencyKey: `fault-test-${counter}`,
    customerId: "alice",
    amount: { currencyCode: "USD", minorUnits: 1200 },
    paymentMethod: "pm_card_visa",
    orderId: `ord_fault_${counter}`,
    ...overrides,
  };
}

async function faults(method: "GET" | "PUT" | "DELETE", body?: unknown, path = "/faults"): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`http://127.0.0.1:${faultPort}${path}`, {
    method,
    ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) }),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

/** The status of a call: OK, or the code it failed with. */
async function outcome(call: Promise<unknown>): Promise<Status> {
  try {
    await call;
    return Status.OK;
  } catch (error) {
    if (error instanceof ClientError) return error.code;
    throw error;
  }
}

async function rowsWithKey(key: string): Promise<number> {
  const { rows } = await sql.query<{ n: number }>("SELECT count(*)::int AS n FROM payments WHERE idempotency_key = $1", [key]);
  return rows[0]!.n;
}

async function metrics() {
  const response = await fetch(`http://127.0.0.1:${adminPort}/metrics`);
  return parseExposition(await response.text());
}

beforeAll(async () => {
  testDb = await createTestDatabase("payment_faults");
  sql = new pg.Pool({ connectionString: testDb.url, max: 2 });
  // The database is dropped WITH (FORCE) at the end: a session it terminates must not be an uncaught error.
  sql.on("error", () => undefined);
  receiver = await OtlpReceiver.start();
  const grpcPort = await freePort();
  adminPort = await freePort();
  faultPort = await freePort();
  service = await startService({
    name: "payment",
    entry: ENTRY,
    adminPort,
    readyTimeoutMs: 30_000,
    env: {
      GRPC_PORT: String(grpcPort),
      ADMIN_PORT: String(adminPort),
      DATABASE_URL: testDb.url,
      LOG_LEVEL: "warn",
      FAULT_CONTROL_PORT: String(faultPort),
      // From the start: Refund always fails (Charge is not touched).
      FAULTS: JSON.stringify({ Refund: { rate: 1, code: "INTERNAL" } }),
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      OTEL_EXPORTER_OTLP_PROTOCOL: "grpc",
      OTEL_BSP_SCHEDULE_DELAY: "50",
    },
  });
  channel = createChannel(`127.0.0.1:${grpcPort}`);
  client = createClient(PaymentServiceDefinition, channel);
});

afterAll(async () => {
  channel?.close();
  await service?.stop();
  await receiver?.stop();
  await sql?.end();
  await testDb?.drop();
});

describe("payment fault injection", () => {
  it("applies FAULTS from the start and shows the rules on the control port", async () => {
    const state = await faults("GET");
    expect(state.status).toBe(200);
    expect(state.body).toMatchObject({
      service: "payment",
      methods: ["Charge", "GetPayment", "ListPayments", "Refund"],
      faults: { Refund: { rate: 1, code: "INTERNAL", latencyMs: 0, jitterMs: 0, mode: "before" } },
    });
    const { payment } = await client.charge(charge());
    expect(await outcome(client.refund({ idempotencyKey: `refund-${counter}`, paymentId: payment!.paymentId, reason: "" }))).toBe(Status.INTERNAL);
    await faults("DELETE");
  });

  it("changes the error rate at runtime, without a restart, and back", async () => {
    const errorsOf = async (calls: number) => {
      const codes = await Promise.all(Array.from({ length: calls }, () => outcome(client.charge(charge()))));
      return codes.filter((c) => c !== Status.OK);
    };
    expect(await errorsOf(20)).toEqual([]);

    expect((await faults("PUT", { Charge: { rate: 1, code: "UNAVAILABLE" } })).status).toBe(200);
    const all = await errorsOf(20);
    expect(all).toHaveLength(20);
    expect(new Set(all)).toEqual(new Set([Status.UNAVAILABLE]));

    // The shorthand: a bare number is a rate of UNAVAILABLE, before.
    expect((await faults("PUT", { Charge: 0.5 })).body).toMatchObject({ faults: { Charge: { rate: 0.5, code: "UNAVAILABLE", mode: "before" } } });
    const half = (await errorsOf(80)).length;
    expect(half).toBeGreaterThan(16);
    expect(half).toBeLessThan(64);

    expect((await faults("DELETE")).body).toMatchObject({ faults: {} });
    expect(await errorsOf(20)).toEqual([]);
    expect(service.logs().join("\n")).toMatch(/fault injection on: Charge 50% UNAVAILABLE before/);
  });

  it("refuses bad rules with every problem, changing nothing", async () => {
    await faults("PUT", { GetPayment: { latencyMs: 1 } });
    const refused = await faults("PUT", { Chrage: 0.5, Charge: { rate: 2, code: "NOPE", mode: "later" } });
    expect(refused.status).toBe(400);
    expect(refused.body.problems).toEqual(
      expect.arrayContaining([
        expect.stringContaining("Charge.rate: must be a number from 0 to 1"),
        expect.stringContaining("Charge.code: must be a gRPC status name"),
        expect.stringContaining('Charge.mode: must be "before" or "after-commit"'),
      ]),
    );
    const unknown = await faults("PUT", { Chrage: 0.5 });
    expect(unknown.status).toBe(400);
    expect(unknown.body.problems).toEqual([expect.stringContaining("Chrage: payment has no such method; it has Charge, GetPayment, ListPayments, Refund")]);
    expect((await faults("PUT", "not json")).status).toBe(400);
    expect((await faults("GET")).body.faults).toEqual({ GetPayment: { rate: 0, code: "UNAVAILABLE", latencyMs: 1, jitterMs: 0, mode: "before" } });
    await faults("DELETE");
  });

  it("sets and removes one method's rule on /faults/<Method>", async () => {
    await faults("PUT", { GetPayment: { latencyMs: 5 } });
    expect((await faults("PUT", { rate: 1, code: "RESOURCE_EXHAUSTED" }, "/faults/ListPayments")).body.faults).toMatchObject({
      GetPayment: { latencyMs: 5 },
      ListPayments: { rate: 1, code: "RESOURCE_EXHAUSTED" },
    });
    expect(await outcome(client.listPayments({ filter: { $case: "customerId", value: "alice" }, pageSize: 1, pageToken: "" }))).toBe(Status.RESOURCE_EXHAUSTED);
    expect((await faults("DELETE", undefined, "/faults/ListPayments")).body.faults).toEqual({
      GetPayment: { rate: 0, code: "UNAVAILABLE", latencyMs: 5, jitterMs: 0, mode: "before" },
    });
    await faults("DELETE");
  });

  it("adds latency: fixed plus jitter", async () => {
    await faults("PUT", { ListPayments: { latencyMs: 150, jitterMs: 50 } });
    const started = performance.now();
    await client.listPayments({ filter: { $case: "customerId", value: "alice" }, pageSize: 1, pageToken: "" });
    expect(performance.now() - started).toBeGreaterThanOrEqual(145);
    expect((await metrics()).sum("meshcart_fault_delays_total", { method: "ListPayments" })).toBe(1);
    await faults("DELETE");
  });

  it("a fault before the side effect leaves no payment behind", async () => {
    await faults("PUT", { Charge: { rate: 1, mode: "before" } });
    const request = charge();
    expect(await outcome(client.charge(request))).toBe(Status.UNAVAILABLE);
    expect(await rowsWithKey(request.idempotencyKey)).toBe(0);
    await faults("DELETE");
    // Retrying is safe: the first and only charge.
    const retried = await client.charge(request);
    expect(retried.replayed).toBe(false);
    expect(await rowsWithKey(request.idempotencyKey)).toBe(1);
  });

  it("a fault after commit leaves the charge, and a retry with the same key finds it: exactly one effect", async () => {
    await faults("PUT", { Charge: { rate: 1, code: "UNAVAILABLE", mode: "after-commit" } });
    const before = await metrics();
    const request = charge();
    expect(await outcome(client.charge(request))).toBe(Status.UNAVAILABLE);
    // The caller saw a failure, yet the charge was taken.
    expect(await rowsWithKey(request.idempotencyKey)).toBe(1);
    // A retry while the fault stays: fails again, still one charge.
    expect(await outcome(client.charge(request))).toBe(Status.UNAVAILABLE);
    expect(await rowsWithKey(request.idempotencyKey)).toBe(1);

    await faults("DELETE");
    const retried = await client.charge(request);
    expect(retried.replayed).toBe(true);
    expect(await rowsWithKey(request.idempotencyKey)).toBe(1);
    const { payments } = await client.listPayments({ filter: { $case: "orderId", value: request.orderId }, pageSize: 10, pageToken: "" });
    expect(payments.map((p) => p.paymentId)).toEqual([retried.payment!.paymentId]);

    const labels = { method: "Charge", mode: "after-commit", code: "UNAVAILABLE" };
    const after = await metrics();
    expect(after.sum("meshcart_faults_injected_total", labels) - before.sum("meshcart_faults_injected_total", labels)).toBe(2);
    // And on the call's server span.
    const event = await receiver.waitFor("a fault.injected span event of Charge", (spans) =>
      spans
        .filter((s) => s.service === "payment" && s.kind === "SERVER")
        .flatMap((s) => s.events)
        .find((e) => e.name === "fault.injected" && e.attributes["meshcart.fault.mode"] === "after-commit"),
    );
    expect(event.attributes).toMatchObject({ "meshcart.fault.method": "Charge", "meshcart.fault.code": "UNAVAILABLE", "meshcart.fault.rate": 1 });
  });

  it("leaves health and reflection alone, even under a rule for every method", async () => {
    await faults("PUT", { "*": 1 });
    expect(await outcome(client.getPayment({ paymentId: "pay_missing" }))).toBe(Status.UNAVAILABLE);
    const ready = await fetch(`http://127.0.0.1:${adminPort}/readyz`);
    expect(ready.status).toBe(200);
    await faults("DELETE");
    expect(await outcome(client.getPayment({ paymentId: "pay_missing" }))).toBe(Status.NOT_FOUND);
  });
});

describe("payment with a wrong FAULTS", () => {
  it("does not start, and says why", async () => {
    const adminPort = await freePort();
    const started = startService({
      name: "payment-bad-faults",
      entry: ENTRY,
      adminPort,
      readyTimeoutMs: 30_000,
      env: {
        GRPC_PORT: String(await freePort()),
        ADMIN_PORT: String(adminPort),
        DATABASE_URL: testDb.url,
        LOG_LEVEL: "warn",
        FAULTS: '{"Charge":{"rate":1.5}}',
      },
    });
    await expect(started).rejects.toThrow(/exited before it was ready \(code 2[\s\S]*FAULTS: Charge\.rate: must be a number from 0 to 1/);
  });

  it("names the methods it has when a rule names another", async () => {
    const adminPort = await freePort();
    const started = startService({
      name: "payment-unknown-method",
      entry: ENTRY,
      adminPort,
      readyTimeoutMs: 30_000,
      env: {
        GRPC_PORT: String(await freePort()),
        ADMIN_PORT: String(adminPort),
        DATABASE_URL: testDb.url,
        LOG_LEVEL: "warn",
        FAULTS: '{"Reserve":0.5}',
      },
    });
    await expect(started).rejects.toThrow(/FAULTS: Reserve: payment has no such method; it has Charge, GetPayment, ListPayments, Refund/);
  });
});
