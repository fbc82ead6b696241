import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createChannel, createClientFactory, Metadata, type CallOptions, type Channel } from "nice-grpc";
import { BadRequest, RichClientError, errorDetailsClientMiddleware } from "nice-grpc-error-details";
import { OrderServiceDefinition, type OrderServiceClient } from "@meshcart/contracts/meshcart/order/v1/order.js";
import { PaymentServiceDefinition, type PaymentServiceClient } from "@meshcart/contracts/meshcart/payment/v1/payment.js";
import {
  StorefrontServiceDefinition,
  type StorefrontServiceClient,
} from "@meshcart/contracts/meshcart/storefront/v1/storefront.js";
import { startNats, type LocalNats } from "../../../../dev/src/nats.js";
import { freePort } from "../../../../dev/src/net.js";
import { startService, type ServiceProcess } from "../../../../dev/src/processes.js";
import { createTestDatabase, type TestDatabase } from "../../../../dev/src/testing/database.js";
import { parseExposition, type Exposition } from "../../../../dev/src/testing/prometheus.js";
import { mintShopperToken } from "@meshcart/lib";

/**
 * The storefront as a real process (its compiled dist/), in front of the
 * real inventory, payment, order and fulfillment processes (each with its
 * own database; order and fulfillment with a broker of the stack's own) or
 * of stub servers, all over gRPC on loopback, as `make dev` runs them.
 */

export type Name = "inventory" | "payment" | "order" | "fulfillment" | "storefront";

const entry = (name: Name) => fileURLToPath(new URL(`../../../${name}/dist/main.js`, import.meta.url));

/** The test storefront's token settings (not the demo ones: tests prove the settings are read). */
export const TEST_TOKENS = {
  secret: "storefront-test-signing-key-0123456789abcdef",
  issuer: "meshcart-test",
  audience: "meshcart-storefront-test",
};

export function token(customerId: string, overrides: Partial<Parameters<typeof mintShopperToken>[0]> = {}): Promise<string> {
  return mintShopperToken({ ...TEST_TOKENS, customerId, ttlSeconds: 600, ...overrides });
}

export function bearer(tokenValue: string, more: Record<string, string> = {}): Metadata {
  return Metadata({ authorization: `Bearer ${tokenValue}`, ...more });
}

interface Slot {
  grpcPort: number;
  env: Record<string, string>;
  process?: ServiceProcess;
  /** The running process's admin port (/metrics). */
  adminPort?: number;
  /** Every process this slot ran, for the logs. */
  history: ServiceProcess[];
}

export class Stack {
  private readonly slots = new Map<Name, Slot>();
  private readonly databases: TestDatabase[] = [];
  private channel?: Channel;
  private readonly extraChannels: Channel[] = [];
  private broker: { nats: LocalNats; dir: string } | undefined;

  /** Variables every process of the stack gets (e.g. where to send traces). */
  private common: Record<string, string> = {};

  /**
   * Inventory, payment and order, started; the storefront is started with
   * startStorefront. Every process logs at debug level (the kit's "call ok"
   * lines, written inside each call) and gets `common`; `own` adds or
   * overrides variables of one service (e.g. payment's SERVICE_VERSION).
   */
  static async withBackends(
    prefix: string,
    common: Record<string, string> = {},
    own: Partial<Record<"inventory" | "payment" | "order" | "fulfillment", Record<string, string>>> = {},
  ): Promise<Stack> {
    const stack = new Stack();
    stack.common = common;
    const base = { LOG_LEVEL: "debug", SHUTDOWN_TIMEOUT_MS: "3000", ...common };
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "meshcart-storefront-nats-"));
    stack.broker = { nats: await startNats({ dataDir: dir, port: await freePort(), monitorPort: await freePort() }), dir };
    for (const name of ["inventory", "payment", "order", "fulfillment"] as const) {
      const database = await createTestDatabase(`${prefix}_${name}`);
      stack.databases.push(database);
      stack.slots.set(name, { grpcPort: await freePort(), env: { ...base, DATABASE_URL: database.url }, history: [] });
    }
    stack.slot("inventory").env.INVENTORY_SEED_CATALOGUE = "true";
    stack.slot("payment").env.SERVICE_VERSION = "v1";
    Object.assign(stack.slot("order").env, {
      INVENTORY_ADDRESS: stack.address("inventory"),
      PAYMENT_ADDRESS: stack.address("payment"),
      ORDER_CLIENT_RETRIES: "1",
      ORDER_MAX_WAIT_MS: "15000",
      NATS_URL: stack.broker.nats.url,
    });
    // Quick steps: a TrackOrder follows the shipment to its end.
    Object.assign(stack.slot("fulfillment").env, {
      NATS_URL: stack.broker.nats.url,
      FULFILLMENT_PACK_AFTER_MS: "200",
      FULFILLMENT_SHIP_AFTER_MS: "200",
      FULFILLMENT_POLL_MS: "200",
    });
    for (const [name, env] of Object.entries(own)) Object.assign(stack.slot(name as Name).env, env);
    await Promise.all([stack.start("inventory"), stack.start("payment")]);
    await Promise.all([stack.start("order"), stack.start("fulfillment")]);
    return stack;
  }

  /** Nothing started yet: for a storefront in front of stubs. */
  static empty(): Stack {
    return new Stack();
  }

  address(name: Name): string {
    return `127.0.0.1:${this.slot(name).grpcPort}`;
  }

  /** Starts the storefront in front of the given addresses (the stack's own services by default). */
  async startStorefront(env: Record<string, string> = {}): Promise<ServiceProcess> {
    if (!this.slots.has("storefront")) {
      const backends = (["order", "inventory", "payment", "fulfillment"] as const).filter((name) => this.slots.has(name));
      this.slots.set("storefront", {
        grpcPort: await freePort(),
        env: {
          LOG_LEVEL: "debug",
          SHUTDOWN_TIMEOUT_MS: "3000",
          STOREFRONT_JWT_SECRET: TEST_TOKENS.secret,
          STOREFRONT_JWT_ISSUER: TEST_TOKENS.issuer,
          STOREFRONT_JWT_AUDIENCE: TEST_TOKENS.audience,
          ...this.common,
          ...Object.fromEntries(backends.map((name) => [`${name.toUpperCase()}_ADDRESS`, this.address(name)])),
          ...env,
        },
        history: [],
      });
    }
    return this.start("storefront");
  }

  async start(name: Name): Promise<ServiceProcess> {
    const slot = this.slot(name);
    if (slot.process) throw new Error(`${name} is already running`);
    const adminPort = await freePort();
    const process = await startService({
      name,
      entry: entry(name),
      adminPort,
      readyTimeoutMs: 30_000,
      env: { ...slot.env, GRPC_PORT: String(slot.grpcPort), ADMIN_PORT: String(adminPort) },
    });
    slot.process = process;
    slot.adminPort = adminPort;
    slot.history.push(process);
    return process;
  }

  /** The running service's /metrics, parsed. */
  async metrics(name: Name): Promise<Exposition> {
    const port = this.slot(name).adminPort;
    if (!port) throw new Error(`${name} is not running`);
    const response = await fetch(`http://127.0.0.1:${port}/metrics`);
    if (!response.ok) throw new Error(`GET /metrics of ${name} answered ${response.status}`);
    return parseExposition(await response.text());
  }

  /** Stops a service gracefully; the others (and the storefront) find it again when it restarts on the same port. */
  async stop(name: Name): Promise<void> {
    const slot = this.slot(name);
    await slot.process?.stop("SIGTERM", 10_000);
    slot.process = undefined;
  }

  /** Every log line of every process a service ran. */
  logs(name: Name): string[] {
    return this.slot(name).history.flatMap((p) => p.logs());
  }

  /** The JSON log lines of a service that carry this correlation id. */
  linesWith(name: Name, correlationId: string): Record<string, unknown>[] {
    return this.logs(name)
      .flatMap((line) => {
        try {
          return [JSON.parse(line) as Record<string, unknown>];
        } catch {
          return [];
        }
      })
      .filter((line) => line.correlation_id === correlationId);
  }

  get storefront(): StorefrontServiceClient {
    this.channel ??= createChannel(this.address("storefront"));
    return clients.create(StorefrontServiceDefinition, this.channel);
  }

  /** Direct access behind the edge, for what the public API does not show. */
  get order(): OrderServiceClient {
    return clients.create(OrderServiceDefinition, this.open("order"));
  }

  get payment(): PaymentServiceClient {
    return clients.create(PaymentServiceDefinition, this.open("payment"));
  }

  async close(): Promise<void> {
    this.channel?.close();
    for (const channel of this.extraChannels) channel.close();
    for (const name of ["storefront", "fulfillment", "order", "payment", "inventory"] as const) {
      await this.slots.get(name)?.process?.stop("SIGTERM", 10_000).catch(() => undefined);
    }
    for (const database of this.databases) await database.drop().catch(() => undefined);
    if (this.broker) {
      await this.broker.nats.stop().catch(() => undefined);
      await fs.rm(this.broker.dir, { recursive: true, force: true });
    }
  }

  private open(name: Name): Channel {
    const channel = createChannel(this.address(name));
    this.extraChannels.push(channel);
    return channel;
  }

  private slot(name: Name): Slot {
    const slot = this.slots.get(name);
    if (!slot) throw new Error(`no ${name} in this stack`);
    return slot;
  }
}

const clients = createClientFactory().use(errorDetailsClientMiddleware);

/** A call's result with the response headers it came with. */
export async function withHeader<T>(call: (options: CallOptions) => Promise<T>, metadata?: Metadata): Promise<{ result: T; header: Metadata }> {
  let header = Metadata();
  const result = await call({ ...(metadata ? { metadata } : {}), onHeader: (h) => (header = h) });
  return { result, header };
}

export interface Refusal {
  code: number;
  details: string;
  /** field → description of each BadRequest violation. */
  fields: Record<string, string>;
  header: Metadata;
}

/** The status, field violations and response headers of a call that must fail. */
export async function refusal(call: (options: CallOptions) => Promise<unknown>, metadata?: Metadata): Promise<Refusal> {
  let header = Metadata();
  let error: unknown;
  try {
    await call({ ...(metadata ? { metadata } : {}), onHeader: (h) => (header = h) });
  } catch (e) {
    error = e;
  }
  if (error === undefined) throw new Error("expected the call to fail, but it succeeded");
  const code = (error as { code?: unknown }).code;
  if (typeof code !== "number") throw error;
  const fields: Record<string, string> = {};
  for (const detail of error instanceof RichClientError ? error.extra : []) {
    if (detail.$type === BadRequest.$type) for (const v of (detail as BadRequest).fieldViolations) fields[v.field] = v.description;
  }
  return { code, details: (error as { details?: string }).details ?? "", fields, header };
}

/** Every message of a stream. */
export async function collect<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = [];
  for await (const item of stream) items.push(item);
  return items;
}
