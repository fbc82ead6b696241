import { SpanAttributes, SpanKind, contextFromTraceparent, inSpan, type Logger } from "@meshcart/lib";
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
  /**
   * How long an idle relay waits before one cheap look of its own for
   * unpublished events. News wakes it at once (this replica's final
   * appends, the other replicas' through the order notifier), so this only
   * bounds the delay after news was lost.
   */
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
 * others wait to take over. An idle relay asks nothing of the database:
 * it sleeps until news (`wake`: a final event appended here, or by another
 * replica as the order notifier hears), with one cheap look every
 * `pollMs` in case news was lost, and holds the lease only while it has
 * work (it renews it with every batch and lets it lapse when idle: the
 * first relay woken by the next news takes it).
 */
export class OutboxRelay {
  private wakeUp: (() => void) | undefined;
  private woken = false;
  private leading = false;
  /** When this relay last claimed or renewed the lease (its clock). */
  private claimedAt = 0;

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
    // Events may wait from before this relay started: look at once.
    let news = true;
    while (!signal.aborted) {
      try {
        if (!news) {
          news = await this.store.anyUnpublished();
          if (!news) {
            news = await this.idle(signal);
            continue;
          }
        }
        const leader = await this.store.claim(this.settings.owner, this.settings.leaseMs);
        this.lead(leader);
        if (!leader) {
          // A claim cannot succeed before the holder's lease runs out; then
          // a look says whether there is anything left to take over.
          await this.pause(this.settings.leaseMs / 3, signal, false);
          news = false;
          continue;
        }
        const batch = await this.store.next(this.settings.batchOrders);
        if (batch.length === 0) {
          failures = 0;
          news = await this.idle(signal);
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
    if (this.leading) {
      this.lead(false);
      await this.store.release(this.settings.owner).catch((error: unknown) => this.logger.warn({ err: error }, "outbox relay: could not hand the lease back"));
    }
  }

  /**
   * Waits for news or the safety look (`pollMs`); true when woken by news.
   * The lease held is not renewed meanwhile: once it has run out, this
   * replica no longer counts as the publisher.
   */
  private async idle(signal: AbortSignal): Promise<boolean> {
    const until = Date.now() + this.settings.pollMs;
    const leaseEnds = this.claimedAt + this.settings.leaseMs;
    if (this.leading && leaseEnds < until) {
      if (await this.pause(leaseEnds - Date.now(), signal, true)) return true;
      this.lead(false);
    }
    return this.pause(until - Date.now(), signal, true);
  }

  private lead(leader: boolean): void {
    if (leader) this.claimedAt = Date.now();
    if (leader === this.leading) return;
    this.leading = leader;
    this.metrics.setLeader(leader);
    // Debug: the lease moves with every pause longer than it, which is no news to an operator (the gauge shows who holds it).
    this.logger.debug(
      { owner: this.settings.owner },
      leader ? "outbox relay: publishing (holds the lease)" : "outbox relay: not publishing (another replica may)",
    );
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

  /**
   * Sleeps `ms`, or less when stopped or (if `wakeable`) woken; answers
   * whether it was woken. A wake while not wakeable is kept for the next
   * wakeable pause.
   */
  private pause(ms: number, signal: AbortSignal, wakeable: boolean): Promise<boolean> {
    if (wakeable && this.woken) {
      this.woken = false;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      if (signal.aborted) return resolve(false);
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        const woken = wakeable && this.woken;
        if (wakeable) {
          this.wakeUp = undefined;
          this.woken = false;
        }
        resolve(woken);
      };
      const timer = setTimeout(done, Math.max(0, ms));
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
