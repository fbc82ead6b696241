import {
  SpanAttributes,
  SpanKind,
  contextFromTraceparent,
  inSpan,
  type Logger,
} from "@meshcart/lib";
import { EventHeaders, messageHeaders } from "@meshcart/lib/events";
import { eventMessage } from "./event-messages.js";
import type { EventPublisher } from "./event-publisher.js";
import type { OutboxMetrics } from "./outbox-metrics.js";
import type { OutboxStore, UnpublishedEvent } from "./outbox-store.js";

/**
 * Chaos hooks for the crash tests, like the saga's (chaos.ts): the relay
 * kills its own process with SIGKILL
 * - `before:publish`: events are committed, none of the batch published;
 * - `after:publish`: the broker acknowledged the batch, nothing is marked
 *   published yet (the next relay publishes it all again).
 */
export const OUTBOX_CRASH_POINTS = ["before:publish", "after:publish"] as const;
export type OutboxCrashPoint = (typeof OUTBOX_CRASH_POINTS)[number];

export interface RelaySettings {
  /** This replica's name (the saga owner's): who holds the relay's lease. */
  owner: string;
  /** How long the lease lasts without renewal; another replica's relay takes over after it. */
  leaseMs: number;
  /** How often an idle relay looks for events another replica committed. */
  pollMs: number;
  /** Orders per batch (all of each order's unpublished events). */
  batchOrders: number;
  /** Orders published at once; each order's events one after the other. */
  concurrency: number;
  /** Longest wait between attempts while publishing fails. */
  retryMaxMs: number;
  crash?: (point: OutboxCrashPoint) => void;
}

const MESSAGE_TYPE = "meshcart.events.v1.OrderEvent";

/**
 * The transactional outbox's relay: publishes the order events others may
 * act on from the order log (the outbox is the log: no second write), and
 * marks them published once the broker has acknowledged them.
 *
 * - Nothing is lost: an event is marked only after the broker stored it;
 *   until then it stays in the queue, across broker outages and crashes.
 * - Nothing takes effect twice: a crash between the acknowledgement and the
 *   mark publishes the event again under the same id (Nats-Msg-Id), which
 *   the stream drops within its duplicate window and consumers skip by id.
 * - In order per order: an order's events go out one after the other, each
 *   only after the previous one was acknowledged, and a batch holds all of
 *   an order's waiting events. Different orders go out in parallel.
 * - Never in a checkout's way: the saga only appends to the log; the relay
 *   runs beside it, and a broker outage only lets the queue grow.
 *
 * One replica's relay publishes at a time (a lease in the database); the
 * others wait to take over. It wakes when this process appends a final
 * event, and polls for the other replicas' appends.
 */
export class OutboxRelay {
  private wakeUp: (() => void) | undefined;
  private woken = false;

  constructor(
    private readonly store: OutboxStore,
    private readonly publisher: EventPublisher,
    private readonly settings: RelaySettings,
    private readonly metrics: OutboxMetrics,
    private readonly logger: Logger,
  ) {}

  /** Something was committed that may need publishing: look now rather than at the next poll. */
  wake(): void {
    this.woken = true;
    this.wakeUp?.();
  }

  /** Runs until `signal` aborts; then gives the lease back. */
  async run(signal: AbortSignal): Promise<void> {
    let failures = 0;
    let leading = false;
    while (!signal.aborted) {
      try {
        const leader = await this.store.claim(this.settings.owner, this.settings.leaseMs);
        if (leader !== leading) {
          leading = leader;
          this.metrics.setLeader(leader);
          this.logger.info({ owner: this.settings.owner }, leader ? "outbox relay: publishing (holds the lease)" : "outbox relay: another replica publishes");
        }
        if (!leader) {
          await this.pause(this.settings.leaseMs / 3, signal, false);
          continue;
        }
        const batch = await this.store.next(this.settings.batchOrders);
        if (batch.length === 0) {
          failures = 0;
          await this.pause(this.settings.pollMs, signal, true);
          continue;
        }
        const failed = await this.publishBatch(batch);
        if (failed === 0) {
          if (failures > 0) this.logger.info({ events: batch.length }, "outbox relay: publishing again");
          failures = 0;
        } else {
          failures += 1;
          const wait = backoff(failures, this.settings.retryMaxMs);
          // Once when it starts failing, then every tenth attempt: an outage is one story, not a line per retry.
          if (failures === 1 || failures % 10 === 0) {
            this.logger.warn({ failed_events: failed, attempt: failures, retry_in_ms: wait }, "outbox relay: cannot publish; the events wait in the log");
          }
          await this.pause(wait, signal, false);
        }
      } catch (error) {
        // The database away: the relay waits like the rest of the service.
        failures += 1;
        if (failures === 1 || failures % 10 === 0) this.logger.warn({ err: error, attempt: failures }, "outbox relay: cannot read the outbox");
        await this.pause(backoff(failures, this.settings.retryMaxMs), signal, false);
      }
    }
    if (leading) {
      this.metrics.setLeader(false);
      await this.store.release(this.settings.owner).catch((error: unknown) => this.logger.warn({ err: error }, "outbox relay: could not hand the lease back"));
    }
  }

  /**
   * Publishes a batch, each order's events in sequence, and marks what the
   * broker acknowledged. An order stops at its first failure (its later
   * events must wait for it). Answers how many events failed.
   */
  private async publishBatch(batch: UnpublishedEvent[]): Promise<number> {
    const byOrder = new Map<string, UnpublishedEvent[]>();
    for (const event of batch) {
      const events = byOrder.get(event.orderId) ?? [];
      events.push(event);
      byOrder.set(event.orderId, events);
    }
    this.settings.crash?.("before:publish");
    const published: UnpublishedEvent[] = [];
    let failed = 0;
    const queue = [...byOrder.values()];
    const worker = async () => {
      for (let events = queue.shift(); events; events = queue.shift()) {
        for (const [index, event] of events.entries()) {
          if (await this.publish(event)) {
            published.push(event);
          } else {
            failed += events.length - index;
            break;
          }
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.settings.concurrency, queue.length) }, worker));
    if (published.length > 0) this.settings.crash?.("after:publish");
    await this.store.markPublished(published);
    return failed;
  }

  /** One event, in a producer span of the order's trace; false when the broker did not acknowledge it. */
  private async publish(event: UnpublishedEvent): Promise<boolean> {
    const message = eventMessage(event);
    try {
      const result = await inSpan(
        `publish ${message.subject}`,
        {
          kind: SpanKind.PRODUCER,
          // The order's trace (its placing call): the event's consumers'
          // work then shows in the same trace, after the saga's.
          parent: contextFromTraceparent(event.traceparent),
          attributes: {
            "messaging.system": "nats",
            "messaging.operation.type": "send",
            "messaging.operation.name": "publish",
            "messaging.destination.name": message.subject,
            "messaging.message.id": message.eventId,
            [SpanAttributes.orderId]: event.orderId,
          },
        },
        async (span) => {
          // Inside the span: its context is what the headers carry.
          const headers = messageHeaders({ [EventHeaders.messageType]: MESSAGE_TYPE, [EventHeaders.eventId]: message.eventId });
          const outcome = await this.publisher.publish(message, headers);
          span.setAttribute(SpanAttributes.replayed, outcome === "duplicate");
          return outcome;
        },
      );
      this.metrics.published.inc({ result });
      this.metrics.delay.observe(Math.max(0, (Date.now() - event.occurredAt.getTime()) / 1000));
      return true;
    } catch (error) {
      this.metrics.failures.inc();
      this.logger.debug({ err: error, event_id: message.eventId }, "outbox relay: publication failed");
      return false;
    }
  }

  /** Sleeps `ms`, or less when woken (if `wakeable`) or stopped. */
  private pause(ms: number, signal: AbortSignal, wakeable: boolean): Promise<void> {
    if (wakeable && this.woken) {
      this.woken = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        this.wakeUp = undefined;
        this.woken = false;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener("abort", done, { once: true });
      if (wakeable) this.wakeUp = done;
    });
  }
}

/** Jittered exponential backoff from 100 ms to `maxMs`. */
function backoff(attempt: number, maxMs: number): number {
  const ceiling = Math.min(maxMs, 100 * 2 ** Math.min(attempt, 16));
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}

/** The relay's crash hook: a no-op unless ORDER_OUTBOX_CRASH_POINT names a point. */
export function outboxCrashHook(target: OutboxCrashPoint | undefined, logger: Logger): ((point: OutboxCrashPoint) => void) | undefined {
  if (target === undefined) return undefined;
  logger.warn({ crash_point: target }, "chaos: ORDER_OUTBOX_CRASH_POINT is set; the process will kill itself there");
  return (point) => {
    if (point !== target) return;
    logger.warn({ crash_point: point }, "chaos: killing this process (SIGKILL)");
    process.kill(process.pid, "SIGKILL");
  };
}
