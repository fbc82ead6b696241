// First: starts tracing before anything loads @grpc/grpc-js or pg.
import "./telemetry.js";
import { fileURLToPath } from "node:url";
import { Registry, createLogger, exitOnSignals, loadConfig, openDatabase, runMain, startServiceRuntime } from "@meshcart/lib";
import { FulfillmentServiceDefinition } from "@meshcart/contracts/meshcart/fulfillment/v1/fulfillment.js";
import { checkFulfillmentConfig, fulfillmentConfig } from "./config.js";
import { EventConsumer, consumerCrashHook } from "./event-consumer.js";
import { Fulfillment } from "./fulfillment.js";
import { fulfillmentHandlers } from "./grpc-handlers.js";
import { FulfillmentMetrics } from "./metrics.js";
import { ShipmentChanges } from "./shipment-changes.js";
import { ShipmentStore } from "./shipment-store.js";
import { shipmentTimer } from "./shipment-timer.js";

const MIGRATIONS = fileURLToPath(new URL("../migrations", import.meta.url));

runMain(async () => {
  const config = checkFulfillmentConfig(loadConfig(fulfillmentConfig));
  const logger = createLogger({ service: "fulfillment", version: config.SERVICE_VERSION, level: config.LOG_LEVEL });
  const db = await openDatabase("fulfillment", config, MIGRATIONS, logger);
  const store = new ShipmentStore(db);
  const changes = new ShipmentChanges();
  const timings = { packAfterMs: config.FULFILLMENT_PACK_AFTER_MS, shipAfterMs: config.FULFILLMENT_SHIP_AFTER_MS };

  // One registry for the process: the runtime's metrics and fulfillment's own.
  const registry = new Registry();
  // The consumer reports its lag to the metrics it is given: the metrics ask it through this.
  const lagOf: { consumer?: EventConsumer } = {};
  const metrics = new FulfillmentMetrics(registry, { counts: () => store.counts(), lag: async () => lagOf.consumer?.lag() }, logger);
  const timer = shipmentTimer(
    store,
    timings,
    { pendingMs: config.FULFILLMENT_POLL_MS, idleMs: config.FULFILLMENT_IDLE_LOOK_MS },
    changes,
    metrics,
    logger.child({ component: "shipment-timer" }),
  );
  const consumerLogger = logger.child({ component: "order-events-consumer" });
  const consumer = new EventConsumer(
    {
      url: config.NATS_URL,
      timings,
      maxDeliveries: config.FULFILLMENT_MAX_DELIVERIES,
      ackWaitMs: config.FULFILLMENT_ACK_WAIT_MS,
      crash: consumerCrashHook(config.FULFILLMENT_CRASH_POINT, consumerLogger),
    },
    { store, changes, metrics, created: () => timer.wake(), logger: consumerLogger },
  );
  lagOf.consumer = consumer;

  // Readiness follows the database only: with the broker away the API still
  // answers from it, and the events wait in the stream.
  const runtime = await startServiceRuntime({
    name: "fulfillment",
    config,
    logger,
    registry,
    database: db,
    databaseHealthIntervalMs: config.DB_HEALTH_INTERVAL_MS,
    services: [{ definition: FulfillmentServiceDefinition, implementation: fulfillmentHandlers(new Fulfillment(store, changes, config.FULFILLMENT_POLL_MS)) }],
    background: [consumer.task(), timer],
  });
  exitOnSignals(runtime, logger);
});
