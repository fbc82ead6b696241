import { context, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from "@opentelemetry/sdk-trace";
import { ServerError, Status, createChannel, createClient, type Channel } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openChannel, createServiceClient } from "../src/clients.js";
import { loadConfig, serviceConfig } from "../src/config.js";
import { REDACTED_PATHS } from "../src/logger.js";
import { Registry } from "../src/metrics.js";
import { runInRequest } from "../src/request-context.js";
import { startServiceRuntime, type ServiceRuntime } from "../src/service-runtime.js";
import { resourceAttributes } from "../src/telemetry.js";
import { SpanAttributes, activeTraceIds, activeTraceparent, contextFromTraceparent, inSpan, linkTo, setTraceContextCarrier } from "../src/tracing.js";
import { InventoryServiceDefinition, type InventoryServiceImplementation } from "@meshcart/contracts/meshcart/inventory/v1/inventory.js";
import { parseExposition } from "@meshcart/testing/prometheus.js";
import { capturedLogger, freePort } from "./helpers.js";

/**
 * The kit's observability parts in one process: RED metrics of server and
 * clients (per attempt and per call), the trace ids and correlation id on log
 * lines, redaction, trace context kept for later work, resource attributes.
 * The cross-process behaviour (one trace over the services, the real OTLP
 * export) is tested in services/order/test/telemetry.test.ts.
 */

// An SDK tracer for this file only: no instrumentation, nothing patched.
const spans = new InMemorySpanExporter();
beforeAll(() => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: spans })] }));
});
afterAll(() => {
  trace.disable();
  context.disable();
});

function fakeInventory(): InventoryServiceImplementation {
  const implementation = Object.fromEntries(
    Object.keys(InventoryServiceDefinition.methods).map((name) => [
      name,
      async () => {
        throw new ServerError(Status.UNIMPLEMENTED, "not in this fake");
      },
    ]),
  ) as unknown as InventoryServiceImplementation;
  implementation.getProduct = async (request) => {
    if (request.sku === "missing") throw new ServerError(Status.NOT_FOUND, "no such product");
    return { product: { sku: request.sku } };
  };
  return implementation;
}

describe("gRPC RED metrics", () => {
  let runtime: ServiceRuntime;
  let channel: Channel;
  const registry = new Registry();

  beforeAll(async () => {
    const { logger } = capturedLogger("metrics-fake", "info");
    runtime = await startServiceRuntime({
      name: "metrics-fake",
      config: { ...loadConfig(serviceConfig, {}), GRPC_PORT: 0, ADMIN_PORT: 0 },
      logger,
      registry,
      host: "127.0.0.1",
      services: [{ definition: InventoryServiceDefinition, implementation: fakeInventory() }],
    });
    channel = createChannel(`127.0.0.1:${runtime.grpcPort}`);
  });
  afterAll(async () => {
    channel?.close();
    await runtime?.shutdown("test over");
  });

  it("counts each server call once by method and code, on the runtime's /metrics", async () => {
    const client = createClient(InventoryServiceDefinition, channel);
    for (let i = 0; i < 3; i++) await client.getProduct({ sku: "A" });
    await expect(client.getProduct({ sku: "missing" })).rejects.toThrow();
    const response = await fetch(`http://127.0.0.1:${runtime.adminPort}/metrics`);
    const exposition = parseExposition(await response.text());
    const labels = { grpc_service: "meshcart.inventory.v1.InventoryService", grpc_method: "GetProduct", service_name: "metrics-fake" };
    expect(exposition.sum("grpc_server_handled_total", { ...labels, grpc_code: "OK" })).toBe(3);
    expect(exposition.sum("grpc_server_handled_total", { ...labels, grpc_code: "NOT_FOUND" })).toBe(1);
    expect(exposition.sum("grpc_server_started_total", labels)).toBe(4);
    expect(exposition.sum("grpc_server_handling_seconds_count", labels)).toBe(4);
    expect(exposition.sum("meshcart_build_info", { version: "dev" })).toBe(1);
  });

  it("counts a client's attempts inside its retries and its calls outside them", async () => {
    const { logger } = capturedLogger("client", "info");
    const clientRegistry = new Registry();
    // Nothing listens there: every attempt fails UNAVAILABLE.
    const dead = openChannel(`127.0.0.1:${await freePort()}`);
    const client = createServiceClient(
      InventoryServiceDefinition,
      dead,
      { address: "dead", attemptTimeoutMs: 1_000, retries: 2, retryBaseDelayMs: 1, retryMaxDelayMs: 5, registry: clientRegistry },
      logger,
    );
    await expect(client.getProduct({ sku: "A" })).rejects.toMatchObject({ code: Status.UNAVAILABLE });
    const live = createServiceClient(
      InventoryServiceDefinition,
      openChannel(`127.0.0.1:${runtime.grpcPort}`),
      { address: "live", attemptTimeoutMs: 1_000, retries: 2, registry: clientRegistry },
      logger,
    );
    await live.getProduct({ sku: "B" });
    dead.close();

    const exposition = parseExposition(await clientRegistry.metrics());
    const method = { grpc_method: "GetProduct" };
    expect(exposition.sum("grpc_client_handled_total", { ...method, grpc_code: "UNAVAILABLE" })).toBe(3);
    expect(exposition.sum("meshcart_grpc_client_calls_handled_total", { ...method, grpc_code: "UNAVAILABLE" })).toBe(1);
    expect(exposition.sum("grpc_client_handled_total", { ...method, grpc_code: "OK" })).toBe(1);
    expect(exposition.sum("meshcart_grpc_client_calls_handled_total", { ...method, grpc_code: "OK" })).toBe(1);
    expect(exposition.sum("grpc_client_started_total", method)).toBe(4);
    expect(exposition.sum("meshcart_grpc_client_calls_started_total", method)).toBe(2);
  });
});

describe("log lines", () => {
  it("carry the active span's trace and span ids and the request's correlation id", async () => {
    const { logger, lines } = capturedLogger("logs");
    await runInRequest({ correlationId: "corr-42", method: "/x.v1.X/Y" }, () =>
      inSpan("work", {}, async (span) => {
        logger.info("inside");
        expect(lines.at(-1)).toMatchObject({
          msg: "inside",
          correlation_id: "corr-42",
          grpc_method: "/x.v1.X/Y",
          trace_id: span.spanContext().traceId,
          span_id: span.spanContext().spanId,
        });
      }),
    );
    logger.info("outside");
    expect(lines.at(-1)).not.toHaveProperty("trace_id");
    expect(lines.at(-1)).not.toHaveProperty("correlation_id");
  });

  it("never show secrets, tokens or payment details", () => {
    const { logger, lines } = capturedLogger("logs");
    logger.info(
      {
        authorization: "Bearer abc.def.ghi",
        token: "abc.def.ghi",
        paymentMethod: "pm_card_visa",
        request: { payment_method: "pm_card_visa", password: "hunter2", customerId: "alice" },
        err: { message: "refused", request: { paymentMethod: "pm_card_visa", cardNumber: "4242424242424242" } },
        DATABASE_URL: "postgres://u:secret@h/db",
      },
      "careless",
    );
    const line = JSON.stringify(lines.at(-1));
    for (const secret of ["abc.def.ghi", "pm_card_visa", "hunter2", "secret@", "4242424242424242"]) expect(line).not.toContain(secret);
    expect(line).toContain("alice");
    expect(REDACTED_PATHS).toContain("*.token");
  });
});

describe("trace context when nothing is exported", () => {
  // No instrumentation runs then: the runtime's and the clients' own middleware carry the W3C traceparent.
  let runtime: ServiceRuntime;
  const seen: { traceparent?: string; traceId?: string }[] = [];

  beforeAll(async () => {
    setTraceContextCarrier("middleware");
    const implementation = fakeInventory();
    implementation.getProduct = async (request, context) => {
      const header = context.metadata.get("traceparent");
      seen.push({ traceparent: typeof header === "string" ? header : undefined, traceId: activeTraceIds()?.trace_id });
      return { product: { sku: request.sku } };
    };
    runtime = await startServiceRuntime({
      name: "carried",
      config: { ...loadConfig(serviceConfig, {}), GRPC_PORT: 0, ADMIN_PORT: 0 },
      logger: capturedLogger("carried", "info").logger,
      host: "127.0.0.1",
      services: [{ definition: InventoryServiceDefinition, implementation }],
    });
  });
  afterAll(async () => {
    await runtime?.shutdown("test over");
    setTraceContextCarrier("none");
  });

  it("passes the caller's trace on, and makes it the handler's: its log lines carry the trace id", async () => {
    const { logger } = capturedLogger("caller", "info");
    const channel = openChannel(`127.0.0.1:${runtime.grpcPort}`);
    const client = createServiceClient(InventoryServiceDefinition, channel, { address: "carried", attemptTimeoutMs: 2_000, retries: 0 }, logger);
    let callerTrace = "";
    await inSpan("caller", {}, async (span) => {
      callerTrace = span.spanContext().traceId;
      await client.getProduct({ sku: "A" });
    });
    // Outside any trace: the handler starts none of its own that the caller could not see, and nothing breaks.
    await client.getProduct({ sku: "B" });
    channel.close();
    expect(seen[0]!.traceparent).toMatch(new RegExp(`^00-${callerTrace}-[0-9a-f]{16}-0[01]$`));
    expect(seen[0]!.traceId).toBe(callerTrace);
    expect(seen[1]!.traceparent).toBeUndefined();
  });
});

describe("trace context kept for later", () => {
  it("continues a stored traceparent and links to another", async () => {
    spans.reset();
    let stored: string | undefined;
    let placedSpanId = "";
    await inSpan("place", {}, async (span) => {
      stored = activeTraceparent();
      placedSpanId = span.spanContext().spanId;
    });
    expect(stored).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    // Later, elsewhere, outside any span: the work joins the stored trace.
    await inSpan("resume", { parent: contextFromTraceparent(stored), links: [linkTo(stored, { why: "test" })!] }, async () => undefined);
    const resumed = spans.getFinishedSpans().find((s) => s.name === "resume")!;
    expect(resumed.spanContext().traceId).toBe(stored!.split("-")[1]);
    expect(resumed.parentSpanContext?.spanId).toBe(placedSpanId);
    expect(resumed.links[0]?.context.spanId).toBe(placedSpanId);
    expect(linkTo(undefined)).toBeUndefined();
  });

  it("records a failure on the span and passes it on", async () => {
    spans.reset();
    await expect(
      inSpan("fails", { attributes: { [SpanAttributes.orderId]: "ord_1" } }, async () => {
        throw new Error("boom");
      }),
    ).rejects.toThrow("boom");
    const failed = spans.getFinishedSpans()[0]!;
    expect(failed.status).toMatchObject({ code: 2, message: "boom" });
    expect(failed.attributes[SpanAttributes.orderId]).toBe("ord_1");
  });
});

describe("resource attributes", () => {
  it("name the service, its version and environment, and the pod in Kubernetes", () => {
    expect(resourceAttributes("order", { SERVICE_VERSION: "1.2.3", DEPLOYMENT_ENVIRONMENT: "staging" })).toMatchObject({
      "service.name": "order",
      "service.version": "1.2.3",
      "deployment.environment.name": "staging",
      "deployment.environment": "staging",
    });
    const inCluster = resourceAttributes("order", {
      KUBERNETES_SERVICE_HOST: "10.0.0.1",
      POD_NAME: "order-7d9f-abcde",
      POD_NAMESPACE: "meshcart",
    });
    expect(inCluster).toMatchObject({
      "k8s.pod.name": "order-7d9f-abcde",
      "k8s.namespace.name": "meshcart",
      "service.instance.id": "order-7d9f-abcde",
    });
    expect(resourceAttributes("order", {})).not.toHaveProperty("k8s.pod.name");
  });
});
