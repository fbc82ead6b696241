import { fileURLToPath } from "node:url";
import { createLogger, exitOnSignals, loadConfig, openDatabase, runMain, startServiceRuntime } from "@meshcart/lib";
import { InventoryServiceDefinition } from "@meshcart/lib/gen/meshcart/inventory/v1/inventory.js";
import { demoCatalogue } from "./catalogue.js";
import { inventoryConfig } from "./config.js";
import { expirySweeper } from "./expiry-sweeper.js";
import { inventoryHandlers } from "./grpc-handlers.js";
import { Inventory } from "./inventory.js";

const MIGRATIONS = fileURLToPath(new URL("../migrations", import.meta.url));

runMain(async () => {
  const config = loadConfig(inventoryConfig);
  const logger = createLogger({ service: "inventory", version: config.SERVICE_VERSION, level: config.LOG_LEVEL });
  const db = await openDatabase("inventory", config, MIGRATIONS, logger);
  const inventory = new Inventory(db);
  if (config.INVENTORY_SEED_CATALOGUE) {
    const added = await inventory.seed(demoCatalogue);
    logger.info({ added, catalogue: demoCatalogue.length }, "demo catalogue seeded");
  }
  const runtime = await startServiceRuntime({
    name: "inventory",
    config,
    logger,
    database: db,
    databaseHealthIntervalMs: config.DB_HEALTH_INTERVAL_MS,
    services: [
      {
        definition: InventoryServiceDefinition,
        implementation: inventoryHandlers(inventory, config.RESERVATION_TTL_SECONDS * 1000),
      },
    ],
    background: [expirySweeper(inventory, config.EXPIRY_SWEEP_INTERVAL_MS, logger)],
  });
  exitOnSignals(runtime, logger);
});
