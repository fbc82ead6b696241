import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { DEMO_TOKENS, createLogger, createServiceClient, openChannel } from "@meshcart/lib";
import { InventoryServiceDefinition } from "@meshcart/contracts/meshcart/inventory/v1/inventory.js";

const run = promisify(execFile);

/** Units added to every SKU before a run: far more than any run sells or holds. */
export const RESTOCK_UNITS = 1_000_000;

/**
 * The catalogue's SKUs, each restocked with RESTOCK_UNITS through the
 * operator's Restock RPC, so that no order of the run is refused for want
 * of stock (which would measure the refusal, not the checkout).
 */
export async function restockCatalogue(inventoryAddress: string, tag: string): Promise<string[]> {
  const channel = openChannel(inventoryAddress);
  const logger = createLogger({ service: "bench", version: "dev", level: "silent" });
  const inventory = createServiceClient(InventoryServiceDefinition, channel, { address: inventoryAddress, attemptTimeoutMs: 10_000, retries: 2 }, logger);
  try {
    const skus: string[] = [];
    let pageToken = "";
    do {
      const page = await inventory.listProducts({ pageSize: 100, pageToken });
      skus.push(...page.products.map((p) => p.sku));
      pageToken = page.nextPageToken;
    } while (pageToken);
    if (skus.length === 0) throw new Error("the inventory has no products to sell; is INVENTORY_SEED_CATALOGUE on?");
    for (const sku of skus) await inventory.restock({ restockId: `${tag}-${sku}`, sku, quantity: RESTOCK_UNITS });
    return skus;
  } finally {
    channel.close();
  }
}

/** A bearer token for the bench's shopper, minted by the storefront's own `make token` program with make dev's demo key. */
export async function shopperToken(repoRoot: string, customerId: string): Promise<string> {
  const { stdout } = await run(process.execPath, [path.join(repoRoot, "services/storefront/dist/mint-token.js"), "--customer", customerId, "--ttl", "2h"], {
    env: {
      ...process.env,
      STOREFRONT_JWT_SECRET: DEMO_TOKENS.secret,
      STOREFRONT_JWT_ISSUER: DEMO_TOKENS.issuer,
      STOREFRONT_JWT_AUDIENCE: DEMO_TOKENS.audience,
    },
  });
  const token = stdout.trim();
  if (!token) throw new Error("mint-token printed no token");
  return token;
}
