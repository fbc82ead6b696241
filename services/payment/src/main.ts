import { fileURLToPath } from "node:url";
import { createLogger, exitOnSignals, loadConfig, openDatabase, runMain, startServiceRuntime } from "@meshcart/lib";
import { PaymentServiceDefinition } from "@meshcart/lib/gen/meshcart/payment/v1/payment.js";
import { paymentConfig } from "./config.js";
import { paymentHandlers } from "./grpc-handlers.js";
import { Payments } from "./payments.js";
import { servedBy } from "./served-by.js";

const MIGRATIONS = fileURLToPath(new URL("../migrations", import.meta.url));

runMain(async () => {
  const config = loadConfig(paymentConfig);
  const logger = createLogger({ service: "payment", version: config.SERVICE_VERSION, level: config.LOG_LEVEL });
  const db = await openDatabase("payment", config, MIGRATIONS, logger);
  const payments = new Payments(db, config.SERVICE_VERSION);
  const runtime = await startServiceRuntime({
    name: "payment",
    config,
    logger,
    database: db,
    databaseHealthIntervalMs: config.DB_HEALTH_INTERVAL_MS,
    services: [{ definition: PaymentServiceDefinition, implementation: paymentHandlers(payments, servedBy(config)) }],
  });
  exitOnSignals(runtime, logger);
});
