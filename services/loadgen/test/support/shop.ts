import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startNats, type LocalNats } from "../../../../dev/src/nats.js";
import { freePort } from "../../../../dev/src/net.js";
import { startService, type ServiceProcess } from "../../../../dev/src/processes.js";
import { createTestDatabase, type TestDatabase } from "../../../../dev/src/testing/database.js";

/**
 * The shop the load generator drives: inventory, payment, order,
 * fulfillment and the storefront as real processes (their compiled dist/),
 * each service with its own database, over gRPC on loopback, with a broker
 * of the shop's own, as `make dev` runs them, but on free ports. Payment
 * and inventory take faults on their control ports.
 */

type Name = "inventory" | "payment" | "order" | "fulfillment" | "storefront";

const entry = (name: Name | "loadgen") => fileURLToPath(new URL(`../../../${name}/dist/main.js`, import.meta.url));

/** The test storefront's token settings (not the demo ones: the load generator must be told). */
export const TEST_TOKENS = {
  STOREFRONT_JWT_SECRET: "loadgen-test-signing-key-0123456789abcdef",
  STOREFRONT_JWT_ISSUER: "meshcart-loadgen-test",
  STOREFRONT_JWT_AUDIENCE: "meshcart-storefront-loadgen-test",
};

export class Shop {
  readonly grpc = new Map<Name, number>();
  readonly faultPorts = new Map<"payment" | "inventory", number>();
  readonly databases = new Map<"inventory" | "payment" | "order" | "fulfillment", TestDatabase>();
  private readonly processes: ServiceProcess[] = [];
  private broker: { nats: LocalNats; dir: string } | undefined;

  static async start(prefix: string): Promise<Shop> {
    const shop = new Shop();
    for (const name of ["inventory", "payment", "order", "fulfillment"] as const) shop.databases.set(name, await createTestDatabase(`${prefix}_${name}`));
    for (const name of ["inventory", "payment", "order", "fulfillment", "storefront"] as const) shop.grpc.set(name, await freePort());
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "meshcart-loadgen-nats-"));
    shop.broker = { nats: await startNats({ dataDir: dir, port: await freePort(), monitorPort: await freePort() }), dir };
    const natsUrl = shop.broker.nats.url;
    for (const name of ["inventory", "payment"] as const) shop.faultPorts.set(name, await freePort());
    await Promise.all([
      shop.run("inventory", { INVENTORY_SEED_CATALOGUE: "true", FAULT_CONTROL_PORT: String(shop.faultPorts.get("inventory")) }),
      shop.run("payment", { FAULT_CONTROL_PORT: String(shop.faultPorts.get("payment")) }),
    ]);
    await Promise.all([
      shop.run("order", { INVENTORY_ADDRESS: shop.address("inventory"), PAYMENT_ADDRESS: shop.address("payment"), ORDER_CLIENT_RETRIES: "2", NATS_URL: natsUrl }),
      // Quick steps: a tracked order's shipment is shipped within the request's deadline.
      shop.run("fulfillment", { NATS_URL: natsUrl, FULFILLMENT_PACK_AFTER_MS: "200", FULFILLMENT_SHIP_AFTER_MS: "200", FULFILLMENT_POLL_MS: "200" }),
    ]);
    await shop.run("storefront", {
      ORDER_ADDRESS: shop.address("order"),
      FULFILLMENT_ADDRESS: shop.address("fulfillment"),
      INVENTORY_ADDRESS: shop.address("inventory"),
      PAYMENT_ADDRESS: shop.address("payment"),
      ...TEST_TOKENS,
    });
    return shop;
  }

  address(name: Name): string {
    return `127.0.0.1:${this.grpc.get(name)}`;
  }

  url(name: "inventory" | "payment" | "order" | "fulfillment"): string {
    return this.databases.get(name)!.url;
  }

  /** The environment that points a load generator at this shop. */
  loadgenEnv(): Record<string, string> {
    return { STOREFRONT_ADDRESS: this.address("storefront"), INVENTORY_ADDRESS: this.address("inventory"), ...TEST_TOKENS };
  }

  /** The load generator as a deployable, on free ports; ready when it is sending. */
  async startLoadgen(env: Record<string, string>): Promise<{ process: ServiceProcess; adminPort: number }> {
    const adminPort = await freePort();
    const process = await startService({
      name: "loadgen",
      entry: entry("loadgen"),
      adminPort,
      readyTimeoutMs: 30_000,
      env: { GRPC_PORT: String(await freePort()), ADMIN_PORT: String(adminPort), LOG_LEVEL: "info", ...this.loadgenEnv(), ...env },
    });
    this.processes.push(process);
    return { process, adminPort };
  }

  async close(): Promise<void> {
    for (const process of this.processes.reverse()) await process.stop("SIGTERM", 10_000).catch(() => undefined);
    for (const database of this.databases.values()) await database.drop().catch(() => undefined);
    if (this.broker) {
      await this.broker.nats.stop().catch(() => undefined);
      await fs.rm(this.broker.dir, { recursive: true, force: true });
    }
  }

  private async run(name: Name, env: Record<string, string>): Promise<void> {
    const adminPort = await freePort();
    this.processes.push(
      await startService({
        name,
        entry: entry(name),
        adminPort,
        readyTimeoutMs: 30_000,
        env: {
          GRPC_PORT: String(this.grpc.get(name)),
          ADMIN_PORT: String(adminPort),
          LOG_LEVEL: "warn",
          SHUTDOWN_TIMEOUT_MS: "3000",
          ...(name === "storefront" ? {} : { DATABASE_URL: this.url(name) }),
          ...env,
        },
      }),
    );
  }
}
