import {
  type Admission,
  ConflictError,
  NotFoundError,
  RefusedError,
  SpanAttributes,
  StillRunningError,
  activeTraceparent,
  annotateSpan,
  currentRequest,
  isTransientDatabaseError,
} from "@meshcart/lib";
import { ConcurrentAppendError, requestDigest, type EventStore, type NewOrder, type SagaTrigger } from "./event-store.js";
import type { OrderNotifier, Subscription } from "./order-notifier.js";
import { applyEvent, fold, isFinal, type Order, type OrderEvent, type OrderSummary } from "./order-state.js";
import type { Saga } from "./saga.js";

export interface OrdersSettings {
  owner: string;
  leaseMs: number;
  /** The longest a CreateOrder or CancelOrder waits for the outcome, whatever the caller's deadline. */
  maxWaitMs: number;
  /** How often waiters re-read the log when no notification came. */
  pollMs: number;
}

/** What a waiter holds already: the order as it knows it, and its subscription taken before that. */
interface Known {
  order: Order;
  subscription: Subscription;
}

/**
 * The order service's use cases. Sagas run in the service's own context:
 * a caller that gives up stops waiting, never the saga. A saga this
 * process drives hands every append to its waiters in-process; only what
 * other replicas append is read back.
 */
export class Orders {
  constructor(
    private readonly store: EventStore,
    private readonly saga: Saga,
    private readonly notifier: OrderNotifier,
    private readonly settings: OrdersSettings,
    /** Checkouts and cancellations in progress, each from its call until its saga ends. */
    private readonly admission: Admission,
  ) {}

  /**
   * Places the order and waits for its outcome. An unknown SKU, too little
   * stock or a total payment cannot take is the saga's first step's
   * refusal (REJECTED), not an error of this call. At capacity the call is
   * refused (OverloadedError: RESOURCE_EXHAUSTED) before anything is
   * written; once the order is written, the caller learns its outcome or
   * that it goes on (StillRunningError), never that it failed.
   */
  async create(request: NewOrder, signal: AbortSignal): Promise<Order> {
    const permit = await this.admission.admit(signal);
    const trigger = sagaTrigger();
    const leaseFrom = Date.now();
    const placed = await this.store.place(request, this.settings.owner, this.settings.leaseMs, trigger).catch((error: unknown) => {
      permit.release();
      throw error;
    });
    annotateSpan({ [SpanAttributes.orderId]: placed.orderId, [SpanAttributes.replayed]: !placed.created });
    if (!placed.created) {
      // A replay only waits for an order whose run holds its own place.
      permit.release();
      return this.replay(placed, request, signal);
    }
    const subscription = this.notifier.subscribe(placed.orderId, placed.order.version);
    this.saga.start(
      placed.orderId,
      "started",
      {
        order: placed.order,
        context: { ...trigger, orderTraceparent: trigger.traceparent },
        leaseEndsAt: leaseFrom + this.settings.leaseMs,
      },
      permit,
    );
    return this.waitUntilFinal(placed.orderId, signal, { order: placed.order, subscription });
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
    const permit = await this.admission.admit(signal);
    let handed = false;
    try {
      for (;;) {
        const order = await this.get(orderId);
        if (order.state === "CANCELLED") return order;
        if (order.state === "CANCELLING") {
          handed = true;
          this.saga.start(orderId, "started", undefined, permit);
          return await this.waitUntilFinal(orderId, signal);
        }
        const requested = await this.requestCancellation(order, reason);
        if (!requested) continue;
        const subscription = this.notifier.subscribe(orderId, requested.version);
        handed = true;
        // The run's context (its trace links to the placing call's) is read with the order by the driver.
        this.saga.start(orderId, "started", undefined, permit);
        return await this.waitUntilFinal(orderId, signal, { order: requested, subscription });
      }
    } finally {
      if (!handed) permit.release();
    }
  }

  /** Appends CANCELLATION_REQUESTED to a confirmed order; undefined when the log moved on first (read again). */
  private async requestCancellation(order: Order, reason: string): Promise<Order | undefined> {
    const orderId = order.orderId;
    if (order.state !== "CONFIRMED") {
      const why = isFinal(order.state)
        ? `order is ${order.state.toLowerCase()}; only confirmed orders can be cancelled`
        : `order is still being placed (${order.state.toLowerCase()}); only confirmed orders can be cancelled`;
      throw new RefusedError(why, [{ type: "ORDER_STATE", subject: orderId, description: why }]);
    }
    const requested = applyEvent(order, {
      sequence: order.version + 1,
      data: { type: "CANCELLATION_REQUESTED", reason },
      stateAfter: "CANCELLING",
      occurredAt: new Date(),
    });
    try {
      await this.store.append(requested, order.version, {
        change: { run: "start", owner: this.settings.owner, leaseMs: this.settings.leaseMs, trigger: sagaTrigger() },
      });
    } catch (error) {
      if (error instanceof ConcurrentAppendError) return undefined;
      throw error;
    }
    this.notifier.notify(requested);
    return requested;
  }

  /**
   * The order's events from the first, then each new one as it is
   * appended, until the order is final.
   */
  async *watch(orderId: string, signal: AbortSignal): AsyncGenerator<{ event: OrderEvent; order: Order }> {
    const seen: OrderEvent[] = [];
    let handed: Order | undefined;
    for (;;) {
      const last = seen.at(-1)?.sequence ?? 0;
      const subscription = this.notifier.subscribe(orderId, last);
      try {
        const fresh = handed ? handed.history.filter((e) => e.sequence > last) : await this.store.eventsAfter(orderId, last);
        handed = undefined;
        if (seen.length === 0 && fresh.length === 0) throw new NotFoundError("order", orderId);
        for (const event of fresh) {
          seen.push(event);
          yield { event, order: fold(seen) };
        }
        const newest = seen.at(-1)!;
        // A final state can still change by cancellation; a watcher of a
        // confirmed order has seen the checkout through and is done.
        if (isFinal(newest.stateAfter) || signal.aborted) return;
        handed = await subscription.next(this.settings.pollMs, signal);
      } finally {
        subscription.cancel();
      }
    }
  }

  private async replay(existing: { orderId: string; digest: string }, request: NewOrder, signal: AbortSignal): Promise<Order> {
    if (existing.digest !== requestDigest(request)) {
      throw new ConflictError(`request_id ${request.requestId} was already used for a different order`);
    }
    // A saga interrupted by a crash is resumed by recovery once its lease
    // runs out; the replay only waits for the outcome.
    return this.waitUntilFinal(existing.orderId, signal);
  }

  /**
   * The order as the log has it, for a waiter: undefined when the database
   * cannot say now (away, or every connection busy). The order exists and
   * its saga goes on either way, so the waiter waits on; answering
   * UNAVAILABLE here would tell the caller that an order which is being
   * placed, and may be charged, failed.
   */
  private async read(orderId: string): Promise<Order | undefined> {
    try {
      return await this.get(orderId);
    } catch (error) {
      if (isTransientDatabaseError(error)) return undefined;
      throw error;
    }
  }

  /**
   * Waits for the order to be final: handed over by this process's saga,
   * or read after another replica's append (or the fallback timer). A
   * waiter listens before it reads, or a change that lands between its read
   * and its listening is missed.
   */
  private async waitUntilFinal(orderId: string, signal: AbortSignal, known?: Known): Promise<Order> {
    const deadline = Date.now() + this.settings.maxWaitMs;
    let order = known?.order;
    let subscription = known?.subscription;
    /** The newest state read or handed over: a read that fails keeps it. */
    let latest = order;
    for (;;) {
      subscription ??= this.notifier.subscribe(orderId, latest?.version ?? 0);
      try {
        order ??= await this.read(orderId);
        if (order) latest = order;
        if (latest && isFinal(latest.state)) return latest;
        const left = deadline - Date.now();
        if (signal.aborted || left <= 0) {
          const state = latest ? `still ${latest.state.toLowerCase()}` : "still being placed";
          throw new StillRunningError(`order ${orderId} is ${state}; follow it with GetOrder or WatchOrder`);
        }
        const handed = await subscription.next(Math.min(this.settings.pollMs, left), signal);
        // Read again unless the saga here handed the order over.
        order = handed;
      } finally {
        subscription.cancel();
        subscription = undefined;
      }
    }
  }
}

/** The call in progress, as the saga run it starts will continue it. */
function sagaTrigger(): SagaTrigger {
  return { traceparent: activeTraceparent(), correlationId: currentRequest()?.correlationId };
}
