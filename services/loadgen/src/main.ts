// First: starts tracing before anything loads @grpc/grpc-js.
import "./telemetry.js";
import { Registry, createLogger, exitOnSignals, loadConfig, runMain, startServiceRuntime, type ServiceRuntime } from "@meshcart/lib";
import { loadgenConfig } from "./config.js";
import { TargetUnreachable } from "./generator.js";
import { createLoadgen } from "./setup.js";

/*
 * The load generator as a deployable: a long-running process like the
 * services (the kit's runtime: /healthz, /readyz, /metrics on ADMIN_PORT,
 * gRPC health on GRPC_PORT, graceful shutdown), configured by LOADGEN_*.
 * It is ready while it is sending. It runs until stopped, or, with
 * LOADGEN_DURATION or LOADGEN_REQUESTS, until done: then it logs the report
 * and exits (1 when LOADGEN_MAX_ERROR_RATE was passed).
 */
runMain(async () => {
  const config = loadConfig(loadgenConfig);
  const logger = createLogger({ service: "loadgen", version: config.SERVICE_VERSION, level: config.LOG_LEVEL });
  const registry = new Registry();
  const loadgen = createLoadgen(config, logger, registry, {
    // Within the shutdown budget, so the pod ends in time.
    drainMs: Math.min(config.LOADGEN_TIMEOUT_MS + 1_000, config.SHUTDOWN_TIMEOUT_MS),
    onSummary: (summary, message) => logger.info(summary, message),
  });
  // The task may end before startServiceRuntime has returned.
  const started = Promise.withResolvers<ServiceRuntime>();
  const runtime = await startServiceRuntime({
    name: "loadgen",
    config,
    logger,
    registry,
    services: [],
    ready: () => loadgen.generator.generating,
    background: [
      {
        name: "load",
        async run(signal) {
          try {
            const report = await loadgen.generator.run(signal).catch((error: unknown) => {
              // Stopped before the storefront ever answered: nothing to report.
              if (signal.aborted && error instanceof TargetUnreachable) return undefined;
              throw error;
            });
            if (!report) return;
            const { rows: _rows, ...figures } = report;
            logger.info(figures, `load run ended (${report.ended}): ${report.due} requests, ${report.ok} ok, ${report.errors} errors`);
            if (signal.aborted) return;
            // Done by itself (duration or request count): stop the process.
            const code = report.passed ? 0 : 1;
            if (!report.passed) logger.error({ error_rate: report.errorRate, max_error_rate: report.maxErrorRate }, "error rate above LOADGEN_MAX_ERROR_RATE");
            void started.promise.then((runtime) => runtime.shutdown("load run finished")).then(() => process.exit(code));
          } finally {
            loadgen.close();
          }
        },
      },
    ],
  });
  started.resolve(runtime);
  exitOnSignals(runtime, logger);
});
