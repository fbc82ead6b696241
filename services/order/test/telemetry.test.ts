import { randomBytes } from "node:crypto";
import { Metadata } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { OrderState, type CreateOrderRequest } from "@meshcart/contracts/meshcart/order/v1/order.js";
import { OtlpReceiver, type ReceivedSpan } from "@meshcart/testing/otlp-receiver.js";
import { TestDatabases } from "./support/database.js";
import { Mesh, refusal } from "./support/services.js";
import { unique } from "./support/wait.js";
import { sleep } from "@meshcart/lib";

/**
 * Traces and logs across processes: inventory, payment and order run as
 * their compiled entry points (the form the images run), exporting over
 * OTLP/gRPC to a real OTLP receiver in the test. One CreateOrder must be one
 * trace: the caller's traceparent, order's server span, the saga's spans,
 * the client spans and their server spans in inventory and payment, and the
 * Postgres spans under them, each with the order's domain attributes.
 */

vi.setConfig({ testTimeout: 60_000, hookTimeout: 120_000 });

const databases = new TestDatabases();
let receiver: OtlpReceiver;
let mesh: Mesh;

beforeAll(async () => {
  receiver = await OtlpReceiver.start();
  mesh = await Mesh.create(databases, "order_telemetry", {
    env: {
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      OTEL_EXPORTER_OTLP_PROTOCOL: "grpc",
      OTEL_BSP_SCHEDULE_DELAY: "100",
      DEPLOYMENT_ENVIRONMENT: "test",
      // "call ok" lines, written inside each call, for the log correlation check.
      LOG_LEVEL: "debug",
    },
  });
  await Promise.all([mesh.startInventory(), mesh.startPayment()]);
  await mesh.startOrder();
}, 120_000);

afterAll(async () => {
  await mesh?.close();
  await receiver?.stop();
  await databases.dropAll();
}, 60_000);

function createRequest(overrides: Partial<CreateOrderRequest> = {}): CreateOrderRequest {
  return {
    requestId: unique("req"),
    customerId: unique("traced"),
    items: [{ sku: "MESH-MUG", quantity: 1 }],
    paymentMethod: "pm_card_visa",
    ...overrides,
  };
}

/** A caller's span context, as a mesh proxy or the storefront would send it. */
function callerContext() {
  const traceId = randomBytes(16).toString("hex");
  const spanId = randomBytes(8).toString("hex");
  return { traceId, spanId, traceparent: `00-${traceId}-${spanId}-01` };
}

function metadataFor(caller: { traceparent: string }, correlationId: string) {
  return Metadata({ traceparent: caller.traceparent, "x-request-id": correlationId });
}

/** The one span matching, with a readable failure when there are none or several. */
function one(spans: ReceivedSpan[], what: string, match: (s: ReceivedSpan) => boolean): ReceivedSpan {
  const found = spans.filter(match);
  if (found.length !== 1) {
    const listing = spans.map((s) => `${s.service} ${s.kind} ${s.name} ${s.spanId}<-${s.parentSpanId}`).join("\n  ");
    throw new Error(`expected one ${what}, found ${found.length} among:\n  ${listing}`);
  }
  return found[0]!;
}

function grpcSpan(spans: ReceivedSpan[], service: string, kind: "SERVER" | "CLIENT", method: string): ReceivedSpan {
  return one(spans, `${service} ${kind} ${method}`, (s) => s.service === service && s.kind === kind && s.name.endsWith(`/${method}`));
}

function childrenOf(spans: ReceivedSpan[], parent: ReceivedSpan): ReceivedSpan[] {
  return spans.filter((s) => s.parentSpanId === parent.spanId);
}

function descendantsOf(spans: ReceivedSpan[], root: ReceivedSpan): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  const queue = [root];
  while (queue.length) {
    const next = queue.shift()!;
    for (const child of childrenOf(spans, next)) {
      out.push(child);
      queue.push(child);
    }
  }
  return out;
}

function isPostgres(span: ReceivedSpan): boolean {
  return span.kind === "CLIENT" && (span.attributes["db.system.name"] === "postgresql" || span.attributes["db.system"] === "postgresql");
}

/** Waits until the trace holds a span matching `done` (spans arrive in batches from three processes). */
async function traceOf(traceId: string, done: (spans: ReceivedSpan[]) => boolean): Promise<ReceivedSpan[]> {
  return receiver.waitFor(`the spans of trace ${traceId}`, (spans) => {
    const trace = spans.filter((s) => s.traceId === traceId);
    return done(trace) ? trace : undefined;
  });
}

describe("one CreateOrder is one trace", () => {
  let trace: ReceivedSpan[];
  let caller: ReturnType<typeof callerContext>;
  let orderId: string;
  const correlationId = unique("corr");

  beforeAll(async () => {
    caller = callerContext();
    const { order } = await mesh.order.createOrder(createRequest(), { metadata: metadataFor(caller, correlationId) });
    expect(order?.state).toBe(OrderState.ORDER_STATE_CONFIRMED);
    orderId = order!.orderId;
    // The last things to end: the saga's span (order) and the commit's server span (inventory).
    trace = await traceOf(
      caller.traceId,
      (spans) =>
        spans.some((s) => s.name === "order.saga") &&
        spans.some((s) => s.service === "inventory" && s.kind === "SERVER" && s.name.endsWith("/CommitReservation")) &&
        spans.some((s) => s.service === "order" && s.kind === "SERVER" && s.name.endsWith("/CreateOrder")),
    );
    // Stragglers of the same trace still in a batch.
    await sleep(500);
    trace = receiver.spans().filter((s) => s.traceId === caller.traceId);
  });

  it("continues the caller's traceparent and spans order, inventory and payment", () => {
    expect(new Set(trace.map((s) => s.service))).toEqual(new Set(["order", "inventory", "payment"]));
    const createOrder = grpcSpan(trace, "order", "SERVER", "CreateOrder");
    expect(createOrder.parentSpanId).toBe(caller.spanId);
    // Every span descends from the caller's span: nothing started a trace of its own.
    const reachable = new Set(descendantsOf(trace, { ...createOrder, spanId: caller.spanId }).map((s) => s.spanId));
    expect(trace.filter((s) => !reachable.has(s.spanId)).map((s) => s.name)).toEqual([]);
  });

  it("links every client span to exactly one server span in the called service", () => {
    const expectations: [string, string][] = [
      ["inventory", "ReserveStock"],
      ["payment", "Charge"],
      ["inventory", "CommitReservation"],
    ];
    for (const [service, method] of expectations) {
      const client = grpcSpan(trace, "order", "CLIENT", method);
      const servers = childrenOf(trace, client);
      expect(servers.map((s) => `${s.service} ${s.kind} ${s.name}`)).toEqual([
        `${service} SERVER grpc.meshcart.${service}.v1.${service[0]!.toUpperCase()}${service.slice(1)}Service/${method}`,
      ]);
      expect(client.attributes["rpc.method"]).toBe(method);
      expect(client.attributes["rpc.request.metadata.x_request_id"]).toEqual([correlationId]);
    }
    // One gRPC tracing layer: no call is traced twice.
    const serverSpans = trace.filter((s) => s.kind === "SERVER").map((s) => `${s.service} ${s.name}`);
    expect(new Set(serverSpans).size).toBe(serverSpans.length);
  });

  it("runs the saga as a child of the call, one span per step, each calling out under its step", () => {
    const createOrder = grpcSpan(trace, "order", "SERVER", "CreateOrder");
    const saga = one(trace, "saga span", (s) => s.name === "order.saga");
    expect(saga.parentSpanId).toBe(createOrder.spanId);
    expect(saga.attributes).toMatchObject({
      "meshcart.order.id": orderId,
      "meshcart.saga.outcome": "confirmed",
      "meshcart.order.state": "CONFIRMED",
      "meshcart.saga.recovered": false,
      "meshcart.correlation_id": correlationId,
    });
    const steps = childrenOf(trace, saga)
      .filter((s) => s.name.startsWith("order.saga."))
      .sort((a, b) => Number(a.startNs - b.startNs));
    expect(steps.map((s) => s.name)).toEqual(["order.saga.reserve", "order.saga.charge", "order.saga.commit"]);
    for (const step of steps) {
      expect(step.attributes["meshcart.order.id"]).toBe(orderId);
      expect(step.attributes["meshcart.saga.step"]).toBe(step.name.split(".").at(-1));
    }
    expect(steps[0]!.attributes["meshcart.saga.events"]).toEqual(["STOCK_RESERVED"]);
    expect(steps[2]!.attributes).toMatchObject({
      "meshcart.saga.events": ["RESERVATION_COMMITTED", "ORDER_CONFIRMED"],
      "meshcart.saga.outcome": "confirmed",
    });
    expect(grpcSpan(trace, "order", "CLIENT", "ReserveStock").parentSpanId).toBe(steps[0]!.spanId);
    expect(grpcSpan(trace, "order", "CLIENT", "Charge").parentSpanId).toBe(steps[1]!.spanId);
    expect(grpcSpan(trace, "order", "CLIENT", "CommitReservation").parentSpanId).toBe(steps[2]!.spanId);
  });

  it("has the Postgres statements under the calls that ran them", () => {
    for (const [service, method] of [
      ["inventory", "ReserveStock"],
      ["payment", "Charge"],
      ["order", "CreateOrder"],
    ] as const) {
      const server = grpcSpan(trace, service, "SERVER", method);
      const statements = descendantsOf(trace, server).filter((s) => s.service === service && isPostgres(s));
      expect(statements.length, `${service} ${method}`).toBeGreaterThan(0);
      // Parameters (customer data) are never recorded.
      for (const statement of statements) expect(Object.keys(statement.attributes).filter((k) => k.includes("parameters"))).toEqual([]);
    }
  });

  it("carries the domain on the server spans of every service", () => {
    expect(grpcSpan(trace, "order", "SERVER", "CreateOrder").attributes).toMatchObject({
      "meshcart.order.id": orderId,
      "meshcart.order.state": "CONFIRMED",
      "meshcart.correlation_id": correlationId,
    });
    expect(grpcSpan(trace, "payment", "SERVER", "Charge").attributes).toMatchObject({
      "meshcart.order.id": orderId,
      "meshcart.payment.outcome": "captured",
      "meshcart.replayed": false,
      "meshcart.correlation_id": correlationId,
    });
    expect(grpcSpan(trace, "inventory", "SERVER", "ReserveStock").attributes).toMatchObject({
      "meshcart.reservation.id": `${orderId}.stock`,
      "meshcart.correlation_id": correlationId,
    });
  });

  it("names each service's resource: service name, version, environment", () => {
    for (const service of ["order", "inventory", "payment"]) {
      const span = trace.find((s) => s.service === service)!;
      expect(span.resource).toMatchObject({
        "service.name": service,
        "service.namespace": "meshcart",
        "deployment.environment.name": "test",
        "deployment.environment": "test",
      });
      expect(span.resource["service.version"]).toBe(service === "payment" ? "v1" : "dev");
    }
  });

  it("never traces the exporter's own calls", () => {
    expect(receiver.spans().filter((s) => s.name.includes("opentelemetry.proto"))).toEqual([]);
  });

  it("writes log lines that carry the trace id and the correlation id", () => {
    for (const service of ["order", "inventory", "payment"] as const) {
      const lines = mesh
        .logs(service)
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((l) => l.correlation_id === correlationId);
      expect(lines.length, service).toBeGreaterThan(0);
      expect(
        lines.every((l) => l.trace_id === caller.traceId),
        service,
      ).toBe(true);
      const spanIds = new Set(trace.filter((s) => s.service === service).map((s) => s.spanId));
      expect(
        lines.some((l) => spanIds.has(String(l.span_id))),
        service,
      ).toBe(true);
    }
    // The saga's own lines, written outside any call, too.
    const sagaLine = mesh
      .logs("order")
      .filter((l) => l.includes('"saga step done"') && l.includes(orderId))
      .map((l) => JSON.parse(l) as Record<string, unknown>)[0];
    expect(sagaLine).toMatchObject({ trace_id: caller.traceId, correlation_id: correlationId });
  });
});

describe("compensation and recovery in the trace", () => {
  it("marks a declined charge's compensation on the saga's spans", async () => {
    const caller = callerContext();
    const { order } = await mesh.order.createOrder(createRequest({ paymentMethod: "pm_card_declined" }), {
      metadata: metadataFor(caller, unique("corr")),
    });
    expect(order?.state).toBe(OrderState.ORDER_STATE_REJECTED);
    const trace = await traceOf(
      caller.traceId,
      (spans) =>
        spans.some((s) => s.name === "order.saga") &&
        spans.some((s) => s.service === "payment" && s.kind === "SERVER" && s.name.endsWith("/Charge")) &&
        spans.some((s) => s.service === "inventory" && s.kind === "SERVER" && s.name.endsWith("/ReleaseReservation")),
    );
    const charge = one(trace, "charge step", (s) => s.name === "order.saga.charge");
    expect(charge.events).toContainEqual({
      name: "compensation.started",
      attributes: expect.objectContaining({ "meshcart.compensation.step": "charge", "meshcart.compensation.cause": "declined" }),
    });
    const release = one(trace, "release step", (s) => s.name === "order.saga.release");
    expect(release.attributes).toMatchObject({ "meshcart.saga.compensating": true, "meshcart.saga.events": ["STOCK_RELEASED"] });
    expect(release.events.map((e) => e.name)).toEqual(["compensation.stock_released"]);
    expect(one(trace, "saga span", (s) => s.name === "order.saga").attributes["meshcart.saga.outcome"]).toBe("rejected");
    expect(grpcSpan(trace, "payment", "SERVER", "Charge").attributes).toMatchObject({
      "meshcart.payment.outcome": "declined",
      "meshcart.payment.decline_reason": "card_declined",
    });
  });

  it("runs a cancellation in the cancelling call's trace, linked to the trace that placed the order", async () => {
    const placing = callerContext();
    const { order } = await mesh.order.createOrder(createRequest(), { metadata: metadataFor(placing, unique("corr")) });
    expect(order?.state).toBe(OrderState.ORDER_STATE_CONFIRMED);
    const cancelling = callerContext();
    const cancelled = await mesh.order.cancelOrder({ orderId: order!.orderId, reason: "traced" }, { metadata: metadataFor(cancelling, unique("corr")) });
    expect(cancelled.order?.state).toBe(OrderState.ORDER_STATE_CANCELLED);

    const trace = await traceOf(
      cancelling.traceId,
      (spans) =>
        spans.some((s) => s.name === "order.saga") &&
        spans.some((s) => s.service === "payment" && s.kind === "SERVER" && s.name.endsWith("/Refund")) &&
        spans.some((s) => s.service === "inventory" && s.kind === "SERVER" && s.name.endsWith("/ReturnStock")),
    );
    const saga = one(trace, "cancellation saga", (s) => s.name === "order.saga");
    expect(saga.attributes["meshcart.order.id"]).toBe(order!.orderId);
    const placedSaga = one(
      await traceOf(placing.traceId, (spans) => spans.some((s) => s.name === "order.saga")),
      "placing saga",
      (s) => s.name === "order.saga",
    );
    // The link points into the placing trace (at the call that placed the order).
    expect(saga.links).toHaveLength(1);
    expect(saga.links[0]).toMatchObject({ traceId: placing.traceId, attributes: { "meshcart.link": "order placed" } });
    expect(placedSaga.links).toEqual([]);
  });

  it("resumes a saga after a crash in the trace of the call that placed the order", async () => {
    await mesh.stop("order");
    await mesh.startOrder({ ORDER_CRASH_POINT: "after:charge" });
    const caller = callerContext();
    const customerId = unique("crashed");
    const correlationId = unique("corr");
    const dying = refusal(mesh.order.createOrder(createRequest({ customerId }), { metadata: metadataFor(caller, correlationId) }));
    await mesh.crashed("order");
    expect((await dying).code).toBeGreaterThan(0);

    // Restarted on the same port: it takes its own saga back at once.
    await mesh.startOrder();
    const [placed] = await mesh.ordersOfCustomer(customerId);
    expect((await mesh.finalOrder(placed!.order_id)).state).toBe(OrderState.ORDER_STATE_CONFIRMED);

    const trace = await traceOf(
      caller.traceId,
      (spans) =>
        spans.some((s) => s.name === "order.saga" && s.attributes["meshcart.saga.recovered"] === true) &&
        spans.filter((s) => s.service === "payment" && s.kind === "SERVER" && s.name.endsWith("/Charge")).length === 2 &&
        spans.some((s) => s.service === "inventory" && s.kind === "SERVER" && s.name.endsWith("/CommitReservation")),
    );
    const resumed = one(trace, "resumed saga", (s) => s.name === "order.saga" && s.attributes["meshcart.saga.recovered"] === true);
    expect(resumed.attributes).toMatchObject({
      "meshcart.order.id": placed!.order_id,
      "meshcart.saga.outcome": "confirmed",
      "meshcart.correlation_id": correlationId,
    });
    // It repeats the steps the dead run did not record (each answered from its key) and goes on, in the same trace.
    const steps = childrenOf(trace, resumed)
      .map((s) => s.name)
      .filter((name) => name.startsWith("order.saga."))
      .sort();
    expect(steps).toEqual(["order.saga.charge", "order.saga.commit", "order.saga.reserve"]);
    const charges = trace.filter((s) => s.service === "payment" && s.kind === "SERVER" && s.name.endsWith("/Charge"));
    expect(charges.map((s) => s.attributes["meshcart.replayed"]).sort()).toEqual([false, true]);
    const resumedCharge = charges.find((s) => s.attributes["meshcart.replayed"] === true)!;
    expect(descendantsOf(trace, resumed).map((s) => s.spanId)).toContain(resumedCharge.spanId);
    const commit = grpcSpan(trace, "inventory", "SERVER", "CommitReservation");
    expect(descendantsOf(trace, resumed).map((s) => s.spanId)).toContain(commit.spanId);
  });
});
