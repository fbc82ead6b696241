// First: starts tracing before anything loads @grpc/grpc-js or pg.
import "./telemetry.js";
import { fileURLToPath } from "node:url";
import { Registry, createLogger, exitOnSignals, loadConfig, openDatabase, faultMiddleware, runMain, startFaults, startServiceRuntime } from "@meshcart/lib";
import { PaymentServiceDefinition } from "@meshcart/contracts/meshcart/payment/v1/payment.js";
import { paymentConfig } from "./config.js";
import { paymentHandlers } from "./grpc-handlers.js";
import { PaymentMetrics } from "./metrics.js";
import { Payments } from "./payments.js";
import { servedBy } from "./served-by.js";

const MIGRATIONS = fileURLToPath(new URL("../migrations", import.meta.url));

runMain(async () => {
  const config = loadConfig(paymentConfig);
  const logger = createLogger({ service: "payment", version: config.SERVICE_VERSION, level: config.LOG_LEVEL });
  const db = await openDatabase("payment", config, MIGRATIONS, logger);
  const payments = new Payments(db, config.SERVICE_VERSION);
  const registry = new Registry();
  // Fault injection (FAULTS, FAULT_CONTROL_PORT): this replica only.
  const faults = await startFaults({ service: "payment", config, definitions: [PaymentServiceDefinition], logger, registry });
  const runtime = await startServiceRuntime({
    name: "payment",
    config,
    logger,
    registry,
    database: db,
    databaseHealthIntervalMs: config.DB_HEALTH_INTERVAL_MS,
    middleware: [faultMiddleware(faults.injector)],
    services: [
      {
        definition: PaymentServiceDefinition,
        implementation: paymentHandlers(payments, servedBy(config), new PaymentMetrics(registry)),
      },
    ],
    background: faults.tasks,
  });
  exitOnSignals(runtime, logger);
});
