// First: starts tracing before anything loads @grpc/grpc-js or pg.
import "./telemetry.js";
import { hostname } from "node:os";
import { fileURLToPath } from "node:url";
import {
  Admission,
  CHARGE_AMOUNT,
  Registry,
  createLogger,
  createServiceClient,
  exitOnSignals,
  loadConfig,
  openChannel,
  openDatabase,
  runMain,
  startServiceRuntime,
} from "@meshcart/lib";
import { InventoryServiceDefinition } from "@meshcart/contracts/meshcart/inventory/v1/inventory.js";
import { OrderServiceDefinition } from "@meshcart/contracts/meshcart/order/v1/order.js";
import { PaymentServiceDefinition } from "@meshcart/contracts/meshcart/payment/v1/payment.js";
import { crashHook } from "./chaos.js";
import { orderConfig } from "./config.js";
import { JetStreamPublisher } from "./event-publisher.js";
import { EventStore } from "./event-store.js";
import { GrpcInventory, GrpcPayment } from "./grpc-adapters.js";
import { orderHandlers } from "./grpc-handlers.js";
import { OrderMetrics } from "./metrics.js";
import { OrderNotifier } from "./order-notifier.js";
import { isFinal } from "./order-state.js";
import { Orders } from "./orders.js";
import { OutboxMetrics } from "./outbox-metrics.js";
import { OutboxRelay, outboxCrashHook } from "./outbox-relay.js";
import { OutboxStore } from "./outbox-store.js";
import { Saga, sagaRecovery } from "./saga.js";

const MIGRATIONS = fileURLToPath(new URL("../migrations", import.meta.url));

runMain(async () => {
  const config = loadConfig(orderConfig);
  const logger = createLogger({ service: "order", version: config.SERVICE_VERSION, level: config.LOG_LEVEL });
  const db = await openDatabase("order", config, MIGRATIONS, logger);
  // Stable across restarts of the same pod (or local port), so a restarted
  // replica recognises the sagas it was driving and resumes them at once.
  const owner = config.POD_NAME ?? `${hostname()}:${config.GRPC_PORT}`;

  // One registry for the process: the runtime's, the clients' and the saga's metrics.
  const registry = new Registry();
  const clientSettings = { attemptTimeoutMs: config.ORDER_STEP_TIMEOUT_MS, retries: config.ORDER_CLIENT_RETRIES, registry };
  const inventory = new GrpcInventory(
    createServiceClient(InventoryServiceDefinition, openChannel(config.INVENTORY_ADDRESS), { address: config.INVENTORY_ADDRESS, ...clientSettings }, logger),
  );
  const payment = new GrpcPayment(
    createServiceClient(PaymentServiceDefinition, openChannel(config.PAYMENT_ADDRESS), { address: config.PAYMENT_ADDRESS, ...clientSettings }, logger),
  );

  // Checkouts in progress, each from its call until its saga ends: the
  // limit is in front of the work, so the pool never becomes the queue.
  const admission = new Admission(
    "checkouts",
    { limit: config.ORDER_MAX_CHECKOUTS, queue: config.ORDER_CHECKOUT_QUEUE, queueTimeoutMs: config.ORDER_CHECKOUT_QUEUE_MS },
    { registry, logger },
  );
  const store = new EventStore(db);
  const notifier = new OrderNotifier(config.DATABASE_URL, logger, owner);
  notifier.start();
  const stopSagas = new AbortController();
  const outbox = new OutboxStore(db);
  const outboxMetrics = new OutboxMetrics(registry, outbox, logger);
  // The relay publishes the final events from the log (docs/events.md);
  // without a broker they wait there.
  const relay = config.NATS_URL ? startRelay(config.NATS_URL) : undefined;
  if (relay) notifier.onNews(() => relay.outbox.wake());
  if (!relay) logger.warn("NATS_URL is not set: the outbox relay is off; order events wait in the log until it is");
  const saga = new Saga({
    store,
    inventory,
    payment,
    settings: {
      owner,
      leaseMs: config.ORDER_SAGA_LEASE_MS,
      retryBaseMs: 100,
      retryMaxMs: config.ORDER_RETRY_MAX_MS,
      undoAttempts: config.ORDER_UNDO_ATTEMPTS,
      chargeBounds: { minMinor: CHARGE_AMOUNT.minMinorUnits, maxMinor: CHARGE_AMOUNT.maxMinorUnits },
      crash: crashHook(config.ORDER_CRASH_POINT, logger),
      admission,
    },
    logger,
    stopping: stopSagas.signal,
    onAppend: (order) => {
      notifier.notify(order);
      if (isFinal(order.state)) relay?.outbox.wake();
    },
    metrics: new OrderMetrics(registry),
  });
  const orders = new Orders(
    store,
    saga,
    notifier,
    {
      owner,
      leaseMs: config.ORDER_SAGA_LEASE_MS,
      maxWaitMs: config.ORDER_MAX_WAIT_MS,
      pollMs: 1_000,
    },
    admission,
  );

  // Sagas this replica drove before a restart are resumed at once.
  const resumed = await store.claimOwn(owner, config.ORDER_SAGA_LEASE_MS);
  for (const orderId of resumed) saga.start(orderId, "recovered");
  if (resumed.length > 0) logger.info({ orders: resumed.length }, "resuming this replica's unfinished sagas");

  const runtime = await startServiceRuntime({
    name: "order",
    config,
    logger,
    registry,
    database: db,
    databaseHealthIntervalMs: config.DB_HEALTH_INTERVAL_MS,
    services: [{ definition: OrderServiceDefinition, implementation: orderHandlers(orders) }],
    background: [
      sagaRecovery(saga, store, { owner, leaseMs: config.ORDER_SAGA_LEASE_MS, intervalMs: config.ORDER_RECOVERY_INTERVAL_MS, batch: 50 }, logger),
      {
        name: "saga-drain",
        // Sagas stop at a step boundary and hand their lease back when the
        // service stops; the notifier goes last, as waiters use it.
        async run(signal) {
          await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
          stopSagas.abort();
          await saga.drained();
          await notifier.stop();
        },
      },
      ...(relay ? [relay.task] : []),
    ],
  });
  exitOnSignals(runtime, logger);

  /** The outbox relay as a background task: connects to the broker (waiting for it), then publishes until the service stops. */
  function startRelay(url: string) {
    let publisher: JetStreamPublisher | undefined;
    const lazy = {
      publish: (...args: Parameters<JetStreamPublisher["publish"]>) => {
        if (!publisher) throw new Error("not connected to the broker yet");
        return publisher.publish(...args);
      },
    };
    const relayLogger = logger.child({ component: "outbox-relay" });
    const outboxRelay = new OutboxRelay(
      outbox,
      lazy,
      {
        owner,
        leaseMs: config.ORDER_OUTBOX_LEASE_MS,
        pollMs: config.ORDER_OUTBOX_POLL_MS,
        batchOrders: 100,
        concurrency: 16,
        retryMaxMs: 5_000,
        crash: outboxCrashHook(config.ORDER_OUTBOX_CRASH_POINT, relayLogger),
      },
      outboxMetrics,
      relayLogger,
    );
    return {
      outbox: outboxRelay,
      task: {
        name: "outbox-relay",
        async run(signal: AbortSignal) {
          try {
            publisher = await JetStreamPublisher.start(url, config.ORDER_OUTBOX_PUBLISH_TIMEOUT_MS, relayLogger, signal);
          } catch (error) {
            if (signal.aborted) return;
            throw error;
          }
          try {
            await outboxRelay.run(signal);
          } finally {
            await publisher.close();
          }
        },
      },
    };
  }
});
