import {
  ConflictError,
  NotFoundError,
  RefusedError,
  SpanAttributes,
  StillRunningError,
  UnavailableError,
  activeTraceparent,
  annotateSpan,
  currentRequest,
} from "@meshcart/lib";
import { ConcurrentAppendError, requestDigest, type EventStore, type NewOrder, type SagaTrigger } from "./event-store.js";
import type { OrderNotifier } from "./order-notifier.js";
import { fold, isFinal, type Order, type OrderEvent, type OrderSummary } from "./order-state.js";
import { TransientFailure, type InventoryPort } from "./ports.js";
import type { Saga } from "./saga.js";

export interface OrdersSettings {
  owner: string;
  leaseMs: number;
  /** The longest a CreateOrder or CancelOrder waits for the outcome, whatever the caller's deadline. */
  maxWaitMs: number;
  /** How often waiters re-read the log when no notification came. */
  pollMs: number;
}

/**
 * The order service's use cases. Sagas run in the service's own context:
 * a caller that gives up stops waiting, never the saga.
 */
export class Orders {
  constructor(
    private readonly store: EventStore,
    private readonly saga: Saga,
    private readonly inventory: InventoryPort,
    private readonly notifier: OrderNotifier,
    private readonly settings: OrdersSettings,
  ) {}

  async create(request: NewOrder, signal: AbortSignal): Promise<Order> {
    const existing = await this.store.findByRequestId(request.requestId);
    if (existing) {
      annotateSpan({ [SpanAttributes.orderId]: existing.orderId, [SpanAttributes.replayed]: true });
      return this.replay(existing, request, signal);
    }

    // Unknown SKUs are refused before anything is written.
    let missing: string[];
    try {
      missing = await this.inventory.productsExist(request.items.map((i) => i.sku));
    } catch (error) {
      if (error instanceof TransientFailure) throw new UnavailableError(`inventory unavailable: ${error.message}`);
      throw error;
    }
    if (missing.length > 0) throw new NotFoundError("product", missing.sort().join(", "));

    const placed = await this.store.place(request, this.settings.owner, this.settings.leaseMs, sagaTrigger());
    annotateSpan({ [SpanAttributes.orderId]: placed.orderId, [SpanAttributes.replayed]: !placed.created });
    if (!placed.created) return this.replay(placed, request, signal);
    this.saga.start(placed.orderId);
    return this.waitUntilFinal(placed.orderId, signal);
  }

  async get(orderId: string): Promise<Order> {
    const order = await this.store.load(orderId);
    if (!order) throw new NotFoundError("order", orderId);
    return order;
  }

  list(customerId: string, limit: number, after?: { createdAt: string; orderId: string }): Promise<{ orders: OrderSummary[]; more: boolean }> {
    return this.store.listByCustomer(customerId, limit, after);
  }

  /** Cancels a confirmed order (refund, then return the stock); retry-safe. */
  async cancel(orderId: string, reason: string, signal: AbortSignal): Promise<Order> {
    for (;;) {
      const order = await this.get(orderId);
      if (order.state === "CANCELLED") return order;
      if (order.state === "CANCELLING") {
        this.saga.start(orderId);
        return this.waitUntilFinal(orderId, signal);
      }
      if (order.state !== "CONFIRMED") {
        const why = isFinal(order.state)
          ? `order is ${order.state.toLowerCase()}; only confirmed orders can be cancelled`
          : `order is still being placed (${order.state.toLowerCase()}); only confirmed orders can be cancelled`;
        throw new RefusedError(why, [{ type: "ORDER_STATE", subject: orderId, description: why }]);
      }
      try {
        await this.store.append(orderId, order.version, [{ type: "CANCELLATION_REQUESTED", reason }], {
          startRun: { owner: this.settings.owner, leaseMs: this.settings.leaseMs, trigger: sagaTrigger() },
        });
      } catch (error) {
        if (error instanceof ConcurrentAppendError) continue;
        throw error;
      }
      this.notifier.notify(orderId);
      this.saga.start(orderId);
      return this.waitUntilFinal(orderId, signal);
    }
  }

  /**
   * The order's events from the first, then each new one as it is
   * appended, until the order is final.
   */
  async *watch(orderId: string, signal: AbortSignal): AsyncGenerator<{ event: OrderEvent; order: Order }> {
    const seen: OrderEvent[] = [];
    for (;;) {
      const next = this.nextChange(orderId, signal);
      try {
        const fresh = await this.store.eventsAfter(orderId, seen.at(-1)?.sequence ?? 0);
        if (seen.length === 0 && fresh.length === 0) throw new NotFoundError("order", orderId);
        for (const event of fresh) {
          seen.push(event);
          yield { event, order: fold(seen) };
        }
        const last = seen.at(-1)!;
        // A final state can still change by cancellation; a watcher of a
        // confirmed order has seen the checkout through and is done.
        if (isFinal(last.stateAfter) || signal.aborted) return;
        await next.changed;
      } finally {
        next.cancel();
      }
    }
  }

  /**
   * The next change of an order, listened for from now on: a waiter must
   * listen before it reads, or a change that lands between its read and its
   * listening is missed, and it sleeps until the fallback poll (this was a
   * one-second stall in the p95 of CreateOrder).
   */
  private nextChange(orderId: string, signal: AbortSignal): { changed: Promise<void>; cancel: () => void } {
    const done = new AbortController();
    return {
      changed: this.notifier.changed(orderId, this.settings.pollMs, AbortSignal.any([signal, done.signal])),
      cancel: () => done.abort(),
    };
  }

  private async replay(existing: { orderId: string; digest: string }, request: NewOrder, signal: AbortSignal): Promise<Order> {
    if (existing.digest !== requestDigest(request)) {
      throw new ConflictError(`request_id ${request.requestId} was already used for a different order`);
    }
    // A saga interrupted by a crash is resumed by recovery once its lease
    // runs out; the replay only waits for the outcome.
    return this.waitUntilFinal(existing.orderId, signal);
  }

  private async waitUntilFinal(orderId: string, signal: AbortSignal): Promise<Order> {
    const giveUp = AbortSignal.any([signal, AbortSignal.timeout(this.settings.maxWaitMs)]);
    for (;;) {
      const next = this.nextChange(orderId, giveUp);
      try {
        const order = await this.get(orderId);
        if (isFinal(order.state)) return order;
        if (giveUp.aborted) {
          throw new StillRunningError(
            `order ${orderId} is still ${order.state.toLowerCase()}; follow it with GetOrder or WatchOrder`,
          );
        }
        await next.changed;
      } finally {
        next.cancel();
      }
    }
  }
}

/** The call in progress, as the saga run it starts will continue it. */
function sagaTrigger(): SagaTrigger {
  return { traceparent: activeTraceparent(), correlationId: currentRequest()?.correlationId };
}
