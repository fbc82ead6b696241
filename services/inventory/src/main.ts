// First: starts tracing before anything loads @grpc/grpc-js or pg.
import "./telemetry.js";
import { fileURLToPath } from "node:url";
import { Registry, createLogger, exitOnSignals, loadConfig, openDatabase, faultMiddleware, runMain, startFaults, startServiceRuntime } from "@meshcart/lib";
import { InventoryServiceDefinition } from "@meshcart/contracts/meshcart/inventory/v1/inventory.js";
import { demoCatalogue } from "./catalogue.js";
import { inventoryConfig } from "./config.js";
import { expirySweeper } from "./expiry-sweeper.js";
import { inventoryHandlers } from "./grpc-handlers.js";
import { Inventory } from "./inventory.js";
import { InventoryMetrics } from "./metrics.js";

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
  const registry = new Registry();
  // Fault injection (FAULTS, FAULT_CONTROL_PORT): this replica only.
  const faults = await startFaults({ service: "inventory", config, definitions: [InventoryServiceDefinition], logger, registry });
  const metrics = new InventoryMetrics(registry, () => inventory.stockLevels(), logger);
  const sweeper = expirySweeper(inventory, config.EXPIRY_SWEEP_INTERVAL_MS, logger, (count) => metrics.expiredReservations.inc(count));
  inventory.onHold = (expiresAt) => sweeper.holdMade(expiresAt);
  const runtime = await startServiceRuntime({
    name: "inventory",
    config,
    logger,
    registry,
    database: db,
    databaseHealthIntervalMs: config.DB_HEALTH_INTERVAL_MS,
    middleware: [faultMiddleware(faults.injector)],
    services: [
      {
        definition: InventoryServiceDefinition,
        implementation: inventoryHandlers(inventory, config.RESERVATION_TTL_SECONDS * 1000),
      },
    ],
    background: [...faults.tasks, sweeper],
  });
  exitOnSignals(runtime, logger);
});
