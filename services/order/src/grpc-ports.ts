import { ClientError, Status } from "nice-grpc";
import type { ServiceClient } from "@meshcart/lib";
import {
  ReservationState,
  type InventoryServiceDefinition,
} from "@meshcart/lib/gen/meshcart/inventory/v1/inventory.js";
import {
  DeclineReason,
  PaymentStatus,
  type PaymentServiceDefinition,
} from "@meshcart/lib/gen/meshcart/payment/v1/payment.js";
import {
  PermanentFailure,
  TransientFailure,
  type ChargeOutcome,
  type ChargeRequest,
  type InventoryPort,
  type PaymentPort,
  type ReleaseOutcome,
  type ReserveOutcome,
} from "./ports.js";
import type { OrderItem } from "./order-state.js";

/**
 * Statuses after which the same call may succeed later. Everything else is
 * a refusal that retrying will not change.
 */
const TRANSIENT = new Set([
  Status.UNAVAILABLE,
  Status.DEADLINE_EXCEEDED,
  Status.ABORTED,
  Status.RESOURCE_EXHAUSTED,
  Status.CANCELLED,
  Status.INTERNAL,
  Status.UNKNOWN,
]);

function failure(error: unknown, what: string): Error {
  if (error instanceof ClientError) {
    const message = `${what}: ${Status[error.code]} ${error.details}`;
    return TRANSIENT.has(error.code) ? new TransientFailure(message) : new PermanentFailure(message);
  }
  return new TransientFailure(`${what}: ${error instanceof Error ? error.message : String(error)}`);
}

function hasCode(error: unknown, code: Status): error is ClientError {
  return error instanceof ClientError && error.code === code;
}

export class GrpcInventory implements InventoryPort {
  constructor(private readonly client: ServiceClient<typeof InventoryServiceDefinition>) {}

  async productsExist(skus: string[]): Promise<string[]> {
    const missing: string[] = [];
    await Promise.all(
      skus.map(async (sku) => {
        try {
          await this.client.getProduct({ sku });
        } catch (error) {
          if (hasCode(error, Status.NOT_FOUND)) missing.push(sku);
          else throw failure(error, `looking up ${sku}`);
        }
      }),
    );
    return missing;
  }

  async reserve(reservationId: string, items: OrderItem[]): Promise<ReserveOutcome> {
    try {
      const { reservation } = await this.client.reserveStock({ reservationId, items });
      if (!reservation?.total) throw new PermanentFailure("inventory answered without a reservation");
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
      if (hasCode(error, Status.FAILED_PRECONDITION) || hasCode(error, Status.NOT_FOUND)) {
        return { kind: "unavailable", reason: error.details };
      }
      if (error instanceof PermanentFailure) throw error;
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

  async returnStock(reservationId: string): Promise<void> {
    try {
      await this.client.returnStock({ reservationId });
    } catch (error) {
      throw failure(error, "returning stock");
    }
  }
}

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
      if (!payment) throw new PermanentFailure("payment answered without a payment");
      if (payment.status === PaymentStatus.PAYMENT_STATUS_DECLINED) {
        return { kind: "declined", paymentId: payment.paymentId, reason: declineText(payment.declineReason) };
      }
      return { kind: "captured", paymentId: payment.paymentId };
    } catch (error) {
      if (error instanceof PermanentFailure) throw error;
      throw failure(error, "charging");
    }
  }

  async refundAll(idempotencyKey: string, paymentId: string, reason: string): Promise<number> {
    try {
      const { refund } = await this.client.refund({ idempotencyKey, paymentId, reason });
      return refund?.amount?.minorUnits ?? 0;
    } catch (error) {
      if (!hasCode(error, Status.FAILED_PRECONDITION)) throw failure(error, "refunding");
    }
    // Refused: nothing is left to refund (declined, or refunded already).
    try {
      const { payment } = await this.client.getPayment({ paymentId });
      const settled =
        payment?.status === PaymentStatus.PAYMENT_STATUS_DECLINED || payment?.status === PaymentStatus.PAYMENT_STATUS_REFUNDED;
      if (!settled) throw new PermanentFailure(`payment ${paymentId} refused a refund in status ${payment?.status}`);
      return 0;
    } catch (error) {
      if (error instanceof PermanentFailure) throw error;
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
