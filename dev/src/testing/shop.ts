import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { createChannel, type Channel } from "nice-grpc";
import { startNats, type LocalNats } from "../nats.js";
import { freePort } from "../net.js";
import { repoRoot } from "../paths.js";
import { startService, type ServiceProcess } from "../processes.js";
import { checkInvariants, readSnapshot, type DatabaseUrls, type Report } from "../verify.js";
import { createTestDatabase, type TestDatabase } from "./database.js";

/**
 * Some or all of meshcart's services as real processes (their compiled
 * dist/), each with its own new database in the test run's Postgres, on
 * loopback, as `make dev` runs them; payment and inventory with their
 * fault-control endpoint; a broker of the shop's own (nats-server, free
 * ports, a throwaway store) when order or fulfillment run. For the
 * reliability suites, which call every service directly and read every
 * database.
 */

export type ShopService = "inventory" | "payment" | "order" | "fulfillment" | "storefront";

const BACKED: readonly ShopService[] = ["inventory", "payment", "order", "fulfillment"];
/** The services that talk to the broker. */
const BROKERED: readonly ShopService[] = ["order", "fulfillment"];
const FAULTABLE: readonly ShopService[] = ["inventory", "payment"];

/** Signing settings the test storefront checks tokens against (tests mint with them). */
export const SHOP_TOKENS = {
  secret: "reliability-test-signing-key-0123456789abcdef",
  issuer: "meshcart-reliability-test",
  audience: "meshcart-storefront-reliability-test",
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

interface Running {
  process: ServiceProcess;
  grpcPort: number;
  adminPort: number;
  faultPort?: number;
  channel: Channel;
}

export class Shop {
  private readonly running = new Map<ShopService, Running>();
  private readonly databases = new Map<ShopService, TestDatabase>();
  private readonly pools = new Map<ShopService, pg.Pool>();
  private broker: { nats: LocalNats; dir: string } | undefined;
  /** Each service's gRPC port, kept across restarts: the others find it again. */
  private readonly grpcPorts = new Map<ShopService, number>();
  /** What each service was started with, for restarts. */
  private readonly extras = new Map<ShopService, Record<string, string>>();
  private common: Record<string, string> = {};

  private constructor() {}

  static async start(options: ShopOptions): Promise<Shop> {
    const shop = new Shop();
    shop.common = options.common ?? {};
    const wanted = options.services ?? ["inventory", "payment", "order", "fulfillment", "storefront"];
    try {
      for (const name of BACKED.filter((n) => wanted.includes(n))) {
        shop.databases.set(name, await createTestDatabase(`${options.prefix}_${name}`));
      }
      if (BROKERED.some((n) => wanted.includes(n))) {
        const dir = await fs.mkdtemp(path.join(os.tmpdir(), "meshcart-test-nats-"));
        try {
          shop.broker = { nats: await startNats({ dataDir: dir, port: await freePort(), monitorPort: await freePort() }), dir };
        } catch (error) {
          await fs.rm(dir, { recursive: true, force: true });
          throw error;
        }
      }
      // Dependencies first: order and the storefront resolve addresses at start.
      const first = (["inventory", "payment"] as const).filter((n) => wanted.includes(n));
      await Promise.all(first.map((name) => shop.launch(name, options.env?.[name] ?? {})));
      const second = (["order", "fulfillment"] as const).filter((n) => wanted.includes(n));
      await Promise.all(second.map((name) => shop.launch(name, options.env?.[name] ?? {})));
      if (wanted.includes("storefront")) await shop.launch("storefront", options.env?.storefront ?? {});
    } catch (error) {
      await shop.stop();
      throw error;
    }
    return shop;
  }

  address(name: ShopService): string {
    return `127.0.0.1:${this.get(name).grpcPort}`;
  }

  channel(name: ShopService): Channel {
    return this.get(name).channel;
  }

  /** The service's database, for what the API does not show. */
  sql(name: ShopService): pg.Pool {
    let pool = this.pools.get(name);
    if (!pool) {
      const database = this.databases.get(name);
      if (!database) throw new Error(`${name} has no database in this shop`);
      pool = new pg.Pool({ connectionString: database.url, max: 2 });
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
    const url = (name: ShopService) => {
      const database = this.databases.get(name);
      if (!database) throw new Error(`${name} has no database in this shop`);
      return database.url;
    };
    const fulfillment = this.databases.get("fulfillment");
    return { order: url("order"), payment: url("payment"), inventory: url("inventory"), ...(fulfillment ? { fulfillment: fulfillment.url } : {}) };
  }

  /** The shop's broker (an outage is nats.pause() and nats.resume()). */
  get nats(): LocalNats {
    if (!this.broker) throw new Error("this shop runs no broker");
    return this.broker.nats;
  }

  /** make verify's cross-service invariants over this shop's three databases. */
  async verify(): Promise<Report> {
    return checkInvariants(await readSnapshot(this.databaseUrls));
  }

  /** Replaces a service's fault rules (`{}` clears them), as `make faults` does. */
  async faults(name: ShopService, rules: Record<string, unknown>): Promise<void> {
    const port = this.get(name).faultPort;
    if (port === undefined) throw new Error(`${name} has no fault-control endpoint`);
    const response = await fetch(`http://127.0.0.1:${port}/faults`, { method: "PUT", body: JSON.stringify(rules) });
    if (response.status !== 200) throw new Error(`${name} refused the fault rules: ${response.status} ${await response.text()}`);
  }

  /** The service's admin port (probes and /metrics), as a base URL. */
  adminUrl(name: ShopService): string {
    return `http://127.0.0.1:${this.get(name).adminPort}`;
  }

  /** Every log line the service wrote so far. */
  logs(name: ShopService): string[] {
    return this.get(name).process.logs();
  }

  /** Log lines at level error or fatal, of every running service. */
  errorLines(): string[] {
    return [...this.running.entries()].flatMap(([name, r]) =>
      r.process
        .logs()
        .filter((line) => /"level":"(error|fatal)"/.test(line))
        .map((line) => `${name}: ${line}`),
    );
  }

  async stop(): Promise<void> {
    for (const name of ["storefront", "fulfillment", "order", "payment", "inventory"] as const) {
      const running = this.running.get(name);
      if (!running) continue;
      running.channel.close();
      await running.process.stop("SIGTERM", 10_000).catch(() => undefined);
      this.running.delete(name);
    }
    for (const pool of this.pools.values()) await pool.end().catch(() => undefined);
    this.pools.clear();
    for (const database of this.databases.values()) await database.drop().catch(() => undefined);
    this.databases.clear();
    if (this.broker) {
      await this.broker.nats.stop().catch(() => undefined);
      await fs.rm(this.broker.dir, { recursive: true, force: true });
      this.broker = undefined;
    }
  }

  isRunning(name: ShopService): boolean {
    return this.running.has(name);
  }

  /** kill -9: no shutdown, nothing handed over. */
  async kill9(name: ShopService): Promise<void> {
    const running = this.get(name);
    running.channel.close();
    await running.process.kill9();
    this.running.delete(name);
  }

  /** Waits for a service that kills itself (a crash hook) and forgets it. */
  async crashed(name: ShopService): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const running = this.get(name);
    const status = await running.process.exited;
    running.channel.close();
    this.running.delete(name);
    return status;
  }

  /** Stops a service gracefully (SIGTERM). */
  async stopService(name: ShopService): Promise<void> {
    const running = this.get(name);
    running.channel.close();
    await running.process.stop("SIGTERM", 10_000);
    this.running.delete(name);
  }

  /** Starts a stopped service again on its gRPC port, with its first start's environment and `env` on top (replacing the previous restart's). */
  async restart(name: ShopService, env: Record<string, string> = {}): Promise<void> {
    if (this.running.has(name)) throw new Error(`${name} is running`);
    await this.launch(name, { ...this.extras.get(name), ...env }, false);
  }

  /** The running process (its logs, its exit). */
  process(name: ShopService) {
    return this.get(name).process;
  }

  private get(name: ShopService): Running {
    const running = this.running.get(name);
    if (!running) throw new Error(`${name} is not running in this shop`);
    return running;
  }

  private async launch(name: ShopService, extra: Record<string, string>, first = true): Promise<void> {
    if (first) this.extras.set(name, extra);
    const grpcPort = this.grpcPorts.get(name) ?? (await freePort());
    this.grpcPorts.set(name, grpcPort);
    const adminPort = await freePort();
    const faultPort = FAULTABLE.includes(name) ? await freePort() : undefined;
    const env: Record<string, string> = {
      GRPC_PORT: String(grpcPort),
      ADMIN_PORT: String(adminPort),
      LOG_LEVEL: "info",
      SHUTDOWN_TIMEOUT_MS: "3000",
      ...(faultPort === undefined ? {} : { FAULT_CONTROL_PORT: String(faultPort) }),
    };
    const database = this.databases.get(name);
    if (database) env.DATABASE_URL = database.url;
    if (this.broker && BROKERED.includes(name)) env.NATS_URL = this.broker.nats.url;
    if (name === "inventory") Object.assign(env, { INVENTORY_SEED_CATALOGUE: "true", DB_POOL_MAX: "20" });
    if (name === "payment") Object.assign(env, { SERVICE_VERSION: "v1", DB_POOL_MAX: "20" });
    if (name === "order") {
      Object.assign(env, {
        INVENTORY_ADDRESS: this.address("inventory"),
        PAYMENT_ADDRESS: this.address("payment"),
        ORDER_CLIENT_RETRIES: "2",
        ORDER_RETRY_MAX_MS: "300",
        ORDER_RECOVERY_INTERVAL_MS: "500",
        ORDER_MAX_WAIT_MS: "15000",
        DB_POOL_MAX: "20",
      });
    }
    if (name === "fulfillment") {
      // Quick steps: the tests follow a shipment to its end.
      // A crashed consumer's message comes back after 2 s rather than 30.
      Object.assign(env, { FULFILLMENT_PACK_AFTER_MS: "300", FULFILLMENT_SHIP_AFTER_MS: "300", FULFILLMENT_POLL_MS: "200", FULFILLMENT_ACK_WAIT_MS: "2000", DB_POOL_MAX: "10" });
    }
    if (name === "storefront") {
      Object.assign(env, {
        ...(this.running.has("fulfillment") ? { FULFILLMENT_ADDRESS: this.address("fulfillment") } : {}),
        ORDER_ADDRESS: this.address("order"),
        INVENTORY_ADDRESS: this.address("inventory"),
        PAYMENT_ADDRESS: this.address("payment"),
        STOREFRONT_JWT_SECRET: SHOP_TOKENS.secret,
        STOREFRONT_JWT_ISSUER: SHOP_TOKENS.issuer,
        STOREFRONT_JWT_AUDIENCE: SHOP_TOKENS.audience,
      });
    }
    const process = await startService({
      name,
      entry: path.join(repoRoot, "services", name, "dist", "main.js"),
      adminPort,
      readyTimeoutMs: 30_000,
      env: { ...env, ...this.common, ...extra },
    });
    this.running.set(name, { process, grpcPort, adminPort, faultPort, channel: createChannel(`127.0.0.1:${grpcPort}`) });
  }
}
