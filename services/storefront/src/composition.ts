import { ClientError, ServerError, Status } from "nice-grpc";
import type { Logger } from "@meshcart/lib";
import type { Status as RpcStatus } from "@meshcart/contracts/google/rpc/status.js";
import type { Shipment } from "@meshcart/contracts/meshcart/fulfillment/v1/fulfillment.js";
import type { Product as InventoryProduct } from "@meshcart/contracts/meshcart/inventory/v1/inventory.js";
import type { Order as InternalOrder } from "@meshcart/contracts/meshcart/order/v1/order.js";
import type { Payment } from "@meshcart/contracts/meshcart/payment/v1/payment.js";
import type { GetOrderDetailsResponse } from "@meshcart/contracts/meshcart/storefront/v1/storefront.js";
import { edgeError, type Backend } from "./backends.js";
import { paymentSummary, publicOrder, publicProduct, shipmentSummary } from "./messages.js";

export const OK: RpcStatus = { code: Status.OK, message: "", details: [] };

/** One part of a composed answer: its value, or the status saying why it is missing. */
export interface Part<T> {
  value: T | undefined;
  status: RpcStatus;
}

/**
 * Fetches an optional part. A gRPC failure becomes the part's status (with
 * the same mapping as a failed call at the edge) instead of failing the
 * whole answer; anything else (the caller cancelled, a bug) still does.
 */
export async function fetchPart<T>(backend: Backend, fetch: () => Promise<T>, logger: Logger): Promise<Part<T>> {
  try {
    return { value: await fetch(), status: OK };
  } catch (error) {
    if (!(error instanceof ClientError)) throw error;
    const mapped = edgeError(error, backend, logger);
    const status = mapped instanceof ServerError ? mapped : new ServerError(Status.INTERNAL, "internal error");
    logger.warn({ backend, code: Status[status.code] }, `answering without the ${backend} part`);
    return { value: undefined, status: { code: status.code, message: `${backend}: ${status.details}`, details: [] } };
  }
}

/**
 * GetOrderDetails' answer: the order (required; the caller fetched it) with
 * its payment, its lines' current catalogue entries and its shipment, each
 * part with its own status.
 */
export function orderDetails(
  order: InternalOrder,
  payment: Part<Payment | undefined>,
  products: Part<Map<string, InventoryProduct>>,
  shipment: Part<Shipment | undefined>,
): GetOrderDetailsResponse {
  return {
    order: publicOrder(order, false),
    payment: payment.value ? paymentSummary(payment.value) : undefined,
    lines: order.lines.map((line) => {
      const product = products.value?.get(line.sku);
      return {
        line: { sku: line.sku, quantity: line.quantity, unitPrice: line.unitPrice, lineTotal: line.lineTotal },
        product: product ? publicProduct(product) : undefined,
      };
    }),
    paymentStatus: payment.status,
    productsStatus: products.status,
    shipment: shipment.value ? shipmentSummary(shipment.value) : undefined,
    shipmentStatus: shipment.status,
  };
}
