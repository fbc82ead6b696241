import { createHash, randomUUID } from "node:crypto";
import type pg from "pg";
import { isUniqueViolation, type Database } from "@meshcart/lib";
import {
  fold,
  isFinal,
  stateAfter,
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

/**
 * Persistence of orders: the append-only event log, the projection kept in
 * the same transaction, and the saga leases.
 */
export class EventStore {
  constructor(private readonly db: Database) {}

  async findByRequestId(requestId: string): Promise<{ orderId: string; digest: string } | undefined> {
    const { rows } = await this.db.query<{ order_id: string; request_digest: string }>(
      "SELECT order_id, request_digest FROM orders WHERE request_id = $1",
      [requestId],
    );
    return rows[0] && { orderId: rows[0].order_id, digest: rows[0].request_digest };
  }

  /**
   * Persists a new order (PENDING) with its first event and a saga lease
   * held by `owner`. When the request id exists already (a racing
   * duplicate), nothing is written and that order is returned instead.
   */
  async place(
    order: NewOrder,
    owner: string,
    leaseMs: number,
    trigger: SagaTrigger = {},
  ): Promise<{ orderId: string; digest: string; created: boolean }> {
    const digest = requestDigest(order);
    const orderId = `ord_${randomUUID().replaceAll("-", "")}`;
    try {
      await this.db.transaction(async (tx) => {
        const placed: OrderEventData = { type: "ORDER_PLACED", orderId, ...order };
        const now = new Date();
        await tx.query(
          `INSERT INTO orders (order_id, request_id, request_digest, customer_id, state, version, payment_method, lines, created_at, updated_at, traceparent)
           VALUES ($1, $2, $3, $4, 'PENDING', 1, $5, $6, $7, $7, $8)`,
          [orderId, order.requestId, digest, order.customerId, order.paymentMethod, JSON.stringify(order.items), now, trigger.traceparent ?? null],
        );
        await insertEvent(tx, orderId, 1, placed, "PENDING", now);
        await tx.query(
          `INSERT INTO saga_runs (order_id, owner, lease_until, traceparent, correlation_id)
           VALUES ($1, $2, now() + make_interval(secs => $3::double precision / 1000), $4, $5)`,
          [orderId, owner, leaseMs, trigger.traceparent ?? null, trigger.correlationId ?? null],
        );
        await tx.query("SELECT pg_notify($1, $2)", [NOTIFY_CHANNEL, orderId]);
      });
      return { orderId, digest, created: true };
    } catch (error) {
      if (!isUniqueViolation(error)) throw error;
      const existing = await this.findByRequestId(order.requestId);
      if (!existing) throw error;
      return { ...existing, created: false };
    }
  }

  async load(orderId: string): Promise<Order | undefined> {
    const events = await this.events(this.db.pool, orderId, 0);
    return events.length ? fold(events) : undefined;
  }

  async eventsAfter(orderId: string, sequence: number): Promise<OrderEvent[]> {
    return this.events(this.db.pool, orderId, sequence);
  }

  /**
   * Appends events at `expectedVersion + 1...` and updates the projection,
   * atomically. Fails with ConcurrentAppendError when the log moved on.
   * When the order becomes final its saga run is removed; `startRun`
   * (re)creates one for work that begins on a final order (cancellation).
   */
  async append(
    orderId: string,
    expectedVersion: number,
    newEvents: OrderEventData[],
    options: { startRun?: { owner: string; leaseMs: number; trigger?: SagaTrigger } } = {},
  ): Promise<Order> {
    try {
      return await this.db.transaction(async (tx) => {
        const events = await this.events(tx, orderId, 0);
        const current = fold(events);
        if (current.version !== expectedVersion) {
          throw new ConcurrentAppendError(`order ${orderId} is at ${current.version}, not ${expectedVersion}`);
        }
        let state: OrderState = current.state;
        let sequence = current.version;
        for (const data of newEvents) {
          state = stateAfter(state, data);
          sequence += 1;
          const occurredAt = new Date();
          await insertEvent(tx, orderId, sequence, data, state, occurredAt);
          events.push({ sequence, data, stateAfter: state, occurredAt });
        }
        const order = fold(events);
        await tx.query(
          `UPDATE orders SET state = $2, version = $3, lines = $4, currency_code = $5, total_minor = $6,
             payment_id = $7, failure_reason = $8, updated_at = $9 WHERE order_id = $1`,
          [
            orderId,
            order.state,
            order.version,
            JSON.stringify(order.lines ?? order.items),
            order.currencyCode ?? null,
            order.totalMinor ?? null,
            order.paymentId ?? null,
            order.failureReason ?? null,
            order.updatedAt,
          ],
        );
        if (isFinal(order.state)) {
          await tx.query("DELETE FROM saga_runs WHERE order_id = $1", [orderId]);
        } else if (options.startRun) {
          const trigger = options.startRun.trigger ?? {};
          await tx.query(
            `INSERT INTO saga_runs (order_id, owner, lease_until, traceparent, correlation_id)
             VALUES ($1, $2, now() + make_interval(secs => $3::double precision / 1000), $4, $5)
             ON CONFLICT (order_id) DO UPDATE SET owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until,
               traceparent = EXCLUDED.traceparent, correlation_id = EXCLUDED.correlation_id`,
            [orderId, options.startRun.owner, options.startRun.leaseMs, trigger.traceparent ?? null, trigger.correlationId ?? null],
          );
        }
        await tx.query("SELECT pg_notify($1, $2)", [NOTIFY_CHANNEL, orderId]);
        return order;
      });
    } catch (error) {
      if (isUniqueViolation(error)) throw new ConcurrentAppendError(`order ${orderId} was appended to concurrently`);
      throw error;
    }
  }

  /** A page of a customer's orders from the projection, newest first. */
  async listByCustomer(
    customerId: string,
    limit: number,
    after?: { createdAt: string; orderId: string },
  ): Promise<{ orders: OrderSummary[]; more: boolean }> {
    const { rows } = await this.db.query<ProjectionRow>(
      `SELECT * FROM orders WHERE customer_id = $1
         AND ($2::timestamptz IS NULL OR (created_at, order_id) < ($2::timestamptz, $3::text))
       ORDER BY created_at DESC, order_id DESC LIMIT $4`,
      [customerId, after?.createdAt ?? null, after?.orderId ?? null, limit + 1],
    );
    return { orders: rows.slice(0, limit).map(toSummary), more: rows.length > limit };
  }

  /**
   * Takes over sagas whose lease ran out (their driver died or stopped),
   * at most `limit`, and returns their ids. Each is handed to one caller.
   */
  async claimAbandoned(owner: string, leaseMs: number, limit: number): Promise<string[]> {
    const { rows } = await this.db.query<{ order_id: string }>(
      `UPDATE saga_runs SET owner = $1, lease_until = now() + make_interval(secs => $2::double precision / 1000)
       WHERE order_id IN (
         SELECT order_id FROM saga_runs WHERE lease_until < now() ORDER BY lease_until LIMIT $3 FOR UPDATE SKIP LOCKED
       ) RETURNING order_id`,
      [owner, leaseMs, limit],
    );
    return rows.map((r) => r.order_id);
  }

  /** Takes back the sagas `owner` held before a restart, whatever their lease. */
  async claimOwn(owner: string, leaseMs: number): Promise<string[]> {
    const { rows } = await this.db.query<{ order_id: string }>(
      `UPDATE saga_runs SET lease_until = now() + make_interval(secs => $2::double precision / 1000)
       WHERE owner = $1 RETURNING order_id`,
      [owner, leaseMs],
    );
    return rows.map((r) => r.order_id);
  }

  /** The trace and correlation id a saga run continues (empty for orders placed before they were kept). */
  async sagaContext(orderId: string): Promise<SagaContext> {
    const { rows } = await this.db.query<{ traceparent: string | null; correlation_id: string | null; order_traceparent: string | null }>(
      `SELECT r.traceparent, r.correlation_id, o.traceparent AS order_traceparent
       FROM orders o LEFT JOIN saga_runs r USING (order_id) WHERE o.order_id = $1`,
      [orderId],
    );
    const row = rows[0];
    return {
      traceparent: row?.traceparent ?? undefined,
      correlationId: row?.correlation_id ?? undefined,
      orderTraceparent: row?.order_traceparent ?? undefined,
    };
  }

  /** Extends the lease; false when another driver owns the saga now. */
  async renewLease(orderId: string, owner: string, leaseMs: number): Promise<boolean> {
    const result = await this.db.query(
      `UPDATE saga_runs SET lease_until = now() + make_interval(secs => $3::double precision / 1000)
       WHERE order_id = $1 AND owner = $2`,
      [orderId, owner, leaseMs],
    );
    return result.rowCount === 1;
  }

  /** Hands the saga back at once (on shutdown) so another driver takes it. */
  async releaseLease(orderId: string, owner: string): Promise<void> {
    await this.db.query("UPDATE saga_runs SET lease_until = now() - interval '1 second' WHERE order_id = $1 AND owner = $2", [
      orderId,
      owner,
    ]);
  }

  private async events(sql: pg.Pool | pg.PoolClient, orderId: string, after: number): Promise<OrderEvent[]> {
    const { rows } = await sql.query<EventRow>(
      `SELECT sequence, type, state_after, data, occurred_at FROM order_events
       WHERE order_id = $1 AND sequence > $2 ORDER BY sequence`,
      [orderId, after],
    );
    return rows.map(toEvent);
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

async function insertEvent(
  tx: pg.PoolClient,
  orderId: string,
  sequence: number,
  data: OrderEventData,
  state: OrderState,
  occurredAt: Date,
): Promise<void> {
  await tx.query(
    `INSERT INTO order_events (order_id, sequence, type, state_after, data, occurred_at) VALUES ($1, $2, $3, $4, $5, $6)`,
    [orderId, sequence, data.type, state, JSON.stringify(data), occurredAt],
  );
}
