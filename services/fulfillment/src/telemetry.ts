/**
 * Tracing starts here, before anything loads @grpc/grpc-js or pg: this
 * module must stay the first import of main.ts (see @meshcart/lib/telemetry).
 */
import { startTelemetry } from "@meshcart/lib/telemetry";

startTelemetry("fulfillment");
