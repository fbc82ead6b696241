import { readFileSync } from "node:fs";
import { once } from "node:events";
import type { Server as HttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import { createServer, type CallContext, type CompatServiceDefinition, type Server, type ServerMiddleware, type ServerMiddlewareCall } from "nice-grpc";
import { errorDetailsServerMiddleware } from "nice-grpc-error-details";
import { HealthDefinition, HealthServiceImpl, HealthState } from "nice-grpc-server-health";
import { ServerReflection, ServerReflectionService } from "nice-grpc-server-reflection";
import { Registry } from "prom-client";
import { createAdminServer } from "./admin-server.js";
import { descriptorSetPath } from "./descriptor-set.js";
import type { BackgroundTask } from "./background-task.js";
import type { Config, serviceConfig } from "./config.js";
import type { Database } from "./database.js";
import { exposeDeadline } from "./deadline.js";
import type { Logger } from "./logger.js";
import { grpcServerMetrics, registerDatabaseMetrics, registerProcessMetrics } from "./metrics.js";
import { sleep } from "./sleep.js";
import { flushTelemetry, traceContextCarrier } from "./tracing.js";
import type { Admission } from "./admission.js";
import {
  admissionMiddleware,
  decodeRequestsSafely,
  endStreamsOn,
  errorBoundaryMiddleware,
  requestContextMiddleware,
  traceContextMiddleware,
} from "./server-middleware.js";

export interface ServiceRegistration {
  definition: CompatServiceDefinition & { fullName: string };
  // nice-grpc checks implementations against definitions at the call site.
  implementation: object;
}

export interface RuntimeOptions {
  name: string;
  config: Config<typeof serviceConfig>;
  logger: Logger;
  services: ServiceRegistration[];
  /** Readiness and gRPC health follow this database's reachability. */
  database?: Database;
  databaseHealthIntervalMs?: number;
  background?: BackgroundTask[];
  /**
   * The service's own middleware, innermost (inside the error boundary, so
   * that what they refuse is counted, logged and traced like any refusal):
   * e.g. fault injection (faults.ts).
   */
  middleware?: ServerMiddleware[];
  /** A further readiness condition of the service's own (the load generator: it is generating); /readyz follows it. */
  ready?: () => boolean;
  /**
   * The process's metrics registry, shared with its clients and domain
   * metrics (a new one when omitted). The runtime adds process, gRPC server
   * and database pool metrics to it.
   */
  registry?: Registry;
  /** Listen address host; all interfaces by default (pods), loopback in tests. */
  host?: string;
  /** Admission control in front of the services' own unary calls (admission.ts); none when omitted. */
  admission?: Admission;
}

export interface ServiceRuntime {
  readonly grpcPort: number;
  readonly adminPort: number;
  readonly registry: Registry;
  /** Aborts when shutdown begins: long-running work should wind down. */
  readonly stopping: AbortSignal;
  isReady(): boolean;
  /** Drains and stops everything; idempotent. */
  shutdown(reason: string): Promise<void>;
}

/**
 * Starts a meshcart service: its gRPC API with health and reflection, the
 * admin HTTP port, database health tracking and background tasks, and the
 * graceful shutdown that ties them together.
 */
export async function startServiceRuntime(options: RuntimeOptions): Promise<ServiceRuntime> {
  const { config, logger } = options;
  const host = options.host ?? "0.0.0.0";
  const registry = options.registry ?? new Registry();
  registerProcessMetrics(registry, options.name, config.SERVICE_VERSION);

  const stopController = new AbortController();
  const backgroundStop = new AbortController();
  const health = HealthState();
  const serviceNames = options.services.map((s) => s.definition.fullName);
  let started = false;
  let databaseHealthy = options.database === undefined;
  let stopping = false;
  const isReady = () => started && databaseHealthy && !stopping && (options.ready?.() ?? true);
  const publishHealth = () => {
    const status = isReady() ? "healthy" : "unhealthy";
    for (const name of ["", ...serviceNames]) {
      if (health.getStatus(name) !== status) health.setStatus(status, name);
    }
  };
  publishHealth();

  const base = createServer({
    "grpc.max_receive_message_length": config.GRPC_MAX_MESSAGE_BYTES,
    "grpc.max_send_message_length": config.GRPC_MAX_MESSAGE_BYTES,
    // Connections come from the local Linkerd proxy (or a client) and are
    // long-lived; server pings find dead peers without cutting idle ones.
    "grpc.keepalive_time_ms": 60_000,
    "grpc.keepalive_timeout_ms": 20_000,
    // A second instance on a taken port must fail to start, never share the
    // port with the first (SO_REUSEPORT): explicit, whatever the default.
    "grpc.so_reuseport": 0,
    // Handlers can read the caller's deadline (callDeadline in deadline.ts).
    interceptors: [exposeDeadline],
  })
    // Outermost: every call counts once, with the status the client gets.
    .use(grpcServerMetrics(registry))
    .use(errorDetailsServerMiddleware)
    // Then admission control: a call refused under overload costs as
    // little as possible (no correlation id, trace context or log line),
    // because at three times the capacity most calls are refused, and the
    // CPU they take is taken from the calls that are admitted.
    .use(options.admission ? admissionMiddleware(options.admission, serviceNames) : passThrough);
  let server: Server = (traceContextCarrier() === "middleware" ? base.use(traceContextMiddleware) : base)
    .use(requestContextMiddleware)
    .use(errorBoundaryMiddleware(logger))
    .use(endStreamsOn(stopController.signal));
  for (const middleware of options.middleware ?? []) server = server.use(middleware);

  for (const { definition, implementation } of options.services) {
    server.add(decodeRequestsSafely(definition), implementation as never);
  }
  server.add(HealthDefinition, HealthServiceImpl(health));
  server.add(ServerReflectionService, ServerReflection(readFileSync(descriptorSetPath()), [...serviceNames, HealthDefinition.fullName]));

  if (options.database) registerDatabaseMetrics(registry, options.database, () => databaseHealthy);
  const admin = createAdminServer({ live: () => true, ready: isReady }, registry);
  admin.listen(config.ADMIN_PORT, host);
  await once(admin, "listening");
  const adminPort = (admin.address() as AddressInfo).port;
  const grpcPort = await server.listen(`${host}:${config.GRPC_PORT}`);

  const databaseWatch = options.database
    ? watchDatabase(options.database, options.databaseHealthIntervalMs ?? 1_000, stopController.signal, (healthy) => {
        if (healthy === databaseHealthy) return;
        databaseHealthy = healthy;
        logger[healthy ? "info" : "warn"](healthy ? "database reachable: serving" : "database unreachable: not serving");
        publishHealth();
      })
    : Promise.resolve();
  if (options.database) databaseHealthy = await options.database.ping();

  const background = (options.background ?? []).map((task) =>
    task.run(backgroundStop.signal).catch((error: unknown) => {
      logger.error({ err: error, task: task.name }, "background task failed");
    }),
  );

  started = true;
  publishHealth();
  logger.info({ grpc_port: grpcPort, admin_port: adminPort }, `${options.name} started`);

  let shutdown: Promise<void> | undefined;
  return {
    grpcPort,
    adminPort,
    registry,
    stopping: stopController.signal,
    isReady,
    shutdown(reason) {
      shutdown ??= drainAndStop({
        reason,
        options,
        server,
        admin,
        stopController,
        backgroundStop,
        markStopping: () => {
          stopping = true;
        },
        publishHealth,
        background,
        databaseWatch,
      });
      return shutdown;
    },
  };
}

interface StopParts {
  reason: string;
  options: RuntimeOptions;
  server: Server;
  admin: HttpServer;
  stopController: AbortController;
  backgroundStop: AbortController;
  markStopping: () => void;
  publishHealth: () => void;
  background: Promise<void>[];
  databaseWatch: Promise<void>;
}

async function drainAndStop(parts: StopParts): Promise<void> {
  const { options, server, admin, stopController } = parts;
  const { logger, config } = options;
  const begun = performance.now();
  logger.info({ reason: parts.reason }, "shutting down: not ready any more");
  parts.markStopping();
  parts.publishHealth();
  // Health watchers get NOT_SERVING before their streams are ended.
  await new Promise((resolve) => setImmediate(resolve));
  stopController.abort();

  // Keep answering while endpoints and proxies learn that this instance is
  // going away; new calls that still arrive are served, not refused.
  await sleep(config.SHUTDOWN_DRAIN_DELAY_MS);

  let timer: NodeJS.Timeout | undefined;
  const graceful = server.shutdown().then(() => "drained" as const);
  const deadline = new Promise<"forced">((resolve) => {
    timer = setTimeout(() => resolve("forced"), config.SHUTDOWN_TIMEOUT_MS);
  });
  const outcome = await Promise.race([graceful, deadline]);
  clearTimeout(timer);
  if (outcome === "forced") {
    logger.warn({ timeout_ms: config.SHUTDOWN_TIMEOUT_MS }, "in-flight calls did not finish in time: cancelling them");
    server.forceShutdown();
  }

  parts.backgroundStop.abort();
  await Promise.all([...parts.background, parts.databaseWatch]);

  await options.database?.close();
  admin.closeAllConnections();
  await new Promise<void>((resolve) => admin.close(() => resolve()));
  // The spans of the last calls, before the process exits.
  await flushTelemetry(2_000);
  logger.info({ duration_ms: Math.round(performance.now() - begun), outcome }, "stopped");
}

async function watchDatabase(database: Database, intervalMs: number, signal: AbortSignal, report: (healthy: boolean) => void): Promise<void> {
  while (!signal.aborted) {
    await sleep(intervalMs, signal);
    if (signal.aborted) return;
    report(await database.ping(HEALTH_PING_TIMEOUT_MS));
  }
}

/**
 * How long one health ping may take. Not tied to the interval: a ping on
 * its own connection that a busy machine answers in 150 ms is healthy,
 * even when pings run every 100 ms (they never overlap: the next one
 * waits for this one).
 */
const HEALTH_PING_TIMEOUT_MS = 1_000;

async function* passThrough<Request, Response>(call: ServerMiddlewareCall<Request, Response>, context: CallContext) {
  return yield* call.next(call.request, context);
}

/**
 * Wires SIGTERM and SIGINT to a graceful shutdown and exits 0 once it is
 * done; a second signal exits at once.
 */
export function exitOnSignals(runtime: ServiceRuntime, logger: Logger): void {
  let received = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (received) {
      logger.warn({ signal }, "second signal: exiting now");
      process.exit(1);
    }
    received = true;
    runtime.shutdown(signal).then(
      () => process.exit(0),
      (error: unknown) => {
        logger.fatal({ err: error }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
}
