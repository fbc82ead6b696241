import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Status } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { OrderState, type CreateOrderRequest } from "@meshcart/contracts/meshcart/order/v1/order.js";
import { allPanels, selectors, unexported, type Panel } from "@meshcart/testing/dashboard.js";
import { parseExposition, type Exposition } from "@meshcart/testing/prometheus.js";
import { TestDatabases } from "./support/database.js";
import { Mesh, refusal } from "./support/services.js";
import { unique } from "./support/wait.js";

/**
 * The metrics endpoints of the real services after a known set of calls:
 * each parses as Prometheus exposition format, its counters match the calls
 * made (on both sides of every hop), the business figures match the orders'
 * outcomes, and every metric the Grafana dashboard queries is exported.
 */

vi.setConfig({ testTimeout: 60_000, hookTimeout: 120_000 });

const SERVICES = ["order", "inventory", "payment"] as const;
type ServiceName = (typeof SERVICES)[number];
const DASHBOARD = fileURLToPath(new URL("../../../dashboards/meshcart.json", import.meta.url));

const databases = new TestDatabases();
let mesh: Mesh;
const scraped = new Map<ServiceName, Exposition>();
let confirmedId: string;

function createRequest(overrides: Partial<CreateOrderRequest> = {}): CreateOrderRequest {
  return {
    requestId: unique("req"),
    customerId: unique("metrics"),
    items: [{ sku: "MESH-MUG", quantity: 2 }],
    paymentMethod: "pm_card_visa",
    ...overrides,
  };
}

beforeAll(async () => {
  mesh = await Mesh.create(databases, "order_metrics");
  await Promise.all([mesh.startInventory(), mesh.startPayment()]);
  await mesh.startOrder();

  const confirmed = await mesh.order.createOrder(createRequest());
  expect(confirmed.order?.state).toBe(OrderState.ORDER_STATE_CONFIRMED);
  confirmedId = confirmed.order!.orderId;
  const declined = await mesh.order.createOrder(createRequest({ items: [{ sku: "MESH-CAP", quantity: 1 }], paymentMethod: "pm_card_declined" }));
  expect(declined.order?.state).toBe(OrderState.ORDER_STATE_REJECTED);
  // An unknown SKU is the reserve's refusal: a REJECTED order, not an error.
  const unknown = await mesh.order.createOrder(createRequest({ items: [{ sku: "NO-SUCH-SKU", quantity: 1 }] }));
  expect(unknown.order?.state).toBe(OrderState.ORDER_STATE_REJECTED);
  expect((await refusal(mesh.order.createOrder(createRequest({ items: [{ sku: "MESH-MUG", quantity: 0 }] })))).code).toBe(Status.INVALID_ARGUMENT);
  await mesh.order.getOrder({ orderId: confirmedId });
  const cancelled = await mesh.order.cancelOrder({ orderId: confirmedId, reason: "metrics test" });
  expect(cancelled.order?.state).toBe(OrderState.ORDER_STATE_CANCELLED);

  for (const service of SERVICES) scraped.set(service, parseExposition(await mesh.metrics(service)));
}, 120_000);

afterAll(async () => {
  await mesh?.close();
  await databases.dropAll();
}, 60_000);

function metrics(service: ServiceName): Exposition {
  return scraped.get(service)!;
}

/** Handled calls of one method by status code, as a plain object. */
function byCode(exposition: Exposition, name: string, method: string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const sample of exposition.samples(name)) {
    if (sample.labels.grpc_method === method && sample.value > 0) counts[sample.labels.grpc_code!] = (counts[sample.labels.grpc_code!] ?? 0) + sample.value;
  }
  return counts;
}

describe("the metrics endpoint", () => {
  it("is Prometheus exposition format, with service_name on every series and conventional names", () => {
    for (const service of SERVICES) {
      const exposition = metrics(service);
      for (const family of exposition.families.values()) {
        if (family.type === "counter") expect(family.name, `${service}: counter ${family.name}`).toMatch(/_total$/);
        expect(family.name).toMatch(/^[a-z][a-z0-9_]*$/);
        for (const sample of family.samples) expect(sample.labels.service_name, `${service} ${sample.name}`).toBe(service);
      }
      expect(exposition.sum("meshcart_build_info", { version: service === "payment" ? "v1" : "dev" })).toBe(1);
    }
  });

  it("counts each server call once, by method and status code", () => {
    const order = metrics("order");
    expect(byCode(order, "grpc_server_handled_total", "CreateOrder")).toEqual({ OK: 3, INVALID_ARGUMENT: 1 });
    expect(order.sum("grpc_server_started_total", { grpc_method: "CreateOrder" })).toBe(4);
    expect(order.sum("grpc_server_handling_seconds_count", { grpc_method: "CreateOrder" })).toBe(4);
    expect(byCode(order, "grpc_server_handled_total", "GetOrder")).toEqual({ OK: 1 });
    expect(byCode(order, "grpc_server_handled_total", "CancelOrder")).toEqual({ OK: 1 });
    expect(order.samples("grpc_server_handled_total").find((s) => s.labels.grpc_method === "CreateOrder")?.labels).toMatchObject({
      grpc_service: "meshcart.order.v1.OrderService",
      grpc_type: "unary",
    });
  });

  it("counts order's outbound calls as the called services count them", () => {
    const order = metrics("order");
    const expected: Record<string, [ServiceName, Record<string, number>]> = {
      ReserveStock: ["inventory", { OK: 2, NOT_FOUND: 1 }],
      CommitReservation: ["inventory", { OK: 1 }],
      ReleaseReservation: ["inventory", { OK: 1 }],
      ReturnStock: ["inventory", { OK: 1 }],
      Charge: ["payment", { OK: 2 }],
      Refund: ["payment", { OK: 1 }],
    };
    for (const [method, [callee, codes]] of Object.entries(expected)) {
      expect(byCode(order, "grpc_client_handled_total", method), `attempts ${method}`).toEqual(codes);
      // No retries here: one attempt per call.
      expect(byCode(order, "meshcart_grpc_client_calls_handled_total", method), `calls ${method}`).toEqual(codes);
      expect(byCode(metrics(callee), "grpc_server_handled_total", method), `${callee} ${method}`).toEqual(codes);
    }
  });

  it("reports the checkout's business figures", () => {
    const order = metrics("order");
    expect(order.sum("meshcart_order_saga_outcomes_total", { outcome: "confirmed" })).toBe(1);
    expect(order.sum("meshcart_order_saga_outcomes_total", { outcome: "rejected" })).toBe(2);
    expect(order.sum("meshcart_order_saga_outcomes_total", { outcome: "cancelled" })).toBe(1);
    expect(order.sum("meshcart_order_saga_outcomes_total", { outcome: "failed" })).toBe(0);
    expect(order.sum("meshcart_order_saga_duration_seconds_count")).toBe(4);
    expect(order.sum("meshcart_order_compensations_total", { step: "charge", cause: "declined" })).toBe(1);
    expect(order.sum("meshcart_order_compensations_total")).toBe(1);
    expect(order.sum("meshcart_order_saga_steps_total", { step: "reserve", result: "ok" })).toBe(3);
    expect(order.sum("meshcart_order_sagas_running")).toBe(0);

    const payment = metrics("payment");
    expect(payment.sum("meshcart_payment_charges_total", { outcome: "captured" })).toBe(1);
    expect(payment.sum("meshcart_payment_charges_total", { outcome: "declined" })).toBe(1);
    expect(payment.sum("meshcart_payment_declines_total", { reason: "card_declined" })).toBe(1);
    expect(payment.sum("meshcart_payment_refunds_total")).toBe(1);
  });

  it("shows each SKU's available stock as the inventory API does", async () => {
    const { products } = await mesh.inventory.listProducts({ pageSize: 100, pageToken: "" });
    const exposition = parseExposition(await mesh.metrics("inventory"));
    expect(products.length).toBeGreaterThan(0);
    for (const product of products) {
      expect(exposition.sum("meshcart_inventory_available_stock", { sku: product.sku }), product.sku).toBe(product.stock!.available);
      expect(exposition.sum("meshcart_inventory_reserved_stock", { sku: product.sku }), product.sku).toBe(product.stock!.reserved);
    }
  });

  it("reports the database pool of each service", () => {
    for (const service of SERVICES) {
      const exposition = metrics(service);
      expect(exposition.sum("meshcart_db_pool_max_connections")).toBe(10);
      expect(exposition.sum("meshcart_db_up")).toBe(1);
      expect(
        exposition
          .samples("meshcart_db_pool_connections")
          .map((s) => s.labels.state)
          .sort(),
      ).toEqual(["idle", "in_use"]);
    }
  });

  it("never labels a series with an order, payment or customer", () => {
    for (const service of SERVICES) {
      for (const family of metrics(service).families.values()) {
        for (const sample of family.samples) {
          const values = Object.values(sample.labels).join(" ");
          expect(values, `${service} ${sample.name}`).not.toMatch(/ord_[0-9a-f]{8}|pay_|metrics-\d/);
          expect(Object.keys(sample.labels)).not.toContain("order_id");
          expect(Object.keys(sample.labels)).not.toContain("customer_id");
        }
      }
    }
  });
});

// ---------------------------------------------------------------- dashboard

describe("the Grafana dashboard", () => {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, "utf8")) as {
    panels: Panel[];
    templating: { list: { name: string; type: string; query?: unknown; datasource?: unknown }[] };
  };
  const queried = allPanels(dashboard.panels).flatMap((panel) => (panel.targets ?? []).map((t) => ({ panel: panel.title ?? "", expr: t.expr })));

  it("reads its extraction of metric names right", () => {
    expect(selectors('sum by (le) (rate(a_bucket{x="1",y=~"b|c"}[$__rate_interval])) / sum(b_total) or vector(0)')).toEqual([
      { metric: "a_bucket", labels: ["x", "y"] },
      { metric: "b_total", labels: [] },
    ]);
    expect(selectors("count(meshcart_db_up == 0)")).toEqual([{ metric: "meshcart_db_up", labels: [] }]);
  });

  it("queries only metrics, and labels, that the services export", () => {
    expect(queried.length).toBeGreaterThan(20);
    // Fulfillment's panels are held to fulfillment's scrape (services/fulfillment/test/metrics.test.ts).
    expect(unexported(queried, scraped.values(), (metric) => !metric.startsWith("meshcart_fulfillment_"))).toEqual([]);
  });

  it("uses the Prometheus datasource variable and a service variable from the exported label", () => {
    const variables = Object.fromEntries(dashboard.templating.list.map((v) => [v.name, v]));
    expect(variables.datasource).toMatchObject({ type: "datasource", query: "prometheus" });
    expect(JSON.stringify(variables.service?.query)).toContain("label_values(meshcart_build_info, service_name)");
    for (const panel of allPanels(dashboard.panels).filter((p) => p.type !== "row")) {
      expect(JSON.stringify(panel), panel.title).toContain('"uid":"${datasource}"');
    }
  });
});
