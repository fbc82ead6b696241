import { ClientError, Metadata, Status } from "nice-grpc";
import { ITEM_LINES, type PaymentMethod } from "@meshcart/lib";
import { OrderStatus, type CartItem, type Order } from "@meshcart/contracts/meshcart/storefront/v1/storefront.js";
import type { Scenario } from "./options.js";
import type { Catalogue, StorefrontClient } from "./shop.js";
import type { ShopperTokens } from "./tokens.js";

/**
 * What each scenario sends through the storefront, and how its answer is
 * classified. Outcomes:
 *
 * - orders: confirmed, rejected_stock (STOCK_UNAVAILABLE in its history),
 *   rejected_declined (PAYMENT_DECLINED), rejected_other, failed (a
 *   technical failure, compensated), unfinished (not final when answered);
 * - invalid: the expected INVALID_ARGUMENT; unexpected_ok when accepted;
 * - reads: read_ok, read_partial (GetOrderDetails answered with a part
 *   missing), browse_ok, stream_ok (TrackOrder ran to a final state),
 *   stream_incomplete;
 * - any call: error_<status> (error_unavailable, error_deadline_exceeded…),
 *   aborted (the load generator stopped waiting), error_client.
 */

export interface Placed {
  shopper: string;
  orderId: string;
}

export interface Result {
  outcome: string;
  /** The order placed, for later reads. */
  placed?: Placed;
}

export interface ScenarioContext {
  storefront: StorefrontClient;
  tokens: ShopperTokens;
  catalogue: Catalogue;
  random: () => number;
  /** Cancels the calls when the generator stops waiting. */
  signal: AbortSignal;
}

const CAPTURING_METHODS: readonly PaymentMethod[] = ["pm_card_visa", "pm_card_mastercard"];
const DECLINING_METHODS: readonly PaymentMethod[] = ["pm_card_declined", "pm_card_insufficient_funds"];

function pick<T>(items: readonly T[], random: () => number): T {
  return items[Math.floor(random() * items.length)]!;
}

function between(min: number, max: number, random: () => number): number {
  return min + Math.floor(random() * (max - min + 1));
}

/** 1 to 3 distinct plentiful products, 1 to 3 of each. */
function basket(context: ScenarioContext): CartItem[] {
  const products = [...context.catalogue.plentiful];
  const lines = Math.min(products.length, between(1, 3, context.random));
  const items: CartItem[] = [];
  for (let i = 0; i < lines; i++) {
    const [product] = products.splice(Math.floor(context.random() * products.length), 1);
    items.push({ sku: product!.sku, quantity: between(1, 3, context.random) });
  }
  return items;
}

/** Requests the edge must refuse with INVALID_ARGUMENT. */
function invalidRequest(context: ScenarioContext): { items: CartItem[]; paymentMethod: string } {
  const sku = pick(context.catalogue.all, context.random).sku;
  const variants = [
    () => ({ items: [{ sku, quantity: 0 }], paymentMethod: "pm_card_visa" }),
    () => ({ items: [{ sku, quantity: ITEM_LINES.maxQuantity + 1 }], paymentMethod: "pm_card_visa" }),
    () => ({
      items: [
        { sku, quantity: 1 },
        { sku, quantity: 1 },
      ],
      paymentMethod: "pm_card_visa",
    }),
    () => ({ items: [{ sku, quantity: 1 }], paymentMethod: "pm_card_bitcoin" }),
    () => ({ items: [], paymentMethod: "pm_card_visa" }),
  ];
  return pick(variants, context.random)();
}

const FINAL = new Set([
  OrderStatus.ORDER_STATUS_CONFIRMED,
  OrderStatus.ORDER_STATUS_REJECTED,
  OrderStatus.ORDER_STATUS_FAILED,
  OrderStatus.ORDER_STATUS_CANCELLED,
]);

export function orderOutcome(order: Order | undefined): string {
  switch (order?.status) {
    case OrderStatus.ORDER_STATUS_CONFIRMED:
      return "confirmed";
    case OrderStatus.ORDER_STATUS_REJECTED: {
      const events = order.history.map((u) => u.event);
      if (events.includes("STOCK_UNAVAILABLE")) return "rejected_stock";
      if (events.includes("PAYMENT_DECLINED")) return "rejected_declined";
      return "rejected_other";
    }
    case OrderStatus.ORDER_STATUS_FAILED:
      return "failed";
    default:
      return "unfinished";
  }
}

export function errorOutcome(error: unknown): string {
  if (error instanceof ClientError) return `error_${(Status[error.code] ?? "unknown").toLowerCase()}`;
  if (error instanceof Error && error.name === "AbortError") return "aborted";
  return "error_client";
}

function metadata(correlationId: string, token?: string): Metadata {
  return Metadata({ "x-request-id": correlationId, ...(token ? { authorization: `Bearer ${token}` } : {}) });
}

/**
 * Runs one scenario for `shopper` (`target`: the order a read is about).
 * Never throws: every answer, an error included, is an outcome.
 */
export async function runScenario(
  scenario: Scenario,
  context: ScenarioContext,
  shopper: string,
  correlationId: string,
  target: Placed | undefined,
): Promise<Result> {
  try {
    return await send(scenario, context, shopper, correlationId, target);
  } catch (error) {
    if (scenario === "invalid" && error instanceof ClientError && error.code === Status.INVALID_ARGUMENT) return { outcome: "invalid" };
    return { outcome: errorOutcome(error) };
  }
}

async function send(scenario: Scenario, context: ScenarioContext, shopper: string, correlationId: string, target: Placed | undefined): Promise<Result> {
  const { storefront, signal } = context;
  const place = async (items: CartItem[], paymentMethod: string): Promise<Result> => {
    const token = await context.tokens.token(shopper);
    const { order } = await storefront.placeOrder({ requestId: correlationId, items, paymentMethod }, { signal, metadata: metadata(correlationId, token) });
    return { outcome: orderOutcome(order), ...(order ? { placed: { shopper, orderId: order.orderId } } : {}) };
  };
  const as = async (owner: string) => metadata(correlationId, await context.tokens.token(owner));

  switch (scenario) {
    case "order":
      return place(basket(context), pick(CAPTURING_METHODS, context.random));
    case "declined":
      return place(basket(context), pick(DECLINING_METHODS, context.random));
    case "out_of_stock": {
      const scarce = context.catalogue.scarce;
      if (scarce.length === 0) return place(basket(context), pick(CAPTURING_METHODS, context.random));
      const product = pick(scarce, context.random);
      return place([{ sku: product.sku, quantity: Math.min(ITEM_LINES.maxQuantity, product.available + 1) }], pick(CAPTURING_METHODS, context.random));
    }
    case "invalid": {
      const request = invalidRequest(context);
      await place(request.items, request.paymentMethod);
      return { outcome: "unexpected_ok" };
    }
    case "get_order": {
      await storefront.getOrder({ orderId: target!.orderId }, { signal, metadata: await as(target!.shopper) });
      return { outcome: "read_ok" };
    }
    case "details": {
      const details = await storefront.getOrderDetails({ orderId: target!.orderId }, { signal, metadata: await as(target!.shopper) });
      const partial = (details.paymentStatus?.code ?? 0) !== 0 || (details.productsStatus?.code ?? 0) !== 0;
      return { outcome: partial ? "read_partial" : "read_ok" };
    }
    case "track": {
      let last: Order | undefined;
      for await (const message of storefront.trackOrder({ orderId: target!.orderId }, { signal, metadata: await as(target!.shopper) })) {
        last = message.order;
      }
      return { outcome: last && FINAL.has(last.status) ? "stream_ok" : "stream_incomplete" };
    }
    case "browse": {
      if (context.random() < 0.5) {
        await storefront.listProducts({ pageSize: between(5, 20, context.random), pageToken: "" }, { signal, metadata: metadata(correlationId) });
      } else {
        await storefront.getProduct({ sku: pick(context.catalogue.all, context.random).sku }, { signal, metadata: metadata(correlationId) });
      }
      return { outcome: "browse_ok" };
    }
  }
}
