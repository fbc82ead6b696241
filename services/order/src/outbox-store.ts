import { statement, type Database } from "@meshcart/lib";
import type { OrderEventType } from "./order-state.js";

/**
 * The events of the order log that others may act on, hence published: the
 * final ones. Written out in the statements below (and in the partial index
 * of migrations/003_outbox.sql, which they must match for Postgres to use
 * it).
 */
export const PUBLISHED_EVENT_TYPES = ["ORDER_CONFIRMED", "ORDER_CANCELLED", "ORDER_REJECTED", "ORDER_FAILED"] as const satisfies readonly OrderEventType[];
export type PublishedEventType = (typeof PUBLISHED_EVENT_TYPES)[number];

const TYPES = PUBLISHED_EVENT_TYPES.map((type) => `'${type}'`).join(", ");
/** The partial index's predicate, on the events of `alias` when given. */
function unpublished(alias?: string): string {
  const column = (name: string) => (alias ? `${alias}.${name}` : name);
  return `${column("published_at")} IS NULL AND ${column("type")} IN (${TYPES})`;
}

/** A committed event waiting to be published, with what its message needs of the order. */
export interface UnpublishedEvent {
  orderId: string;
  sequence: number;
  type: PublishedEventType;
  occurredAt: Date;
  customerId: string;
  /** Rejection or failure reason; the cancellation's reason for ORDER_CANCELLED. */
  reason: string;
  lines: { sku: string; quantity: number }[];
  currencyCode: string | null;
  totalMinor: number | null;
  paymentId: string | null;
  /** The placing call's span: the order's trace, which the publication joins. */
  traceparent: string | null;
}

/** Takes or keeps the relay's lease: true when `owner` holds it now. */
const CLAIM = statement(
  "order.outbox-claim",
  `INSERT INTO outbox_relay (name, owner, lease_until) VALUES ('orders', $1, now() + make_interval(secs => $2::double precision / 1000))
   ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until
   WHERE outbox_relay.owner = EXCLUDED.owner OR outbox_relay.lease_until < now()
   RETURNING owner`,
);

/** Gives the lease up at once (shutdown), so another replica takes over without waiting for it to run out. */
const RELEASE = statement("order.outbox-release", "UPDATE outbox_relay SET lease_until = now() - interval '1 second' WHERE name = 'orders' AND owner = $1");

/**
 * Every unpublished event of the $1 orders whose oldest unpublished event
 * is oldest. All of an order's, so that a later event never goes out
 * without the earlier ones: the events of an order are published in
 * sequence order.
 */
const NEXT = statement(
  "order.outbox-next",
  `WITH due AS (
     SELECT order_id, min(occurred_at) AS since FROM order_events WHERE ${unpublished()}
     GROUP BY order_id ORDER BY since LIMIT $1
   )
   SELECT e.order_id, e.sequence, e.type, e.occurred_at, o.customer_id,
          coalesce(e.data->>'reason', CASE WHEN e.type = 'ORDER_CANCELLED' THEN o.failure_reason END, '') AS reason,
          o.lines, o.currency_code, o.total_minor, o.payment_id, o.traceparent
   FROM order_events e JOIN due USING (order_id) JOIN orders o USING (order_id)
   WHERE ${unpublished("e")}
   ORDER BY due.since, e.order_id, e.sequence`,
);

const MARK = statement(
  "order.outbox-mark",
  `UPDATE order_events SET published_at = now()
   WHERE (order_id, sequence) IN (SELECT * FROM unnest($1::text[], $2::int[])) AND published_at IS NULL`,
);

/** Whether anything waits: an idle relay's look, one probe of the partial index. */
const ANY = statement("order.outbox-any", `SELECT EXISTS (SELECT 1 FROM order_events WHERE ${unpublished()}) AS any`);

/** The relay's queue: how many events wait, and since when the oldest. */
const BACKLOG = statement(
  "order.outbox-backlog",
  `SELECT count(*)::int AS waiting, extract(epoch FROM now() - min(occurred_at))::double precision AS oldest_seconds
   FROM order_events WHERE ${unpublished()}`,
);

interface NextRow {
  order_id: string;
  sequence: number;
  type: PublishedEventType;
  occurred_at: Date;
  customer_id: string;
  reason: string;
  lines: { sku: string; quantity: number }[];
  currency_code: string | null;
  total_minor: number | null;
  payment_id: string | null;
  traceparent: string | null;
}

/** The outbox side of the order database: the relay's lease, its queue, and the marks. */
export class OutboxStore {
  constructor(private readonly db: Database) {}

  async claim(owner: string, leaseMs: number): Promise<boolean> {
    const { rows } = await this.db.query<{ owner: string }>(CLAIM, [owner, leaseMs]);
    return rows.length === 1;
  }

  async release(owner: string): Promise<void> {
    await this.db.query(RELEASE, [owner]);
  }

  /** The unpublished events of at most `orders` orders, each order's in sequence order. */
  async next(orders: number): Promise<UnpublishedEvent[]> {
    const { rows } = await this.db.query<NextRow>(NEXT, [orders]);
    return rows.map((row) => ({
      orderId: row.order_id,
      sequence: row.sequence,
      type: row.type,
      occurredAt: row.occurred_at,
      customerId: row.customer_id,
      reason: row.reason,
      lines: row.lines.map((line) => ({ sku: line.sku, quantity: line.quantity })),
      currencyCode: row.currency_code === null ? null : row.currency_code.trim(),
      totalMinor: row.total_minor,
      paymentId: row.payment_id,
      traceparent: row.traceparent,
    }));
  }

  async anyUnpublished(): Promise<boolean> {
    const { rows } = await this.db.query<{ any: boolean }>(ANY);
    return rows[0]?.any ?? false;
  }

  /** Marks events the broker acknowledged; marking one twice changes nothing. */
  async markPublished(events: readonly Pick<UnpublishedEvent, "orderId" | "sequence">[]): Promise<void> {
    if (events.length === 0) return;
    await this.db.query(MARK, [events.map((e) => e.orderId), events.map((e) => e.sequence)]);
  }

  async backlog(): Promise<{ waiting: number; oldestSeconds: number }> {
    const { rows } = await this.db.query<{ waiting: number; oldest_seconds: number | null }>(BACKLOG);
    return { waiting: rows[0]?.waiting ?? 0, oldestSeconds: Math.max(0, rows[0]?.oldest_seconds ?? 0) };
  }
}
