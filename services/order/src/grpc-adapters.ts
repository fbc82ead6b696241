import { ClientError, Status } from "nice-grpc";
import type { ServiceClient } from "@meshcart/lib";
import { ReservationState, type InventoryServiceDefinition } from "@meshcart/contracts/meshcart/inventory/v1/inventory.js";
import { DeclineReason, PaymentStatus, type PaymentServiceDefinition } from "@meshcart/contracts/meshcart/payment/v1/payment.js";
import {
  BrokenFailure,
  RefusedFailure,
  TransientFailure,
  type ChargeOutcome,
  type ChargeRequest,
  type FailureClass,
  type InventoryPort,
  type PaymentPort,
  type ReleaseOutcome,
  type ReserveOutcome,
  type StepFailure,
  type TotalBounds,
} from "./ports.js";
import type { OrderItem } from "./order-state.js";

/**
 * Every status a call can end with, and what it says to the saga
 * (docs/order-saga.md, "Every answer of every step"):
 * - transient: the service could not answer now; the same call may pass
 *   later, and it may or may not have acted;
 * - refused: the service refused the request and did nothing for it;
 *   retrying the same request gets the same answer. Each step gives the
 *   refusals it expects a meaning (below); any other ends like a broken one;
 * - broken: retrying does not fix it, and it says nothing of the effect (a
 *   bug, or a deployment that refuses this caller).
 */
export const FAILURE_CLASSES: Readonly<Record<Exclude<Status, Status.OK>, FailureClass>> = {
  [Status.CANCELLED]: "transient",
  [Status.UNKNOWN]: "broken",
  [Status.INVALID_ARGUMENT]: "refused",
  [Status.DEADLINE_EXCEEDED]: "transient",
  [Status.NOT_FOUND]: "refused",
  [Status.ALREADY_EXISTS]: "refused",
  [Status.PERMISSION_DENIED]: "broken",
  [Status.RESOURCE_EXHAUSTED]: "transient",
  [Status.FAILED_PRECONDITION]: "refused",
  [Status.ABORTED]: "transient",
  [Status.OUT_OF_RANGE]: "refused",
  [Status.UNIMPLEMENTED]: "broken",
  [Status.INTERNAL]: "broken",
  [Status.UNAVAILABLE]: "transient",
  [Status.DATA_LOSS]: "broken",
  [Status.UNAUTHENTICATED]: "broken",
};

/** A failed call as the saga sees it. */
export function failure(error: unknown, what: string): StepFailure {
  if (error instanceof ClientError) {
    const message = `${what}: ${Status[error.code]} ${error.details}`;
    const kind = error.code === Status.OK ? "broken" : FAILURE_CLASSES[error.code];
    return kind === "transient" ? new TransientFailure(message) : kind === "refused" ? new RefusedFailure(message) : new BrokenFailure(message);
  }
  // No status at all (the client itself failed): nothing says the call did not happen.
  return new TransientFailure(`${what}: ${error instanceof Error ? error.message : String(error)}`);
}

function hasCode(error: unknown, ...codes: Status[]): error is ClientError {
  return error instanceof ClientError && codes.includes(error.code);
}

/** Refusals after which a reservation request holds nothing: the order cannot be reserved as asked. */
const RESERVE_REFUSALS = [Status.FAILED_PRECONDITION, Status.NOT_FOUND, Status.INVALID_ARGUMENT, Status.OUT_OF_RANGE];

export class GrpcInventory implements InventoryPort {
  constructor(private readonly client: ServiceClient<typeof InventoryServiceDefinition>) {}

  async reserve(reservationId: string, items: OrderItem[], bounds: TotalBounds): Promise<ReserveOutcome> {
    try {
      const { reservation } = await this.client.reserveStock({
        reservationId,
        items,
        ttl: undefined,
        minTotalMinorUnits: bounds.minMinor,
        maxTotalMinorUnits: bounds.maxMinor,
      });
      if (!reservation?.total) throw new BrokenFailure("reserving stock: inventory answered without a reservation");
      return {
        kind: "reserved",
        currencyCode: reservation.total.currencyCode,
        totalMinor: reservation.total.minorUnits,
        lines: reservation.lines.map((line) => ({
          sku: line.sku,
          quantity: line.quantity,
          unitPriceMinor: line.unitPrice?.minorUnits ?? 0,
        })),
      };
    } catch (error) {
      // ALREADY_EXISTS is no such refusal: a hold with other items exists under the order's id.
      if (hasCode(error, ...RESERVE_REFUSALS)) return { kind: "unavailable", reason: error.details };
      if (error instanceof BrokenFailure) throw error;
      throw failure(error, "reserving stock");
    }
  }

  async commit(reservationId: string): Promise<void> {
    try {
      await this.client.commitReservation({ reservationId });
    } catch (error) {
      throw failure(error, "committing the reservation");
    }
  }

  async release(reservationId: string): Promise<ReleaseOutcome> {
    try {
      await this.client.releaseReservation({ reservationId });
      return "released";
    } catch (error) {
      if (hasCode(error, Status.NOT_FOUND)) return "not-found";
      if (!hasCode(error, Status.FAILED_PRECONDITION)) throw failure(error, "releasing the reservation");
    }
    // Refused: the reservation was committed (perhaps by an attempt whose
    // answer was lost) or already returned. Ask which.
    try {
      const { reservation } = await this.client.getReservation({ reservationId });
      if (reservation?.state === ReservationState.RESERVATION_STATE_COMMITTED) return "already-committed";
      return "released";
    } catch (error) {
      throw failure(error, "reading the reservation");
    }
  }

  async returnStock(reservationId: string): Promise<"returned" | "not-committed"> {
    try {
      await this.client.returnStock({ reservationId });
      return "returned";
    } catch (error) {
      // Nothing was sold under this id (never committed, released, expired, or unknown): nothing to take back.
      if (hasCode(error, Status.FAILED_PRECONDITION, Status.NOT_FOUND)) return "not-committed";
      throw failure(error, "returning stock");
    }
  }
}

/** Payment validates a charge before it records anything: these refusals mean nothing was charged under the key. */
const CHARGE_REFUSALS = [Status.INVALID_ARGUMENT, Status.OUT_OF_RANGE];

export class GrpcPayment implements PaymentPort {
  constructor(private readonly client: ServiceClient<typeof PaymentServiceDefinition>) {}

  async charge(request: ChargeRequest): Promise<ChargeOutcome> {
    try {
      const { payment } = await this.client.charge({
        idempotencyKey: request.idempotencyKey,
        customerId: request.customerId,
        amount: { currencyCode: request.currencyCode, minorUnits: request.amountMinor },
        paymentMethod: request.paymentMethod,
        orderId: request.orderId,
      });
      if (!payment) throw new BrokenFailure("charging: payment answered without a payment");
      if (payment.status === PaymentStatus.PAYMENT_STATUS_DECLINED) {
        return { kind: "declined", paymentId: payment.paymentId, reason: declineText(payment.declineReason) };
      }
      return { kind: "captured", paymentId: payment.paymentId };
    } catch (error) {
      // ALREADY_EXISTS is no such refusal: a payment with other terms exists under the order's key.
      if (hasCode(error, ...CHARGE_REFUSALS)) return { kind: "refused", reason: `payment refused the charge: ${Status[error.code]} ${error.details}` };
      if (error instanceof BrokenFailure) throw error;
      throw failure(error, "charging");
    }
  }

  async refundAll(idempotencyKey: string, paymentId: string, reason: string): Promise<number> {
    try {
      const { refund } = await this.client.refund({ idempotencyKey, paymentId, reason, amount: undefined });
      return refund?.amount?.minorUnits ?? 0;
    } catch (error) {
      // An unknown payment took nothing.
      if (hasCode(error, Status.NOT_FOUND)) return 0;
      if (!hasCode(error, Status.FAILED_PRECONDITION)) throw failure(error, "refunding");
    }
    // Refused: nothing is left to refund (declined, or refunded already).
    try {
      const { payment } = await this.client.getPayment({ paymentId });
      const settled = payment?.status === PaymentStatus.PAYMENT_STATUS_DECLINED || payment?.status === PaymentStatus.PAYMENT_STATUS_REFUNDED;
      if (!settled) throw new BrokenFailure(`refunding: payment ${paymentId} refused a refund in status ${payment?.status}`);
      return 0;
    } catch (error) {
      if (error instanceof BrokenFailure) throw error;
      throw failure(error, "reading the payment");
    }
  }
}

function declineText(reason: DeclineReason): string {
  switch (reason) {
    case DeclineReason.DECLINE_REASON_INSUFFICIENT_FUNDS:
      return "payment declined: insufficient funds";
    case DeclineReason.DECLINE_REASON_CARD_DECLINED:
      return "payment declined: card declined";
    case DeclineReason.DECLINE_REASON_RISK_SCREEN:
      return "payment declined: risk screen";
    default:
      return "payment declined";
  }
}
