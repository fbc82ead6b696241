import { fileURLToPath } from "node:url";
import pg from "pg";
import { createChannel, createClientFactory, type Channel } from "nice-grpc";
import { BadRequest, PreconditionFailure, RichClientError, errorDetailsClientMiddleware } from "nice-grpc-error-details";
import { InventoryServiceDefinition, type InventoryServiceClient } from "@meshcart/contracts/meshcart/inventory/v1/inventory.js";
import {
  OrderEventType,
  OrderServiceDefinition,
  OrderState,
  type Order,
  type OrderServiceClient,
} from "@meshcart/contracts/meshcart/order/v1/order.js";
import { PaymentServiceDefinition, PaymentStatus, type Payment, type PaymentServiceClient } from "@meshcart/contracts/meshcart/payment/v1/payment.js";
import { freePort } from "../../../../dev/src/net.js";
import { startService, type ServiceProcess } from "../../../../dev/src/processes.js";
import type { TestDatabases } from "./database.js";
import { eventually } from "./wait.js";

/**
 * Inventory, payment and order as real processes (their compiled dist/),
 * each with its own database, talking gRPC over loopback, as `make dev`
 * runs them. A service can be stopped, killed and started again on the
 * same gRPC port, so the others (and the test's clients) find it again.
 */

const ENTRIES = {
  inventory: fileURLToPath(new URL("../../../inventory/dist/main.js", import.meta.url)),
  payment: fileURLToPath(new URL("../../../payment/dist/main.js", import.meta.url)),
  order: fileURLToPath(new URL("../../dist/main.js", import.meta.url)),
};

type Name = keyof typeof ENTRIES;

interface Slot {
  grpcPort: number;
  /** Of the running process. */
  adminPort?: number;
  databaseUrl: string;
  process?: ServiceProcess;
  channel?: Channel;
  /** Every process this slot ran, for the logs. */
  history: ServiceProcess[];
}

export class Mesh {
  private readonly slots = new Map<Name, Slot>();
  /** Direct access to the order service's database, for what the API does not show. */
  orderSql!: pg.Pool;

  /** `env`: added to every process's environment (e.g. the OTLP endpoint). */
  private constructor(private readonly env: Record<string, string>) {}

  static async create(databases: TestDatabases, prefix: string, options: { env?: Record<string, string> } = {}): Promise<Mesh> {
    const mesh = new Mesh(options.env ?? {});
    for (const name of ["inventory", "payment", "order"] as const) {
      const database = await databases.create(`${prefix}_${name}`);
      mesh.slots.set(name, { grpcPort: await freePort(), databaseUrl: database.url, history: [] });
    }
    mesh.orderSql = new pg.Pool({ connectionString: mesh.slot("order").databaseUrl, max: 3 });
    // The database is dropped WITH (FORCE) at the end: a session it terminates must not be an uncaught error.
    mesh.orderSql.on("error", () => undefined);
    return mesh;
  }

  get inventoryAddress(): string {
    return `127.0.0.1:${this.slot("inventory").grpcPort}`;
  }

  get paymentAddress(): string {
    return `127.0.0.1:${this.slot("payment").grpcPort}`;
  }

  async startInventory(): Promise<ServiceProcess> {
    return this.start("inventory", { INVENTORY_SEED_CATALOGUE: "true", EXPIRY_SWEEP_INTERVAL_MS: "500" });
  }

  async startPayment(): Promise<ServiceProcess> {
    return this.start("payment", { SERVICE_VERSION: "v1" });
  }

  /**
   * Starts the order service on its gRPC port (the same one each time
   * unless `grpcPort` is given: the lease owner is host:port).
   */
  async startOrder(env: Record<string, string> = {}, grpcPort?: number): Promise<ServiceProcess> {
    return this.start(
      "order",
      {
        INVENTORY_ADDRESS: this.inventoryAddress,
        PAYMENT_ADDRESS: this.paymentAddress,
        ORDER_STEP_TIMEOUT_MS: "2000",
        ORDER_CLIENT_RETRIES: "2",
        ORDER_SAGA_LEASE_MS: "1500",
        ORDER_RECOVERY_INTERVAL_MS: "200",
        ORDER_RETRY_MAX_MS: "300",
        ORDER_MAX_WAIT_MS: "15000",
        ...env,
      },
      grpcPort,
    );
  }

  /** A second order replica on another port (another lease owner), over the same database. */
  async startOrderReplica(env: Record<string, string> = {}): Promise<{ process: ServiceProcess; client: OrderServiceClient; close(): void }> {
    const grpcPort = await freePort();
    const process = await this.startOrder(env, grpcPort);
    const channel = createChannel(`127.0.0.1:${grpcPort}`);
    return { process, client: clientFactory.create(OrderServiceDefinition, channel), close: () => channel.close() };
  }

  /** Stops a service gracefully (SIGTERM) and returns how it exited. */
  async stop(name: Name): Promise<{ code: number | null; signal: NodeJS.Signals | null } | undefined> {
    const slot = this.slot(name);
    const status = await slot.process?.stop("SIGTERM", 10_000);
    slot.process = undefined;
    this.dropChannel(slot);
    return status;
  }

  isRunning(name: Name): boolean {
    return this.slot(name).process !== undefined;
  }

  /** The running process of a service (for its logs, or to wait for its death). */
  process(name: Name): ServiceProcess {
    const process = this.slot(name).process;
    if (!process) throw new Error(`${name} is not running`);
    return process;
  }

  /** Forgets a process that died by itself (the order service's crash hook). */
  async crashed(name: Name): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const slot = this.slot(name);
    const status = await this.process(name).exited;
    slot.process = undefined;
    this.dropChannel(slot);
    return status;
  }

  get inventory(): InventoryServiceClient {
    return clientFactory.create(InventoryServiceDefinition, this.channel("inventory"));
  }

  get payment(): PaymentServiceClient {
    return clientFactory.create(PaymentServiceDefinition, this.channel("payment"));
  }

  get order(): OrderServiceClient {
    return clientFactory.create(OrderServiceDefinition, this.channel("order"));
  }

  /** The Prometheus text a running service serves on its admin port's /metrics. */
  async metrics(name: Name): Promise<string> {
    const port = this.slot(name).adminPort;
    if (!this.isRunning(name) || port === undefined) throw new Error(`${name} is not running`);
    const response = await fetch(`http://127.0.0.1:${port}/metrics`);
    if (!response.ok) throw new Error(`${name} /metrics answered ${response.status}`);
    return response.text();
  }

  /** Every log line of every process a service ran. */
  logs(name: Name): string[] {
    return this.slot(name).history.flatMap((p) => p.logs());
  }

  async close(): Promise<void> {
    for (const name of ["order", "payment", "inventory"] as const) {
      const slot = this.slots.get(name);
      if (slot?.process) await slot.process.stop("SIGTERM", 10_000).catch(() => undefined);
      if (slot) this.dropChannel(slot);
    }
    await this.orderSql?.end();
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
    return payments.reduce((sum, p) => sum + (p.status === PaymentStatus.PAYMENT_STATUS_DECLINED ? 0 : p.amount!.minorUnits - (p.refunded?.minorUnits ?? 0)), 0);
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

  // ------------------------------------------------------------ internals

  private slot(name: Name): Slot {
    const slot = this.slots.get(name);
    if (!slot) throw new Error(`no ${name} slot`);
    return slot;
  }

  private channel(name: Name): Channel {
    const slot = this.slot(name);
    slot.channel ??= createChannel(`127.0.0.1:${slot.grpcPort}`);
    return slot.channel;
  }

  private dropChannel(slot: Slot): void {
    // A fresh channel after a restart: the old one may sit in reconnect backoff.
    slot.channel?.close();
    slot.channel = undefined;
  }

  private async start(name: Name, env: Record<string, string>, grpcPort?: number): Promise<ServiceProcess> {
    const slot = this.slot(name);
    const ownSlot = grpcPort === undefined;
    if (ownSlot && slot.process) throw new Error(`${name} is already running`);
    const adminPort = await freePort();
    const process = await startService({
      name,
      entry: ENTRIES[name],
      adminPort,
      readyTimeoutMs: 30_000,
      env: {
        GRPC_PORT: String(grpcPort ?? slot.grpcPort),
        ADMIN_PORT: String(adminPort),
        DATABASE_URL: slot.databaseUrl,
        LOG_LEVEL: "info",
        SHUTDOWN_TIMEOUT_MS: "3000",
        ...this.env,
        ...env,
      },
    });
    slot.history.push(process);
    if (ownSlot) {
      slot.process = process;
      slot.adminPort = adminPort;
      this.dropChannel(slot);
    }
    return process;
  }
}

const clientFactory = createClientFactory().use(errorDetailsClientMiddleware);

export const FINAL = new Set([OrderState.ORDER_STATE_CONFIRMED, OrderState.ORDER_STATE_REJECTED, OrderState.ORDER_STATE_FAILED, OrderState.ORDER_STATE_CANCELLED]);

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
