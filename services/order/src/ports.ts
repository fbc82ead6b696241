import type { OrderItem, PricedLine } from "./order-state.js";

/**
 * What the saga needs from the other services, in its own terms. The gRPC
 * adapters (grpc-ports.ts) translate statuses into these outcomes, so the
 * saga decides on business facts, never on status codes.
 */

/** A call that failed for a reason that may pass: the step may be retried. */
export class TransientFailure extends Error {
  override name = "TransientFailure";
}

/** A call refused for a reason that will not pass by retrying. */
export class PermanentFailure extends Error {
  override name = "PermanentFailure";
}

export type ReserveOutcome =
  | { kind: "reserved"; lines: PricedLine[]; currencyCode: string; totalMinor: number }
  | { kind: "unavailable"; reason: string };

export type ReleaseOutcome = "released" | "already-committed" | "not-found";

export interface InventoryPort {
  productsExist(skus: string[]): Promise<string[]>;
  reserve(reservationId: string, items: OrderItem[]): Promise<ReserveOutcome>;
  /** Rejects with PermanentFailure when the hold expired or was released. */
  commit(reservationId: string): Promise<void>;
  release(reservationId: string): Promise<ReleaseOutcome>;
  returnStock(reservationId: string): Promise<void>;
}

export type ChargeOutcome =
  | { kind: "captured"; paymentId: string }
  | { kind: "declined"; paymentId: string; reason: string };

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
  /** Refunds what is left of a payment; returns the amount refunded by this key. */
  refundAll(idempotencyKey: string, paymentId: string, reason: string): Promise<number>;
}
