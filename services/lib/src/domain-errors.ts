/**
 * Errors a service's domain code throws. They say what went wrong in
 * business terms and know nothing of gRPC; the server's error boundary maps
 * each to its status (see server-middleware.ts), so handlers stay thin and
 * the domain stays testable without a transport.
 */
export class DomainError extends Error {
  override name = "DomainError";
}

/** Something the caller named does not exist. → NOT_FOUND */
export class NotFoundError extends DomainError {
  override name = "NotFoundError";
  constructor(
    readonly resource: string,
    readonly id: string,
  ) {
    super(`${resource} ${id} not found`);
  }
}

/** A business rule refuses the request. → FAILED_PRECONDITION with violations */
export class RefusedError extends DomainError {
  override name = "RefusedError";
  constructor(
    message: string,
    readonly violations: { type: string; subject: string; description: string }[] = [],
  ) {
    super(message);
  }
}

/** An idempotency key was reused with a different payload. → ALREADY_EXISTS */
export class ConflictError extends DomainError {
  override name = "ConflictError";
}

/** A dependency is away; the caller may retry. → UNAVAILABLE */
export class UnavailableError extends DomainError {
  override name = "UnavailableError";
}

/** The outcome is not known within the time the caller may wait. → DEADLINE_EXCEEDED */
export class StillRunningError extends DomainError {
  override name = "StillRunningError";
}

/**
 * Too much work in progress: refused before anything was done, so the
 * caller may simply try again later. → RESOURCE_EXHAUSTED with a RetryInfo
 * (never UNAVAILABLE: overload is not an outage, and the mesh retries
 * UNAVAILABLE)
 */
export class OverloadedError extends DomainError {
  override name = "OverloadedError";
  constructor(
    message: string,
    /** When trying again makes sense, in ms. */
    readonly retryAfterMs: number,
  ) {
    super(message);
  }
}
