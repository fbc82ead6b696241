import { AckPolicy, DeliverPolicy, JetStreamApiError, jetstream, jetstreamManager, type JetStreamClient, type JsMsg } from "@nats-io/jetstream";
import { headers as newHeaders } from "@nats-io/transport-node";
import { SpanAttributes, SpanKind, activeTraceparent, inSpan, isTransientDatabaseError, type BackgroundTask, type Logger } from "@meshcart/lib";
import {
  DEAD_LETTERS,
  EventHeaders,
  ORDER_EVENTS,
  connectBroker,
  deadLetterSubject,
  ensureStream,
  messageTraceContext,
  orderEventSubject,
  pause,
  type NatsConnection,
} from "@meshcart/lib/events";
import { OrderEvent } from "@meshcart/contracts/meshcart/events/v1/order_events.js";
import type { ConsumerLag, FulfillmentMetrics } from "./metrics.js";
import type { ShipmentChanges } from "./shipment-changes.js";
import type { OrderFact, Timings } from "./shipment-state.js";
import type { ShipmentStore } from "./shipment-store.js";

/** The durable consumer's name: its position in the stream survives restarts, and replicas share it. */
export const CONSUMER = "fulfillment";
/** What fulfillment acts on; rejected and failed orders never had a shipment. */
export const SUBJECTS = [orderEventSubject("confirmed"), orderEventSubject("cancelled")];

/**
 * Chaos hooks for the crash tests: the consumer kills its own process with
 * SIGKILL
 * - `before:apply`: the event was delivered, nothing written;
 * - `after:apply`: its effect is committed, the message not acknowledged
 *   (the broker redelivers it; its id is found and nothing changes).
 */
export const CONSUMER_CRASH_POINTS = ["before:apply", "after:apply"] as const;
export type ConsumerCrashPoint = (typeof CONSUMER_CRASH_POINTS)[number];

export interface ConsumerSettings {
  url: string;
  timings: Timings;
  /** Deliveries of a message that keeps failing (not for a transient reason) before it is dead-lettered. */
  maxDeliveries: number;
  /** How long the broker waits for an acknowledgement before it redelivers. */
  ackWaitMs: number;
  crash?: (point: ConsumerCrashPoint) => void;
}

export interface ConsumerDeps {
  store: ShipmentStore;
  changes: ShipmentChanges;
  metrics: FulfillmentMetrics;
  /** A shipment was created: the timer has a new deadline. */
  created: () => void;
  logger: Logger;
}

/** An event that can never be applied, whatever the retries: it is dead-lettered after the attempts. */
export class InvalidEventError extends Error {
  override name = "InvalidEventError";
}

const MS = 1_000_000;

/**
 * The order events as fulfillment reacts to them (choreography: nobody
 * tells it to ship). A durable JetStream pull consumer over the confirmed
 * and cancelled subjects, with explicit acknowledgements:
 *
 * - a message is acknowledged only after its effect is committed, together
 *   with its event id (processed_events): redelivered after a crash or a
 *   failure, it changes nothing the second time;
 * - a failure hands it back (NAK) with a growing delay; the database being
 *   away is waited out however long it lasts; any other failure is tried
 *   `maxDeliveries` times, then the message goes to the dead-letter subject
 *   (meshcart.deadletter.fulfillment, and the dead_letters table), is
 *   counted and logged, and is terminated so it is not delivered again;
 * - its work joins the order's trace: the span is a child of the publishing
 *   span named in the message's traceparent header.
 */
export class EventConsumer {
  private connection: NatsConnection | undefined;
  private js: JetStreamClient | undefined;

  constructor(
    private readonly settings: ConsumerSettings,
    private readonly deps: ConsumerDeps,
  ) {}

  /** The consumer's lag, asked of the broker (for /metrics); undefined when not connected. */
  async lag(): Promise<ConsumerLag | undefined> {
    if (!this.js) return undefined;
    const info = await (await this.js.consumers.get(ORDER_EVENTS.name, CONSUMER)).info();
    return { undelivered: info.num_pending, unacknowledged: info.num_ack_pending };
  }

  task(): BackgroundTask {
    return { name: "order-events-consumer", run: (signal) => this.run(signal) };
  }

  private async run(signal: AbortSignal): Promise<void> {
    const { logger, metrics } = this.deps;
    let connection: NatsConnection;
    try {
      connection = await connectBroker(this.settings.url, "fulfillment", logger, signal);
    } catch (error) {
      if (signal.aborted) return;
      throw error;
    }
    this.connection = connection;
    metrics.setConnected(true);
    void (async () => {
      for await (const status of connection.status()) {
        if (status.type === "disconnect") metrics.setConnected(false);
        if (status.type === "reconnect") metrics.setConnected(true);
      }
    })();
    this.js = jetstream(connection);
    try {
      for (let attempt = 1; !signal.aborted; attempt++) {
        try {
          await this.ensureConsumer();
          attempt = 0;
          await this.consume(signal);
        } catch (error) {
          if (signal.aborted) break;
          const wait = Math.min(250 * 2 ** Math.min(attempt, 5), 5_000);
          if (attempt === 1 || attempt % 10 === 0) logger.warn({ err: error, retry_in_ms: wait }, "order events consumer: not consuming; starting again");
          await pause(wait, signal);
        }
      }
    } finally {
      metrics.setConnected(false);
      await connection.drain().catch(() => connection.close());
    }
  }

  /** The streams and the durable consumer, created or brought to this definition (idempotent: every start does it). */
  private async ensureConsumer(): Promise<void> {
    const jsm = await jetstreamManager(this.connection!);
    await ensureStream(jsm, ORDER_EVENTS);
    await ensureStream(jsm, DEAD_LETTERS);
    const config = {
      durable_name: CONSUMER,
      description: "fulfillment: ships confirmed orders, cancels the shipments of cancelled ones",
      ack_policy: AckPolicy.Explicit,
      // From the stream's beginning for a new consumer: a fresh fulfillment
      // database catches up on the orders still in the stream.
      deliver_policy: DeliverPolicy.All,
      filter_subjects: SUBJECTS,
      ack_wait: this.settings.ackWaitMs * MS,
      // Dead letters are counted here (a message that fails for good is
      // published to the dead-letter subject and terminated), not by the
      // broker: its max_deliver would drop them with an advisory only.
      max_deliver: -1,
      max_ack_pending: 256,
    };
    try {
      await jsm.consumers.add(ORDER_EVENTS.name, config);
    } catch (error) {
      // 10148: it exists with another configuration (an older one).
      if (!(error instanceof JetStreamApiError && error.code === 10148)) throw error;
      const { durable_name: _name, deliver_policy: _policy, ...updatable } = config;
      await jsm.consumers.update(ORDER_EVENTS.name, CONSUMER, updatable);
    }
  }

  /** Handles messages one at a time until `signal` aborts or the consumer goes missing. */
  private async consume(signal: AbortSignal): Promise<void> {
    const consumer = await this.js!.consumers.get(ORDER_EVENTS.name, CONSUMER);
    const messages = await consumer.consume({ max_messages: 64, abort_on_missing_resource: true });
    const stop = () => void messages.stop();
    signal.addEventListener("abort", stop, { once: true });
    try {
      for await (const message of messages) {
        await this.handle(message);
        if (signal.aborted) break;
      }
    } finally {
      signal.removeEventListener("abort", stop);
      await messages.close().catch(() => undefined);
    }
  }

  private async handle(message: JsMsg): Promise<void> {
    const { metrics, logger } = this.deps;
    if (message.redelivered) metrics.redeliveries.inc();
    const attempt = message.info.deliveryCount;
    await inSpan(
      `process ${message.subject}`,
      {
        kind: SpanKind.CONSUMER,
        // A child of the publication: the order's trace goes on across the broker.
        parent: messageTraceContext(message.headers),
        attributes: {
          "messaging.system": "nats",
          "messaging.operation.type": "process",
          "messaging.destination.name": message.subject,
          "messaging.consumer.group.name": CONSUMER,
          "messaging.message.id": message.headers?.get("Nats-Msg-Id") ?? "",
          "messaging.nats.delivery_count": attempt,
          "messaging.nats.stream_sequence": message.info.streamSequence,
        },
      },
      async (span) => {
        let fact: OrderFact | undefined;
        try {
          const read = readEvent(message);
          fact = read.fact;
          span.setAttribute(SpanAttributes.orderId, fact.orderId);
          this.settings.crash?.("before:apply");
          const applied = await this.deps.store.apply(fact, message.subject, this.settings.timings, activeTraceparent());
          this.settings.crash?.("after:apply");
          message.ack();
          const outcome = applied.duplicate ? "duplicate" : applied.outcome;
          span.setAttribute("meshcart.fulfillment.outcome", outcome);
          metrics.events.inc({ kind: fact.kind, outcome });
          if (!applied.duplicate && applied.outcome !== "unchanged") {
            this.deps.changes.changed(fact.orderId);
            if (applied.outcome === "created") this.deps.created();
            logger.info(
              { order_id: fact.orderId, event_id: fact.eventId, outcome, shipment_id: applied.shipment.shipmentId },
              `order ${fact.kind}: shipment ${outcome.replaceAll("_", " ")}`,
            );
          } else if (applied.duplicate) {
            logger.info({ order_id: fact.orderId, event_id: fact.eventId, attempt }, "order event handled before: nothing to do");
          }
          if (read.occurredAt && !applied.duplicate) metrics.delay.observe(Math.max(0, (Date.now() - read.occurredAt.getTime()) / 1000));
        } catch (error) {
          await this.failed(message, error, fact);
          throw error;
        }
      },
    ).catch(() => undefined);
  }

  /** Hands a failed delivery back for a retry, or dead-letters it once it has failed too often. */
  private async failed(message: JsMsg, error: unknown, fact: OrderFact | undefined): Promise<void> {
    const { metrics, logger } = this.deps;
    const attempt = message.info.deliveryCount;
    const transient = isTransientDatabaseError(error);
    metrics.failures.inc({ class: transient ? "transient" : "failing" });
    if (!transient && attempt >= this.settings.maxDeliveries) {
      await this.deadLetter(message, error, fact);
      return;
    }
    const delay = Math.min(200 * 2 ** Math.min(attempt - 1, 10), transient ? 5_000 : 10_000);
    message.nak(delay);
    logger.warn(
      { err: error, subject: message.subject, stream_sequence: message.info.streamSequence, event_id: fact?.eventId, attempt, retry_in_ms: delay },
      transient
        ? "order event not handled: the database is away; it comes back"
        : `order event not handled (attempt ${attempt} of ${this.settings.maxDeliveries})`,
    );
  }

  private async deadLetter(message: JsMsg, error: unknown, fact: OrderFact | undefined): Promise<void> {
    const { metrics, logger, store } = this.deps;
    const attempts = message.info.deliveryCount;
    const reason = error instanceof Error ? error.message : String(error);
    try {
      // The original's headers (its trace context among them), less its
      // Nats-Msg-Id, which would make the dead-letter stream drop it.
      const out = newHeaders();
      for (const [key, values] of message.headers ?? []) {
        if (key !== "Nats-Msg-Id" && values[0] !== undefined) out.set(key, values[0]);
      }
      out.set(EventHeaders.deadLetterSubject, message.subject);
      out.set(EventHeaders.deadLetterSequence, String(message.info.streamSequence));
      out.set(EventHeaders.deadLetterAttempts, String(attempts));
      out.set(EventHeaders.deadLetterReason, reason.slice(0, 512));
      await this.js!.publish(deadLetterSubject(CONSUMER), message.data, {
        // The original's place in its stream: a second dead-lettering of it is dropped.
        msgID: `${CONSUMER}.${message.info.streamSequence}`,
        headers: out,
        expect: { streamName: DEAD_LETTERS.name },
      });
    } catch (publishError) {
      // Not given up on until it is safely elsewhere: try again later.
      message.nak(5_000);
      logger.warn({ err: publishError, stream_sequence: message.info.streamSequence }, "cannot publish a dead letter yet; the message comes back");
      return;
    }
    await store
      .recordDeadLetter({
        streamSequence: message.info.streamSequence,
        subject: message.subject,
        eventId: fact?.eventId,
        orderId: fact?.orderId,
        attempts,
        reason,
      })
      .catch((recordError: unknown) => logger.warn({ err: recordError }, "dead letter published but not recorded in the database"));
    message.term(`dead-lettered after ${attempts} attempts: ${reason}`.slice(0, 256));
    metrics.deadLetters.inc();
    logger.error(
      {
        err: error,
        subject: message.subject,
        stream_sequence: message.info.streamSequence,
        event_id: fact?.eventId,
        order_id: fact?.orderId,
        attempts,
        dead_letter_subject: deadLetterSubject(CONSUMER),
      },
      `order event given up after ${attempts} attempts: dead-lettered`,
    );
  }
}

/** The fact a message carries and when it happened, or InvalidEventError: an event that can never be applied. */
export function readEvent(message: Pick<JsMsg, "subject" | "data">): { fact: OrderFact; occurredAt: Date | undefined } {
  let event: OrderEvent;
  try {
    event = OrderEvent.decode(message.data);
  } catch (error) {
    throw new InvalidEventError(`not a meshcart.events.v1.OrderEvent: ${error instanceof Error ? error.message : String(error)}`);
  }
  const problems: string[] = [];
  if (!event.eventId) problems.push("event_id is empty");
  if (!event.orderId) problems.push("order_id is empty");
  if (!event.customerId) problems.push("customer_id is empty");
  const kind = event.payload?.$case;
  if (kind === undefined) problems.push("no payload");
  else if (message.subject !== orderEventSubject(kind)) problems.push(`a ${kind} event on ${message.subject}`);
  if (event.payload?.$case === "confirmed") {
    const lines = event.payload.value.lines;
    if (lines.length === 0) problems.push("a confirmation without lines");
    if (lines.some((line) => !line.sku || !(line.quantity > 0))) problems.push("a line without a SKU or a quantity");
  }
  if (problems.length > 0) throw new InvalidEventError(`invalid order event: ${problems.join("; ")}`);
  const base = { eventId: event.eventId, orderId: event.orderId, customerId: event.customerId };
  switch (event.payload?.$case) {
    case "confirmed":
      return {
        fact: { kind: "confirmed", ...base, lines: event.payload.value.lines.map((line) => ({ sku: line.sku, quantity: line.quantity })) },
        occurredAt: event.occurredAt,
      };
    case "cancelled":
      return { fact: { kind: "cancelled", ...base, reason: event.payload.value.reason }, occurredAt: event.occurredAt };
    default:
      throw new InvalidEventError(`fulfillment does not act on ${event.payload?.$case ?? "unknown"} events`);
  }
}

/** The consumer's crash hook: a no-op unless FULFILLMENT_CRASH_POINT names a point. */
export function consumerCrashHook(target: ConsumerCrashPoint | undefined, logger: Logger): ((point: ConsumerCrashPoint) => void) | undefined {
  if (target === undefined) return undefined;
  logger.warn({ crash_point: target }, "chaos: FULFILLMENT_CRASH_POINT is set; the process will kill itself there");
  return (point) => {
    if (point !== target) return;
    logger.warn({ crash_point: point }, "chaos: killing this process (SIGKILL)");
    process.kill(process.pid, "SIGKILL");
  };
}
