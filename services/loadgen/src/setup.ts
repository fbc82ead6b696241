import { randomBytes } from "node:crypto";
import { createServiceClient, openChannel, type Logger, type Registry } from "@meshcart/lib";
import { InventoryServiceDefinition } from "@meshcart/contracts/meshcart/inventory/v1/inventory.js";
import { StorefrontServiceDefinition } from "@meshcart/contracts/meshcart/storefront/v1/storefront.js";
import type { LoadgenConfig } from "./config.js";
import { LoadGenerator, seededRandom, type GeneratorDeps } from "./generator.js";
import { LoadgenMetrics } from "./metrics.js";
import { parseMix, parseRunDuration } from "./options.js";
import { ShopperTokens } from "./tokens.js";

export interface Loadgen {
  generator: LoadGenerator;
  runId: string;
  /** Closes the channels; after the run. */
  close(): void;
}

/**
 * The load generator a configuration describes, for the deployable
 * (main.ts) and the command line (cli.ts) alike: one channel to the
 * storefront (the shoppers' traffic, no app-level retries: what fails is
 * counted), one to inventory for the operator's restocks (retried: each
 * restock has its idempotency id).
 */
export function createLoadgen(
  config: LoadgenConfig,
  logger: Logger,
  registry: Registry,
  extra: { startTimeoutMs?: number; drainMs?: number; summaries?: boolean; onSummary?: GeneratorDeps["onSummary"] } = {},
): Loadgen {
  const runId = config.LOADGEN_RUN_ID ?? randomBytes(4).toString("hex");
  const duration = parseRunDuration(config.LOADGEN_DURATION ?? "forever");
  const mix = parseMix(config.LOADGEN_MIX);
  // Both were checked by the config schema.
  if (!duration.ok || !mix.ok) throw new Error("LOADGEN_DURATION or LOADGEN_MIX did not parse");

  const storefrontChannel = openChannel(config.STOREFRONT_ADDRESS);
  const storefront = createServiceClient(
    StorefrontServiceDefinition,
    storefrontChannel,
    { address: config.STOREFRONT_ADDRESS, attemptTimeoutMs: config.LOADGEN_TIMEOUT_MS, retries: 0, registry },
    logger,
  );
  const inventoryChannel = config.LOADGEN_RESTOCK ? openChannel(config.INVENTORY_ADDRESS) : undefined;
  const inventory = inventoryChannel
    ? createServiceClient(
        InventoryServiceDefinition,
        inventoryChannel,
        { address: config.INVENTORY_ADDRESS, attemptTimeoutMs: config.LOADGEN_TIMEOUT_MS, retries: config.LOADGEN_RESTOCK_RETRIES, registry },
        logger,
      )
    : undefined;

  const generator = new LoadGenerator(
    {
      target: config.STOREFRONT_ADDRESS,
      rps: config.LOADGEN_RPS,
      durationMs: duration.ms,
      requests: config.LOADGEN_REQUESTS,
      concurrency: config.LOADGEN_CONCURRENCY,
      shoppers: config.LOADGEN_SHOPPERS,
      mix: mix.mix,
      scarceSkus: config.LOADGEN_SCARCE_SKUS.split(",")
        .map((s) => s.trim())
        .filter(Boolean),
      runId,
      catalogueIntervalMs: config.LOADGEN_RESTOCK_INTERVAL_MS,
      restock: config.LOADGEN_RESTOCK ? { below: config.LOADGEN_RESTOCK_BELOW, quantity: config.LOADGEN_RESTOCK_QUANTITY } : undefined,
      summaryIntervalMs: extra.summaries === false ? undefined : config.LOADGEN_SUMMARY_INTERVAL_MS,
      maxErrorRate: config.LOADGEN_MAX_ERROR_RATE,
      drainMs: extra.drainMs ?? config.LOADGEN_TIMEOUT_MS + 1_000,
      startTimeoutMs: extra.startTimeoutMs,
    },
    {
      storefront,
      inventory,
      tokens: new ShopperTokens({
        secret: config.STOREFRONT_JWT_SECRET,
        issuer: config.STOREFRONT_JWT_ISSUER,
        audience: config.STOREFRONT_JWT_AUDIENCE,
      }),
      metrics: new LoadgenMetrics(registry),
      logger,
      random: config.LOADGEN_SEED === undefined ? Math.random : seededRandom(config.LOADGEN_SEED),
      onSummary: extra.onSummary,
    },
  );
  return {
    generator,
    runId,
    close() {
      storefrontChannel.close();
      inventoryChannel?.close();
    },
  };
}
