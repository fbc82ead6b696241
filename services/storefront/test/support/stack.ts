import { Metadata, type CallOptions } from "nice-grpc";
import { BadRequest, RichClientError } from "nice-grpc-error-details";
import type { OrderServiceClient } from "@meshcart/contracts/meshcart/order/v1/order.js";
import type { PaymentServiceClient } from "@meshcart/contracts/meshcart/payment/v1/payment.js";
import type { StorefrontServiceClient } from "@meshcart/contracts/meshcart/storefront/v1/storefront.js";
import type { ServiceProcess } from "@meshcart/stack/processes.js";
import { Stack as Fixture, type ServiceName } from "@meshcart/stack/stack.js";
import { createTestDatabase } from "@meshcart/testing/database.js";
import { parseExposition, type Exposition } from "@meshcart/testing/prometheus.js";
import { mintShopperToken } from "@meshcart/lib";

/**
 * The storefront as a real process in front of the real inventory, payment,
 * order and fulfillment processes (the stack fixture, dev/stack/src/stack.ts: each
 * with its own database, order and fulfillment with a broker of the stack's
 * own) or of stub servers, all over gRPC on loopback, as `make dev` runs them.
 */

export type Name = ServiceName;
type Backend = Exclude<Name, "storefront">;

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

/** What these tests change from make dev: every process logs at debug level (the kit's "call ok" lines, written inside each call). */
const OWN: Record<Name, Record<string, string>> = {
  inventory: {},
  payment: { SERVICE_VERSION: "v1" },
  order: { ORDER_CLIENT_RETRIES: "1", ORDER_MAX_WAIT_MS: "15000" },
  // Quick steps: a TrackOrder follows the shipment to its end.
  fulfillment: { FULFILLMENT_PACK_AFTER_MS: "200", FULFILLMENT_SHIP_AFTER_MS: "200", FULFILLMENT_POLL_MS: "200" },
  storefront: { STOREFRONT_JWT_SECRET: TEST_TOKENS.secret, STOREFRONT_JWT_ISSUER: TEST_TOKENS.issuer, STOREFRONT_JWT_AUDIENCE: TEST_TOKENS.audience },
};

export class Stack {
  private fixture: Fixture | undefined;
  /** The storefront's variables of startStorefront, for its restarts. */
  private storefrontEnv: Record<string, string> = {};

  private constructor(private readonly common: Record<string, string> = {}) {}

  /**
   * Inventory, payment, order and fulfillment, started; the storefront is
   * started with startStorefront. Every process gets `common`; `own` adds or
   * overrides variables of one service (e.g. payment's SERVICE_VERSION).
   */
  static async withBackends(prefix: string, common: Record<string, string> = {}, own: Partial<Record<Backend, Record<string, string>>> = {}): Promise<Stack> {
    const stack = new Stack(common);
    stack.fixture = await stack.create(prefix, ["inventory", "payment", "order", "fulfillment", "storefront"], own);
    try {
      await stack.fixture.startAll({ except: ["storefront"] });
    } catch (error) {
      await stack.close();
      throw error;
    }
    return stack;
  }

  /** Nothing started yet: for a storefront in front of stubs (startStorefront gets their addresses). */
  static empty(): Stack {
    return new Stack();
  }

  address(name: Name): string {
    return this.stack.address(name);
  }

  /** Starts the storefront in front of the stack's own services, or of the addresses in `env`. */
  async startStorefront(env: Record<string, string> = {}): Promise<ServiceProcess> {
    this.fixture ??= await this.create("storefront", ["storefront"], {});
    this.storefrontEnv = env;
    return this.start("storefront");
  }

  /** Starts a stopped service again on its port; the others (and the storefront) find it again. */
  start(name: Name): Promise<ServiceProcess> {
    return this.stack.start(name, name === "storefront" ? this.storefrontEnv : {});
  }

  /** The running service's /metrics, parsed. */
  async metrics(name: Name): Promise<Exposition> {
    return parseExposition(await this.stack.metrics(name));
  }

  /** Stops a service gracefully. */
  async stop(name: Name): Promise<void> {
    await this.stack.stop(name);
  }

  /** Every log line of every process a service ran. */
  logs(name: Name): string[] {
    return this.stack.logs(name);
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
    return this.stack.client("storefront");
  }

  /** Direct access behind the edge, for what the public API does not show. */
  get order(): OrderServiceClient {
    return this.stack.client("order");
  }

  get payment(): PaymentServiceClient {
    return this.stack.client("payment");
  }

  async close(): Promise<void> {
    await this.fixture?.close();
  }

  private get stack(): Fixture {
    if (!this.fixture) throw new Error("nothing runs in this stack yet");
    return this.fixture;
  }

  private create(prefix: string, services: Name[], own: Partial<Record<Backend, Record<string, string>>>): Promise<Fixture> {
    return Fixture.create({
      services,
      database: (name) => createTestDatabase(`${prefix}_${name}`),
      logLevel: "debug",
      faults: false,
      common: this.common,
      env: Object.fromEntries(services.map((name) => [name, { ...OWN[name], ...own[name as Backend] }])),
    });
  }
}

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
