/**
 * Starts OpenTelemetry tracing for a service process. It must run before
 * @grpc/grpc-js and pg are first loaded: the instrumentations patch them as
 * they load, and a module loaded earlier is never patched (no spans at
 * all). Each service therefore has a `src/telemetry.ts` that calls
 * `startTelemetry` and is the FIRST import of its `main.ts`; ESM evaluates
 * imports in order, so it runs before anything that loads gRPC or pg. Keep
 * this module free of imports that load either (the OTLP gRPC exporter
 * loads grpc-js itself, which is fine: patching happens when nice-grpc
 * `require`s it afterwards). Do not bundle the services: bundling defeats
 * the require hooks.
 *
 * Configuration is the standard OTEL_* environment (endpoint, protocol,
 * headers, sampler, batch sizes), with one meshcart rule: spans are
 * exported only when an endpoint is configured (OTEL_EXPORTER_OTLP_ENDPOINT
 * or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT). Without one, nothing is recorded
 * and no instrumentation runs (it would cost every call and every statement
 * work for spans nobody sees); trace context is still propagated and logged
 * (trace_id on log lines) by meshcart's own gRPC middleware (tracing.ts,
 * traceContextCarrier).
 */
import { hostname } from "node:os";
import { DiagLogLevel, diag, type DiagLogger } from "@opentelemetry/api";
import { ExportResultCode, setGlobalErrorHandler, type ExportResult } from "@opentelemetry/core";
import { OTLPTraceExporter as OtlpGrpcExporter } from "@opentelemetry/exporter-trace-otlp-grpc";
import { OTLPTraceExporter as OtlpProtoExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { GrpcInstrumentation } from "@opentelemetry/instrumentation-grpc";
import { PgInstrumentation } from "@opentelemetry/instrumentation-pg";
import { defaultResource, resourceFromAttributes } from "@opentelemetry/resources";
import { NodeSDK } from "@opentelemetry/sdk-node";
import { AlwaysOffSampler, BatchSpanProcessor, NoopSpanProcessor, type ReadableSpan, type SpanExporter, type SpanProcessor } from "@opentelemetry/sdk-trace";
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from "@opentelemetry/semantic-conventions";
import { logLevels } from "./config.js";
import { createLogger, type Logger } from "./logger.js";
import { CORRELATION_HEADER } from "./request-context.js";
import { exportStats, setTelemetryFlush, setTraceContextCarrier } from "./tracing.js";

type Env = Record<string, string | undefined>;

export interface TelemetryState {
  /** Spans are recorded and sent to an OTLP endpoint. */
  exporting: boolean;
  /** Where to, for the start-up log line. */
  endpoint?: string;
  protocol?: string;
  shutdown(): Promise<void>;
}

/** Health checks and reflection would bury the traces that matter. */
const UNTRACED_METHODS = ["Check", "Watch", "ServerReflectionInfo"];
/** The same telemetry complaint is logged at most this often. */
const COMPLAINT_INTERVAL_MS = 10 * 60_000;

let started: TelemetryState | undefined;

/**
 * Starts the SDK once per process (later calls return the first state).
 * Never throws: a telemetry problem must not keep a service from serving.
 */
export function startTelemetry(service: string, env: Env = process.env): TelemetryState {
  if (started) return started;
  // Its lines are about the process, not about the call that happened to
  // be in progress: no request or trace ids on them.
  const logger = createLogger({ service, version: env.SERVICE_VERSION || "dev", level: logLevelOf(env), context: false });
  try {
    started = start(service, env, logger);
  } catch (error) {
    logger.error({ err: error }, "telemetry could not start; continuing without tracing");
    started = { exporting: false, shutdown: async () => undefined };
  }
  return started;
}

function start(service: string, env: Env, logger: Logger): TelemetryState {
  if (isTrue(env.OTEL_SDK_DISABLED)) {
    logger.info("telemetry disabled (OTEL_SDK_DISABLED)");
    return { exporting: false, shutdown: async () => undefined };
  }
  const complaints = new Complaints(logger);
  const exporter = exporterFrom(env, complaints);
  setGlobalErrorHandler((error) => {
    // An export failure reaches here too, once the exporter has said it.
    if (exporter && error === exporter.exporter.lastFailure) return;
    // The batch processor gave up waiting for an export: the same trouble.
    if (exporter && error instanceof Error && error.message === "Timeout") exporter.exporter.complain(error);
    else complaints.say("opentelemetry error", error);
  });

  const processor: SpanProcessor = exporter
    ? new BatchSpanProcessor({
        exporter: exporter.exporter,
        // Bounded: with the collector away, spans beyond this are dropped
        // rather than held; exporting never blocks a call.
        maxQueueSize: positive(env.OTEL_BSP_MAX_QUEUE_SIZE) ?? 2048,
        maxExportBatchSize: positive(env.OTEL_BSP_MAX_EXPORT_BATCH_SIZE) ?? 512,
        scheduledDelayMillis: positive(env.OTEL_BSP_SCHEDULE_DELAY) ?? 5_000,
        exportTimeoutMillis: positive(env.OTEL_BSP_EXPORT_TIMEOUT) ?? 10_000,
      })
    : new NoopSpanProcessor();

  const sdk = new NodeSDK({
    resource: defaultResource().merge(resourceFromAttributes(resourceAttributes(service, env))),
    // The env, process and host detectors run on top (OTEL_SERVICE_NAME and
    // OTEL_RESOURCE_ATTRIBUTES win over the attributes above).
    spanProcessors: [processor],
    // Not exporting: trace context still flows (and reaches the logs), but
    // no span is recorded, which costs next to nothing.
    ...(exporter ? {} : { sampler: new AlwaysOffSampler() }),
    // Metrics are Prometheus' job (the admin port) and logs go to stdout.
    metricReaders: [],
    logRecordProcessors: [],
    instrumentations: exporter
      ? [
          // The one gRPC tracing layer: server and client spans, W3C
          // traceparent in the metadata. nice-grpc runs over grpc-js.
          new GrpcInstrumentation({
            ignoreGrpcMethods: UNTRACED_METHODS,
            metadataToSpanAttributes: {
              client: { requestMetadata: [CORRELATION_HEADER] },
              server: { requestMetadata: [CORRELATION_HEADER] },
            },
          }),
          // Statements inside a traced call or saga step only: pings, sweeps
          // and recovery scans would each be a trace of their own. Parameters
          // are never recorded (they can be customer data). No span per pool
          // checkout (as many as statements): the pool's saturation is on
          // /metrics.
          new PgInstrumentation({ requireParentSpan: true, enhancedDatabaseReporting: false, ignoreConnectSpans: true }),
        ]
      : [],
  });
  sdk.start();
  setTraceContextCarrier(exporter ? "instrumentation" : "middleware");
  // After the SDK, which sets its own console logger from OTEL_LOG_LEVEL.
  diag.setLogger(new RateLimitedDiag(complaints), { logLevel: diagLevelOf(env.OTEL_LOG_LEVEL), suppressOverrideMessage: true });

  setTelemetryFlush(async () => {
    await processor.forceFlush();
  });
  const state: TelemetryState = {
    exporting: exporter !== undefined,
    endpoint: exporter?.endpoint,
    protocol: exporter?.protocol,
    async shutdown() {
      setTelemetryFlush(undefined);
      await sdk.shutdown();
    },
  };
  logger.info({ exporting: state.exporting, endpoint: state.endpoint, protocol: state.protocol }, "telemetry started");
  return state;
}

/** The span exporter the environment asks for; undefined when spans are not to be exported. */
function exporterFrom(env: Env, complaints: Complaints): { exporter: CountingExporter; endpoint: string; protocol: string } | undefined {
  const names = (env.OTEL_TRACES_EXPORTER ?? "")
    .split(",")
    .map((n) => n.trim())
    .filter(Boolean);
  if (names.includes("none")) return undefined;
  for (const name of names) {
    if (name !== "otlp") complaints.say(`OTEL_TRACES_EXPORTER "${name}" is not supported here; only otlp and none are`);
  }
  const endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_EXPORTER_OTLP_ENDPOINT;
  if (!endpoint) return undefined;
  const protocol = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL || env.OTEL_EXPORTER_OTLP_PROTOCOL || "http/protobuf";
  let inner: SpanExporter;
  if (protocol === "grpc") inner = new OtlpGrpcExporter();
  else {
    if (protocol !== "http/protobuf") complaints.say(`OTLP protocol "${protocol}" is not supported here; using http/protobuf`);
    inner = new OtlpProtoExporter();
  }
  return { exporter: new CountingExporter(inner, complaints, endpoint), endpoint, protocol };
}

/**
 * Counts what is exported and dropped (meshcart_trace_spans_exported_total
 * on the metrics endpoint) and says once, not on every batch, that the
 * collector is away, and again when it is back.
 */
class CountingExporter implements SpanExporter {
  private failing = false;
  private worked = false;
  /** The error of the last failed export. */
  lastFailure: unknown;

  constructor(
    private readonly inner: SpanExporter,
    private readonly complaints: Complaints,
    private readonly endpoint: string,
  ) {}

  export(spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
    this.inner.export(spans, (result) => {
      if (result.code === ExportResultCode.SUCCESS) {
        exportStats.exportedSpans += spans.length;
        if (this.failing) this.complaints.logger.info({ endpoint: this.endpoint }, "trace export works again");
        this.failing = false;
        this.worked = true;
      } else {
        exportStats.failedSpans += spans.length;
        exportStats.failedBatches += 1;
        this.failing = true;
        this.lastFailure = result.error;
        this.complain(result.error);
      }
      resultCallback(result);
    });
  }

  /** Says (rate-limited) that exporting fails. */
  complain(error: unknown): void {
    // Never worked: most likely no collector runs (make dev without
    // Jaeger), which is worth a note, not a warning.
    if (this.worked) this.complaints.say(`trace export to ${this.endpoint} failed; spans are dropped while it fails`, error);
    else this.complaints.say(`no trace collector answers at ${this.endpoint}; spans are dropped until one does`, error, "info");
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}

/** Warnings about telemetry itself, each distinct one at most once per interval. */
class Complaints {
  private readonly last = new Map<string, { at: number; suppressed: number }>();

  constructor(readonly logger: Logger) {}

  say(message: string, error?: unknown, level: "warn" | "info" = "warn"): void {
    const now = Date.now();
    const seen = this.last.get(message);
    if (seen && now - seen.at < COMPLAINT_INTERVAL_MS) {
      seen.suppressed += 1;
      return;
    }
    this.last.set(message, { at: now, suppressed: 0 });
    const reason = error === undefined ? undefined : error instanceof Error ? error.message : String(error);
    this.logger[level]({ reason, repeated_since_last: seen?.suppressed }, message);
  }
}

/** OpenTelemetry's own diagnostics, through the service's logger and rate-limited. */
class RateLimitedDiag implements DiagLogger {
  constructor(private readonly complaints: Complaints) {}
  error = (message: string, ...args: unknown[]) => this.complaints.say(`opentelemetry: ${message}`, args[0]);
  warn = (message: string, ...args: unknown[]) => this.complaints.say(`opentelemetry: ${message}`, args[0]);
  info = (message: string) => this.complaints.logger.debug(`opentelemetry: ${message}`);
  debug = (message: string) => this.complaints.logger.debug(`opentelemetry: ${message}`);
  verbose = (message: string) => this.complaints.logger.trace(`opentelemetry: ${message}`);
}

/**
 * service.name, service.version, deployment.environment(.name), and in
 * Kubernetes the pod and namespace (POD_NAME and POD_NAMESPACE, from the
 * downward API).
 */
export function resourceAttributes(service: string, env: Env): Record<string, string> {
  const environment = env.DEPLOYMENT_ENVIRONMENT || "local";
  const attributes: Record<string, string> = {
    [ATTR_SERVICE_NAME]: service,
    [ATTR_SERVICE_VERSION]: env.SERVICE_VERSION || "dev",
    "service.namespace": "meshcart",
    "service.instance.id": env.POD_NAME || `${hostname()}:${process.pid}`,
    "deployment.environment.name": environment,
    // The older name, still what many backends group by.
    "deployment.environment": environment,
  };
  if (env.KUBERNETES_SERVICE_HOST || env.POD_NAMESPACE) {
    attributes["k8s.pod.name"] = env.POD_NAME || hostname();
    if (env.POD_NAMESPACE) attributes["k8s.namespace.name"] = env.POD_NAMESPACE;
  }
  return attributes;
}

function logLevelOf(env: Env): (typeof logLevels)[number] {
  const level = env.LOG_LEVEL;
  return (logLevels as readonly string[]).includes(level ?? "") ? (level as (typeof logLevels)[number]) : "info";
}

function diagLevelOf(value: string | undefined): DiagLogLevel {
  switch ((value ?? "").toLowerCase()) {
    case "none":
      return DiagLogLevel.NONE;
    case "error":
      return DiagLogLevel.ERROR;
    case "info":
      return DiagLogLevel.INFO;
    case "debug":
      return DiagLogLevel.DEBUG;
    case "verbose":
      return DiagLogLevel.VERBOSE;
    case "all":
      return DiagLogLevel.ALL;
    default:
      return DiagLogLevel.WARN;
  }
}

function isTrue(value: string | undefined): boolean {
  return (value ?? "").trim().toLowerCase() === "true";
}

function positive(value: string | undefined): number | undefined {
  const number = Number(value);
  return value && Number.isFinite(number) && number > 0 ? number : undefined;
}
