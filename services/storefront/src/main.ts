// First: starts tracing before anything loads @grpc/grpc-js.
import "./telemetry.js";
import { Admission, Registry, createLogger, exitOnSignals, loadConfig, runMain, startServiceRuntime } from "@meshcart/lib";
import { StorefrontServiceDefinition } from "@meshcart/contracts/meshcart/storefront/v1/storefront.js";
import { Backends } from "./backends.js";
import { checkStorefrontConfig, storefrontConfig } from "./config.js";
import { storefrontHandlers } from "./grpc-handlers.js";
import { TokenVerifier } from "./tokens.js";

runMain(async () => {
  const config = checkStorefrontConfig(loadConfig(storefrontConfig));
  const logger = createLogger({ service: "storefront", version: config.SERVICE_VERSION, level: config.LOG_LEVEL });
  // One registry for the process: the runtime's and the clients' metrics.
  const registry = new Registry();
  const backends = new Backends(
    { order: config.ORDER_ADDRESS, inventory: config.INVENTORY_ADDRESS, payment: config.PAYMENT_ADDRESS, fulfillment: config.FULFILLMENT_ADDRESS },
    logger,
    // Every call gives its own deadline; none waits longer than a stream may.
    { registry, fallbackTimeoutMs: config.STOREFRONT_MAX_STREAM_MS },
  );
  const tokens = new TokenVerifier({
    secret: config.STOREFRONT_JWT_SECRET,
    issuer: config.STOREFRONT_JWT_ISSUER,
    audience: config.STOREFRONT_JWT_AUDIENCE,
  });

  const admission = new Admission(
    "calls",
    {
      limit: config.STOREFRONT_MAX_CALLS,
      ...(config.STOREFRONT_CALL_TOLERANCE > 0
        ? { adaptive: { minLimit: Math.min(config.STOREFRONT_MIN_CALLS, config.STOREFRONT_MAX_CALLS), tolerance: config.STOREFRONT_CALL_TOLERANCE } }
        : {}),
      queue: config.STOREFRONT_CALL_QUEUE,
      queueTimeoutMs: config.STOREFRONT_CALL_QUEUE_MS,
    },
    { registry, logger },
  );

  // No database: readiness is the storefront's own. It does not follow the
  // services behind it, so that one of them being away does not take the
  // whole public API out of the load balancer (calls that need it answer
  // UNAVAILABLE; GetOrderDetails answers with what it has).
  const runtime = await startServiceRuntime({
    name: "storefront",
    config,
    logger,
    registry,
    admission,
    services: [
      {
        definition: StorefrontServiceDefinition,
        implementation: storefrontHandlers({
          backends,
          tokens,
          deadlines: {
            defaultMs: config.STOREFRONT_DEFAULT_DEADLINE_MS,
            maxMs: config.STOREFRONT_MAX_DEADLINE_MS,
            streamMaxMs: config.STOREFRONT_MAX_STREAM_MS,
          },
          partTimeoutMs: config.STOREFRONT_PART_TIMEOUT_MS,
          logger,
        }),
      },
    ],
    background: [
      {
        name: "backend-channels",
        // Closed once in-flight calls have drained.
        async run(signal) {
          await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
          backends.close();
        },
      },
    ],
  });
  exitOnSignals(runtime, logger);
});
