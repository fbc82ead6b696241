import type { ClientMiddleware, ServerMiddleware } from "nice-grpc-common";
import { prometheusClientMiddleware, prometheusServerMiddleware } from "nice-grpc-prometheus";
import { Counter, Gauge, Histogram, collectDefaultMetrics, type Registry } from "prom-client";
import type { Database } from "./database.js";
import { exportStats } from "./tracing.js";

export { Counter, Gauge, Histogram, Registry } from "prom-client";

/**
 * Prometheus metrics on the admin port (/metrics). Names follow the
 * Prometheus conventions (base units, `_total` counters, `_seconds`); labels
 * are bounded (methods, status codes, outcomes, SKUs of the catalogue),
 * never an order, payment or customer id.
 *
 * A service process has one Registry, shared by its runtime, its clients
 * and its domain metrics; every series carries `service_name` (a label that
 * Kubernetes service discovery does not add, so it never collides with
 * target labels such as `service` or `job`).
 */

/** Seconds: 1 ms to 10 s, fine enough for p50/p95/p99 of calls that take milliseconds. */
export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const GRPC_LABELS = ["grpc_type", "grpc_service", "grpc_method", "grpc_path"] as const;
const GRPC_LABELS_WITH_CODE = [...GRPC_LABELS, "grpc_code"] as const;

interface GrpcFamily {
  started: Counter<(typeof GRPC_LABELS)[number]>;
  handled: Counter<(typeof GRPC_LABELS_WITH_CODE)[number]>;
  received: Counter<(typeof GRPC_LABELS)[number]>;
  sent: Counter<(typeof GRPC_LABELS)[number]>;
  seconds: Histogram<(typeof GRPC_LABELS_WITH_CODE)[number]>;
}

/** One family of RED metrics (go-grpc-prometheus names), registered once per registry. */
function grpcFamily(registry: Registry, prefix: string, what: string): GrpcFamily {
  const known = families.get(registry)?.get(prefix);
  if (known) return known;
  const registers = [registry];
  const family: GrpcFamily = {
    started: new Counter({ name: `${prefix}_started_total`, help: `${what} started.`, labelNames: GRPC_LABELS, registers }),
    handled: new Counter({
      name: `${prefix}_handled_total`,
      help: `${what} completed, by status code.`,
      labelNames: GRPC_LABELS_WITH_CODE,
      registers,
    }),
    received: new Counter({ name: `${prefix}_msg_received_total`, help: `Stream messages received in ${what}.`, labelNames: GRPC_LABELS, registers }),
    sent: new Counter({ name: `${prefix}_msg_sent_total`, help: `Stream messages sent in ${what}.`, labelNames: GRPC_LABELS, registers }),
    seconds: new Histogram({
      name: `${prefix}_handling_seconds`,
      help: `Duration of ${what}, by status code.`,
      labelNames: GRPC_LABELS_WITH_CODE,
      buckets: LATENCY_BUCKETS,
      registers,
    }),
  };
  const byPrefix = families.get(registry) ?? new Map<string, GrpcFamily>();
  byPrefix.set(prefix, family);
  families.set(registry, byPrefix);
  return family;
}

const families = new WeakMap<Registry, Map<string, GrpcFamily>>();

/** Server RED metrics: one count per call received, whatever its outcome (grpc_server_*). */
export function grpcServerMetrics(registry: Registry): ServerMiddleware {
  const family = grpcFamily(registry, "grpc_server", "RPCs handled by this server");
  return prometheusServerMiddleware({
    serverStartedMetric: family.started,
    serverHandledMetric: family.handled,
    serverStreamMsgReceivedMetric: family.received,
    serverStreamMsgSentMetric: family.sent,
    serverHandlingSecondsMetric: family.seconds,
  });
}

/**
 * Client metrics per attempt (grpc_client_*): placed inside the retry
 * middleware, so each try on the wire counts once, as the server sees it.
 */
export function grpcClientAttemptMetrics(registry: Registry): ClientMiddleware {
  const family = grpcFamily(registry, "grpc_client", "RPC attempts made by this client (each retry counts)");
  return prometheusClientMiddleware({
    clientStartedMetric: family.started,
    clientHandledMetric: family.handled,
    clientStreamMsgReceivedMetric: family.received,
    clientStreamMsgSentMetric: family.sent,
    clientHandlingSecondsMetric: family.seconds,
  });
}

/**
 * Client metrics per call (meshcart_grpc_client_calls_*): outside the retry
 * middleware, so a call counts once with its final status and its whole
 * duration, retries and backoff included.
 */
export function grpcClientCallMetrics(registry: Registry): ClientMiddleware {
  const family = grpcFamily(registry, "meshcart_grpc_client_calls", "RPC calls made by this client (retries included in one call)");
  return prometheusClientMiddleware({
    clientStartedMetric: family.started,
    clientHandledMetric: family.handled,
    clientStreamMsgReceivedMetric: family.received,
    clientStreamMsgSentMetric: family.sent,
    clientHandlingSecondsMetric: family.seconds,
  });
}

const processMetrics = new WeakSet<Registry>();

/** prom-client's default gauges that carry a counter's suffix. */
const SUMMED_GAUGES = ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"] as const;

/**
 * What every service exports besides its calls: Node's process metrics
 * (CPU, memory, event loop lag, GC), build info, and the trace exporter's
 * counters. Idempotent per registry.
 */
export function registerProcessMetrics(registry: Registry, service: string, version: string): void {
  if (processMetrics.has(registry)) return;
  processMetrics.add(registry);
  registry.setDefaultLabels({ service_name: service });
  collectDefaultMetrics({ register: registry });
  // prom-client names three gauges *_total, which Prometheus keeps for
  // counters (`promtool check metrics` refuses them). Each is the sum of its
  // per-type gauge without the suffix (nodejs_active_handles, ...), so
  // nothing is lost.
  for (const name of SUMMED_GAUGES) registry.removeSingleMetric(name);
  new Gauge({
    name: "meshcart_build_info",
    help: "Always 1; labels name the running version.",
    labelNames: ["version"],
    registers: [registry],
  }).set({ version }, 1);
  new Counter({
    name: "meshcart_trace_spans_exported_total",
    help: "Spans handed to the OTLP exporter, by result (failure: the collector did not take them).",
    labelNames: ["result"],
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ result: "success" }, exportStats.exportedSpans);
      this.inc({ result: "failure" }, exportStats.failedSpans);
    },
  });
}

/** Saturation of the database pool, read at scrape time, and whether the database answers. */
export function registerDatabaseMetrics(registry: Registry, database: Database, healthy: () => boolean): void {
  const pool = database.pool;
  new Gauge({
    name: "meshcart_db_pool_connections",
    help: "Connections in the database pool, by state (in_use: lent to a query or transaction).",
    labelNames: ["state"],
    registers: [registry],
    collect() {
      this.set({ state: "idle" }, pool.idleCount);
      this.set({ state: "in_use" }, pool.totalCount - pool.idleCount);
    },
  });
  new Gauge({
    name: "meshcart_db_pool_max_connections",
    help: "Size limit of the database pool (DB_POOL_MAX).",
    registers: [registry],
    collect() {
      this.set(database.maxConnections);
    },
  });
  new Gauge({
    name: "meshcart_db_pool_waiting_requests",
    help: "Queries and transactions waiting for a free connection.",
    registers: [registry],
    collect() {
      this.set(pool.waitingCount);
    },
  });
  new Gauge({
    name: "meshcart_db_up",
    help: "1 when the last database ping answered, else 0.",
    registers: [registry],
    collect() {
      this.set(healthy() ? 1 : 0);
    },
  });
}
