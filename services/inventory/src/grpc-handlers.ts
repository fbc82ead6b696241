import { ITEM_LINES, SpanAttributes, annotateSpan, decodePageToken, encodePageToken, pageSize, validate } from "@meshcart/lib";
import {
  ReservationState,
  type InventoryServiceImplementation,
  type Product as ProductMessage,
  type Reservation as ReservationMessage,
} from "@meshcart/contracts/meshcart/inventory/v1/inventory.js";
import type { Duration } from "@meshcart/contracts/google/protobuf/duration.js";
import type { Inventory, Product, Reservation } from "./inventory.js";
import { available } from "./ledger.js";

const LIMITS = {
  maxRestock: 1_000_000,
  minTtlMs: 1_000,
  maxTtlMs: 3_600_000,
};

/**
 * Translates gRPC requests into calls on the Inventory domain and its
 * results back into messages. Every request is validated completely here,
 * before the domain runs, so bad input writes nothing.
 */
export function inventoryHandlers(inventory: Inventory, defaultTtlMs: number): InventoryServiceImplementation {
  return {
    async listProducts(request) {
      const limit = pageSize(request.pageSize);
      const after = decodePageToken(request.pageToken, isSkuPosition);
      const page = await inventory.listProducts(limit, after?.sku);
      return {
        products: page.products.map(productMessage),
        nextPageToken: page.more && page.lastSku ? encodePageToken({ sku: page.lastSku }) : "",
      };
    },

    async getProduct(request) {
      validate((v) => v.sku("sku", request.sku));
      return { product: productMessage(await inventory.getProduct(request.sku)) };
    },

    async reserveStock(request) {
      const ttlMs = request.ttl ? durationMs(request.ttl) : defaultTtlMs;
      const minTotal = request.minTotalMinorUnits;
      const maxTotal = request.maxTotalMinorUnits;
      validate((v) => {
        v.id("reservation_id", request.reservationId);
        v.itemLines("items", request.items, ITEM_LINES);
        if (request.ttl) {
          // A Duration's nanos are a fraction of a second with the sign of its
          // seconds: a positive TTL has nanos from 0 to 999 999 999.
          if (!Number.isInteger(request.ttl.nanos) || request.ttl.nanos < 0 || request.ttl.nanos > MAX_NANOS) {
            v.add("ttl.nanos", "must be from 0 to 999999999");
          } else if (!(ttlMs >= LIMITS.minTtlMs && ttlMs <= LIMITS.maxTtlMs)) {
            v.add("ttl", "must be from 1s to 1h");
          }
        }
        v.integer("min_total_minor_units", minTotal, 0, Number.MAX_SAFE_INTEGER);
        v.integer("max_total_minor_units", maxTotal, 0, Number.MAX_SAFE_INTEGER);
        if (minTotal > 0 && maxTotal > 0 && maxTotal < minTotal) v.add("max_total_minor_units", "must be at least min_total_minor_units");
      });
      annotateSpan({ [SpanAttributes.reservationId]: request.reservationId });
      const reservation = await inventory.reserve(request.reservationId, request.items, ttlMs, {
        ...(minTotal > 0 ? { minMinor: minTotal } : {}),
        ...(maxTotal > 0 ? { maxMinor: maxTotal } : {}),
      });
      return { reservation: reservationMessage(reservation) };
    },

    async getReservation(request) {
      validate((v) => v.id("reservation_id", request.reservationId));
      return { reservation: reservationMessage(await inventory.getReservation(request.reservationId)) };
    },

    async commitReservation(request) {
      validate((v) => v.id("reservation_id", request.reservationId));
      annotateSpan({ [SpanAttributes.reservationId]: request.reservationId });
      return { reservation: reservationMessage(await inventory.commit(request.reservationId)) };
    },

    async releaseReservation(request) {
      validate((v) => v.id("reservation_id", request.reservationId));
      annotateSpan({ [SpanAttributes.reservationId]: request.reservationId });
      return { reservation: reservationMessage(await inventory.release(request.reservationId)) };
    },

    async returnStock(request) {
      validate((v) => v.id("reservation_id", request.reservationId));
      annotateSpan({ [SpanAttributes.reservationId]: request.reservationId });
      return { reservation: reservationMessage(await inventory.returnStock(request.reservationId)) };
    },

    async restock(request) {
      validate((v) => {
        v.id("restock_id", request.restockId);
        v.sku("sku", request.sku);
        v.integer("quantity", request.quantity, 1, LIMITS.maxRestock);
      });
      return { product: productMessage(await inventory.restock(request.restockId, request.sku, request.quantity)) };
    },
  };
}

function isSkuPosition(value: unknown): value is { sku: string } {
  return typeof value === "object" && value !== null && typeof (value as { sku?: unknown }).sku === "string";
}

const MAX_NANOS = 999_999_999;

function durationMs(duration: Duration): number {
  return duration.seconds * 1000 + Math.floor(duration.nanos / 1e6);
}

function money(currencyCode: string, minorUnits: number) {
  return { currencyCode, minorUnits };
}

export function productMessage(product: Product): ProductMessage {
  return {
    sku: product.sku,
    name: product.name,
    description: product.description,
    unitPrice: money(product.currencyCode, product.unitPriceMinor),
    stock: { ...product.stock, available: available(product.stock) },
  };
}

const STATES: Record<Reservation["state"], ReservationState> = {
  HELD: ReservationState.RESERVATION_STATE_HELD,
  COMMITTED: ReservationState.RESERVATION_STATE_COMMITTED,
  RELEASED: ReservationState.RESERVATION_STATE_RELEASED,
  EXPIRED: ReservationState.RESERVATION_STATE_EXPIRED,
  RETURNED: ReservationState.RESERVATION_STATE_RETURNED,
};

export function reservationMessage(reservation: Reservation): ReservationMessage {
  return {
    reservationId: reservation.reservationId,
    state: STATES[reservation.state],
    lines: reservation.lines.map((line) => ({
      sku: line.sku,
      quantity: line.quantity,
      unitPrice: money(reservation.currencyCode, line.unitPriceMinor),
      lineTotal: money(reservation.currencyCode, line.unitPriceMinor * line.quantity),
    })),
    total: money(reservation.currencyCode, reservation.totalMinor),
    createdAt: reservation.createdAt,
    expiresAt: reservation.expiresAt,
    updatedAt: reservation.updatedAt,
  };
}
