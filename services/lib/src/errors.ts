import { Status } from "nice-grpc";
import {
  RichServerError,
  BadRequest,
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
  const summary = violations.map((v) => `${v.field}: ${v.description}`).join("; ");
  return new RichServerError(Status.INVALID_ARGUMENT, summary || "invalid request", [
    BadRequest.fromPartial({ fieldViolations: violations }),
  ]);
}

export function notFound(what: string): RichServerError {
  return new RichServerError(Status.NOT_FOUND, `${what} not found`);
}

export type PreconditionViolation = Pick<PreconditionFailure_Violation, "type" | "subject" | "description">;

/** A business refusal: the request was well formed but cannot be done now. */
export function failedPrecondition(message: string, violations: PreconditionViolation[] = []): RichServerError {
  return new RichServerError(
    Status.FAILED_PRECONDITION,
    message,
    violations.length ? [PreconditionFailure.fromPartial({ violations })] : [],
  );
}

/** An idempotency key reused with a different payload. */
export function alreadyExists(message: string): RichServerError {
  return new RichServerError(Status.ALREADY_EXISTS, message);
}

/** A transient fault: the caller may retry. */
export function unavailable(message: string): RichServerError {
  return new RichServerError(Status.UNAVAILABLE, message);
}
