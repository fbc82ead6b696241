import { createHash, randomUUID } from "node:crypto";
import { isUniqueViolation, statement, type Database } from "@meshcart/lib";
import {
  fold,
  isFinal,
  type Order,
  type OrderEvent,
  type OrderEventData,
  type OrderItem,
  type OrderState,
  type OrderSummary,
  type PricedLine,
  reservationIdFor,
} from "./order-state.js";

export interface NewOrder {
  requestId: string;
  customerId: string;
  items: OrderItem[];
  paymentMethod: string;
}

/**
 * The call that started a saga run, kept with the run so that whoever
 * drives it (after a crash, another replica) continues its trace and its
 * correlation id.
 */
export interface SagaTrigger {
  /** W3C traceparent of the starting call's span. */
  traceparent?: string;
  correlationId?: string;
}

/** Where a saga run belongs: its trigger, and the trace that placed the order. */
export interface SagaContext extends SagaTrigger {
  orderTraceparent?: string;
}

/** Another writer appended to the order first. */
export class ConcurrentAppendError extends Error {
  override name = "ConcurrentAppendError";
}

export const NOTIFY_CHANNEL = "order_events";

/**
 * What happens to the order's saga run with an append:
 * - end: the order is final, the run is removed;
 * - renew: the driver keeps it, with a fresh lease;
 * - hand-over: the driver stops (shutdown); the lease runs out at once so
 *   another replica takes the run;
 * - start: work begins on a final order (a cancellation): a run is created
 *   for `owner`, with `trigger` as its context.
 */
export type RunChange =
  { run: "end" } | { run: "renew" | "hand-over"; leaseMs: number } | { run: "start"; owner: string; leaseMs: number; trigger?: SagaTrigger };

export interface AppendOptions {
  /**
   * The driver appending: the events are written only while it owns the
   * run (an append by a driver that lost its run writes nothing and
   * answers false). Absent for CancelOrder's append, which starts a run.
   */
  driver?: string;
  change: RunChange;
}

interface EventRow {
  sequence: number;
  type: string;
  state_after: OrderState;
  data: OrderEventData;
  occurred_at: Date;
}

/** Order-insensitive digest of what a CreateOrder asked for. */
export function requestDigest(order: NewOrder): string {
  const items = [...order.items].sort((a, b) => a.sku.localeCompare(b.sku)).map((i) => `${i.sku}:${i.quantity}`);
  return createHash("sha256")
    .update(JSON.stringify([order.customerId, order.paymentMethod, items]))
    .digest("hex");
}

// Each method is one statement (docs/order-saga.md, "What is persisted when").

/**
 * A new order: the projection row, its first event and its saga run, or,
 * when the request id exists already, that order's id and digest.
 */
const PLACE = statement(
  "order.place",
  `WITH placed AS (
     INSERT INTO orders (order_id, request_id, request_digest, customer_id, state, version, payment_method, lines, created_at, updated_at, traceparent)
     VALUES ($1, $2, $3, $4, 'PENDING', 1, $5, $6, $7, $7, $8)
     ON CONFLICT (request_id) DO NOTHING
     RETURNING order_id
   ),
   logged AS (
     INSERT INTO order_events (order_id, sequence, type, state_after, data, occurred_at)
     SELECT order_id, 1, 'ORDER_PLACED', 'PENDING', $9, $7 FROM placed
   ),
   run AS (
     INSERT INTO saga_runs (order_id, owner, lease_until, traceparent, correlation_id)
     SELECT order_id, $10, now() + make_interval(secs => $11::double precision / 1000), $8, $12 FROM placed
   )
   SELECT order_id, $3 AS request_digest, true AS created FROM placed
   UNION ALL
   SELECT order_id, request_digest, false FROM orders WHERE request_id = $2 AND NOT EXISTS (SELECT 1 FROM placed)`,
);

const FIND_BY_REQUEST = statement("order.find-by-request", "SELECT order_id, request_digest FROM orders WHERE request_id = $1");

/**
 * Appends events (a JSON array: sequence, type, state_after, data,
 * occurred_at), rewrites the projection, changes the saga run and tells
 * every replica (NOTIFY "<order id> <version> <writer> <state>"), in one statement. Two writers at the same
 * position collide on the log's primary key. With a driver ($2), nothing
 * is written unless it owns the run.
 * $1 order, $2 driver (NULL: anyone), $3 events, $4-$11 the projection,
 * $12 run change, $13 lease ms, $14 owner of a started run, $15/$16 its trigger.
 */
const APPEND = statement(
  "order.append",
  `WITH appended AS (
     INSERT INTO order_events (order_id, sequence, type, state_after, data, occurred_at)
     SELECT $1, e.sequence, e.type, e.state_after, e.data, e.occurred_at
     FROM jsonb_to_recordset($3::jsonb) AS e(sequence int, type text, state_after text, data jsonb, occurred_at timestamptz)
     WHERE $2::text IS NULL OR EXISTS (SELECT 1 FROM saga_runs WHERE order_id = $1 AND owner = $2)
     RETURNING sequence
   ),
   projected AS (
     UPDATE orders SET state = $4, version = $5, lines = $6, currency_code = $7, total_minor = $8, payment_id = $9, failure_reason = $10, updated_at = $11
     WHERE order_id = $1 AND EXISTS (SELECT 1 FROM appended)
   ),
   ended AS (
     DELETE FROM saga_runs WHERE order_id = $1 AND $12::text = 'end' AND EXISTS (SELECT 1 FROM appended)
   ),
   kept AS (
     UPDATE saga_runs
     SET lease_until = CASE WHEN $12::text = 'hand-over' THEN now() - interval '1 second' ELSE now() + make_interval(secs => $13::double precision / 1000) END
     WHERE order_id = $1 AND owner = $2 AND $12::text IN ('renew', 'hand-over') AND EXISTS (SELECT 1 FROM appended)
   ),
   started AS (
     INSERT INTO saga_runs (order_id, owner, lease_until, traceparent, correlation_id)
     SELECT $1, $14, now() + make_interval(secs => $13::double precision / 1000), $15, $16
     WHERE $12::text = 'start' AND EXISTS (SELECT 1 FROM appended)
     ON CONFLICT (order_id) DO UPDATE SET owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until,
       traceparent = EXCLUDED.traceparent, correlation_id = EXCLUDED.correlation_id
   )
   SELECT n AS appended, CASE WHEN n > 0 THEN pg_notify('${NOTIFY_CHANNEL}', $1 || ' ' || $5::text || ' ' || coalesce($2, $14, '') || ' ' || $4::text) END AS notified
   FROM (SELECT count(*)::int AS n FROM appended) a`,
);

/** An order's whole log with the context of its saga run (empty when it has none). */
const LOAD_RUN = statement(
  "order.load-run",
  `SELECT (SELECT json_agg(json_build_object('sequence', e.sequence, 'type', e.type, 'state_after', e.state_after, 'data', e.data,
                                             'occurred_at', e.occurred_at) ORDER BY e.sequence)
           FROM order_events e WHERE e.order_id = o.order_id) AS events,
          r.traceparent, r.correlation_id, o.traceparent AS order_traceparent
   FROM orders o LEFT JOIN saga_runs r USING (order_id) WHERE o.order_id = $1`,
);

const EVENTS_AFTER = statement(
  "order.events-after",
  `SELECT sequence, type, state_after, data, occurred_at FROM order_events WHERE order_id = $1 AND sequence > $2 ORDER BY sequence`,
);

const LIST_BY_CUSTOMER = statement(
  "order.list-by-customer",
  `SELECT * FROM orders WHERE customer_id = $1
     AND ($2::timestamptz IS NULL OR (created_at, order_id) < ($2::timestamptz, $3::text))
   ORDER BY created_at DESC, order_id DESC LIMIT $4`,
);

/**
 * Takes over runs whose lease ran out (at most $3), and says when the
 * earliest lease still running ends (the recovery task sleeps until then).
 */
const CLAIM_ABANDONED = statement(
  "order.claim-abandoned",
  `WITH claimed AS (
     UPDATE saga_runs SET owner = $1, lease_until = now() + make_interval(secs => $2::double precision / 1000)
     WHERE order_id IN (SELECT order_id FROM saga_runs WHERE lease_until < now() ORDER BY lease_until LIMIT $3 FOR UPDATE SKIP LOCKED)
     RETURNING order_id
   )
   SELECT order_id, NULL::timestamptz AS next_lease_end FROM claimed
   UNION ALL
   SELECT NULL, (SELECT min(lease_until) FROM saga_runs WHERE lease_until >= now() AND order_id NOT IN (SELECT order_id FROM claimed))`,
);

const CLAIM_OWN = statement(
  "order.claim-own",
  `UPDATE saga_runs SET lease_until = now() + make_interval(secs => $2::double precision / 1000) WHERE owner = $1 RETURNING order_id`,
);

const RENEW_LEASE = statement(
  "order.renew-lease",
  `UPDATE saga_runs SET lease_until = now() + make_interval(secs => $3::double precision / 1000) WHERE order_id = $1 AND owner = $2`,
);

const HAND_OVER = statement("order.hand-over", "UPDATE saga_runs SET lease_until = now() - interval '1 second' WHERE order_id = $1 AND owner = $2");

/**
 * Persistence of orders: the append-only event log, the projection kept in
 * the same statement, and the saga runs with their leases. Every method is
 * one statement.
 */
export class EventStore {
  constructor(private readonly db: Database) {}

  async findByRequestId(requestId: string): Promise<{ orderId: string; digest: string } | undefined> {
    const { rows } = await this.db.query<{ order_id: string; request_digest: string }>(FIND_BY_REQUEST, [requestId]);
    return rows[0] && { orderId: rows[0].order_id, digest: rows[0].request_digest };
  }

  /**
   * Persists a new order (PENDING) with its first event and a saga run held
   * by `owner`, and returns it as folded. When the request id exists
   * already (a replay, or a racing duplicate), nothing is written and that
   * order's id is returned instead.
   */
  async place(
    request: NewOrder,
    owner: string,
    leaseMs: number,
    trigger: SagaTrigger = {},
  ): Promise<{ orderId: string; digest: string; created: true; order: Order } | { orderId: string; digest: string; created: false }> {
    const digest = requestDigest(request);
    const orderId = `ord_${randomUUID().replaceAll("-", "")}`;
    const placed: OrderEventData = { type: "ORDER_PLACED", orderId, ...request };
    const now = new Date();
    const { rows } = await this.db.query<{ order_id: string; request_digest: string; created: boolean }>(PLACE, [
      orderId,
      request.requestId,
      digest,
      request.customerId,
      request.paymentMethod,
      JSON.stringify(request.items),
      now,
      trigger.traceparent ?? null,
      JSON.stringify(placed),
      owner,
      leaseMs,
      trigger.correlationId ?? null,
    ]);
    const row = rows[0];
    if (row?.created) return { orderId, digest, created: true, order: fold([{ sequence: 1, data: placed, stateAfter: "PENDING", occurredAt: now }]) };
    // A duplicate still in flight when this one tried: it has committed by now.
    const existing = row ? { orderId: row.order_id, digest: row.request_digest } : await this.findByRequestId(request.requestId);
    if (!existing) throw new Error(`order for request ${request.requestId} was neither placed nor found`);
    return { ...existing, created: false };
  }

  async load(orderId: string): Promise<Order | undefined> {
    const events = await this.eventsAfter(orderId, 0);
    return events.length ? fold(events) : undefined;
  }

  /** The order and the context of its saga run, for a driver that did not start it (recovery). */
  async loadRun(orderId: string): Promise<{ order: Order; context: SagaContext } | undefined> {
    const { rows } = await this.db.query<{
      events: (Omit<EventRow, "occurred_at"> & { occurred_at: string })[] | null;
      traceparent: string | null;
      correlation_id: string | null;
      order_traceparent: string | null;
    }>(LOAD_RUN, [orderId]);
    const row = rows[0];
    if (!row?.events?.length) return undefined;
    return {
      order: fold(row.events.map((e) => toEvent({ ...e, occurred_at: new Date(e.occurred_at) }))),
      context: {
        traceparent: row.traceparent ?? undefined,
        correlationId: row.correlation_id ?? undefined,
        orderTraceparent: row.order_traceparent ?? undefined,
      },
    };
  }

  async eventsAfter(orderId: string, sequence: number): Promise<OrderEvent[]> {
    const { rows } = await this.db.query<EventRow>(EVENTS_AFTER, [orderId, sequence]);
    return rows.map(toEvent);
  }

  /**
   * Appends `order`'s events after `expectedVersion` (the caller folded
   * them already: `order` is what the log says afterwards), rewrites the
   * projection from it, and changes the saga run, atomically. Fails with
   * ConcurrentAppendError when the log moved on; answers false (nothing
   * written) when `options.driver` no longer owns the run.
   */
  async append(order: Order, expectedVersion: number, options: AppendOptions): Promise<boolean> {
    const events = order.history.filter((e) => e.sequence > expectedVersion);
    if (events.length === 0) throw new Error(`nothing to append to order ${order.orderId} after version ${expectedVersion}`);
    if (isFinal(order.state) !== (options.change.run === "end")) {
      throw new Error(`order ${order.orderId} is ${order.state}: its run must ${isFinal(order.state) ? "end" : "not end"} with this append`);
    }
    const change = options.change;
    const lease = change.run === "end" ? null : change.leaseMs;
    const trigger = change.run === "start" ? (change.trigger ?? {}) : {};
    try {
      const { rows } = await this.db.query<{ appended: number }>(APPEND, [
        order.orderId,
        options.driver ?? null,
        JSON.stringify(
          events.map((e) => ({ sequence: e.sequence, type: e.data.type, state_after: e.stateAfter, data: e.data, occurred_at: e.occurredAt.toISOString() })),
        ),
        order.state,
        order.version,
        JSON.stringify(order.lines ?? order.items),
        order.currencyCode ?? null,
        order.totalMinor ?? null,
        order.paymentId ?? null,
        order.failureReason ?? null,
        order.updatedAt,
        change.run,
        lease,
        change.run === "start" ? change.owner : null,
        trigger.traceparent ?? null,
        trigger.correlationId ?? null,
      ]);
      return rows[0]!.appended > 0;
    } catch (error) {
      if (isUniqueViolation(error)) throw new ConcurrentAppendError(`order ${order.orderId} was appended to concurrently`);
      throw error;
    }
  }

  /** A page of a customer's orders from the projection, newest first. */
  async listByCustomer(customerId: string, limit: number, after?: { createdAt: string; orderId: string }): Promise<{ orders: OrderSummary[]; more: boolean }> {
    const { rows } = await this.db.query<ProjectionRow>(LIST_BY_CUSTOMER, [customerId, after?.createdAt ?? null, after?.orderId ?? null, limit + 1]);
    return { orders: rows.slice(0, limit).map(toSummary), more: rows.length > limit };
  }

  /**
   * Takes over sagas whose lease ran out (their driver died or stopped),
   * at most `limit`, each handed to one caller; and when the earliest lease
   * still running ends (undefined: there is none).
   */
  async claimAbandoned(owner: string, leaseMs: number, limit: number): Promise<{ claimed: string[]; nextLeaseEnd: Date | undefined }> {
    const { rows } = await this.db.query<{ order_id: string | null; next_lease_end: Date | null }>(CLAIM_ABANDONED, [owner, leaseMs, limit]);
    return {
      claimed: rows.flatMap((r) => (r.order_id ? [r.order_id] : [])),
      nextLeaseEnd: rows.find((r) => r.order_id === null)?.next_lease_end ?? undefined,
    };
  }

  /** Takes back the sagas `owner` held before a restart, whatever their lease. */
  async claimOwn(owner: string, leaseMs: number): Promise<string[]> {
    const { rows } = await this.db.query<{ order_id: string }>(CLAIM_OWN, [owner, leaseMs]);
    return rows.map((r) => r.order_id);
  }

  /** Extends the lease; false when another driver owns the saga now. */
  async renewLease(orderId: string, owner: string, leaseMs: number): Promise<boolean> {
    const result = await this.db.query(RENEW_LEASE, [orderId, owner, leaseMs]);
    return result.rowCount === 1;
  }

  /** Hands the saga back at once (on shutdown) so another driver takes it. */
  async releaseLease(orderId: string, owner: string): Promise<void> {
    await this.db.query(HAND_OVER, [orderId, owner]);
  }
}

interface ProjectionRow {
  order_id: string;
  request_id: string;
  customer_id: string;
  state: OrderState;
  payment_method: string;
  lines: (PricedLine | OrderItem)[];
  currency_code: string | null;
  total_minor: number | null;
  payment_id: string | null;
  failure_reason: string | null;
  created_at: Date;
  updated_at: Date;
}

function toSummary(row: ProjectionRow): OrderSummary {
  const priced = row.total_minor !== null;
  return {
    orderId: row.order_id,
    requestId: row.request_id,
    customerId: row.customer_id,
    state: row.state,
    paymentMethod: row.payment_method,
    items: row.lines.map((l) => ({ sku: l.sku, quantity: l.quantity })),
    lines: priced ? (row.lines as PricedLine[]) : undefined,
    reservationId: reservationIdFor(row.order_id),
    currencyCode: row.currency_code ?? undefined,
    totalMinor: row.total_minor ?? undefined,
    paymentId: row.payment_id ?? undefined,
    failureReason: row.failure_reason ?? undefined,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function toEvent(row: EventRow): OrderEvent {
  return { sequence: row.sequence, data: row.data, stateAfter: row.state_after, occurredAt: row.occurred_at };
}
