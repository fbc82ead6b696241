import pg from "pg";
import type { Channel } from "nice-grpc";
import type { LocalNats } from "@meshcart/stack/nats.js";
import type { ExitStatus, ServiceProcess } from "@meshcart/stack/processes.js";
import { Stack, type ServiceName } from "@meshcart/stack/stack.js";
import { checkInvariants, readSnapshot, type DatabaseUrls, type Report } from "@meshcart/stack/verify.js";
import { createTestDatabase } from "./database.js";

/**
 * Some or all of meshcart's services as real processes, each with its own new
 * database in the test run's Postgres, as `make dev` runs them (the stack
 * fixture, dev/stack/src/stack.ts), with quick timings. For the reliability
 * suites, which call every service directly and read every database.
 */

export type ShopService = ServiceName;

/** Signing settings the test storefront checks tokens against (tests mint with them). */
export const SHOP_TOKENS = {
  secret: "reliability-test-signing-key-0123456789abcdef",
  issuer: "meshcart-reliability-test",
  audience: "meshcart-storefront-reliability-test",
};

/** What the reliability suites change from make dev: quick recoveries, steps and redeliveries, room for bursts. */
const QUICK: Record<ShopService, Record<string, string>> = {
  inventory: { DB_POOL_MAX: "20" },
  payment: { SERVICE_VERSION: "v1", DB_POOL_MAX: "20" },
  order: { ORDER_CLIENT_RETRIES: "2", ORDER_RETRY_MAX_MS: "300", ORDER_RECOVERY_INTERVAL_MS: "500", ORDER_MAX_WAIT_MS: "15000", DB_POOL_MAX: "20" },
  // The tests follow a shipment to its end; a crashed consumer's message comes back after 2 s rather than 30.
  fulfillment: {
    FULFILLMENT_PACK_AFTER_MS: "300",
    FULFILLMENT_SHIP_AFTER_MS: "300",
    FULFILLMENT_POLL_MS: "200",
    FULFILLMENT_ACK_WAIT_MS: "2000",
    DB_POOL_MAX: "10",
  },
  storefront: { STOREFRONT_JWT_SECRET: SHOP_TOKENS.secret, STOREFRONT_JWT_ISSUER: SHOP_TOKENS.issuer, STOREFRONT_JWT_AUDIENCE: SHOP_TOKENS.audience },
};

export interface ShopOptions {
  /** Names the databases. */
  prefix: string;
  /** Which services to run; every one by default. Order needs inventory and payment, the storefront the others. */
  services?: ShopService[];
  /** Added to one service's environment. */
  env?: Partial<Record<ShopService, Record<string, string>>>;
  /** Added to every service's environment (e.g. where to send traces). */
  common?: Record<string, string>;
}

export class Shop {
  private readonly pools = new Map<ShopService, pg.Pool>();

  private constructor(private readonly stack: Stack) {}

  static async start(options: ShopOptions): Promise<Shop> {
    const env = Object.fromEntries(Object.entries(QUICK).map(([name, quick]) => [name, { ...quick, ...options.env?.[name as ShopService] }]));
    const stack = await Stack.start({
      ...(options.services ? { services: options.services } : {}),
      database: (name) => createTestDatabase(`${options.prefix}_${name}`),
      env,
      common: options.common ?? {},
    });
    return new Shop(stack);
  }

  address(name: ShopService): string {
    this.stack.process(name);
    return this.stack.address(name);
  }

  channel(name: ShopService): Channel {
    this.stack.process(name);
    return this.stack.channel(name);
  }

  /** The service's database, for what the API does not show. */
  sql(name: ShopService): pg.Pool {
    let pool = this.pools.get(name);
    if (!pool) {
      pool = new pg.Pool({ connectionString: this.stack.databaseUrl(name), max: 2 });
      // pg-pool's end() resolves once its idle clients are told to end, not
      // once their sessions are closed; stop()'s DROP DATABASE ... WITH
      // (FORCE) can then terminate one (57P01), and the pool re-emits the
      // client's error: without a listener, an uncaught error in the test.
      pool.on("error", () => undefined);
      this.pools.set(name, pool);
    }
    return pool;
  }

  get databaseUrls(): DatabaseUrls {
    const url = (name: ShopService) => this.stack.databaseUrl(name);
    const fulfillment = this.stack.services.includes("fulfillment") ? { fulfillment: url("fulfillment") } : {};
    return { order: url("order"), payment: url("payment"), inventory: url("inventory"), ...fulfillment };
  }

  /** The shop's broker (an outage is nats.pause() and nats.resume()). */
  get nats(): LocalNats {
    return this.stack.nats;
  }

  /** make verify's cross-service invariants over this shop's databases. */
  async verify(): Promise<Report> {
    return checkInvariants(await readSnapshot(this.databaseUrls));
  }

  /** Replaces a service's fault rules (`{}` clears them), as `make faults` does. */
  faults(name: ShopService, rules: Record<string, unknown>): Promise<void> {
    return this.stack.faults(name, rules);
  }

  /** The service's admin port (probes and /metrics), as a base URL. */
  adminUrl(name: ShopService): string {
    return this.stack.adminUrl(name);
  }

  /** Every log line the running process of the service wrote so far. */
  logs(name: ShopService): string[] {
    return this.stack.process(name).logs();
  }

  /** Log lines at level error or fatal, of every running service. */
  errorLines(): string[] {
    return this.stack.services
      .filter((name) => this.stack.isRunning(name))
      .flatMap((name) =>
        this.logs(name)
          .filter((line) => /"level":"(error|fatal)"/.test(line))
          .map((line) => `${name}: ${line}`),
      );
  }

  async stop(): Promise<void> {
    for (const pool of this.pools.values()) await pool.end().catch(() => undefined);
    this.pools.clear();
    await this.stack.close();
  }

  isRunning(name: ShopService): boolean {
    return this.stack.isRunning(name);
  }

  /** kill -9: no shutdown, nothing handed over. */
  async kill9(name: ShopService): Promise<void> {
    await this.stack.kill9(name);
  }

  /** Waits for a service that kills itself (a crash hook) and forgets it. */
  crashed(name: ShopService): Promise<ExitStatus> {
    return this.stack.crashed(name);
  }

  /** Stops a service gracefully (SIGTERM). */
  async stopService(name: ShopService): Promise<void> {
    this.stack.process(name);
    await this.stack.stop(name);
  }

  /** Starts a stopped service again on its gRPC port, with its first start's environment and `env` on top (replacing the previous restart's). */
  async restart(name: ShopService, env: Record<string, string> = {}): Promise<void> {
    await this.stack.start(name, env);
  }

  /** The running process (its logs, its exit). */
  process(name: ShopService): ServiceProcess {
    return this.stack.process(name);
  }
}
