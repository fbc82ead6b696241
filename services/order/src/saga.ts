import {
  SpanAttributes,
  contextFromTraceparent,
  inSpan,
  isPoolExhausted,
  isTransientDatabaseError,
  type Admission,
  type Permit,
  linkTo,
  recordError,
  runInRequest,
  sleep,
  type BackgroundTask,
  type Logger,
  type Span,
} from "@meshcart/lib";
import type { CrashHook } from "./chaos.js";
import { ConcurrentAppendError, type EventStore, type RunChange, type SagaContext } from "./event-store.js";
import { OrderMetrics, outcomeOf } from "./metrics.js";
import {
  applyEvent,
  chargeKeyFor,
  isFinal,
  nextStep,
  refundKeyFor,
  stateAfter,
  type NextStep,
  type Order,
  type OrderEventData,
  type SagaStep,
  type UndoStep,
} from "./order-state.js";
import { StepFailure, type InventoryPort, type PaymentPort, type TotalBounds } from "./ports.js";

export interface SagaSettings {
  /** Identifies this replica's leases. */
  owner: string;
  /** How long a lease lasts without renewal; a dead driver's sagas wait this long. */
  leaseMs: number;
  /** Backoff bounds for compensation and cancellation steps, which retry until done. */
  retryBaseMs: number;
  retryMaxMs: number;
  /**
   * Attempts of an undo step (refund, release, return) whose calls keep
   * failing in a way retrying does not fix (a refusal the step has no
   * meaning for, or a broken answer) before it is given up and recorded
   * as not done (STEP_ABANDONED). Transient failures never count.
   */
  undoAttempts: number;
  /** The totals one payment can take: a reservation outside them is refused, holding nothing. */
  chargeBounds: TotalBounds;
  /** Chaos hook for crash tests (chaos.ts, ORDER_CRASH_POINT); off when absent. */
  crash?: CrashHook;
  /**
   * The checkouts' admission control: a resumed run takes a place in it
   * whatever the load (it is work in progress, never refused), so that new
   * checkouts wait for it.
   */
  admission?: Admission;
}

/** What the saga needs of the event store. */
export type SagaStore = Pick<EventStore, "loadRun" | "append" | "renewLease" | "releaseLease">;

export interface SagaOptions {
  store: SagaStore;
  inventory: InventoryPort;
  payment: PaymentPort;
  settings: SagaSettings;
  logger: Logger;
  /** Aborts when the service stops: runs record where they are and end. */
  stopping: AbortSignal;
  /** Told of every append, with the order as the log now has it (local waiters get it without a read). */
  onAppend?: (order: Order) => void;
  metrics?: OrderMetrics;
}

/** A run whose order the starter holds already (it just placed the order or requested its cancellation). */
export interface KnownRun {
  order: Order;
  context: SagaContext;
  /** When the lease the starter took runs out, by this process's clock. */
  leaseEndsAt: number;
}

type StepResult = { events: OrderEventData[] } | { failure: StepFailure };

/**
 * Drives orders through the state machine of order-state.ts, one step at a
 * time: pick the next step from the order as folded in memory, call the
 * other service with the key derived from the order, fold what happened.
 * Because every step is keyed by the order, a step repeated after a crash
 * or a lost answer has no second effect, so what happened is appended to
 * the log only when crash-safety needs it (docs/order-saga.md, "What is
 * persisted when"): when the order becomes final, when compensation starts,
 * before waiting to retry, and when the driver stops. Each append renews
 * the lease; so does a step that starts late in it. Forward steps that fail
 * (after the clients' retry budget) turn into compensation; compensation
 * and cancellation steps retry transient failures until they pass, and any
 * other failure up to `undoAttempts`, after which the step is recorded as
 * not done: every saga ends.
 */
export class Saga {
  private readonly running = new Map<string, Promise<void>>();
  /** Orders asked to be driven while a run of theirs was ending: driven again (from the log) once it has. */
  private readonly again = new Set<string>();

  private readonly store: SagaStore;
  private readonly inventory: InventoryPort;
  private readonly payment: PaymentPort;
  private readonly settings: SagaSettings;
  private readonly logger: Logger;
  private readonly stopping: AbortSignal;
  private readonly onAppend: (order: Order) => void;
  private readonly metrics: OrderMetrics;

  constructor(options: SagaOptions) {
    ({ store: this.store, inventory: this.inventory, payment: this.payment, settings: this.settings } = options);
    ({ logger: this.logger, stopping: this.stopping } = options);
    this.onAppend = options.onAppend ?? (() => undefined);
    this.metrics = options.metrics ?? new OrderMetrics();
    this.metrics.trackRunning(() => this.running.size);
  }

  /**
   * Starts driving an order whose lease this replica holds; no-op if already
   * driving it. `recovered`: the saga is resumed (by recovery, or at start
   * after a restart), not started by the call that placed or cancelled it.
   * `known`: the order and context as the starter holds them (nothing is
   * read back); without it the driver reads them from the log.
   */
  start(orderId: string, how: "started" | "recovered" = "started", known?: KnownRun, permit?: Permit): void {
    if (this.stopping.aborted) return permit?.release();
    if (this.running.has(orderId)) {
      // The run in hand may be past its last step (a caller that got the
      // outcome can ask for a cancellation before the run has returned).
      this.again.add(orderId);
      return permit?.release();
    }
    if (how === "recovered") this.metrics.recoveries.inc();
    // The run holds its place in admission control until it ends.
    const place = permit ?? (how === "recovered" ? this.settings.admission?.force() : undefined);
    const run = this.traced(orderId, how === "recovered", known)
      .catch((error: unknown) => this.logger.error({ err: error, order_id: orderId }, "saga driver crashed"))
      .finally(() => {
        place?.release();
        this.running.delete(orderId);
        if (this.again.delete(orderId)) this.start(orderId);
      });
    this.running.set(orderId, run);
  }

  get active(): number {
    return this.running.size;
  }

  /** Resolves when every saga this replica drives has stopped at a step boundary. */
  async drained(): Promise<void> {
    while (this.running.size > 0) await Promise.all([...this.running.values()]);
  }

  /**
   * Drives the saga inside its trace: a span `order.saga` whose parent is
   * the call that started the run (its traceparent is stored with the run,
   * so a saga resumed elsewhere or after a restart continues the same
   * trace), one child span per step, and the run's correlation id on every
   * log line and outbound call.
   */
  private async traced(orderId: string, recovered: boolean, known: KnownRun | undefined): Promise<void> {
    const run = known ?? (await this.load(orderId, recovered));
    if (!run) {
      if (this.stopping.aborted) return;
      throw new Error(`order ${orderId} has no events`);
    }
    const trigger = run.context;
    const parent = contextFromTraceparent(trigger.traceparent);
    // A later run (a cancellation) has a trace of its own; it links to the
    // trace that placed the order.
    const placed = trigger.orderTraceparent !== trigger.traceparent ? linkTo(trigger.orderTraceparent, { "meshcart.link": "order placed" }) : undefined;
    const drive = () =>
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
        (span) => this.drive(run, recovered, span),
      );
    return trigger.correlationId ? runInRequest({ correlationId: trigger.correlationId }, drive) : drive();
  }

  /**
   * The run as the log has it. A recovered run's lease was just taken by
   * the claim; any other (a waiter starting a run it may not own) checks
   * its lease before the first step, and stops if another replica holds it.
   */
  private async load(orderId: string, recovered: boolean): Promise<KnownRun | undefined> {
    const leaseFrom = Date.now();
    const loaded = await this.withDatabase("read", this.logger.child({ order_id: orderId }), () => this.store.loadRun(orderId));
    // Stopping while the database was away: the lease runs out and the run is resumed elsewhere.
    if (loaded === STOPPED) return undefined;
    return loaded && { ...loaded, leaseEndsAt: recovered ? leaseFrom + this.settings.leaseMs : 0 };
  }

  /**
   * A statement of the driver's own (a read, a lease renewal or hand-over)
   * retried while the database is away or the pool is exhausted, as the
   * appends are: the saga waits, it does not crash and wait for its lease
   * to run out. STOPPED when the service stops meanwhile.
   */
  private async withDatabase<T>(what: string, log: Logger, run: () => Promise<T>): Promise<T | typeof STOPPED> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await run();
      } catch (error) {
        if (!isTransientDatabaseError(error)) throw error;
        if (this.stopping.aborted) return STOPPED;
        const delay = this.databaseRetryDelay(error, attempt);
        log.warn(
          { err: error, attempt, retry_in_ms: delay },
          `saga ${what} not done yet: ${isPoolExhausted(error) ? "database pool busy" : "database unavailable"}, will retry`,
        );
        await sleep(delay, this.stopping);
      }
    }
  }

  /**
   * After an exhausted pool (which waited a second already) the driver
   * queues again at once, with a little jitter; after an outage it backs
   * off exponentially.
   */
  private databaseRetryDelay(error: unknown, attempt: number): number {
    if (isPoolExhausted(error)) return Math.round(Math.random() * this.settings.retryBaseMs);
    return Math.min(this.settings.retryMaxMs, this.settings.retryBaseMs * 2 ** Math.min(attempt, 10));
  }

  private async drive(run: KnownRun, recovered: boolean, sagaSpan: Span): Promise<void> {
    const { owner, leaseMs } = this.settings;
    const orderId = run.order.orderId;
    const log = this.logger.child({ order_id: orderId });
    /** The order with every fact so far; the log has it up to `persisted`. */
    let order = run.order;
    let persisted = order.version;
    /**
     * A recovered run repeats steps that the run before it may have done
     * without recording them (forward steps are recorded with the outcome).
     * Until it records something itself, a reserve it cannot get an answer
     * to must not be taken for one that reserved nothing: a charge may have
     * followed it. It is retried instead, like an undo step.
     */
    const mayFollowUnrecordedRun = () => recovered && persisted === run.order.version;
    let leaseEndsAt = run.leaseEndsAt;
    /** Consecutive failures of the step in hand (the backoff), and those that retrying does not fix. */
    let failures = 0;
    let unfixable = 0;
    const ended = (state: string, outcome: string) => sagaSpan.setAttributes({ [SpanAttributes.orderState]: state, [SpanAttributes.sagaOutcome]: outcome });

    /** Appends what the log lacks; "renew" keeps the run. */
    const persist = async (change: RunChange): Promise<"ok" | "lost" | "superseded"> => {
      const before = persisted;
      const leaseFrom = Date.now();
      const outcome = await this.appendWithRetry(order, before, change, log);
      if (outcome !== "ok") return outcome;
      persisted = order.version;
      leaseEndsAt = leaseFrom + leaseMs;
      this.recordAppended(order, before);
      this.onAppend(order);
      return "ok";
    };

    for (;;) {
      const step = nextStep(order);
      if (step.kind === "none") {
        ended(order.state, outcomeOf(order.state) ?? "none");
        // A confirmation is the normal outcome (counted in the metrics); anything else is worth a line.
        log[order.state === "CONFIRMED" ? "debug" : "info"]({ state: order.state, version: order.version, reason: order.failureReason }, "saga ended");
        return;
      }
      if (this.stopping.aborted) {
        // Hand the saga over now rather than after the lease runs out, with what it learnt so far.
        if (order.version > persisted) await persist({ run: "hand-over", leaseMs });
        else await this.withDatabase("hand-over", log, () => this.store.releaseLease(orderId, owner));
        log.info({ state: order.state }, "saga handed over at shutdown");
        ended(order.state, "handed over");
        return;
      }
      if (Date.now() >= leaseEndsAt - leaseMs / 2) {
        const renewedFrom = Date.now();
        const renewed = await this.withDatabase("lease renewal", log, () => this.store.renewLease(orderId, owner, leaseMs));
        if (renewed === STOPPED) {
          log.info({ state: order.state }, "service stopping while the database is away: the saga resumes when its lease runs out");
          ended(order.state, "handed over");
          return;
        }
        if (!renewed) {
          log.info({ state: order.state }, "saga taken over by another replica");
          ended(order.state, "taken over");
          return;
        }
        leaseEndsAt = renewedFrom + leaseMs;
      }

      const before = order;
      const result = await this.step(before, step, step.kind === "reserve" && mayFollowUnrecordedRun());
      let events: OrderEventData[];
      if ("events" in result) {
        events = result.events;
        failures = 0;
        unfixable = 0;
      } else {
        const { failure } = result;
        failures += 1;
        if (failure.kind !== "transient") unfixable += 1;
        if (unfixable < this.settings.undoAttempts) {
          const delay = Math.min(this.settings.retryMaxMs, this.settings.retryBaseMs * 2 ** Math.min(failures, 10));
          log.warn({ err: failure, step: step.kind, attempt: failures, retry_in_ms: delay }, "saga step failed, will retry");
          // What is known is in the log while the saga waits.
          if (order.version > persisted) {
            const outcome = await persist({ run: "renew", leaseMs });
            if (outcome === "lost") return this.lost(log, order, ended);
            if (outcome === "superseded") {
              const reloaded = await this.reload(orderId, log);
              if (!reloaded) return this.lost(log, order, ended);
              order = reloaded;
              persisted = order.version;
              continue;
            }
          }
          await sleep(delay, this.stopping);
          continue;
        }
        // Retrying does not fix it: record the step as not done, and go on.
        log.error({ err: failure, step: step.kind, attempts: failures }, "saga step given up: what it undoes needs an operator");
        this.metrics.steps.inc({ step: step.kind, result: "abandoned" });
        const reason = failure.message.slice(0, 500);
        events =
          step.kind === "reserve"
            ? // The run before may have reserved and charged; without the reservation's total the charge cannot be settled here.
              [
                { type: "STEP_FAILED", step: "reserve", reason },
                { type: "STEP_ABANDONED", step: "refund", reason: `a charge under ${chargeKeyFor(orderId)} may exist from a run that left no record` },
              ]
            : [{ type: "STEP_ABANDONED", step: step.kind as UndoStep, reason }];
        failures = 0;
        unfixable = 0;
      }

      const now = new Date();
      let state = before.state;
      for (const data of events) {
        state = stateAfter(state, data);
        order = applyEvent(order, { sequence: order.version + 1, data, stateAfter: state, occurredAt: now });
      }
      log.debug({ step: step.kind, events: events.map((e) => e.type), state: order.state }, "saga step done");

      // Crash-safety: the outcome, and the decision to compensate (a retry
      // after a crash could decide otherwise), must be in the log.
      const mustPersist = isFinal(order.state) || events.some((e) => e.type === "STEP_FAILED" || e.type === "PAYMENT_DECLINED");
      if (!mustPersist) continue;
      const outcome = await persist(isFinal(order.state) ? { run: "end" } : { run: "renew", leaseMs });
      if (outcome === "lost") return this.lost(log, order, ended);
      if (outcome === "superseded") {
        log.info("order changed under the saga; re-reading");
        const reloaded = await this.reload(orderId, log);
        if (!reloaded) return this.lost(log, order, ended);
        order = reloaded;
        persisted = order.version;
      }
    }
  }

  private lost(log: Logger, order: Order, ended: (state: string, outcome: string) => void): void {
    log.info({ state: order.state }, "saga taken over by another replica");
    ended(order.state, "taken over");
  }

  private async reload(orderId: string, log: Logger): Promise<Order | undefined> {
    const loaded = await this.withDatabase("read", log, () => this.store.loadRun(orderId));
    if (loaded === STOPPED) return undefined;
    if (!loaded) throw new Error(`order ${orderId} has no events`);
    log.debug({ state: loaded.order.state, version: loaded.order.version }, "order re-read");
    // What another writer (or an append whose answer was lost) put there, for the waiters here.
    this.onAppend(loaded.order);
    return loaded.order;
  }

  /**
   * The append, retried while the database is away (the facts are kept in
   * memory meanwhile); "lost" when the driver no longer owns the run (or
   * the service stops while the database is away), "superseded" when the
   * log moved on.
   */
  private async appendWithRetry(order: Order, expectedVersion: number, change: RunChange, log: Logger): Promise<"ok" | "lost" | "superseded"> {
    for (let attempt = 1; ; attempt++) {
      try {
        return (await this.store.append(order, expectedVersion, { driver: this.settings.owner, change })) ? "ok" : "lost";
      } catch (error) {
        if (error instanceof ConcurrentAppendError) return "superseded";
        if (!isTransientDatabaseError(error)) throw error;
        if (this.stopping.aborted) {
          log.warn({ err: error }, "saga progress not recorded at shutdown; the next driver repeats the steps (they are keyed)");
          return "lost";
        }
        const delay = this.databaseRetryDelay(error, attempt);
        log.warn(
          { err: error, attempt, retry_in_ms: delay },
          `saga progress not recorded yet: ${isPoolExhausted(error) ? "database pool busy" : "database unavailable"}, will retry`,
        );
        await sleep(delay, this.stopping);
      }
    }
  }

  /**
   * One step in its span; a forward step's failure is a fact, an undo
   * step's (and a repeated reserve's, `retried`) a result to retry.
   */
  private step(order: Order, step: Exclude<NextStep, { kind: "none" }>, retried: boolean): Promise<StepResult> {
    return inSpan(
      `order.saga.${step.kind}`,
      {
        attributes: {
          [SpanAttributes.orderId]: order.orderId,
          [SpanAttributes.sagaStep]: step.kind,
          [SpanAttributes.sagaCompensating]: order.state === "COMPENSATING",
        },
      },
      async (span) => {
        try {
          const events = await this.execute(order, step, retried);
          this.recordStep(span, step.kind, order, events);
          return { events };
        } catch (error) {
          if (!(error instanceof StepFailure)) throw error;
          // Only undo steps (and a repeated reserve) get here: they are retried, with backoff.
          this.metrics.steps.inc({ step: step.kind, result: "retry" });
          recordError(span, error);
          span.setAttributes({ [SpanAttributes.sagaOutcome]: "retry" });
          return { failure: error };
        }
      },
    );
  }

  /** What a step did, on its span and in the metrics. */
  private recordStep(span: Span, step: NextStep["kind"], before: Order, events: OrderEventData[]): void {
    this.metrics.steps.inc({ step, result: "ok" });
    const after = events.reduce((state, e) => stateAfter(state, e), before.state);
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

  /** The business facts of what was just appended, in the metrics. */
  private recordAppended(order: Order, persistedBefore: number): void {
    const appended = order.history.filter((e) => e.sequence > persistedBefore);
    const before = order.history.find((e) => e.sequence === persistedBefore)?.stateAfter ?? "PENDING";
    const cancelling = [...order.history].reverse().find((e) => e.data.type === "CANCELLATION_REQUESTED");
    const started = order.state === "CANCELLED" && cancelling ? cancelling.occurredAt : order.createdAt;
    this.metrics.recordAppended(
      appended.map((e) => e.data),
      before,
      order.state,
      started,
    );
  }

  /** Runs one step and says what happened, as events; `retried`: a reserve's failure is thrown, to be retried. */
  private async execute(order: Order, step: Exclude<NextStep, { kind: "none" }>, retried = false): Promise<OrderEventData[]> {
    switch (step.kind) {
      case "reserve":
        return this.forward("reserve", retried, async () => {
          const outcome = await this.call("reserve", () => this.inventory.reserve(order.reservationId, order.items, this.settings.chargeBounds));
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
        return this.forward("charge", false, async () => {
          const request = this.chargeRequest(order);
          const outcome = await this.call("charge", () => this.payment.charge(request));
          switch (outcome.kind) {
            case "captured":
              return [{ type: "PAYMENT_CAPTURED", paymentId: outcome.paymentId }];
            case "declined":
              return [{ type: "PAYMENT_DECLINED", paymentId: outcome.paymentId, reason: outcome.reason }];
            case "refused":
              // Payment recorded nothing: as final as a decline, and nothing to refund.
              return [{ type: "PAYMENT_DECLINED", reason: outcome.reason }];
          }
        });
      case "commit":
        return this.forward("commit", false, async () => {
          await this.call("commit", () => this.inventory.commit(order.reservationId));
          return [{ type: "RESERVATION_COMMITTED" }, { type: "ORDER_CONFIRMED" }];
        });
      case "refund":
        return [await this.call("refund", () => this.refund(order, step.purpose))];
      case "release":
        return [{ type: "STOCK_RELEASED", detail: await this.call("release", () => this.releaseStock(order)) }];
      case "return": {
        const returned = await this.call("return", () => this.inventory.returnStock(order.reservationId));
        return [returned === "returned" ? { type: "STOCK_RETURNED" } : { type: "STOCK_RETURNED", detail: "nothing had been sold under the reservation" }];
      }
      case "finish":
        return [step.event];
    }
  }

  /**
   * A forward step: its failure is a fact of the order (STEP_FAILED, then
   * compensation), not something to retry here. The clients below have
   * already spent the step's retry budget.
   */
  private async forward(step: SagaStep, retried: boolean, run: () => Promise<OrderEventData[]>): Promise<OrderEventData[]> {
    try {
      return await run();
    } catch (error) {
      if (!(error instanceof StepFailure) || retried) throw error;
      return [{ type: "STEP_FAILED", step, reason: error.message.slice(0, 500) }];
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
      // because payment records one payment per key. Then refund what exists.
      const outcome = await this.payment.charge(this.chargeRequest(order));
      if (outcome.kind === "declined") {
        return { type: "PAYMENT_REFUNDED", paymentId: outcome.paymentId, refundedMinor: 0, detail: "the charge was declined: nothing was taken" };
      }
      if (outcome.kind === "refused") return { type: "PAYMENT_REFUNDED", paymentId: "", refundedMinor: 0, detail: `${outcome.reason}: nothing was taken` };
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
      const returned = await this.inventory.returnStock(order.reservationId);
      return returned === "returned" ? "reservation had been committed: stock returned" : "reservation released";
    }
    if (order.state === "COMPENSATING" && order.lines === undefined) {
      // Not found, and the reserve step's answer was lost: a reserve may
      // still be on its way. Reserving under the same id settles it (the
      // late one then finds this one), and the hold is released at once.
      const fenced = await this.inventory.reserve(order.reservationId, order.items, this.settings.chargeBounds);
      if (fenced.kind === "reserved") {
        await this.inventory.release(order.reservationId);
        return "late reservation fenced and released";
      }
    }
    return "nothing was reserved";
  }
}

/**
 * Periodically takes over sagas whose driver died (lease expired) and
 * drives them. It looks when the earliest lease it knows of runs out, at
 * most every `intervalMs` and at least once per lease: with no saga
 * running anywhere it asks the database once per lease period.
 */
export function sagaRecovery(
  saga: Saga,
  store: Pick<EventStore, "claimAbandoned">,
  settings: { owner: string; leaseMs: number; intervalMs: number; batch: number },
  logger: Logger,
): BackgroundTask {
  return {
    name: "saga-recovery",
    async run(signal) {
      while (!signal.aborted) {
        let waitMs = settings.leaseMs;
        try {
          const { claimed, nextLeaseEnd } = await store.claimAbandoned(settings.owner, settings.leaseMs, settings.batch);
          if (claimed.length > 0) logger.info({ orders: claimed.length }, "recovering abandoned sagas");
          for (const orderId of claimed) saga.start(orderId, "recovered");
          if (claimed.length === settings.batch) waitMs = 0;
          else if (nextLeaseEnd) waitMs = nextLeaseEnd.getTime() - Date.now();
        } catch (error) {
          logger.warn({ err: error }, "saga recovery scan failed; will retry");
          waitMs = 0;
        }
        await sleep(Math.min(settings.leaseMs, Math.max(settings.intervalMs, waitMs)), signal);
      }
      await saga.drained();
    },
  };
}

/** The service stopped while a driver's statement waited for the database. */
const STOPPED = Symbol("stopped");
