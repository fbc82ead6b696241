/**
 * What the bench drives: the baseline, each single hop, and the two ways
 * into a checkout. Every mutating call carries an id that is new for every
 * request of every run (the run's tag plus ghz's request number), so that
 * idempotency never turns a call into a replay of an earlier one.
 */

export type Target = "echo" | "inventory" | "payment" | "order" | "storefront";

export interface Workload {
  id: string;
  /** Row label in tables and the chart. */
  label: string;
  target: Target;
  method: string;
  /**
   * gRPC calls one request of this workload makes, counting itself and every
   * call it causes between the services (database round trips are no RPCs).
   * The bench also counts them from the services' own metrics and reports
   * both.
   */
  rpcsPerCall: number;
  /** The request(s) for ghz; `tag` is unique per ghz run. */
  data(tag: string, skus: readonly string[]): unknown;
  /** Needs the shopper's bearer token. */
  authenticated?: boolean;
  /** Part of the tracing comparison (traced end to end, through several services). */
  endToEnd?: boolean;
  /** Its statements and durable commits per call are counted in Postgres (during the warm-up). */
  countsDatabases?: boolean;
  /** A whole checkout: its CPU is held to the durable floor (floor.ts). */
  checkout?: boolean;
}

export const SHOPPER = "bench-shopper";
const PAYMENT_METHOD = "pm_card_visa";

/** One line per order, one unit each, spread over the SKUs so that no product row becomes the one lock everybody waits for. */
const perSku = (skus: readonly string[], make: (sku: string) => unknown) => skus.map(make);

/**
 * RPCs of one CreateOrder with one line, the happy path:
 *  1. CreateOrder itself;
 *  2-4. the saga's forward steps (services/order/src/saga.ts):
 *     reserve → ReserveStock, charge → Charge, commit → CommitReservation.
 * (An unknown SKU is ReserveStock's NOT_FOUND: no lookup comes first.)
 * Compensation (Refund, ReleaseReservation, GetReservation, GetPayment) only
 * runs on a failed checkout, which the bench does not cause.
 */
export const CREATE_ORDER_RPCS = 4;

export const workloads: readonly Workload[] = [
  {
    id: "echo",
    label: "baseline: raw grpc-js echo",
    target: "echo",
    method: "bench.echo.v1.EchoService/Echo",
    rpcsPerCall: 1,
    // A template like the others' so ghz does the same work per request.
    data: (tag) => ({ payload: `${tag}-{{.RequestNumber}}` }),
  },
  {
    id: "get-product",
    label: "inventory GetProduct",
    target: "inventory",
    method: "meshcart.inventory.v1.InventoryService/GetProduct",
    rpcsPerCall: 1,
    data: (_tag, skus) => perSku(skus, (sku) => ({ sku })),
  },
  {
    id: "reserve-stock",
    label: "inventory ReserveStock",
    target: "inventory",
    method: "meshcart.inventory.v1.InventoryService/ReserveStock",
    rpcsPerCall: 1,
    data: (tag, skus) => perSku(skus, (sku) => ({ reservation_id: `${tag}-{{.RequestNumber}}`, items: [{ sku, quantity: 1 }] })),
  },
  {
    id: "charge",
    label: "payment Charge",
    target: "payment",
    method: "meshcart.payment.v1.PaymentService/Charge",
    rpcsPerCall: 1,
    data: (tag) => ({
      idempotency_key: `${tag}-{{.RequestNumber}}`,
      customer_id: SHOPPER,
      amount: { currency_code: "USD", minor_units: 2500 },
      payment_method: PAYMENT_METHOD,
      order_id: `${tag}-{{.RequestNumber}}`,
    }),
  },
  {
    id: "create-order",
    label: "order CreateOrder (checkout saga)",
    target: "order",
    method: "meshcart.order.v1.OrderService/CreateOrder",
    rpcsPerCall: CREATE_ORDER_RPCS,
    endToEnd: true,
    checkout: true,
    countsDatabases: true,
    data: (tag, skus) =>
      perSku(skus, (sku) => ({
        request_id: `${tag}-{{.RequestNumber}}`,
        customer_id: SHOPPER,
        items: [{ sku, quantity: 1 }],
        payment_method: PAYMENT_METHOD,
      })),
  },
  {
    id: "place-order",
    label: "storefront PlaceOrder (end to end)",
    target: "storefront",
    method: "meshcart.storefront.v1.StorefrontService/PlaceOrder",
    // PlaceOrder, then one CreateOrder with everything it makes.
    rpcsPerCall: 1 + CREATE_ORDER_RPCS,
    authenticated: true,
    endToEnd: true,
    checkout: true,
    data: (tag, skus) => perSku(skus, (sku) => ({ request_id: `${tag}-{{.RequestNumber}}`, items: [{ sku, quantity: 1 }], payment_method: PAYMENT_METHOD })),
  },
];

export function workload(id: string): Workload {
  const found = workloads.find((w) => w.id === id);
  if (!found) throw new Error(`no workload ${id}`);
  return found;
}
