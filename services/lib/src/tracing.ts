import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  context,
  defaultTextMapGetter,
  defaultTextMapSetter,
  isSpanContextValid,
  trace,
  type Attributes,
  type Context,
  type Link,
  type Span,
} from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";

export { SpanKind, SpanStatusCode, type Attributes, type Span } from "@opentelemetry/api";

/**
 * Tracing as the services' code sees it: the OpenTelemetry API only, never
 * the SDK. The SDK is started by `@meshcart/lib/telemetry` as the first
 * import of each entry point; without it (unit tests) every call here is a
 * cheap no-op.
 */

/** Span attribute names of meshcart's own domain (the `meshcart.` namespace). */
export const SpanAttributes = {
  /** The x-request-id a shopper quotes to support; the same on every hop. */
  correlationId: "meshcart.correlation_id",
  orderId: "meshcart.order.id",
  /** State of the order after the work of the span. */
  orderState: "meshcart.order.state",
  /** Saga step: reserve, charge, commit, refund, release, return, finish. */
  sagaStep: "meshcart.saga.step",
  /** Event types the step appended to the order's log. */
  sagaEvents: "meshcart.saga.events",
  /** How a saga ended: confirmed, rejected, failed, cancelled; or, on a step, ok / retry. */
  sagaOutcome: "meshcart.saga.outcome",
  /** The saga was resumed by recovery (another replica, or this one after a restart). */
  sagaRecovered: "meshcart.saga.recovered",
  /** The step undoes the checkout (the order is COMPENSATING). */
  sagaCompensating: "meshcart.saga.compensating",
  /** How many times in a row the step has failed (retried steps only). */
  sagaAttempt: "meshcart.saga.attempt",
  /** On a `compensation.started` event: the forward step that failed, why (failed, declined), and the reason. */
  compensationStep: "meshcart.compensation.step",
  compensationCause: "meshcart.compensation.cause",
  compensationReason: "meshcart.compensation.reason",
  reservationId: "meshcart.reservation.id",
  paymentId: "meshcart.payment.id",
  /** captured or declined. */
  paymentOutcome: "meshcart.payment.outcome",
  declineReason: "meshcart.payment.decline_reason",
  /** The call found the result of an earlier one with the same idempotency key. */
  replayed: "meshcart.replayed",
} as const;

export const tracer = trace.getTracer("meshcart");

/** Stored trace context is always W3C, whatever propagators the wire uses. */
const w3c = new W3CTraceContextPropagator();

/**
 * Who carries trace context over gRPC calls. Exporting, the OpenTelemetry
 * gRPC instrumentation does (with a span per call). Not exporting, no
 * instrumentation runs at all (its work per call and per statement would
 * buy nothing), and meshcart's own middleware passes the W3C traceparent on
 * and makes each call's context current, so that log lines still carry
 * trace ids and a mesh's proxy spans still join one trace. Without the SDK
 * (unit tests, OTEL_SDK_DISABLED) nobody does.
 */
export type TraceContextCarrier = "instrumentation" | "middleware" | "none";

let carrier: TraceContextCarrier = "none";

/** Set once by the telemetry module when the SDK starts. */
export function setTraceContextCarrier(who: TraceContextCarrier): void {
  carrier = who;
}

export function traceContextCarrier(): TraceContextCarrier {
  return carrier;
}

/** Writes the active context's W3C traceparent (and tracestate) with `set`, for an outgoing call. */
export function injectTraceContext(set: (key: string, value: string) => void): void {
  const headers: Record<string, string> = {};
  w3c.inject(context.active(), headers, defaultTextMapSetter);
  for (const [key, value] of Object.entries(headers)) set(key, value);
}

/**
 * Makes an incoming call's trace context current for the rest of the call,
 * with a span of the call's own (not recorded: nothing is exported when
 * this runs) as the parent of what it does.
 */
export function enterIncomingTraceContext(headers: { traceparent?: string; tracestate?: string }, name: string): Span {
  const parent = headers.traceparent ? w3c.extract(ROOT_CONTEXT, headers, defaultTextMapGetter) : ROOT_CONTEXT;
  const span = tracer.startSpan(name, { kind: SpanKind.SERVER }, parent);
  // As the request context: nice-grpc middleware are async generators, whose work cannot be wrapped in a callback.
  context.attach(trace.setSpan(parent, span));
  return span;
}

/** Sets attributes on the span of the work in progress (a gRPC call's server span, a saga step). */
export function annotateSpan(attributes: Attributes): void {
  trace.getActiveSpan()?.setAttributes(attributes);
}

/** Adds a named event (e.g. `compensation.started`) to the span of the work in progress. */
export function spanEvent(name: string, attributes?: Attributes): void {
  trace.getActiveSpan()?.addEvent(name, attributes);
}

/** trace_id and span_id of the active span, for log lines; empty outside any span. */
export function activeTraceIds(): { trace_id: string; span_id: string } | undefined {
  const spanContext = trace.getActiveSpan()?.spanContext();
  if (!spanContext || !isSpanContextValid(spanContext)) return undefined;
  return { trace_id: spanContext.traceId, span_id: spanContext.spanId };
}

/**
 * The W3C traceparent of the active span, to store with work that outlives
 * the request (a saga): whoever resumes it continues the same trace.
 */
export function activeTraceparent(): string | undefined {
  const carrier: Record<string, string> = {};
  const spanContext = trace.getActiveSpan()?.spanContext();
  if (!spanContext || !isSpanContextValid(spanContext)) return undefined;
  w3c.inject(trace.setSpanContext(ROOT_CONTEXT, spanContext), carrier, defaultTextMapSetter);
  return carrier.traceparent;
}

/**
 * The context a stored traceparent stands for (its span as the remote
 * parent); the active context when there is none, a new trace when it is
 * malformed.
 */
export function contextFromTraceparent(traceparent: string | undefined | null): Context {
  if (!traceparent) return context.active();
  return w3c.extract(ROOT_CONTEXT, { traceparent }, defaultTextMapGetter);
}

/** A link to the span a stored traceparent names, when it parses. */
export function linkTo(traceparent: string | undefined | null, attributes?: Attributes): Link | undefined {
  if (!traceparent) return undefined;
  const spanContext = trace.getSpanContext(contextFromTraceparent(traceparent));
  return spanContext && isSpanContextValid(spanContext) ? { context: spanContext, attributes } : undefined;
}

export interface SpanOptions {
  kind?: SpanKind;
  attributes?: Attributes;
  links?: Link[];
  /** The parent; the active context when omitted. */
  parent?: Context;
}

/**
 * Runs `work` in a new active span, ending it when `work` settles; an error
 * is recorded on the span (status ERROR) and rethrown.
 */
export async function inSpan<T>(name: string, options: SpanOptions, work: (span: Span) => Promise<T>): Promise<T> {
  const parent = options.parent ?? context.active();
  return tracer.startActiveSpan(
    name,
    { kind: options.kind ?? SpanKind.INTERNAL, attributes: options.attributes, links: options.links },
    parent,
    async (span) => {
      try {
        return await work(span);
      } catch (error) {
        recordError(span, error);
        throw error;
      } finally {
        span.end();
      }
    },
  );
}

/** Marks a span failed by `error`. */
export function recordError(span: Span, error: unknown): void {
  span.recordException(error instanceof Error ? error : String(error));
  span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
}

// ---------------------------------------------------------------- lifecycle

type Flush = (timeoutMs: number) => Promise<void>;
let flushHook: Flush | undefined;

/** Called by the telemetry module once the SDK runs. */
export function setTelemetryFlush(flush: Flush | undefined): void {
  flushHook = flush;
}

/**
 * Exports the spans still queued, waiting at most `timeoutMs`: a service
 * calls it last when it stops, so the spans of its final calls are not lost.
 * Never throws; a no-op when telemetry is not running.
 */
export async function flushTelemetry(timeoutMs = 2_000): Promise<void> {
  if (!flushHook) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    flushHook(timeoutMs).catch(() => undefined),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
      timer.unref();
    }),
  ]);
  clearTimeout(timer);
}

/** What the span exporter did so far, for the metrics endpoint. */
export interface ExportStats {
  exportedSpans: number;
  failedSpans: number;
  failedBatches: number;
}

export const exportStats: ExportStats = { exportedSpans: 0, failedSpans: 0, failedBatches: 0 };
