import { Status } from "nice-grpc";
import {
  RichServerError,
  BadRequest,
  RetryInfo,
  PreconditionFailure,
  type BadRequest_FieldViolation,
  type PreconditionFailure_Violation,
} from "nice-grpc-error-details";

export { Status, ServerError } from "nice-grpc";

export type FieldViolation = Pick<BadRequest_FieldViolation, "field" | "description">;

/**
 * Bad input: INVALID_ARGUMENT carrying a google.rpc.BadRequest with one
 * violation per offending field, so clients (and grpcurl) see every problem
 * at once.
 */
export function invalidArgument(violations: FieldViolation[]): RichServerError {
  // The status travels in HTTP/2 trailers, which clients cap (Node's at 64 KiB):
  // a request with thousands of bad values must not produce a status the
  // client cannot read. Every violation a valid-sized request can have fits.
  const bounded = violations.map((v) => ({ field: truncate(v.field, MAX_TEXT), description: truncate(v.description, MAX_TEXT) }));
  const shown =
    bounded.length > MAX_VIOLATIONS
      ? [...bounded.slice(0, MAX_VIOLATIONS - 1), { field: "", description: `has ${bounded.length - MAX_VIOLATIONS + 1} more violations` }]
      : bounded;
  // An empty field path is the request as a whole (bytes that are no message).
  const summary = shown.map((v) => (v.field ? `${v.field}: ${v.description}` : `request ${v.description}`)).join("; ");
  return new RichServerError(Status.INVALID_ARGUMENT, truncate(summary, MAX_SUMMARY) || "invalid request", [
    BadRequest.fromPartial({ fieldViolations: shown }),
  ]);
}

/** Most violations one status carries: more than any request within the services' limits can have. */
export const MAX_VIOLATIONS = 200;
/** The message repeats the violations for humans (grpcurl prints it); the details carry them all. */
const MAX_SUMMARY = 2_000;
/** A field path or description that quotes the caller's input is cut short. */
const MAX_TEXT = 200;

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

export function notFound(what: string): RichServerError {
  return new RichServerError(Status.NOT_FOUND, `${what} not found`);
}

export type PreconditionViolation = Pick<PreconditionFailure_Violation, "type" | "subject" | "description">;

/** A business refusal: the request was well formed but cannot be done now. */
export function failedPrecondition(message: string, violations: PreconditionViolation[] = []): RichServerError {
  return new RichServerError(Status.FAILED_PRECONDITION, message, violations.length ? [PreconditionFailure.fromPartial({ violations })] : []);
}

/** An idempotency key reused with a different payload. */
export function alreadyExists(message: string): RichServerError {
  return new RichServerError(Status.ALREADY_EXISTS, message);
}

/** A transient fault: the caller may retry. */
export function unavailable(message: string): RichServerError {
  return new RichServerError(Status.UNAVAILABLE, message);
}

/**
 * Shed load: the service refused the call before doing anything, because
 * it is at capacity. RESOURCE_EXHAUSTED (the status the mesh never
 * retries, proto/mesh.yaml) with a google.rpc.RetryInfo saying when to try
 * again.
 */
export function resourceExhausted(message: string, retryAfterMs: number): RichServerError {
  const ms = Math.max(0, Math.round(retryAfterMs));
  return new RichServerError(Status.RESOURCE_EXHAUSTED, message, [
    RetryInfo.fromPartial({ retryDelay: { seconds: Math.floor(ms / 1_000), nanos: (ms % 1_000) * 1_000_000 } }),
  ]);
}

/** The status a service sheds load with: admission control and an exhausted database pool answer it. */
export const SHED_STATUS = Status.RESOURCE_EXHAUSTED;
