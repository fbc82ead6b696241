import {
  BrokenFailure,
  RefusedFailure,
  TransientFailure,
  type ChargeOutcome,
  type ChargeRequest,
  type InventoryPort,
  type PaymentPort,
  type ReleaseOutcome,
  type ReserveOutcome,
  type StepFailure,
  type TotalBounds,
} from "../../src/ports.js";
import type { OrderItem, PricedLine } from "../../src/order-state.js";

/**
 * In-memory stand-ins for inventory and payment that behave like the real
 * services where the saga relies on it (every mutating call idempotent on
 * its key, the same refusals), record every call, and can be scripted to
 * fail, to fail after acting (a lost answer), or to hold a call until the
 * test lets it go.
 */

export interface Failure {
  kind: StepFailure["kind"];
  /** Act first, then fail: the answer is lost, the effect is not. */
  afterEffect?: boolean;
  message?: string;
}

export interface Hold {
  /** Resolves when the held call has arrived. */
  reached: Promise<void>;
  /** Lets the held call proceed. */
  release(): void;
}

/** One call as the fake saw it: method and the key it carried. */
export interface Call {
  method: string;
  key: string;
  /** Position among the calls of every fake, so calls to both services can be put in order. */
  seq: number;
}

let callSequence = 0;

class Script {
  readonly calls: Call[] = [];
  private readonly failures = new Map<string, Failure[]>();
  private readonly holds = new Map<string, { arrived: () => void; gate: Promise<void> }[]>();

  failNext(method: string, failure: Failure, times = 1): void {
    const queue = this.failures.get(method) ?? [];
    for (let i = 0; i < times; i++) queue.push(failure);
    this.failures.set(method, queue);
  }

  hold(method: string): Hold {
    let arrived!: () => void;
    let release!: () => void;
    const reached = new Promise<void>((resolve) => (arrived = resolve));
    const gate = new Promise<void>((resolve) => (release = resolve));
    const queue = this.holds.get(method) ?? [];
    queue.push({ arrived, gate });
    this.holds.set(method, queue);
    return { reached, release };
  }

  /** Records the call, waits if it is held, then acts and/or fails as scripted. */
  async run<T>(method: string, key: string, act: () => T): Promise<T> {
    this.calls.push({ method, key, seq: ++callSequence });
    const held = this.holds.get(method)?.shift();
    if (held) {
      held.arrived();
      await held.gate;
    }
    // A real remote call never answers synchronously.
    await Promise.resolve();
    const failure = this.failures.get(method)?.shift();
    if (!failure) return act();
    if (failure.afterEffect) act();
    const message = failure.message ?? `${method}: scripted ${failure.kind} failure${failure.afterEffect ? " after acting" : ""}`;
    throw failure.kind === "transient" ? new TransientFailure(message) : failure.kind === "refused" ? new RefusedFailure(message) : new BrokenFailure(message);
  }

  /** The recorded calls as "method key", in order, optionally of some methods only. */
  trace(...methods: string[]): string[] {
    return this.calls.filter((c) => methods.length === 0 || methods.includes(c.method)).map((c) => `${c.method} ${c.key}`);
  }

  count(method: string): number {
    return this.calls.filter((c) => c.method === method).length;
  }
}

export type ReservationState = "HELD" | "COMMITTED" | "RELEASED" | "EXPIRED" | "RETURNED";

interface Stock {
  unitPriceMinor: number;
  onHand: number;
  reserved: number;
  sold: number;
}

interface Reservation {
  items: OrderItem[];
  lines: PricedLine[];
  totalMinor: number;
  state: ReservationState;
}

/** Inventory: a stock ledger with reservations, as the real service keeps it. */
export class FakeInventory implements InventoryPort {
  readonly script = new Script();
  readonly products = new Map<string, Stock>();
  readonly reservations = new Map<string, Reservation>();
  /** Reservations actually created (not replays): the effects. */
  created = 0;

  constructor(catalogue: Record<string, { price: number; stock: number }> = DEFAULT_CATALOGUE) {
    for (const [sku, { price, stock }] of Object.entries(catalogue)) {
      this.products.set(sku, { unitPriceMinor: price, onHand: stock, reserved: 0, sold: 0 });
    }
  }

  get calls(): Call[] {
    return this.script.calls;
  }

  async reserve(reservationId: string, items: OrderItem[], bounds: TotalBounds): Promise<ReserveOutcome> {
    return this.script.run("reserve", reservationId, (): ReserveOutcome => {
      const existing = this.reservations.get(reservationId);
      if (existing) {
        if (!sameItems(existing.items, items)) throw new RefusedFailure(`reservation ${reservationId} exists with other items`);
        return { kind: "reserved", lines: existing.lines, currencyCode: "USD", totalMinor: existing.totalMinor };
      }
      for (const item of items) {
        const product = this.products.get(item.sku);
        if (!product) return { kind: "unavailable", reason: `product ${item.sku} not found` };
        if (product.onHand - product.reserved < item.quantity) {
          return { kind: "unavailable", reason: `not enough stock of ${item.sku}` };
        }
      }
      const total = items.reduce((sum, item) => sum + this.products.get(item.sku)!.unitPriceMinor * item.quantity, 0);
      if (total < bounds.minMinor || total > bounds.maxMinor) {
        return { kind: "unavailable", reason: `the total of ${total} USD minor units is outside what the caller can accept` };
      }
      const lines = items.map((item) => {
        const product = this.products.get(item.sku)!;
        product.reserved += item.quantity;
        return { sku: item.sku, quantity: item.quantity, unitPriceMinor: product.unitPriceMinor };
      });
      const totalMinor = lines.reduce((sum, l) => sum + l.unitPriceMinor * l.quantity, 0);
      this.reservations.set(reservationId, { items, lines, totalMinor, state: "HELD" });
      this.created += 1;
      return { kind: "reserved", lines, currencyCode: "USD", totalMinor };
    });
  }

  async commit(reservationId: string): Promise<void> {
    return this.script.run("commit", reservationId, () => {
      const reservation = this.mustFind(reservationId);
      if (reservation.state === "COMMITTED") return;
      if (reservation.state !== "HELD") throw new RefusedFailure(`reservation ${reservationId} is ${reservation.state.toLowerCase()}`);
      reservation.state = "COMMITTED";
      for (const line of reservation.lines) {
        const product = this.products.get(line.sku)!;
        product.reserved -= line.quantity;
        product.onHand -= line.quantity;
        product.sold += line.quantity;
      }
    });
  }

  async release(reservationId: string): Promise<ReleaseOutcome> {
    return this.script.run("release", reservationId, (): ReleaseOutcome => {
      const reservation = this.reservations.get(reservationId);
      if (!reservation) return "not-found";
      if (reservation.state === "COMMITTED") return "already-committed";
      if (reservation.state === "HELD") {
        reservation.state = "RELEASED";
        for (const line of reservation.lines) this.products.get(line.sku)!.reserved -= line.quantity;
      }
      // Released, expired and returned reservations hold nothing.
      return "released";
    });
  }

  async returnStock(reservationId: string): Promise<"returned" | "not-committed"> {
    return this.script.run("returnStock", reservationId, () => {
      const reservation = this.reservations.get(reservationId);
      if (!reservation) return "not-committed" as const;
      if (reservation.state === "RETURNED") return "returned" as const;
      if (reservation.state !== "COMMITTED") return "not-committed" as const;
      reservation.state = "RETURNED";
      for (const line of reservation.lines) {
        const product = this.products.get(line.sku)!;
        product.onHand += line.quantity;
        product.sold -= line.quantity;
      }
      return "returned" as const;
    });
  }

  /** The hold's TTL ran out: inventory freed it by itself. */
  expire(reservationId: string): void {
    const reservation = this.mustFind(reservationId);
    if (reservation.state !== "HELD") throw new Error(`cannot expire a ${reservation.state} reservation`);
    reservation.state = "EXPIRED";
    for (const line of reservation.lines) this.products.get(line.sku)!.reserved -= line.quantity;
  }

  stock(sku: string): Stock {
    return { ...this.products.get(sku)! };
  }

  /** Units held by reservations across the catalogue. */
  get totalReserved(): number {
    return [...this.products.values()].reduce((sum, p) => sum + p.reserved, 0);
  }

  /** Units sold across the catalogue. */
  get totalSold(): number {
    return [...this.products.values()].reduce((sum, p) => sum + p.sold, 0);
  }

  private mustFind(reservationId: string): Reservation {
    const reservation = this.reservations.get(reservationId);
    if (!reservation) throw new RefusedFailure(`reservation ${reservationId} not found`);
    return reservation;
  }
}

export const DEFAULT_CATALOGUE: Record<string, { price: number; stock: number }> = {
  "MESH-MUG": { price: 1400, stock: 100 },
  "MESH-CAP": { price: 1900, stock: 100 },
  "MESH-STICKER-GOLD": { price: 500, stock: 10 },
};

function sameItems(a: OrderItem[], b: OrderItem[]): boolean {
  const key = (items: OrderItem[]) => JSON.stringify([...items].sort((x, y) => x.sku.localeCompare(y.sku)));
  return key(a) === key(b);
}

interface FakePaymentRecord {
  paymentId: string;
  request: ChargeRequest;
  status: "CAPTURED" | "DECLINED";
  refundedMinor: number;
}

const DECLINING = new Map([
  ["pm_card_declined", "payment declined: card declined"],
  ["pm_card_insufficient_funds", "payment declined: insufficient funds"],
]);

/** Payment: charges and refunds, each once per idempotency key. */
export class FakePayment implements PaymentPort {
  readonly script = new Script();
  readonly payments = new Map<string, FakePaymentRecord>();
  readonly refunds = new Map<string, { paymentId: string; amountMinor: number }>();
  /** The most one charge may take, as payment validates it (a refusal records nothing). */
  maxAmountMinor = 100_000_000;
  private serial = 0;

  get calls(): Call[] {
    return this.script.calls;
  }

  async charge(request: ChargeRequest): Promise<ChargeOutcome> {
    return this.script.run("charge", request.idempotencyKey, (): ChargeOutcome => {
      if (request.amountMinor < 1 || request.amountMinor > this.maxAmountMinor) {
        return { kind: "refused", reason: `payment refused the charge: INVALID_ARGUMENT amount.minor_units must be from 1 to ${this.maxAmountMinor}` };
      }
      let payment = this.payments.get(request.idempotencyKey);
      if (payment && (payment.request.amountMinor !== request.amountMinor || payment.request.orderId !== request.orderId)) {
        throw new RefusedFailure(`key ${request.idempotencyKey} was used for another charge`);
      }
      if (!payment) {
        this.serial += 1;
        payment = {
          paymentId: `pay_fake_${this.serial}`,
          request,
          status: DECLINING.has(request.paymentMethod) ? "DECLINED" : "CAPTURED",
          refundedMinor: 0,
        };
        this.payments.set(request.idempotencyKey, payment);
      }
      return payment.status === "DECLINED"
        ? { kind: "declined", paymentId: payment.paymentId, reason: DECLINING.get(payment.request.paymentMethod)! }
        : { kind: "captured", paymentId: payment.paymentId };
    });
  }

  async refundAll(idempotencyKey: string, paymentId: string, _reason: string): Promise<number> {
    return this.script.run("refundAll", idempotencyKey, () => {
      const existing = this.refunds.get(idempotencyKey);
      if (existing) {
        if (existing.paymentId !== paymentId) throw new RefusedFailure(`key ${idempotencyKey} was used for another refund`);
        return existing.amountMinor;
      }
      const payment = [...this.payments.values()].find((p) => p.paymentId === paymentId);
      // An unknown payment took nothing (the real adapter answers 0 for NOT_FOUND).
      if (!payment) return 0;
      // Declined or fully refunded: nothing left (the real adapter answers 0).
      if (payment.status === "DECLINED") return 0;
      const left = payment.request.amountMinor - payment.refundedMinor;
      if (left === 0) return 0;
      payment.refundedMinor += left;
      this.refunds.set(idempotencyKey, { paymentId, amountMinor: left });
      return left;
    });
  }

  /** The payments made for an order. */
  paymentsOf(orderId: string): FakePaymentRecord[] {
    return [...this.payments.values()].filter((p) => p.request.orderId === orderId);
  }

  /** Money taken from the customer for an order, net of refunds. */
  netCharged(orderId: string): number {
    return this.paymentsOf(orderId)
      .filter((p) => p.status === "CAPTURED")
      .reduce((sum, p) => sum + p.request.amountMinor - p.refundedMinor, 0);
  }

  /** Refunds actually made (not replays) for an order's payments. */
  refundsOf(orderId: string): { key: string; amountMinor: number }[] {
    const ids = new Set(this.paymentsOf(orderId).map((p) => p.paymentId));
    return [...this.refunds.entries()].filter(([, r]) => ids.has(r.paymentId)).map(([key, r]) => ({ key, amountMinor: r.amountMinor }));
  }
}
