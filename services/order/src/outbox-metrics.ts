import { Counter, Gauge, Histogram, type Logger, type Registry } from "@meshcart/lib";
import type { OutboxStore } from "./outbox-store.js";

/** How long a scrape waits for the backlog query before it reports the last value. */
const BACKLOG_QUERY_BOUND_MS = 1_000;

/**
 * The outbox relay's figures. The backlog is read from the log at scrape
 * time, so every replica reports the same queue (dashboards take the max),
 * whichever of them holds the relay's lease.
 */
export class OutboxMetrics {
  /** Events the broker acknowledged, by result: stored, or duplicate (it had the event id already: a republication). */
  readonly published: Counter<"result">;
  /** Publications that failed (broker away, timeout); the event is published later. */
  readonly failures: Counter;
  /** From the event's commit to the broker's acknowledgement. */
  readonly delay: Histogram;
  private leader = false;

  constructor(registry: Registry, store: OutboxStore, logger: Logger) {
    const registers = [registry];
    this.published = new Counter({
      name: "meshcart_order_outbox_published_total",
      help: "Order events the broker acknowledged, by result (stored; duplicate: it had the event id already, a republication after a crash).",
      labelNames: ["result"],
      registers,
    });
    this.failures = new Counter({
      name: "meshcart_order_outbox_publish_failures_total",
      help: "Publications of order events that failed (broker unreachable, no acknowledgement in time); the event stays in the outbox and is published later.",
      registers,
    });
    this.delay = new Histogram({
      name: "meshcart_order_outbox_delay_seconds",
      help: "Time from an order event's commit to the broker's acknowledgement of its publication.",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    });
    let last = { waiting: 0, oldestSeconds: 0 };
    let reading: Promise<void> | undefined;
    // One query per scrape for both gauges.
    const read = () =>
      (reading ??= (async () => {
        let timer: NodeJS.Timeout | undefined;
        try {
          last = await Promise.race([
            store.backlog(),
            new Promise<never>((_, reject) => {
              timer = setTimeout(() => reject(new Error("outbox backlog query timed out")), BACKLOG_QUERY_BOUND_MS);
            }),
          ]);
        } catch (error) {
          logger.debug({ err: error }, "cannot read the outbox backlog; reporting the last value");
        } finally {
          clearTimeout(timer);
          setImmediate(() => (reading = undefined));
        }
      })());
    new Gauge({
      name: "meshcart_order_outbox_backlog_events",
      help: "Committed order events not yet published (the outbox relay's queue).",
      registers,
      async collect() {
        await read();
        this.set(last.waiting);
      },
    });
    new Gauge({
      name: "meshcart_order_outbox_oldest_age_seconds",
      help: "Age of the oldest committed order event not yet published; 0 when none waits.",
      registers,
      async collect() {
        await read();
        this.set(last.oldestSeconds);
      },
    });
    const leader = () => (this.leader ? 1 : 0);
    new Gauge({
      name: "meshcart_order_outbox_relay_leader",
      help: "1 while this replica holds the outbox relay's lease (one replica publishes at a time).",
      registers,
      collect() {
        this.set(leader());
      },
    });
    for (const result of ["stored", "duplicate"]) this.published.inc({ result }, 0);
  }

  setLeader(leader: boolean): void {
    this.leader = leader;
  }
}
