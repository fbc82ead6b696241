import {
  ChannelCredentials,
  Metadata,
  Status,
  createChannel,
  createClientFactory,
  type CallOptions,
  type Channel,
  type Client,
  type ClientMiddleware,
  type ClientMiddlewareCall,
  type CompatServiceDefinition,
} from "nice-grpc";
import { deadlineMiddleware, type DeadlineOptions } from "nice-grpc-client-middleware-deadline";
import { retryMiddleware, type RetryOptions } from "nice-grpc-client-middleware-retry";
import { errorDetailsClientMiddleware } from "nice-grpc-error-details";
import type { Logger } from "./logger.js";
import { grpcClientAttemptMetrics, grpcClientCallMetrics, type Registry } from "./metrics.js";
import { CORRELATION_HEADER, currentRequest } from "./request-context.js";
import { injectTraceContext, traceContextCarrier } from "./tracing.js";

export interface ClientSettings {
  /** host:port of the service. */
  address: string;
  /** Deadline of one attempt when the caller gives none. */
  attemptTimeoutMs: number;
  /**
   * Attempts after the first for UNAVAILABLE and DEADLINE_EXCEEDED (0 turns
   * app-level retries off, as in the cluster where the mesh retries). Only
   * for clients whose every call is idempotent.
   */
  retries: number;
  retryBaseDelayMs?: number;
  retryMaxDelayMs?: number;
  /** The process's metrics registry: client RED metrics per attempt and per call go there. */
  registry?: Registry;
  /**
   * A middleware outside all of the kit's: it sees each call's options as
   * the caller gave them (its `deadline` among them, which the kit's deadline
   * middleware consumes), e.g. to put that deadline on the wire.
   */
  middleware?: ClientMiddleware<DeadlineOptions>;
}

export type ServiceClient<D extends CompatServiceDefinition> = Client<D, DeadlineOptions & RetryOptions>;

/** Statuses that say "try again": the call may not have run, or is safe to repeat. */
export const TRANSIENT_STATUSES = [Status.UNAVAILABLE, Status.DEADLINE_EXCEEDED];

/**
 * Passes the current request's correlation id to the next service, so one
 * x-request-id follows a checkout through every hop and every log.
 */
async function* propagateCorrelation<Request, Response>(call: ClientMiddlewareCall<Request, Response>, options: CallOptions) {
  const request = currentRequest();
  const metadata = Metadata(options.metadata);
  if (request && !metadata.has(CORRELATION_HEADER)) metadata.set(CORRELATION_HEADER, request.correlationId);
  return yield* call.next(call.request, { ...options, metadata });
}

/** The active trace context to the next service, when no instrumentation does that (tracing.ts, traceContextCarrier). */
async function* propagateTraceContext<Request, Response>(call: ClientMiddlewareCall<Request, Response>, options: CallOptions) {
  const metadata = Metadata(options.metadata);
  injectTraceContext((key, value) => metadata.set(key, value));
  return yield* call.next(call.request, { ...options, metadata });
}

async function* passThrough<Request, Response>(call: ClientMiddlewareCall<Request, Response>, options: CallOptions) {
  return yield* call.next(call.request, options);
}

export function openChannel(address: string): Channel {
  return createChannel(address, ChannelCredentials.createInsecure(), {
    // Retries belong to one deliberate layer (this client or the mesh);
    // grpc-js's own transparent retries would multiply them.
    "grpc.enable_retries": 0,
    "grpc.keepalive_time_ms": 60_000,
    "grpc.keepalive_timeout_ms": 20_000,
  });
}

/**
 * A client for another meshcart service: every attempt has a deadline, the
 * correlation id travels along, rich error details are decoded, and (when
 * enabled) transient failures are retried with jittered exponential backoff.
 * Middleware order matters (on a client the last `.use()` is outermost):
 * the retry middleware is outside the deadline so that each attempt gets its
 * own deadline; per-attempt metrics sit inside the retry, per-call metrics
 * outside it. (Exporting, client spans come from the gRPC instrumentation,
 * one per attempt, with the traceparent in the metadata; not exporting, the
 * traceparent alone is passed on.)
 */
export function createServiceClient<D extends CompatServiceDefinition>(
  definition: D,
  channel: Channel,
  settings: ClientSettings,
  logger: Logger,
): ServiceClient<D> {
  const registry = settings.registry;
  const base = createClientFactory().use(errorDetailsClientMiddleware);
  const factory = (registry ? base.use(grpcClientAttemptMetrics(registry)) : base)
    .use(traceContextCarrier() === "middleware" ? propagateTraceContext : passThrough)
    .use(propagateCorrelation)
    .use(deadlineMiddleware)
    .use(retryMiddleware)
    .use(registry ? grpcClientCallMetrics(registry) : passThrough)
    .use(settings.middleware ?? passThrough);
  return factory.create(definition, channel, {
    "*": {
      deadline: settings.attemptTimeoutMs,
      retry: settings.retries > 0,
      retryMaxAttempts: settings.retries,
      retryBaseDelayMs: settings.retryBaseDelayMs ?? 50,
      retryMaxDelayMs: settings.retryMaxDelayMs ?? 1_000,
      retryableStatuses: TRANSIENT_STATUSES,
      onRetryableError(error, attempt, delayMs) {
        logger.warn({ code: Status[error.code], path: error.path, attempt, delay_ms: delayMs }, "call failed, retrying");
      },
    },
  }) as ServiceClient<D>;
}
