/**
 * The command line's tracing, started before anything loads @grpc/grpc-js
 * (the first import of cli.ts). Spans are exported only when an
 * OTEL_EXPORTER_OTLP_ENDPOINT is set (`make load` sets make dev's local
 * collector, http://localhost:4317, unless one is given); its own log lines
 * (such as "no trace collector answers") stay quiet unless LOG_LEVEL asks,
 * so they do not disturb the terminal.
 */
import { startTelemetry } from "@meshcart/lib/telemetry";

startTelemetry("loadgen", { ...process.env, LOG_LEVEL: process.env.LOG_LEVEL || "error" });
