import { ClientError, Status, type CallContext } from "nice-grpc";
import { ITEM_LINES, MAX_REASON_LENGTH, callDeadline, currentRequest, notFound, pageSize, ServerError, validate, type Logger } from "@meshcart/lib";
import { OrderState, type Order as InternalOrder } from "@meshcart/contracts/meshcart/order/v1/order.js";
import type { StorefrontServiceImplementation } from "@meshcart/contracts/meshcart/storefront/v1/storefront.js";
import { edgeError, type Backends } from "./backends.js";
import { fetchPart, orderDetails } from "./composition.js";
import { effectiveDeadline, partDeadline, type CallKind, type DeadlinePolicy } from "./deadlines.js";
import { orderUpdate, publicOrder, publicProduct, shipmentUpdate } from "./messages.js";
import { orderRequestId } from "./request-ids.js";
import { bearerToken, TokenRejected, type Shopper, type TokenVerifier } from "./tokens.js";

/** What a call to a service behind carries of the call it serves. */
interface BackendCall {
  deadline: Date;
  signal: AbortSignal;
}

/** Longest page token accepted: the services' tokens are far shorter; anything longer is not one of theirs. */
const MAX_PAGE_TOKEN_LENGTH = 512;

export interface StorefrontDeps {
  backends: Backends;
  tokens: TokenVerifier;
  deadlines: DeadlinePolicy;
  /** Longest GetOrderDetails waits for an optional part. */
  partTimeoutMs: number;
  logger: Logger;
}

const HINTS = {
  placeOrder: {
    [Status.DEADLINE_EXCEEDED]:
      "the order's outcome is not known yet, and the order goes on: place it again with the same request_id " +
      "(or x-request-id) to get it, or find it with ListOrders and follow it with TrackOrder",
  },
  cancelOrder: {
    [Status.DEADLINE_EXCEEDED]: "the cancellation goes on: follow it with TrackOrder or GetOrder",
  },
  trackOrder: {
    [Status.DEADLINE_EXCEEDED]: "the stream reached its deadline before the order was final: call TrackOrder again to go on",
  },
  trackShipment: {
    [Status.DEADLINE_EXCEEDED]: "the stream reached its deadline before the shipment was final: call TrackOrder again to go on",
    [Status.UNAVAILABLE]: "the order is final, but its shipment cannot be followed now: call TrackOrder or GetOrderDetails again later",
  },
};

/**
 * Orders that were confirmed, hence have (or are about to have) a shipment:
 * fulfillment learns of them from the order events, asynchronously.
 */
/** How often TrackOrder asks again for a confirmed order's shipment that fulfillment has not made yet. */
const SHIPMENT_WAIT_MS = 250;

function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

const SHIPPABLE = new Set([OrderState.ORDER_STATE_CONFIRMED, OrderState.ORDER_STATE_CANCELLING, OrderState.ORDER_STATE_CANCELLED]);

/**
 * The public API. Each call: authenticate (catalogue reads may be
 * anonymous), validate completely, work out the deadline, then call the
 * services behind with that deadline and the call's correlation id, and
 * translate their answers into the storefront's own messages and statuses.
 */
export function storefrontHandlers(deps: StorefrontDeps): StorefrontServiceImplementation {
  const { logger } = deps;
  const clients = deps.backends.clients;

  async function shopper(context: CallContext): Promise<Shopper> {
    const found = await optionalShopper(context);
    if (!found) {
      throw new ServerError(Status.UNAUTHENTICATED, 'this call needs "authorization: Bearer <token>" metadata (make token CUSTOMER=<id> mints a demo token)');
    }
    return found;
  }

  /** The caller, if a token came; a token that came must be valid. */
  async function optionalShopper(context: CallContext): Promise<Shopper | undefined> {
    try {
      const header = context.metadata.get("authorization");
      const token = bearerToken(typeof header === "string" ? header : undefined);
      return token === undefined ? undefined : await deps.tokens.verify(token);
    } catch (error) {
      if (error instanceof TokenRejected) throw new ServerError(Status.UNAUTHENTICATED, error.message);
      throw error;
    }
  }

  function deadline(context: CallContext, kind: CallKind = "unary"): Date {
    return effectiveDeadline(callDeadline(context), kind, deps.deadlines);
  }

  /** The options of a call to a service behind: this call's deadline and signal. */
  function callOptions(context: CallContext, kind: CallKind = "unary"): BackendCall {
    return { deadline: deadline(context, kind), signal: context.signal };
  }

  /**
   * The order, if it is the shopper's. Another shopper's order is NOT_FOUND,
   * with the same message as an order that does not exist: its existence
   * is not disclosed.
   */
  async function ownOrder(who: Shopper, orderId: string, options: BackendCall): Promise<InternalOrder> {
    let order: InternalOrder | undefined;
    try {
      order = (await clients.order.getOrder({ orderId }, options)).order;
    } catch (error) {
      throw edgeError(error, "order", logger);
    }
    if (order && order.customerId !== who.customerId) {
      // For support, who can look this request up by its correlation id.
      logger.info({ order_id: orderId }, "order of another customer: answered NOT_FOUND");
    }
    if (!order || order.customerId !== who.customerId) throw notFound(`order ${orderId}`);
    return order;
  }

  return {
    async listProducts(request, context) {
      await optionalShopper(context);
      const limit = pageSize(request.pageSize);
      validate((v) => v.maxLength("page_token", request.pageToken, MAX_PAGE_TOKEN_LENGTH));
      try {
        const page = await clients.inventory.listProducts({ pageSize: limit, pageToken: request.pageToken }, callOptions(context));
        return { products: page.products.map(publicProduct), nextPageToken: page.nextPageToken };
      } catch (error) {
        throw edgeError(error, "inventory", logger);
      }
    },

    async getProduct(request, context) {
      await optionalShopper(context);
      validate((v) => v.sku("sku", request.sku));
      try {
        const { product } = await clients.inventory.getProduct({ sku: request.sku }, callOptions(context));
        if (!product) throw notFound(`product ${request.sku}`);
        return { product: publicProduct(product) };
      } catch (error) {
        throw edgeError(error, "inventory", logger);
      }
    },

    async placeOrder(request, context) {
      const who = await shopper(context);
      validate((v) => {
        if (request.requestId) v.id("request_id", request.requestId);
        // The limits order applies, checked here first so that bad input never travels.
        v.itemLines("items", request.items, ITEM_LINES);
        v.paymentMethod("payment_method", request.paymentMethod);
      });
      // Without a request_id the call's correlation id is the key: a client
      // that retries with the same x-request-id gets the same order.
      const requestId = request.requestId || currentRequest()?.correlationId;
      if (!requestId) throw new ServerError(Status.INTERNAL, "internal error: no correlation id");
      try {
        const { order } = await clients.order.createOrder(
          {
            requestId: orderRequestId(who.customerId, requestId),
            customerId: who.customerId,
            items: request.items.map((item) => ({ sku: item.sku, quantity: item.quantity })),
            paymentMethod: request.paymentMethod,
          },
          callOptions(context),
        );
        if (!order) throw new ServerError(Status.INTERNAL, "internal error");
        return { order: publicOrder(order, true) };
      } catch (error) {
        throw edgeError(error, "order", logger, HINTS.placeOrder);
      }
    },

    async getOrder(request, context) {
      const who = await shopper(context);
      validate((v) => v.id("order_id", request.orderId));
      const order = await ownOrder(who, request.orderId, callOptions(context));
      return { order: publicOrder(order, true) };
    },

    async listOrders(request, context) {
      const who = await shopper(context);
      const limit = pageSize(request.pageSize);
      validate((v) => v.maxLength("page_token", request.pageToken, MAX_PAGE_TOKEN_LENGTH));
      try {
        const page = await clients.order.listOrders({ customerId: who.customerId, pageSize: limit, pageToken: request.pageToken }, callOptions(context));
        return { orders: page.orders.map((o) => publicOrder(o, false)), nextPageToken: page.nextPageToken };
      } catch (error) {
        throw edgeError(error, "order", logger);
      }
    },

    async *trackOrder(request, context) {
      const who = await shopper(context);
      validate((v) => v.id("order_id", request.orderId));
      await ownOrder(who, request.orderId, callOptions(context));
      // The stream has its own, longer deadline: the unary default would cut
      // a healthy stream short.
      const stream = callOptions(context, "stream");
      let last: InternalOrder | undefined;
      try {
        for await (const { event, order } of clients.order.watchOrder({ orderId: request.orderId }, stream)) {
          if (!event || !order) continue;
          last = order;
          yield { update: orderUpdate(event), order: publicOrder(order, false), shipmentUpdate: undefined };
        }
      } catch (error) {
        throw edgeError(error, "order", logger, HINTS.trackOrder);
      }
      // A confirmed order goes on as a parcel: its shipment's steps follow,
      // from fulfillment, until it is shipped or cancelled. Fulfillment
      // learns of the confirmation asynchronously (order's events, through
      // the broker): until it has, it knows no shipment, and the stream waits.
      if (!last || !SHIPPABLE.has(last.state)) return;
      const ended = publicOrder(last, false);
      for (;;) {
        let followed = false;
        try {
          for await (const { event, shipment } of clients.fulfillment.watchShipment({ orderId: request.orderId }, stream)) {
            if (!event || !shipment) continue;
            followed = true;
            yield { update: undefined, order: ended, shipmentUpdate: shipmentUpdate(event, shipment) };
          }
          return;
        } catch (error) {
          if (!followed && error instanceof ClientError && error.code === Status.NOT_FOUND && !context.signal.aborted) {
            await pause(SHIPMENT_WAIT_MS, context.signal);
            continue;
          }
          throw edgeError(error, "fulfillment", logger, HINTS.trackShipment);
        }
      }
    },

    async cancelOrder(request, context) {
      const who = await shopper(context);
      validate((v) => {
        v.id("order_id", request.orderId);
        v.text("reason", request.reason, MAX_REASON_LENGTH);
      });
      const options = callOptions(context);
      await ownOrder(who, request.orderId, options);
      try {
        const { order } = await clients.order.cancelOrder({ orderId: request.orderId, reason: request.reason }, options);
        if (!order) throw new ServerError(Status.INTERNAL, "internal error");
        return { order: publicOrder(order, true) };
      } catch (error) {
        throw edgeError(error, "order", logger, HINTS.cancelOrder);
      }
    },

    async getOrderDetails(request, context) {
      const who = await shopper(context);
      validate((v) => v.id("order_id", request.orderId));
      const callDeadline = deadline(context);
      const order = await ownOrder(who, request.orderId, { deadline: callDeadline, signal: context.signal });
      // The optional parts, in parallel, each giving up in time for the
      // answer to go out with what the others returned.
      const part: BackendCall = { deadline: partDeadline(callDeadline, deps.partTimeoutMs), signal: context.signal };
      const skus = [...new Set(order.lines.map((line) => line.sku))];
      const [payment, products, shipment] = await Promise.all([
        fetchPart(
          "payment",
          async () => {
            const page = await clients.payment.listPayments({ filter: { $case: "orderId", value: order.orderId }, pageSize: 1, pageToken: "" }, part);
            return page.payments[0];
          },
          logger,
        ),
        fetchPart(
          "inventory",
          async () => {
            const found = await Promise.all(skus.map((sku) => clients.inventory.getProduct({ sku }, part)));
            return new Map(found.flatMap(({ product }) => (product ? [[product.sku, product] as const] : [])));
          },
          logger,
        ),
        fetchPart(
          "fulfillment",
          async () => {
            // Only a confirmed order has a shipment; none yet is an answer, not a failure.
            if (!SHIPPABLE.has(order.state)) return undefined;
            try {
              return (await clients.fulfillment.getShipment({ orderId: order.orderId }, part)).shipment;
            } catch (error) {
              if (error instanceof ClientError && error.code === Status.NOT_FOUND) return undefined;
              throw error;
            }
          },
          logger,
        ),
      ]);
      return orderDetails(order, payment, products, shipment);
    },
  };
}
