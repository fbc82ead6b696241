import pg from "pg";
import { createChannel, createClientFactory } from "nice-grpc";
import { BadRequest, PreconditionFailure, RichClientError, errorDetailsClientMiddleware } from "nice-grpc-error-details";
import type { InventoryServiceClient } from "@meshcart/contracts/meshcart/inventory/v1/inventory.js";
import { OrderEventType, OrderServiceDefinition, OrderState, type Order, type OrderServiceClient } from "@meshcart/contracts/meshcart/order/v1/order.js";
import { PaymentStatus, type Payment, type PaymentServiceClient } from "@meshcart/contracts/meshcart/payment/v1/payment.js";
import type { ExitStatus, ServiceProcess } from "@meshcart/stack/processes.js";
import { Stack } from "@meshcart/stack/stack.js";
import type { TestDatabases } from "./database.js";
import { eventually } from "./wait.js";

/**
 * Inventory, payment and order as real processes, each with its own
 * database, talking gRPC over loopback, as `make dev` runs them (the stack
 * fixture, dev/stack/src/stack.ts), without a broker: these tests are about the
 * saga, not the events. A service can be stopped, killed and started again
 * on the same gRPC port, so the others (and the test's clients) find it again.
 */

type Name = "inventory" | "payment" | "order";

/** What these tests change from make dev: quick sweeps, leases, recoveries and retries. */
const QUICK: Record<Name, Record<string, string>> = {
  inventory: { EXPIRY_SWEEP_INTERVAL_MS: "500" },
  payment: { SERVICE_VERSION: "v1" },
  order: {
    ORDER_STEP_TIMEOUT_MS: "2000",
    ORDER_CLIENT_RETRIES: "2",
    ORDER_SAGA_LEASE_MS: "1500",
    ORDER_RECOVERY_INTERVAL_MS: "200",
    ORDER_RETRY_MAX_MS: "300",
    ORDER_MAX_WAIT_MS: "15000",
  },
};

export class Mesh {
  /** Direct access to the order service's database, for what the API does not show. */
  readonly orderSql: pg.Pool;

  private constructor(private readonly stack: Stack) {
    this.orderSql = new pg.Pool({ connectionString: stack.databaseUrl("order"), max: 3 });
    // The database is dropped WITH (FORCE) at the end: a session it terminates must not be an uncaught error.
    this.orderSql.on("error", () => undefined);
  }

  /** Nothing started yet. `env`: added to every process's environment (e.g. the OTLP endpoint). */
  static async create(databases: TestDatabases, prefix: string, options: { env?: Record<string, string> } = {}): Promise<Mesh> {
    const stack = await Stack.create({
      services: ["inventory", "payment", "order"],
      // The test file drops them (databases.dropAll).
      database: async (name) => ({ url: (await databases.create(`${prefix}_${name}`)).url }),
      broker: false,
      faults: false,
      common: options.env ?? {},
      env: QUICK,
    });
    return new Mesh(stack);
  }

  get inventoryAddress(): string {
    return this.stack.address("inventory");
  }

  get paymentAddress(): string {
    return this.stack.address("payment");
  }

  startInventory(): Promise<ServiceProcess> {
    return this.stack.start("inventory");
  }

  startPayment(): Promise<ServiceProcess> {
    return this.stack.start("payment");
  }

  /** Starts the order service on its gRPC port, the same one each time (the lease owner is host:port). */
  startOrder(env: Record<string, string> = {}): Promise<ServiceProcess> {
    return this.stack.start("order", env);
  }

  /** A second order replica on another port (another lease owner), over the same database. */
  async startOrderReplica(env: Record<string, string> = {}): Promise<{ process: ServiceProcess; client: OrderServiceClient; close(): void }> {
    const { process, address } = await this.stack.startReplica("order", env);
    const channel = createChannel(address);
    return { process, client: clientFactory.create(OrderServiceDefinition, channel), close: () => channel.close() };
  }

  /** Stops a service gracefully (SIGTERM) and returns how it exited. */
  stop(name: Name): Promise<ExitStatus | undefined> {
    return this.stack.stop(name);
  }

  isRunning(name: Name): boolean {
    return this.stack.isRunning(name);
  }

  /** The running process of a service (for its logs, or to wait for its death). */
  process(name: Name): ServiceProcess {
    return this.stack.process(name);
  }

  /** Forgets a process that died by itself (the order service's crash hook). */
  crashed(name: Name): Promise<ExitStatus> {
    return this.stack.crashed(name);
  }

  get inventory(): InventoryServiceClient {
    return this.stack.client("inventory");
  }

  get payment(): PaymentServiceClient {
    return this.stack.client("payment");
  }

  get order(): OrderServiceClient {
    return this.stack.client("order");
  }

  /** The Prometheus text a running service serves on its admin port's /metrics. */
  metrics(name: Name): Promise<string> {
    return this.stack.metrics(name);
  }

  /** Every log line of every process a service ran. */
  logs(name: Name): string[] {
    return this.stack.logs(name);
  }

  async close(): Promise<void> {
    await this.stack.close();
    await this.orderSql.end();
  }

  // ------------------------------------------------------------ queries

  /** A product's stock counters. */
  async stock(sku: string) {
    const { product } = await this.inventory.getProduct({ sku });
    return product!.stock!;
  }

  /** Every product's counters keep the ledger's invariants. */
  async ledgerViolations(): Promise<string[]> {
    const { products } = await this.inventory.listProducts({ pageSize: 100, pageToken: "" });
    const problems: string[] = [];
    for (const p of products) {
      const s = p.stock!;
      if (s.initial + s.restocked !== s.onHand + s.sold) problems.push(`${p.sku}: initial + restocked != on_hand + sold (${JSON.stringify(s)})`);
      if (s.reserved < 0 || s.reserved > s.onHand) problems.push(`${p.sku}: reserved out of bounds (${JSON.stringify(s)})`);
      if (s.available !== s.onHand - s.reserved) problems.push(`${p.sku}: available != on_hand - reserved`);
    }
    return problems;
  }

  async paymentsOf(orderId: string): Promise<Payment[]> {
    const { payments } = await this.payment.listPayments({ filter: { $case: "orderId", value: orderId }, pageSize: 100, pageToken: "" });
    return payments;
  }

  /** Money taken for an order, net of refunds. */
  async netCharged(orderId: string): Promise<number> {
    const payments = await this.paymentsOf(orderId);
    return payments.reduce(
      (sum, p) => sum + (p.status === PaymentStatus.PAYMENT_STATUS_DECLINED ? 0 : p.amount!.minorUnits - (p.refunded?.minorUnits ?? 0)),
      0,
    );
  }

  /** The order rows of a customer, read from the order service's database. */
  async ordersOfCustomer(customerId: string): Promise<{ order_id: string; state: string; version: number }[]> {
    const { rows } = await this.orderSql.query<{ order_id: string; state: string; version: number }>(
      "SELECT order_id, state, version FROM orders WHERE customer_id = $1 ORDER BY created_at",
      [customerId],
    );
    return rows;
  }

  async sagaRunOf(orderId: string): Promise<{ owner: string; expired: boolean } | undefined> {
    const { rows } = await this.orderSql.query<{ owner: string; expired: boolean }>(
      "SELECT owner, lease_until < now() AS expired FROM saga_runs WHERE order_id = $1",
      [orderId],
    );
    return rows[0];
  }

  async orderDbCounts(): Promise<{ orders: number; events: number; runs: number }> {
    const { rows } = await this.orderSql.query<{ orders: number; events: number; runs: number }>(
      `SELECT (SELECT count(*)::int FROM orders) AS orders, (SELECT count(*)::int FROM order_events) AS events,
              (SELECT count(*)::int FROM saga_runs) AS runs`,
    );
    return rows[0]!;
  }

  /** Polls GetOrder until the order is in a final state. */
  async finalOrder(orderId: string, timeoutMs = 30_000): Promise<Order> {
    return eventually(
      `order ${orderId} to be final`,
      async () => {
        const { order } = await this.order.getOrder({ orderId });
        return order && FINAL.has(order.state) ? order : undefined;
      },
      timeoutMs,
      100,
    );
  }
}

const clientFactory = createClientFactory().use(errorDetailsClientMiddleware);

export const FINAL = new Set([
  OrderState.ORDER_STATE_CONFIRMED,
  OrderState.ORDER_STATE_REJECTED,
  OrderState.ORDER_STATE_FAILED,
  OrderState.ORDER_STATE_CANCELLED,
]);

/** Event type names of an order's history, without the enum prefix. */
export function eventTypes(order: Order): string[] {
  return order.history.map((e) => OrderEventType[e.type].replace("ORDER_EVENT_TYPE_", ""));
}

/** State names after each event of an order's history. */
export function eventStates(order: Order): string[] {
  return order.history.map((e) => OrderState[e.stateAfter].replace("ORDER_STATE_", ""));
}

export function stateName(state: OrderState): string {
  return OrderState[state].replace("ORDER_STATE_", "");
}

export interface Refusal {
  code: number;
  details: string;
  /** field → description of each BadRequest violation. */
  fields: Record<string, string>;
  preconditions: { type: string; subject: string; description: string }[];
}

/** The status and error details of a call that must fail. */
export async function refusal(call: Promise<unknown>): Promise<Refusal> {
  let error: unknown;
  try {
    await call;
  } catch (e) {
    error = e;
  }
  if (error === undefined) throw new Error("expected the call to fail, but it succeeded");
  const code = (error as { code?: unknown }).code;
  if (typeof code !== "number") throw error;
  const extra = error instanceof RichClientError ? error.extra : [];
  const fields: Record<string, string> = {};
  for (const detail of extra) {
    if (detail.$type === BadRequest.$type) for (const v of (detail as BadRequest).fieldViolations) fields[v.field] = v.description;
  }
  return {
    code,
    details: (error as { details?: string }).details ?? "",
    fields,
    preconditions: extra
      .filter((d): d is PreconditionFailure => d.$type === PreconditionFailure.$type)
      .flatMap((d) => d.violations.map((v) => ({ type: v.type, subject: v.subject, description: v.description }))),
  };
}

/** Log lines at level error or fatal. */
export function errorLines(lines: string[]): string[] {
  return lines.filter((line) => /"level":"(error|fatal)"/.test(line));
}
