import { ClientError, Status } from "nice-grpc";
import type { ServiceClient } from "@meshcart/lib";
import {
  ReservationState,
  type InventoryServiceDefinition,
  type Reservation as ReservationMessage,
  type ReserveStockRequest,
} from "@meshcart/contracts/meshcart/inventory/v1/inventory.js";
import {
  DeclineReason,
  PaymentStatus,
  type ChargeRequest,
  type Payment as PaymentMessage,
  type PaymentServiceDefinition,
  type RefundRequest,
} from "@meshcart/contracts/meshcart/payment/v1/payment.js";
import { ConcurrentAppendError, type AppendOptions, type NewOrder } from "../../src/event-store.js";
import { fold, type Order, type OrderEvent } from "../../src/order-state.js";
import type { SagaStore } from "../../src/saga.js";

/**
 * The saga driver's world in memory, at the level of gRPC statuses: models
 * of inventory and payment that answer as the real services do (every
 * mutating call idempotent on its id or key, the same truthful refusals),
 * each call of which can be scripted to fail with any status code, before
 * or after it acted; and an event store with the same rules as the real
 * one (appends at the log's version only, a driver's only while it owns the
 * run). The saga drives them through its real gRPC adapters (grpc-adapters.ts).
 */

/** One scripted answer: a status instead of the real one, given before the call acts or after (a lost answer). */
export interface ScriptedFailure {
  code: Exclude<Status, Status.OK>;
  acts: boolean;
}

/**
 * Per method, the answers of its next calls (null: the model's own); once
 * they are spent, `tail` (forever) or the model's own answer.
 */
export interface MethodScript {
  failures: (ScriptedFailure | null)[];
  tail?: Exclude<Status, Status.OK>;
}

export type Scripts = Partial<Record<string, MethodScript>>;

class Scripted {
  readonly calls: string[] = [];
  private readonly used = new Map<string, number>();

  constructor(private readonly scripts: Scripts) {}

  /** Runs `act` unless the script says otherwise; throws the scripted status before or after it. */
  run<T>(method: string, act: () => T): T {
    this.calls.push(method);
    const script = this.scripts[method];
    const n = this.used.get(method) ?? 0;
    this.used.set(method, n + 1);
    const failure = n < (script?.failures.length ?? 0) ? script!.failures[n] : script?.tail !== undefined ? { code: script.tail, acts: false } : undefined;
    if (!failure) return act();
    if (failure.acts) act();
    throw new ClientError(`/${method}`, failure.code, `scripted ${Status[failure.code]}${failure.acts ? " after acting" : ""}`);
  }

  count(method: string): number {
    return this.calls.filter((c) => c === method).length;
  }
}

function refuse(method: string, code: Status, details: string): never {
  throw new ClientError(`/${method}`, code, details);
}

interface ModelReservation {
  items: { sku: string; quantity: number }[];
  state: "HELD" | "COMMITTED" | "RELEASED" | "EXPIRED" | "RETURNED";
  totalMinor: number;
  unitPrices: Map<string, number>;
}

const STATES: Record<ModelReservation["state"], ReservationState> = {
  HELD: ReservationState.RESERVATION_STATE_HELD,
  COMMITTED: ReservationState.RESERVATION_STATE_COMMITTED,
  RELEASED: ReservationState.RESERVATION_STATE_RELEASED,
  EXPIRED: ReservationState.RESERVATION_STATE_EXPIRED,
  RETURNED: ReservationState.RESERVATION_STATE_RETURNED,
};

/** Inventory as its contract (inventory.proto) describes it, one product line per SKU. */
export class ModelInventory {
  readonly script: Scripted;
  readonly reservations = new Map<string, ModelReservation>();
  readonly stock = new Map<string, { price: number; onHand: number; reserved: number; sold: number }>();

  constructor(
    scripts: Scripts,
    catalogue: Record<string, { price: number; stock: number }>,
    /** The hold runs out before the first commit (the commit finds it expired). */
    private readonly expiresBeforeCommit = false,
  ) {
    this.script = new Scripted(scripts);
    for (const [sku, { price, stock }] of Object.entries(catalogue)) this.stock.set(sku, { price, onHand: stock, reserved: 0, sold: 0 });
  }

  client(): ServiceClient<typeof InventoryServiceDefinition> {
    const client = {
      reserveStock: async (request: ReserveStockRequest) => this.script.run("ReserveStock", () => ({ reservation: this.reserve(request) })),
      commitReservation: async ({ reservationId }: { reservationId: string }) =>
        this.script.run("CommitReservation", () => ({ reservation: this.commit(reservationId) })),
      releaseReservation: async ({ reservationId }: { reservationId: string }) =>
        this.script.run("ReleaseReservation", () => ({ reservation: this.release(reservationId) })),
      getReservation: async ({ reservationId }: { reservationId: string }) =>
        this.script.run("GetReservation", () => ({ reservation: this.message(reservationId, this.find("GetReservation", reservationId)) })),
      returnStock: async ({ reservationId }: { reservationId: string }) =>
        this.script.run("ReturnStock", () => ({ reservation: this.returnStock(reservationId) })),
    };
    return client as unknown as ServiceClient<typeof InventoryServiceDefinition>;
  }

  /** Units held by HELD reservations, per the counters and per the reservations: they must agree. */
  heldUnits(): { counted: number; byReservations: number } {
    const counted = [...this.stock.values()].reduce((sum, s) => sum + s.reserved, 0);
    const byReservations = [...this.reservations.values()]
      .filter((r) => r.state === "HELD")
      .reduce((sum, r) => sum + r.items.reduce((n, i) => n + i.quantity, 0), 0);
    return { counted, byReservations };
  }

  private reserve(request: ReserveStockRequest): ReservationMessage {
    const existing = this.reservations.get(request.reservationId);
    if (existing) {
      if (JSON.stringify(sorted(existing.items)) !== JSON.stringify(sorted(request.items))) {
        refuse("ReserveStock", Status.ALREADY_EXISTS, `reservation ${request.reservationId} already exists with different items`);
      }
      return this.message(request.reservationId, existing);
    }
    for (const item of request.items) {
      const product = this.stock.get(item.sku);
      if (!product) refuse("ReserveStock", Status.NOT_FOUND, `product ${item.sku} not found`);
      if (item.quantity > product.onHand - product.reserved) refuse("ReserveStock", Status.FAILED_PRECONDITION, `not enough stock for ${item.sku}`);
    }
    const total = request.items.reduce((sum, i) => sum + this.stock.get(i.sku)!.price * i.quantity, 0);
    if ((request.minTotalMinorUnits > 0 && total < request.minTotalMinorUnits) || (request.maxTotalMinorUnits > 0 && total > request.maxTotalMinorUnits)) {
      refuse("ReserveStock", Status.FAILED_PRECONDITION, `the total of ${total} is outside what the caller can accept`);
    }
    for (const item of request.items) this.stock.get(item.sku)!.reserved += item.quantity;
    const reservation: ModelReservation = {
      items: request.items.map((i) => ({ sku: i.sku, quantity: i.quantity })),
      state: "HELD",
      totalMinor: total,
      unitPrices: new Map(request.items.map((i) => [i.sku, this.stock.get(i.sku)!.price])),
    };
    this.reservations.set(request.reservationId, reservation);
    return this.message(request.reservationId, reservation);
  }

  private commit(id: string): ReservationMessage {
    const r = this.find("CommitReservation", id);
    if (r.state === "HELD" && this.expiresBeforeCommit) {
      this.move(r, "EXPIRED");
      refuse("CommitReservation", Status.FAILED_PRECONDITION, "reservation expired before it was committed");
    }
    if (r.state === "HELD") this.move(r, "COMMITTED");
    else if (r.state !== "COMMITTED") refuse("CommitReservation", Status.FAILED_PRECONDITION, `reservation is ${r.state.toLowerCase()}`);
    return this.message(id, r);
  }

  private release(id: string): ReservationMessage {
    const r = this.find("ReleaseReservation", id);
    if (r.state === "HELD") this.move(r, "RELEASED");
    else if (r.state === "COMMITTED" || r.state === "RETURNED")
      refuse("ReleaseReservation", Status.FAILED_PRECONDITION, `reservation is ${r.state.toLowerCase()}`);
    return this.message(id, r);
  }

  private returnStock(id: string): ReservationMessage {
    const r = this.find("ReturnStock", id);
    if (r.state === "COMMITTED") this.move(r, "RETURNED");
    else if (r.state !== "RETURNED") refuse("ReturnStock", Status.FAILED_PRECONDITION, `reservation is ${r.state.toLowerCase()}`);
    return this.message(id, r);
  }

  private move(r: ModelReservation, to: ModelReservation["state"]): void {
    for (const item of r.items) {
      const s = this.stock.get(item.sku)!;
      if (to === "COMMITTED") {
        s.reserved -= item.quantity;
        s.onHand -= item.quantity;
        s.sold += item.quantity;
      } else if (to === "RELEASED" || to === "EXPIRED") {
        s.reserved -= item.quantity;
      } else if (to === "RETURNED") {
        s.onHand += item.quantity;
        s.sold -= item.quantity;
      }
    }
    r.state = to;
  }

  private find(method: string, id: string): ModelReservation {
    const r = this.reservations.get(id);
    if (!r) refuse(method, Status.NOT_FOUND, `reservation ${id} not found`);
    return r;
  }

  private message(id: string, r: ModelReservation): ReservationMessage {
    const money = (minorUnits: number) => ({ currencyCode: "USD", minorUnits });
    return {
      reservationId: id,
      state: STATES[r.state],
      lines: r.items.map((i) => ({
        sku: i.sku,
        quantity: i.quantity,
        unitPrice: money(r.unitPrices.get(i.sku)!),
        lineTotal: money(r.unitPrices.get(i.sku)! * i.quantity),
      })),
      total: money(r.totalMinor),
      createdAt: undefined,
      expiresAt: undefined,
      updatedAt: undefined,
    };
  }
}

function sorted(items: { sku: string; quantity: number }[]): { sku: string; quantity: number }[] {
  return [...items].map((i) => ({ sku: i.sku, quantity: i.quantity })).sort((a, b) => a.sku.localeCompare(b.sku));
}

interface ModelPayment {
  paymentId: string;
  key: string;
  orderId: string;
  amountMinor: number;
  status: "CAPTURED" | "DECLINED" | "REFUNDED";
  refundedMinor: number;
}

/** Payment as its contract (payment.proto) describes it. */
export class ModelPayments {
  readonly script: Scripted;
  readonly payments = new Map<string, ModelPayment>();
  readonly refunds = new Map<string, { paymentId: string; amountMinor: number }>();
  private serial = 0;

  constructor(
    scripts: Scripts,
    /** The most one charge may take (payment refuses more with INVALID_ARGUMENT). */
    private readonly maxAmountMinor = 100_000_000,
  ) {
    this.script = new Scripted(scripts);
  }

  client(): ServiceClient<typeof PaymentServiceDefinition> {
    const client = {
      charge: async (request: ChargeRequest) => this.script.run("Charge", () => ({ payment: this.charge(request), replayed: false })),
      refund: async (request: RefundRequest) => this.script.run("Refund", () => this.refund(request)),
      getPayment: async ({ paymentId }: { paymentId: string }) =>
        this.script.run("GetPayment", () => ({ payment: this.message(this.find("GetPayment", paymentId)) })),
    };
    return client as unknown as ServiceClient<typeof PaymentServiceDefinition>;
  }

  /** Money taken for an order, net of refunds. */
  net(orderId: string): number {
    return [...this.payments.values()]
      .filter((p) => p.orderId === orderId && p.status !== "DECLINED")
      .reduce((sum, p) => sum + p.amountMinor - p.refundedMinor, 0);
  }

  private charge(request: ChargeRequest): PaymentMessage {
    const amount = request.amount?.minorUnits ?? 0;
    if (amount < 1 || amount > this.maxAmountMinor) refuse("Charge", Status.INVALID_ARGUMENT, `amount.minor_units must be from 1 to ${this.maxAmountMinor}`);
    const existing = [...this.payments.values()].find((p) => p.key === request.idempotencyKey);
    if (existing) {
      if (existing.amountMinor !== amount || existing.orderId !== request.orderId) refuse("Charge", Status.ALREADY_EXISTS, "key used for another charge");
      return this.message(existing);
    }
    this.serial += 1;
    const payment: ModelPayment = {
      paymentId: `pay_${this.serial}`,
      key: request.idempotencyKey,
      orderId: request.orderId,
      amountMinor: amount,
      status: request.paymentMethod === "pm_card_declined" ? "DECLINED" : "CAPTURED",
      refundedMinor: 0,
    };
    this.payments.set(payment.paymentId, payment);
    return this.message(payment);
  }

  private refund(request: RefundRequest) {
    const previous = this.refunds.get(request.idempotencyKey);
    if (previous) {
      if (previous.paymentId !== request.paymentId) refuse("Refund", Status.ALREADY_EXISTS, "key used for another refund");
      const payment = this.find("Refund", previous.paymentId);
      return { refund: { amount: { currencyCode: "USD", minorUnits: previous.amountMinor } }, payment: this.message(payment), replayed: true };
    }
    const payment = this.find("Refund", request.paymentId);
    if (payment.status === "DECLINED") refuse("Refund", Status.FAILED_PRECONDITION, "the payment was declined");
    const left = payment.amountMinor - payment.refundedMinor;
    if (left === 0) refuse("Refund", Status.FAILED_PRECONDITION, "the payment is already refunded in full");
    payment.refundedMinor += left;
    payment.status = "REFUNDED";
    this.refunds.set(request.idempotencyKey, { paymentId: payment.paymentId, amountMinor: left });
    return { refund: { amount: { currencyCode: "USD", minorUnits: left } }, payment: this.message(payment), replayed: false };
  }

  private find(method: string, paymentId: string): ModelPayment {
    const payment = this.payments.get(paymentId);
    if (!payment) refuse(method, Status.NOT_FOUND, `payment ${paymentId} not found`);
    return payment;
  }

  private message(p: ModelPayment): PaymentMessage {
    const status =
      p.status === "DECLINED"
        ? PaymentStatus.PAYMENT_STATUS_DECLINED
        : p.status === "REFUNDED"
          ? PaymentStatus.PAYMENT_STATUS_REFUNDED
          : PaymentStatus.PAYMENT_STATUS_CAPTURED;
    return {
      paymentId: p.paymentId,
      idempotencyKey: p.key,
      orderId: p.orderId,
      customerId: "",
      amount: { currencyCode: "USD", minorUnits: p.amountMinor },
      paymentMethod: "",
      status,
      declineReason: p.status === "DECLINED" ? DeclineReason.DECLINE_REASON_CARD_DECLINED : DeclineReason.DECLINE_REASON_UNSPECIFIED,
      refunded: { currencyCode: "USD", minorUnits: p.refundedMinor },
      refunds: [],
      createdAt: undefined,
      chargedByVersion: "model",
    };
  }
}

/** The event store's rules in memory (event-store.ts): appends at the log's version, a driver's only while it owns the run. */
export class MemoryStore implements SagaStore {
  readonly logs = new Map<string, OrderEvent[]>();
  readonly runs = new Map<string, string>();

  place(request: NewOrder, orderId: string, owner: string): Order {
    const events: OrderEvent[] = [{ sequence: 1, data: { type: "ORDER_PLACED", orderId, ...request }, stateAfter: "PENDING", occurredAt: new Date() }];
    this.logs.set(orderId, events);
    this.runs.set(orderId, owner);
    return fold(events);
  }

  /** Another replica takes the run over (its lease ran out). */
  claim(orderId: string, owner: string): boolean {
    if (!this.runs.has(orderId)) return false;
    this.runs.set(orderId, owner);
    return true;
  }

  async loadRun(orderId: string) {
    const events = this.logs.get(orderId);
    return events?.length ? { order: fold(events), context: {} } : undefined;
  }

  async append(order: Order, expectedVersion: number, options: AppendOptions): Promise<boolean> {
    const log = this.logs.get(order.orderId)!;
    if (log.length !== expectedVersion) throw new ConcurrentAppendError(`order ${order.orderId} is at ${log.length}, not ${expectedVersion}`);
    if (options.driver !== undefined && this.runs.get(order.orderId) !== options.driver) return false;
    const events = order.history.filter((e) => e.sequence > expectedVersion);
    events.forEach((e, i) => {
      if (e.sequence !== expectedVersion + i + 1) throw new Error(`event ${e.sequence} appended out of sequence`);
    });
    log.push(...events);
    if (options.change.run === "end") this.runs.delete(order.orderId);
    if (options.change.run === "start") this.runs.set(order.orderId, options.change.owner);
    return true;
  }

  async renewLease(orderId: string, owner: string): Promise<boolean> {
    return this.runs.get(orderId) === owner;
  }

  async releaseLease(): Promise<void> {}
}
