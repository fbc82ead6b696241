import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { createFileRegistry, fromBinary, type DescMessage, type FileRegistry } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { ServerError, Status, type CallContext, type CompatServiceDefinition, type ServerMiddlewareCall } from "nice-grpc";
import { isAbortError } from "abort-controller-x";
import type { Admission } from "./admission.js";
import { descriptorSetPath } from "./descriptor-set.js";
import { POOL_WAIT_MS, isPoolExhausted, isTransientDatabaseError } from "./database.js";
import { ConflictError, NotFoundError, OverloadedError, RefusedError, StillRunningError, UnavailableError } from "./domain-errors.js";
import { alreadyExists, failedPrecondition, invalidArgument, notFound, resourceExhausted, unavailable, type FieldViolation } from "./errors.js";
import type { Logger } from "./logger.js";
import { CORRELATION_HEADER, enterRequest } from "./request-context.js";
import { SpanAttributes, annotateSpan, enterIncomingTraceContext } from "./tracing.js";
import { undecodableRequest } from "./validation.js";

const CORRELATION_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Gives every call a correlation id (the client's x-request-id when it is a
 * sane one, a new UUID otherwise), returns it in the response headers, and
 * makes it visible to logs, outbound calls and the call's span for the
 * rest of the call.
 */
export async function* requestContextMiddleware<Request, Response>(call: ServerMiddlewareCall<Request, Response>, context: CallContext) {
  const given = context.metadata.get(CORRELATION_HEADER);
  const correlationId = typeof given === "string" && CORRELATION_ID.test(given) ? given : randomUUID();
  context.header.set(CORRELATION_HEADER, correlationId);
  enterRequest({ correlationId, method: call.method.path });
  // The server span (gRPC instrumentation) is the active one here.
  annotateSpan({ [SpanAttributes.correlationId]: correlationId });
  return yield* call.next(call.request, context);
}

/**
 * The incoming call's trace context, current for the rest of the call, when
 * no instrumentation does that (tracing.ts, traceContextCarrier).
 */
export async function* traceContextMiddleware<Request, Response>(call: ServerMiddlewareCall<Request, Response>, context: CallContext) {
  const traceparent = context.metadata.get("traceparent");
  const tracestate = context.metadata.get("tracestate");
  const span = enterIncomingTraceContext(
    { traceparent: typeof traceparent === "string" ? traceparent : undefined, tracestate: typeof tracestate === "string" ? tracestate : undefined },
    call.method.path,
  );
  try {
    return yield* call.next(call.request, context);
  } finally {
    span.end();
  }
}

/**
 * The last line of defence of the error contract: statuses thrown on purpose
 * pass through; domain errors become their statuses; shed load (admission
 * control, or a database pool whose every connection stayed busy) becomes
 * RESOURCE_EXHAUSTED, which nothing retries at once; a database that is away
 * becomes UNAVAILABLE (transient, so a caller may retry); anything else is a
 * bug, logged with its stack and answered as INTERNAL without leaking
 * internals to the caller. A request that could not be decoded
 * (decodeRequestsSafely) is bad input: INVALID_ARGUMENT, before any handler
 * runs.
 */
export function errorBoundaryMiddleware(logger: Logger) {
  return async function* errorBoundary<Request, Response>(call: ServerMiddlewareCall<Request, Response>, context: CallContext) {
    const started = performance.now();
    try {
      if (!call.requestStream) refuseUndecodable(call.request);
      const request = call.requestStream ? refusingUndecodable(call.request) : call.request;
      const result = yield* call.next(request, context);
      logger.debug({ duration_ms: Math.round(performance.now() - started) }, "call ok");
      return result;
    } catch (thrown) {
      const duration_ms = Math.round(performance.now() - started);
      const error = domainToStatus(thrown);
      if (error instanceof ServerError) {
        // Shed calls come by the hundred per second under overload: the
        // admission metrics count them, and Admission logs a summary.
        const level = error.code === Status.INTERNAL || error.code === Status.UNKNOWN ? "error" : error.code === Status.RESOURCE_EXHAUSTED ? "debug" : "info";
        logger[level]({ code: Status[error.code], details: error.details, duration_ms }, "call refused");
        throw error;
      }
      if (isAbortError(error)) {
        logger.info({ duration_ms }, "call cancelled by the client");
        throw error;
      }
      if (isPoolExhausted(error)) {
        logger.warn({ duration_ms }, "database pool exhausted: call shed");
        throw resourceExhausted("the shop is busy: every database connection of this service is in use; try again shortly", POOL_WAIT_MS);
      }
      if (isTransientDatabaseError(error)) {
        logger.warn({ err: error, duration_ms }, "database unavailable");
        throw new ServerError(Status.UNAVAILABLE, "database unavailable, try again");
      }
      logger.error({ err: error, duration_ms }, "unexpected error");
      throw new ServerError(Status.INTERNAL, "internal error");
    }
  };
}

function domainToStatus(error: unknown): unknown {
  if (error instanceof NotFoundError) return notFound(`${error.resource} ${error.id}`);
  if (error instanceof RefusedError) return failedPrecondition(error.message, error.violations);
  if (error instanceof ConflictError) return alreadyExists(error.message);
  if (error instanceof UnavailableError) return unavailable(error.message);
  if (error instanceof StillRunningError) return new ServerError(Status.DEADLINE_EXCEEDED, error.message);
  if (error instanceof OverloadedError) return resourceExhausted(error.message, error.retryAfterMs);
  return error;
}

/**
 * Admission control in front of a service's own unary calls (health and
 * reflection pass, as do streams, which are long and mostly idle): a call
 * beyond the limit and the queue is refused with RESOURCE_EXHAUSTED before
 * anything else of it runs. It sits outside the error boundary, so it
 * answers the status itself; Admission logs a summary of what it sheds.
 */
export function admissionMiddleware(admission: Admission, servicePaths: readonly string[]) {
  const admitted = (path: string) => servicePaths.some((service) => path.startsWith(`/${service}/`));
  return async function* admit<Request, Response>(call: ServerMiddlewareCall<Request, Response>, context: CallContext) {
    if (call.requestStream || call.responseStream || !admitted(call.method.path)) return yield* call.next(call.request, context);
    let permit;
    try {
      // The method is the kind of call whose unloaded latency an adaptive limit compares with.
      permit = await admission.admit(context.signal, call.method.path);
    } catch (error) {
      throw domainToStatus(error);
    }
    try {
      return yield* call.next(call.request, context);
    } finally {
      permit.release();
    }
  };
}

/**
 * Ends server streams cleanly when the service shuts down: long-lived
 * streams (health Watch, order tracking) would otherwise keep a graceful
 * shutdown waiting until its timeout.
 */
export function endStreamsOn(signal: AbortSignal) {
  return async function* endStreams<Request, Response>(call: ServerMiddlewareCall<Request, Response>, context: CallContext) {
    if (!call.responseStream) return yield* call.next(call.request, context);
    const iterator = call.next(call.request, context)[Symbol.asyncIterator]();
    const stopped = new Promise<"stopped">((resolve) => {
      if (signal.aborted) resolve("stopped");
      else signal.addEventListener("abort", () => resolve("stopped"), { once: true });
    });
    try {
      for (;;) {
        const next = await Promise.race([iterator.next(), stopped]);
        if (next === "stopped" || next.done) return;
        yield next.value;
      }
    } finally {
      // Not awaited: a generator parked in an await (health Watch waits for
      // the next change) would hold the return until it wakes up.
      void iterator.return?.(undefined)?.catch(() => undefined);
    }
  };
}

const UNDECODABLE = Symbol("meshcart.undecodable-request");

interface Undecodable {
  [UNDECODABLE]: FieldViolation[];
}

type TsProtoDefinition = {
  fullName: string;
  methods: Record<string, { name: string; requestType: { decode(bytes: Uint8Array): unknown } }>;
};

type GenericDefinition = Record<string, { path: string; requestDeserialize(bytes: Uint8Array): unknown }>;

/**
 * The definition with request decoding that never throws. gRPC decodes a
 * request before any middleware runs, and answers a decoder that throws
 * with INTERNAL ("Error deserializing request"): for bad input, which must
 * be INVALID_ARGUMENT. Here a request that cannot be decoded becomes a
 * marker carrying its field violations, which the error boundary turns into
 * INVALID_ARGUMENT with a BadRequest, counted and logged like any refusal.
 */
export function decodeRequestsSafely<D extends CompatServiceDefinition>(definition: D): D {
  if (isTsProto(definition)) {
    const methods = Object.fromEntries(
      Object.entries(definition.methods).map(([key, method]) => {
        const decode = method.requestType.decode;
        const requestType = {
          ...method.requestType,
          decode: safely(decode, () => requestSchema(`${definition.fullName}/${method.name}`)),
        };
        return [key, { ...method, requestType }];
      }),
    );
    return { ...definition, methods } as D;
  }
  const methods = Object.entries(definition as GenericDefinition).map(([key, method]) => {
    const deserialize = method.requestDeserialize;
    return [key, { ...method, requestDeserialize: safely(deserialize, () => requestSchema(method.path.replace(/^\//, ""))) }];
  });
  return Object.fromEntries(methods) as D;
}

function isTsProto(definition: CompatServiceDefinition): definition is CompatServiceDefinition & TsProtoDefinition {
  return "fullName" in definition && "methods" in definition && typeof definition.methods === "object";
}

function safely(decode: (bytes: Uint8Array) => unknown, schema: () => DescMessage | undefined) {
  return (bytes: Uint8Array): unknown => {
    try {
      return decode(bytes);
    } catch {
      const marker: Undecodable = { [UNDECODABLE]: undecodableRequest(schema(), bytes) };
      return marker;
    }
  };
}

let registry: FileRegistry | undefined;

/** The request message of `<package.Service>/<Method>`, from the descriptor set; undefined when it is not there. */
function requestSchema(method: string): DescMessage | undefined {
  try {
    registry ??= createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(descriptorSetPath())));
  } catch {
    return undefined;
  }
  const [service, name] = method.split("/");
  const found = registry.getService(service ?? "")?.methods.find((m) => m.name === name);
  return found?.input;
}

function refuseUndecodable(request: unknown): void {
  if (typeof request === "object" && request !== null && UNDECODABLE in request) {
    throw invalidArgument((request as Undecodable)[UNDECODABLE]);
  }
}

async function* refusingUndecodable<T>(requests: AsyncIterable<T>): AsyncIterable<T> {
  for await (const request of requests) {
    refuseUndecodable(request);
    yield request;
  }
}
