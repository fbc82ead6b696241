import path from "node:path";
import { freePort } from "@meshcart/stack/net.js";
import { repoRoot } from "@meshcart/stack/paths.js";
import { startService, type ServiceProcess } from "@meshcart/stack/processes.js";
import { Stack, type ServiceName } from "@meshcart/stack/stack.js";
import { createTestDatabase } from "@meshcart/testing/database.js";

/**
 * The shop the load generator drives: every service as `make dev` runs it
 * (the stack fixture, dev/stack/src/stack.ts), each with its own database in the
 * test Postgres, on free ports; payment and inventory take faults.
 */

/** The test storefront's token settings (not the demo ones: the load generator must be told). */
export const TEST_TOKENS = {
  STOREFRONT_JWT_SECRET: "loadgen-test-signing-key-0123456789abcdef",
  STOREFRONT_JWT_ISSUER: "meshcart-loadgen-test",
  STOREFRONT_JWT_AUDIENCE: "meshcart-storefront-loadgen-test",
};

export class Shop {
  private readonly loadgens: ServiceProcess[] = [];

  private constructor(private readonly stack: Stack) {}

  static async start(prefix: string): Promise<Shop> {
    const stack = await Stack.start({
      database: (name) => createTestDatabase(`${prefix}_${name}`),
      logLevel: "warn",
      env: {
        order: { ORDER_CLIENT_RETRIES: "2" },
        // Quick steps: a tracked order's shipment is shipped within the request's deadline.
        fulfillment: { FULFILLMENT_PACK_AFTER_MS: "200", FULFILLMENT_SHIP_AFTER_MS: "200", FULFILLMENT_POLL_MS: "200" },
        storefront: TEST_TOKENS,
      },
    });
    return new Shop(stack);
  }

  address(name: ServiceName): string {
    return this.stack.address(name);
  }

  /** A service's database URL. */
  url(name: "inventory" | "payment" | "order" | "fulfillment"): string {
    return this.stack.databaseUrl(name);
  }

  /** Where a service's fault rules are put and deleted. */
  faultsUrl(name: "inventory" | "payment"): string {
    return this.stack.faultsUrl(name);
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
      entry: path.join(repoRoot, "services/loadgen/dist/main.js"),
      adminPort,
      readyTimeoutMs: 30_000,
      env: { GRPC_PORT: String(await freePort()), ADMIN_PORT: String(adminPort), LOG_LEVEL: "info", ...this.loadgenEnv(), ...env },
    });
    this.loadgens.push(process);
    return { process, adminPort };
  }

  async close(): Promise<void> {
    for (const process of this.loadgens.reverse()) await process.stop("SIGTERM", 10_000).catch(() => undefined);
    await this.stack.close();
  }
}
