import { Counter, Gauge, Histogram, type Logger, type Registry } from "@meshcart/lib";
import { DECISION_OUTCOMES, type ShipmentState } from "./shipment-state.js";

/** A scrape never waits longer than this for a query or the broker. */
const SCRAPE_BOUND_MS = 1_000;

const STATES: readonly ShipmentState[] = ["PENDING", "PACKED", "SHIPPED", "CANCELLED"];
const KINDS = ["confirmed", "cancelled"] as const;

export interface ConsumerLag {
  /** Messages of the stream the consumer has not been handed yet. */
  undelivered: number;
  /** Messages handed out and not acknowledged yet. */
  unacknowledged: number;
}

/**
 * Fulfillment's figures: what the consumer did with the order events, how
 * far behind the stream it is, what it gave up on, and the shipments by
 * state. Shipments and lag are read at scrape time (every replica reports
 * the same: dashboards take the max).
 */
export class FulfillmentMetrics {
  /** Order events handled, by kind and outcome (duplicate: its id was handled before). */
  readonly events: Counter<"kind" | "outcome">;
  /** Deliveries that were redeliveries (after a NAK, a crash before the ack, an ack timeout). */
  readonly redeliveries: Counter;
  /** Deliveries that failed, by whether a retry may help (transient) or not (failing). */
  readonly failures: Counter<"class">;
  /** Messages given up on and published to the dead-letter subject. */
  readonly deadLetters: Counter;
  /** From the order event's commit to its effect here. */
  readonly delay: Histogram;
  /** The timer's steps: packed, shipped. */
  readonly steps: Counter<"step">;
  private connected = false;

  constructor(
    registry: Registry,
    sources: {
      counts: () => Promise<{ byState: Partial<Record<ShipmentState, number>>; lateCancellations: number }>;
      lag: () => Promise<ConsumerLag | undefined>;
    },
    logger: Logger,
  ) {
    const registers = [registry];
    this.events = new Counter({
      name: "meshcart_fulfillment_events_total",
      help: "Order events handled, by kind (confirmed, cancelled) and outcome (created, cancelled, cancel_too_late, cancelled_before_confirmation, unchanged; duplicate: the event id was handled before).",
      labelNames: ["kind", "outcome"],
      registers,
    });
    this.redeliveries = new Counter({
      name: "meshcart_fulfillment_redeliveries_total",
      help: "Order event deliveries that were redeliveries (after a failed attempt, or a crash before the acknowledgement).",
      registers,
    });
    this.failures = new Counter({
      name: "meshcart_fulfillment_delivery_failures_total",
      help: "Order event deliveries that failed and were handed back for a retry, by class (transient: the database away; failing: retrying may not help).",
      labelNames: ["class"],
      registers,
    });
    this.deadLetters = new Counter({
      name: "meshcart_fulfillment_dead_letters_total",
      help: "Messages given up on after FULFILLMENT_MAX_DELIVERIES failed attempts and published to meshcart.deadletter.fulfillment.",
      registers,
    });
    this.delay = new Histogram({
      name: "meshcart_fulfillment_event_delay_seconds",
      help: "Time from an order event's commit in the order service to its effect here (outbox, broker and consumer together).",
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    });
    this.steps = new Counter({
      name: "meshcart_fulfillment_timer_steps_total",
      help: "Shipments moved on by the timer, by step (packed, shipped).",
      labelNames: ["step"],
      registers,
    });

    let counts = { byState: {} as Partial<Record<ShipmentState, number>>, lateCancellations: 0 };
    let countsRead: Promise<void> | undefined;
    const readCounts = () =>
      (countsRead ??= bounded(sources.counts())
        .then(
          (value) => void (counts = value),
          (error: unknown) => logger.debug({ err: error }, "shipment counts not read for /metrics; keeping the last ones"),
        )
        .finally(() => setImmediate(() => (countsRead = undefined))));
    new Gauge({
      name: "meshcart_fulfillment_shipments",
      help: "Shipments by state (PENDING, PACKED, SHIPPED, CANCELLED).",
      labelNames: ["state"],
      registers,
      async collect() {
        await readCounts();
        for (const state of STATES) this.set({ state }, counts.byState[state] ?? 0);
      },
    });
    new Gauge({
      name: "meshcart_fulfillment_late_cancellations",
      help: "Shipped shipments whose order's cancellation arrived after the parcel had left (recorded, not applied).",
      registers,
      async collect() {
        await readCounts();
        this.set(counts.lateCancellations);
      },
    });

    let lag: ConsumerLag | undefined;
    let lagRead: Promise<void> | undefined;
    const readLag = () =>
      (lagRead ??= bounded(sources.lag())
        .then(
          (value) => void (lag = value),
          (error: unknown) => {
            lag = undefined;
            logger.debug({ err: error }, "consumer lag not read for /metrics");
          },
        )
        .finally(() => setImmediate(() => (lagRead = undefined))));
    new Gauge({
      name: "meshcart_fulfillment_consumer_pending_messages",
      help: "The durable consumer's lag: order events not delivered yet (undelivered) and delivered but not acknowledged (unacknowledged); absent while the broker does not answer.",
      labelNames: ["kind"],
      registers,
      async collect() {
        await readLag();
        this.reset();
        if (!lag) return;
        this.set({ kind: "undelivered" }, lag.undelivered);
        this.set({ kind: "unacknowledged" }, lag.unacknowledged);
      },
    });
    const connected = () => (this.connected ? 1 : 0);
    new Gauge({
      name: "meshcart_fulfillment_broker_connected",
      help: "1 while the consumer is connected to the broker.",
      registers,
      collect() {
        this.set(connected());
      },
    });

    // Every series from the start, so rates and dashboards see zeros rather than nothing.
    for (const kind of KINDS) {
      for (const outcome of [...DECISION_OUTCOMES, "duplicate"]) this.events.inc({ kind, outcome }, 0);
    }
    for (const kind of ["transient", "failing"]) this.failures.inc({ class: kind }, 0);
    for (const step of ["packed", "shipped"]) this.steps.inc({ step }, 0);
  }

  setConnected(connected: boolean): void {
    this.connected = connected;
  }
}

function bounded<T>(promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${SCRAPE_BOUND_MS} ms`)), SCRAPE_BOUND_MS);
    }),
  ]).finally(() => clearTimeout(timer));
}
