import {
  SpanAttributes,
  contextFromTraceparent,
  inSpan,
  linkTo,
  recordError,
  runInRequest,
  type BackgroundTask,
  type Logger,
  type Span,
} from "@meshcart/lib";
import type { CrashHook } from "./chaos.js";
import { ConcurrentAppendError, type EventStore } from "./event-store.js";
import { OrderMetrics, outcomeOf } from "./metrics.js";
import {
  chargeKeyFor,
  nextStep,
  refundKeyFor,
  type NextStep,
  type Order,
  type OrderEventData,
  type SagaStep,
} from "./order-state.js";
import { PermanentFailure, TransientFailure, type InventoryPort, type PaymentPort } from "./ports.js";

export interface SagaSettings {
  /** Identifies this replica's leases. */
  owner: string;
  /** How long a lease lasts without renewal; a dead driver's sagas wait this long. */
  leaseMs: number;
  /** Backoff bounds for compensation and cancellation steps, which retry until done. */
  retryBaseMs: number;
  retryMaxMs: number;
  /** Chaos hook for crash tests (chaos.ts, ORDER_CRASH_POINT); off when absent. */
  crash?: CrashHook;
}

/**
 * Drives orders through the state machine of order-state.ts, one step at a
 * time: read the log, pick the next step, call the other service with the
 * key derived from the order, append what happened. Because every step is
 * keyed by the order, a step repeated after a crash or a lost answer has no
 * second effect. Forward steps that fail (after the clients' retry budget)
 * turn into compensation; compensation and cancellation steps must finish,
 * so they retry with backoff until they do.
 */
export class Saga {
  private readonly running = new Map<string, Promise<void>>();

  constructor(
    private readonly store: EventStore,
    private readonly inventory: InventoryPort,
    private readonly payment: PaymentPort,
    private readonly settings: SagaSettings,
    private readonly logger: Logger,
    private readonly stopping: AbortSignal,
    private readonly onAppend: (orderId: string) => void = () => undefined,
    private readonly metrics: OrderMetrics = new OrderMetrics(),
  ) {
    metrics.trackRunning(() => this.running.size);
  }

  /**
   * Starts driving an order whose lease this replica holds; no-op if already
   * driving it. `recovered`: the saga is resumed (by recovery, or at start
   * after a restart), not started by the call that placed or cancelled it.
   */
  start(orderId: string, how: "started" | "recovered" = "started"): void {
    if (this.running.has(orderId) || this.stopping.aborted) return;
    if (how === "recovered") this.metrics.recoveries.inc();
    const run = this.traced(orderId, how === "recovered")
      .catch((error: unknown) => this.logger.error({ err: error, order_id: orderId }, "saga driver crashed"))
      .finally(() => this.running.delete(orderId));
    this.running.set(orderId, run);
  }

  get active(): number {
    return this.running.size;
  }

  /** Resolves when every saga this replica drives has stopped at a step boundary. */
  async drained(): Promise<void> {
    await Promise.all([...this.running.values()]);
  }

  /**
   * Drives the saga inside its trace: a span `order.saga` whose parent is
   * the call that started the run (its traceparent is stored with the run,
   * so a saga resumed elsewhere or after a restart continues the same
   * trace), one child span per step, and the run's correlation id on every
   * log line and outbound call.
   */
  private async traced(orderId: string, recovered: boolean): Promise<void> {
    const trigger = await this.store.sagaContext(orderId);
    const parent = contextFromTraceparent(trigger.traceparent);
    // A later run (a cancellation) has a trace of its own; it links to the
    // trace that placed the order.
    const placed = trigger.orderTraceparent !== trigger.traceparent ? linkTo(trigger.orderTraceparent, { "meshcart.link": "order placed" }) : undefined;
    const run = () =>
      inSpan(
        "order.saga",
        {
          parent,
          links: placed ? [placed] : [],
          attributes: {
            [SpanAttributes.orderId]: orderId,
            [SpanAttributes.sagaRecovered]: recovered,
            ...(trigger.correlationId ? { [SpanAttributes.correlationId]: trigger.correlationId } : {}),
          },
        },
        (span) => this.drive(orderId, span),
      );
    return trigger.correlationId ? runInRequest({ correlationId: trigger.correlationId }, run) : run();
  }

  private async drive(orderId: string, sagaSpan: Span): Promise<void> {
    const log = this.logger.child({ order_id: orderId });
    let failures = 0;
    for (;;) {
      const order = await this.store.load(orderId);
      if (!order) throw new Error(`order ${orderId} has no events`);
      const step = nextStep(order);
      if (step.kind === "none") {
        sagaSpan.setAttributes({
          [SpanAttributes.orderState]: order.state,
          ...(outcomeOf(order.state) ? { [SpanAttributes.sagaOutcome]: outcomeOf(order.state) } : {}),
        });
        return;
      }
      if (this.stopping.aborted) {
        // Hand the saga over now rather than after the lease runs out.
        await this.store.releaseLease(orderId, this.settings.owner);
        log.info({ state: order.state }, "saga handed over at shutdown");
        sagaSpan.setAttributes({ [SpanAttributes.orderState]: order.state, [SpanAttributes.sagaOutcome]: "handed over" });
        return;
      }
      if (!(await this.store.renewLease(orderId, this.settings.owner, this.settings.leaseMs))) {
        log.info({ state: order.state }, "saga taken over by another replica");
        sagaSpan.setAttributes({ [SpanAttributes.orderState]: order.state, [SpanAttributes.sagaOutcome]: "taken over" });
        return;
      }
      const result = await inSpan(
        `order.saga.${step.kind}`,
        {
          attributes: {
            [SpanAttributes.orderId]: orderId,
            [SpanAttributes.sagaStep]: step.kind,
            [SpanAttributes.sagaCompensating]: order.state === "COMPENSATING",
          },
        },
        async (span) => {
          let events: OrderEventData[];
          try {
            events = await this.execute(order, step);
          } catch (error) {
            // Only compensation and cancellation steps get here: they are
            // retried until done, with backoff, across restarts if need be.
            failures += 1;
            const delay = Math.min(this.settings.retryMaxMs, this.settings.retryBaseMs * 2 ** Math.min(failures, 10));
            log.warn({ err: error, step: step.kind, attempt: failures, retry_in_ms: delay }, "saga step failed, will retry");
            this.metrics.steps.inc({ step: step.kind, result: "retry" });
            recordError(span, error);
            span.setAttributes({ [SpanAttributes.sagaOutcome]: "retry", [SpanAttributes.sagaAttempt]: failures });
            return { retryInMs: delay };
          }
          failures = 0;
          try {
            const after = await this.store.append(orderId, order.version, events);
            this.onAppend(orderId);
            this.recordStep(span, step.kind, order, events, after.state);
            log.info({ step: step.kind, events: events.map((e) => e.type), state: after.state }, "saga step done");
          } catch (error) {
            if (error instanceof ConcurrentAppendError) {
              log.info("order changed under the saga; re-reading");
              span.setAttribute(SpanAttributes.sagaOutcome, "superseded");
              return undefined;
            }
            throw error;
          }
          return undefined;
        },
      );
      if (result) await sleep(result.retryInMs, this.stopping);
    }
  }

  /** What a step did, on its span and in the metrics. */
  private recordStep(span: Span, step: NextStep["kind"], before: Order, events: OrderEventData[], after: Order["state"]): void {
    this.metrics.steps.inc({ step, result: "ok" });
    const cancelling = [...before.history].reverse().find((e) => e.data.type === "CANCELLATION_REQUESTED");
    const started = after === "CANCELLED" && cancelling ? cancelling.occurredAt : before.createdAt;
    this.metrics.recordAppended(events, before.state, after, started);
    span.setAttributes({
      [SpanAttributes.sagaEvents]: events.map((e) => e.type),
      [SpanAttributes.orderState]: after,
      [SpanAttributes.sagaOutcome]: outcomeOf(after) ?? "ok",
    });
    for (const event of events) {
      if (event.type === "PAYMENT_DECLINED") {
        span.addEvent("compensation.started", {
          [SpanAttributes.compensationStep]: "charge",
          [SpanAttributes.compensationCause]: "declined",
          [SpanAttributes.compensationReason]: event.reason,
        });
      } else if (event.type === "STEP_FAILED") {
        span.addEvent("compensation.started", {
          [SpanAttributes.compensationStep]: event.step,
          [SpanAttributes.compensationCause]: "failed",
          [SpanAttributes.compensationReason]: event.reason,
        });
      } else if (before.state === "COMPENSATING") {
        span.addEvent(`compensation.${event.type.toLowerCase()}`);
      }
    }
  }

  /** Runs one step and says what happened, as events to append. */
  private async execute(order: Order, step: Exclude<NextStep, { kind: "none" }>): Promise<OrderEventData[]> {
    switch (step.kind) {
      case "reserve":
        return this.forward("reserve", async () => {
          const outcome = await this.call("reserve", () => this.inventory.reserve(order.reservationId, order.items));
          if (outcome.kind === "unavailable") {
            return [
              { type: "STOCK_UNAVAILABLE", reason: outcome.reason },
              { type: "ORDER_REJECTED", reason: outcome.reason },
            ];
          }
          return [
            {
              type: "STOCK_RESERVED",
              reservationId: order.reservationId,
              lines: outcome.lines,
              currencyCode: outcome.currencyCode,
              totalMinor: outcome.totalMinor,
            },
          ];
        });
      case "charge":
        return this.forward("charge", async () => {
          const request = this.chargeRequest(order);
          const outcome = await this.call("charge", () => this.payment.charge(request));
          return outcome.kind === "captured"
            ? [{ type: "PAYMENT_CAPTURED", paymentId: outcome.paymentId }]
            : [{ type: "PAYMENT_DECLINED", paymentId: outcome.paymentId, reason: outcome.reason }];
        });
      case "commit":
        return this.forward("commit", async () => {
          await this.call("commit", () => this.inventory.commit(order.reservationId));
          return [{ type: "RESERVATION_COMMITTED" }, { type: "ORDER_CONFIRMED" }];
        });
      case "refund":
        return [await this.call("refund", () => this.refund(order, step.purpose))];
      case "release":
        return [{ type: "STOCK_RELEASED", detail: await this.call("release", () => this.releaseStock(order)) }];
      case "return":
        await this.call("return", () => this.inventory.returnStock(order.reservationId));
        return [{ type: "STOCK_RETURNED" }];
      case "finish":
        return [step.event];
    }
  }

  /**
   * A forward step: its failure is a fact of the order (STEP_FAILED, then
   * compensation), not something to retry here. The clients below have
   * already spent the step's retry budget.
   */
  private async forward(step: SagaStep, run: () => Promise<OrderEventData[]>): Promise<OrderEventData[]> {
    try {
      return await run();
    } catch (error) {
      if (!(error instanceof TransientFailure || error instanceof PermanentFailure)) throw error;
      return [{ type: "STEP_FAILED", step, reason: error.message }];
    }
  }

  /**
   * One step's calls to another service, between the chaos hook's crash
   * points: `before:` just before, `after:` once they settled and before
   * their outcome is appended (the lost-answer case).
   */
  private async call<T>(step: "reserve" | "charge" | "commit" | "refund" | "release" | "return", run: () => Promise<T>): Promise<T> {
    this.settings.crash?.(`before:${step}`);
    try {
      return await run();
    } finally {
      this.settings.crash?.(`after:${step}`);
    }
  }

  private chargeRequest(order: Order) {
    if (order.totalMinor === undefined || !order.currencyCode) throw new Error(`order ${order.orderId} has no total`);
    return {
      idempotencyKey: chargeKeyFor(order.orderId),
      customerId: order.customerId,
      currencyCode: order.currencyCode,
      amountMinor: order.totalMinor,
      paymentMethod: order.paymentMethod,
      orderId: order.orderId,
    };
  }

  private async refund(order: Order, purpose: "compensation" | "cancellation"): Promise<OrderEventData> {
    let paymentId = order.paymentId;
    if (!paymentId) {
      // The charge's answer was lost: repeating it under the same key
      // either finds the charge that happened or settles that none will,
      // because payment serialises calls per key. Then refund what exists.
      const outcome = await this.payment.charge(this.chargeRequest(order));
      if (outcome.kind === "declined") return { type: "PAYMENT_REFUNDED", paymentId: outcome.paymentId, refundedMinor: 0 };
      paymentId = outcome.paymentId;
    }
    const reason = purpose === "cancellation" ? (order.failureReason ?? "order cancelled") : `compensation: ${order.failureReason ?? "checkout failed"}`;
    const refundedMinor = await this.payment.refundAll(refundKeyFor(order.orderId, purpose), paymentId, reason.slice(0, 500));
    return { type: "PAYMENT_REFUNDED", paymentId, refundedMinor };
  }

  /** Frees whatever the reservation holds, whatever state its answer-lost attempts left it in. */
  private async releaseStock(order: Order): Promise<string> {
    const outcome = await this.inventory.release(order.reservationId);
    if (outcome === "released") return "reservation released";
    if (outcome === "already-committed") {
      await this.inventory.returnStock(order.reservationId);
      return "reservation had been committed: stock returned";
    }
    if (order.state === "COMPENSATING" && order.lines === undefined) {
      // Not found, and the reserve step's answer was lost: a reserve may
      // still be on its way. Reserving under the same id settles it (the
      // late one then finds this one), and the hold is released at once.
      const fenced = await this.inventory.reserve(order.reservationId, order.items);
      if (fenced.kind === "reserved") {
        await this.inventory.release(order.reservationId);
        return "late reservation fenced and released";
      }
    }
    return "nothing was reserved";
  }
}

/** Periodically takes over sagas whose driver died (lease expired) and drives them. */
export function sagaRecovery(
  saga: Saga,
  store: EventStore,
  settings: { owner: string; leaseMs: number; intervalMs: number; batch: number },
  logger: Logger,
): BackgroundTask {
  return {
    name: "saga-recovery",
    async run(signal) {
      while (!signal.aborted) {
        try {
          const claimed = await store.claimAbandoned(settings.owner, settings.leaseMs, settings.batch);
          if (claimed.length > 0) logger.info({ orders: claimed.length }, "recovering abandoned sagas");
          for (const orderId of claimed) saga.start(orderId, "recovered");
        } catch (error) {
          logger.warn({ err: error }, "saga recovery scan failed; will retry");
        }
        await sleep(settings.intervalMs, signal);
      }
      await saga.drained();
    },
  };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => (clearTimeout(timer), resolve()), { once: true });
  });
}
