import type pg from "pg";
import { execute, statement, type Database } from "@meshcart/lib";
import {
  advance,
  decide,
  type Decision,
  type OrderFact,
  type Shipment,
  type ShipmentHistoryEntry,
  type ShipmentState,
  type Timings,
} from "./shipment-state.js";

const RECORD_EVENT = statement(
  "fulfillment.record-event",
  `INSERT INTO processed_events (event_id, subject, order_id, outcome) VALUES ($1, $2, $3, 'pending')
   ON CONFLICT (event_id) DO NOTHING RETURNING event_id`,
);
const SET_OUTCOME = statement("fulfillment.set-outcome", "UPDATE processed_events SET outcome = $2 WHERE event_id = $1");
const LOCK_BY_ORDER = statement("fulfillment.lock-by-order", "SELECT * FROM shipments WHERE order_id = $1 FOR UPDATE");
const INSERT_SHIPMENT = statement(
  "fulfillment.insert-shipment",
  `INSERT INTO shipments (shipment_id, order_id, customer_id, state, version, lines, tracking_number, cancelled_too_late, next_step_at, traceparent, created_at, updated_at)
   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
);
const UPDATE_SHIPMENT = statement(
  "fulfillment.update-shipment",
  `UPDATE shipments SET state = $2, version = $3, tracking_number = $4, cancelled_too_late = $5, next_step_at = $6, updated_at = $7
   WHERE shipment_id = $1 AND version = $3 - 1`,
);
const INSERT_ENTRY = statement(
  "fulfillment.insert-entry",
  `INSERT INTO shipment_events (shipment_id, sequence, type, state_after, detail, occurred_at, event_id) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
);
/** The earliest due shipment nobody else is moving, locked. */
const LOCK_DUE = statement("fulfillment.lock-due", "SELECT * FROM shipments WHERE next_step_at <= now() ORDER BY next_step_at LIMIT 1 FOR UPDATE SKIP LOCKED");
/** In how many milliseconds the earliest shipment is due (by the database's clock, which LOCK_DUE compares with). */
const NEXT_DUE = statement(
  "fulfillment.next-due",
  "SELECT (extract(epoch FROM min(next_step_at) - now()) * 1000)::double precision AS in_ms FROM shipments WHERE next_step_at IS NOT NULL",
);
const BY_ORDER = statement("fulfillment.by-order", "SELECT * FROM shipments WHERE order_id = $1");
const HISTORY_AFTER = statement(
  "fulfillment.history-after",
  `SELECT e.sequence, e.type, e.state_after, e.detail, e.occurred_at FROM shipment_events e JOIN shipments s USING (shipment_id)
   WHERE s.order_id = $1 AND e.sequence > $2 ORDER BY e.sequence`,
);
const LIST = statement(
  "fulfillment.list",
  `SELECT * FROM shipments WHERE ($1::text IS NULL OR state = $1)
     AND ($2::timestamptz IS NULL OR (created_at, shipment_id) < ($2::timestamptz, $3::text))
   ORDER BY created_at DESC, shipment_id DESC LIMIT $4`,
);
const COUNTS = statement(
  "fulfillment.counts",
  "SELECT state, count(*)::int AS n, count(*) FILTER (WHERE cancelled_too_late)::int AS late FROM shipments GROUP BY state",
);
const DEAD_LETTER = statement(
  "fulfillment.dead-letter",
  `INSERT INTO dead_letters (stream_sequence, subject, event_id, order_id, attempts, reason) VALUES ($1, $2, $3, $4, $5, $6)
   ON CONFLICT (stream_sequence) DO NOTHING`,
);

interface ShipmentRow {
  shipment_id: string;
  order_id: string;
  customer_id: string;
  state: ShipmentState;
  version: number;
  lines: { sku: string; quantity: number }[];
  tracking_number: string | null;
  cancelled_too_late: boolean;
  next_step_at: Date | null;
  traceparent: string | null;
  created_at: Date;
  updated_at: Date;
}

interface EntryRow {
  sequence: number;
  type: ShipmentHistoryEntry["type"];
  state_after: ShipmentState;
  detail: string;
  occurred_at: Date;
}

/** What applying an order event did: nothing (its id was handled before), or what the rules decided. */
export type Applied = { duplicate: true } | ({ duplicate: false } & Decision);

/**
 * Fulfillment's persistence. Every change of a shipment and its history
 * entry are written in one transaction; an order event's effect and its id
 * in processed_events too, so an event is applied once however often it is
 * delivered.
 */
export class ShipmentStore {
  constructor(private readonly db: Database) {}

  /**
   * Applies an order event, once per event id: a known id changes nothing
   * and answers `duplicate`. Concurrent events of one order take turns on
   * the shipment's row.
   */
  async apply(fact: OrderFact, subject: string, timings: Timings, traceparent?: string): Promise<Applied> {
    return this.db.transaction(async (client) => {
      const recorded = await execute(client, RECORD_EVENT, [fact.eventId, subject, fact.orderId]);
      if (recorded.rowCount === 0) return { duplicate: true } as const;
      const { rows } = await execute<ShipmentRow>(client, LOCK_BY_ORDER, [fact.orderId]);
      const decision = decide(rows[0] ? toShipment(rows[0]) : undefined, fact, new Date(), timings, traceparent);
      if (decision.outcome !== "unchanged") {
        await (rows[0] ? this.update(client, decision.shipment) : this.insert(client, decision.shipment));
        await this.append(client, decision.shipment.shipmentId, decision.entry, fact.eventId);
      }
      await execute(client, SET_OUTCOME, [fact.eventId, decision.outcome]);
      return { duplicate: false as const, ...decision };
    });
  }

  /** Moves the earliest due shipment one step on; undefined when none is due (or all are being moved). */
  async advanceOne(timings: Timings): Promise<{ shipment: Shipment; entry: ShipmentHistoryEntry } | undefined> {
    return this.db.transaction(async (client) => {
      const { rows } = await execute<ShipmentRow>(client, LOCK_DUE);
      if (!rows[0]) return undefined;
      const current = toShipment(rows[0]);
      const step = advance(current, new Date(), timings);
      if (!step) throw new Error(`shipment ${current.shipmentId} is due but ${current.state.toLowerCase()}`);
      await this.update(client, step.shipment);
      await this.append(client, step.shipment.shipmentId, step.entry, null);
      return step;
    });
  }

  /** In how many milliseconds the earliest shipment is due (0 or less: due now); undefined when none waits for the timer. */
  async nextDueInMs(): Promise<number | undefined> {
    const { rows } = await this.db.query<{ in_ms: number | null }>(NEXT_DUE);
    return rows[0]?.in_ms ?? undefined;
  }

  async byOrder(orderId: string): Promise<Shipment | undefined> {
    const { rows } = await this.db.query<ShipmentRow>(BY_ORDER, [orderId]);
    return rows[0] ? toShipment(rows[0]) : undefined;
  }

  async historyAfter(orderId: string, sequence: number): Promise<ShipmentHistoryEntry[]> {
    const { rows } = await this.db.query<EntryRow>(HISTORY_AFTER, [orderId, sequence]);
    return rows.map((row) => ({ sequence: row.sequence, type: row.type, stateAfter: row.state_after, detail: row.detail, occurredAt: row.occurred_at }));
  }

  /** A page of shipments, newest first. */
  async list(
    limit: number,
    state: ShipmentState | undefined,
    after?: { createdAt: string; shipmentId: string },
  ): Promise<{ shipments: Shipment[]; more: boolean }> {
    const { rows } = await this.db.query<ShipmentRow>(LIST, [state ?? null, after?.createdAt ?? null, after?.shipmentId ?? null, limit + 1]);
    return { shipments: rows.slice(0, limit).map(toShipment), more: rows.length > limit };
  }

  /** Shipments by state, and how many carry a late cancellation. */
  async counts(): Promise<{ byState: Partial<Record<ShipmentState, number>>; lateCancellations: number }> {
    const { rows } = await this.db.query<{ state: ShipmentState; n: number; late: number }>(COUNTS);
    return {
      byState: Object.fromEntries(rows.map((row) => [row.state, row.n])),
      lateCancellations: rows.reduce((sum, row) => sum + row.late, 0),
    };
  }

  async recordDeadLetter(letter: {
    streamSequence: number;
    subject: string;
    eventId?: string;
    orderId?: string;
    attempts: number;
    reason: string;
  }): Promise<void> {
    await this.db.query(DEAD_LETTER, [letter.streamSequence, letter.subject, letter.eventId ?? null, letter.orderId ?? null, letter.attempts, letter.reason]);
  }

  private async insert(client: pg.PoolClient, s: Shipment): Promise<void> {
    await execute(client, INSERT_SHIPMENT, [
      s.shipmentId,
      s.orderId,
      s.customerId,
      s.state,
      s.version,
      JSON.stringify(s.lines),
      s.trackingNumber ?? null,
      s.cancelledTooLate,
      s.nextStepAt ?? null,
      s.traceparent ?? null,
      s.createdAt,
      s.updatedAt,
    ]);
  }

  private async update(client: pg.PoolClient, s: Shipment): Promise<void> {
    const result = await execute(client, UPDATE_SHIPMENT, [
      s.shipmentId,
      s.state,
      s.version,
      s.trackingNumber ?? null,
      s.cancelledTooLate,
      s.nextStepAt ?? null,
      s.updatedAt,
    ]);
    // The row is locked: another version means a bug, not a race.
    if (result.rowCount !== 1) throw new Error(`shipment ${s.shipmentId} is not at version ${s.version - 1}`);
  }

  private async append(client: pg.PoolClient, shipmentId: string, e: ShipmentHistoryEntry, eventId: string | null): Promise<void> {
    await execute(client, INSERT_ENTRY, [shipmentId, e.sequence, e.type, e.stateAfter, e.detail, e.occurredAt, eventId]);
  }
}

function toShipment(row: ShipmentRow): Shipment {
  return {
    shipmentId: row.shipment_id,
    orderId: row.order_id,
    customerId: row.customer_id,
    state: row.state,
    version: row.version,
    lines: row.lines.map((line) => ({ sku: line.sku, quantity: line.quantity })),
    trackingNumber: row.tracking_number ?? undefined,
    cancelledTooLate: row.cancelled_too_late,
    nextStepAt: row.next_step_at ?? undefined,
    traceparent: row.traceparent ?? undefined,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
