/**
 * The order's state machine (docs/order-saga.md): event types, how events
 * fold into an order, and which saga step comes next. Pure: the saga, the
 * event store and the tests all read the rules from here.
 */

export type OrderState = "PENDING" | "STOCK_RESERVED" | "PAYMENT_CAPTURED" | "CONFIRMED" | "REJECTED" | "COMPENSATING" | "FAILED" | "CANCELLING" | "CANCELLED";

export const FINAL_STATES: ReadonlySet<OrderState> = new Set(["CONFIRMED", "REJECTED", "FAILED", "CANCELLED"]);

export function isFinal(state: OrderState): boolean {
  return FINAL_STATES.has(state);
}

export interface PricedLine {
  sku: string;
  quantity: number;
  unitPriceMinor: number;
}

export interface OrderItem {
  sku: string;
  quantity: number;
}

/** Each event records a fact; `data` holds what the fold needs of it. */
export type OrderEventData =
  | { type: "ORDER_PLACED"; orderId: string; requestId: string; customerId: string; items: OrderItem[]; paymentMethod: string }
  | { type: "STOCK_RESERVED"; reservationId: string; lines: PricedLine[]; currencyCode: string; totalMinor: number }
  | { type: "STOCK_UNAVAILABLE"; reason: string }
  | { type: "PAYMENT_CAPTURED"; paymentId: string }
  /** No payment id when payment refused the request itself (nothing was recorded). */
  | { type: "PAYMENT_DECLINED"; paymentId?: string; reason: string }
  | { type: "RESERVATION_COMMITTED" }
  | { type: "ORDER_CONFIRMED" }
  | { type: "STEP_FAILED"; step: SagaStep; reason: string }
  /** `detail` says why nothing was refunded, when nothing was (e.g. the charge in doubt was never recorded). */
  | { type: "PAYMENT_REFUNDED"; paymentId: string; refundedMinor: number; detail?: string }
  | { type: "STOCK_RELEASED"; detail: string }
  | { type: "STOCK_RETURNED"; detail?: string }
  /**
   * A compensation or cancellation step gave up: its calls kept failing in
   * a way retrying does not fix. What it should have undone is named in the
   * order's failure reason, for an operator.
   */
  | { type: "STEP_ABANDONED"; step: UndoStep; reason: string }
  | { type: "ORDER_REJECTED"; reason: string }
  | { type: "ORDER_FAILED"; reason: string }
  | { type: "CANCELLATION_REQUESTED"; reason: string }
  | { type: "ORDER_CANCELLED" };

export type OrderEventType = OrderEventData["type"];

export interface OrderEvent {
  sequence: number;
  data: OrderEventData;
  stateAfter: OrderState;
  occurredAt: Date;
}

/** The state each event leads to, given the state before it. */
export function stateAfter(before: OrderState | undefined, event: OrderEventData): OrderState {
  switch (event.type) {
    case "ORDER_PLACED":
      return "PENDING";
    case "STOCK_RESERVED":
      return "STOCK_RESERVED";
    case "PAYMENT_CAPTURED":
      return "PAYMENT_CAPTURED";
    case "ORDER_CONFIRMED":
      return "CONFIRMED";
    case "PAYMENT_DECLINED":
    case "STEP_FAILED":
      return "COMPENSATING";
    case "ORDER_REJECTED":
      return "REJECTED";
    case "ORDER_FAILED":
      return "FAILED";
    case "CANCELLATION_REQUESTED":
      return "CANCELLING";
    case "ORDER_CANCELLED":
      return "CANCELLED";
    // Facts inside a phase keep the state they happen in.
    case "STOCK_UNAVAILABLE":
    case "RESERVATION_COMMITTED":
    case "PAYMENT_REFUNDED":
    case "STOCK_RELEASED":
    case "STOCK_RETURNED":
    case "STEP_ABANDONED":
      if (!before) throw new Error(`${event.type} cannot be an order's first event`);
      return before;
  }
}

export type SagaStep = "reserve" | "charge" | "commit";

/** Steps that undo: compensation (refund, release) and cancellation (refund, return). */
export type UndoStep = "refund" | "release" | "return";

/** Why compensation runs, which decides how it ends. */
export type CompensationCause = "declined" | "failed";

/** What the read model (the orders table) holds of an order. */
export interface OrderSummary {
  orderId: string;
  requestId: string;
  customerId: string;
  items: OrderItem[];
  paymentMethod: string;
  state: OrderState;
  reservationId: string;
  lines?: PricedLine[];
  currencyCode?: string;
  totalMinor?: number;
  paymentId?: string;
  failureReason?: string;
  createdAt: Date;
  updatedAt: Date;
}

/** An order folded from its full event log. */
export interface Order extends OrderSummary {
  /** A charge was attempted and may exist even without a payment id. */
  chargeAttempted: boolean;
  refunded: boolean;
  stockReleased: boolean;
  stockReturned: boolean;
  compensationCause?: CompensationCause;
  version: number;
  history: OrderEvent[];
}

/** Ids the saga derives from the order, which make every step replayable. */
export function reservationIdFor(orderId: string): string {
  return `${orderId}.stock`;
}
export function chargeKeyFor(orderId: string): string {
  return `${orderId}.charge`;
}
export function refundKeyFor(orderId: string, purpose: "compensation" | "cancellation"): string {
  return `${orderId}.refund.${purpose}`;
}

/** Rebuilds an order from its event log, oldest first. */
export function fold(events: OrderEvent[]): Order {
  const first = events[0];
  if (!first || first.data.type !== "ORDER_PLACED") throw new Error("an order's log starts with ORDER_PLACED");
  const placed = first.data;
  const start: Order = {
    orderId: placed.orderId,
    requestId: placed.requestId,
    customerId: placed.customerId,
    items: placed.items,
    paymentMethod: placed.paymentMethod,
    state: "PENDING",
    reservationId: reservationIdFor(placed.orderId),
    chargeAttempted: false,
    refunded: false,
    stockReleased: false,
    stockReturned: false,
    createdAt: first.occurredAt,
    updatedAt: first.occurredAt,
    version: 0,
    history: [],
  };
  return events.reduce(applyEvent, start);
}

/** The order after one more event (a new object: an order is never changed in place). */
export function applyEvent(before: Order, event: OrderEvent): Order {
  const order: Order = { ...before, history: [...before.history, event] };
  const data = event.data;
  switch (data.type) {
    case "STOCK_RESERVED":
      order.lines = data.lines;
      order.currencyCode = data.currencyCode;
      order.totalMinor = data.totalMinor;
      break;
    case "STOCK_UNAVAILABLE":
      order.failureReason = data.reason;
      break;
    case "PAYMENT_CAPTURED":
      order.paymentId = data.paymentId;
      order.chargeAttempted = true;
      break;
    case "PAYMENT_DECLINED":
      if (data.paymentId) order.paymentId = data.paymentId;
      order.chargeAttempted = true;
      order.compensationCause = "declined";
      order.failureReason = data.reason;
      break;
    case "STEP_FAILED":
      // From the charge step on, a charge may exist whatever the error said.
      if (data.step !== "reserve") order.chargeAttempted = true;
      order.compensationCause = "failed";
      order.failureReason = data.reason;
      break;
    case "PAYMENT_REFUNDED":
      order.refunded = true;
      if (data.paymentId) order.paymentId = data.paymentId;
      break;
    case "STOCK_RELEASED":
      order.stockReleased = true;
      break;
    case "STOCK_RETURNED":
      order.stockReturned = true;
      break;
    case "STEP_ABANDONED":
      // Not tried again; the reason stays on the order for an operator.
      if (data.step === "refund") order.refunded = true;
      else if (data.step === "release") order.stockReleased = true;
      else order.stockReturned = true;
      order.failureReason = `${order.failureReason ?? "checkout failed"}; ${UNDONE[data.step]} (${data.reason})`;
      break;
    case "ORDER_REJECTED":
    case "ORDER_FAILED":
      order.failureReason = data.reason;
      break;
    case "CANCELLATION_REQUESTED":
      order.failureReason = data.reason || "cancelled by the customer";
      break;
    default:
      break;
  }
  order.state = event.stateAfter;
  order.updatedAt = event.occurredAt;
  order.version = event.sequence;
  return order;
}

/** What an abandoned step leaves for an operator, as the failure reason says it. */
const UNDONE: Record<UndoStep, string> = {
  refund: "the refund was not confirmed and needs an operator",
  release: "the stock release was not confirmed and needs an operator",
  return: "the stock return was not confirmed and needs an operator",
};

/** What the saga does next for an order, or nothing when it is final. */
export type NextStep =
  | { kind: "reserve" }
  | { kind: "charge" }
  | { kind: "commit" }
  | { kind: "refund"; purpose: "compensation" | "cancellation" }
  | { kind: "release" }
  | { kind: "return" }
  | { kind: "finish"; event: Extract<OrderEventData, { type: "ORDER_REJECTED" | "ORDER_FAILED" | "ORDER_CANCELLED" }> }
  | { kind: "none" };

export function nextStep(order: Order): NextStep {
  switch (order.state) {
    case "PENDING":
      return { kind: "reserve" };
    case "STOCK_RESERVED":
      return { kind: "charge" };
    case "PAYMENT_CAPTURED":
      return { kind: "commit" };
    case "COMPENSATING":
      // Reverse order of the forward steps: money first, then stock. A
      // declined charge took nothing, so it needs no refund.
      if (order.chargeAttempted && order.compensationCause === "failed" && !order.refunded) {
        return { kind: "refund", purpose: "compensation" };
      }
      if (!order.stockReleased) return { kind: "release" };
      return order.compensationCause === "declined"
        ? { kind: "finish", event: { type: "ORDER_REJECTED", reason: order.failureReason ?? "payment declined" } }
        : { kind: "finish", event: { type: "ORDER_FAILED", reason: order.failureReason ?? "checkout failed" } };
    case "CANCELLING":
      if (!order.refunded) return { kind: "refund", purpose: "cancellation" };
      if (!order.stockReturned) return { kind: "return" };
      return { kind: "finish", event: { type: "ORDER_CANCELLED" } };
    case "CONFIRMED":
    case "REJECTED":
    case "FAILED":
    case "CANCELLED":
      return { kind: "none" };
  }
}
