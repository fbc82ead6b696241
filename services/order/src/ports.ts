import type { OrderItem, PricedLine } from "./order-state.js";

/**
 * What the saga needs from the other services, in its own terms. The gRPC
 * adapters (grpc-adapters.ts) turn every status into an outcome or into one
 * of the three failures below, so the saga decides on business facts and
 * failure classes, never on status codes.
 */

/** How a failed call leaves the saga (grpc-adapters.ts, FAILURE_CLASSES, classifies every status code). */
export type FailureClass = "transient" | "refused" | "broken";

export abstract class StepFailure extends Error {
  abstract readonly kind: FailureClass;
}

/**
 * The other service could not answer now (unavailable, overloaded, out of
 * time): the same call may pass later, and it may or may not have acted.
 */
export class TransientFailure extends StepFailure {
  override name = "TransientFailure";
  readonly kind = "transient";
}

/**
 * The other service refused this request (bad input, a business
 * precondition, an unknown id, a key used for something else): retrying
 * the same request will not change the answer.
 */
export class RefusedFailure extends StepFailure {
  override name = "RefusedFailure";
  readonly kind = "refused";
}

/**
 * An answer that retrying does not fix and that says nothing about what
 * the call did: a bug (INTERNAL, UNKNOWN, DATA_LOSS) or a deployment that
 * refuses this caller (PERMISSION_DENIED, UNAUTHENTICATED, UNIMPLEMENTED).
 */
export class BrokenFailure extends StepFailure {
  override name = "BrokenFailure";
  readonly kind = "broken";
}

export type ReserveOutcome =
  | { kind: "reserved"; lines: PricedLine[]; currencyCode: string; totalMinor: number }
  /** Inventory refused the reservation and holds nothing for it (no stock, an unknown SKU, a total payment cannot take). */
  | { kind: "unavailable"; reason: string };

export type ReleaseOutcome = "released" | "already-committed" | "not-found";

/** The totals a reservation may come to: what one payment can take. */
export interface TotalBounds {
  minMinor: number;
  maxMinor: number;
}

export interface InventoryPort {
  reserve(reservationId: string, items: OrderItem[], bounds: TotalBounds): Promise<ReserveOutcome>;
  /** Rejects with RefusedFailure when the hold expired or was released. */
  commit(reservationId: string): Promise<void>;
  release(reservationId: string): Promise<ReleaseOutcome>;
  /** "not-committed": there was nothing sold to take back (never committed, or released). */
  returnStock(reservationId: string): Promise<"returned" | "not-committed">;
}

export type ChargeOutcome =
  | { kind: "captured"; paymentId: string }
  | { kind: "declined"; paymentId: string; reason: string }
  /** Payment refused the request itself (it recorded nothing): e.g. an amount it never takes. */
  | { kind: "refused"; reason: string };

export interface ChargeRequest {
  idempotencyKey: string;
  customerId: string;
  currencyCode: string;
  amountMinor: number;
  paymentMethod: string;
  orderId: string;
}

export interface PaymentPort {
  charge(request: ChargeRequest): Promise<ChargeOutcome>;
  /** Refunds what is left of a payment; returns the amount refunded by this key (0: nothing was left). */
  refundAll(idempotencyKey: string, paymentId: string, reason: string): Promise<number>;
}
