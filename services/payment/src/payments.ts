import { randomUUID } from "node:crypto";
import { ConflictError, NotFoundError, RefusedError, execute, statement, type Database, type Sql } from "@meshcart/lib";
import {
  chargeDifferences,
  chargeOutcome,
  decideRefund,
  featuresOf,
  refundDifferences,
  type ChargeTerms,
  type DeclineReason,
  type Features,
  type PaymentStatus,
  type RefundRefusal,
  type RefundTerms,
} from "./rules.js";

export interface Refund {
  refundId: string;
  idempotencyKey: string;
  paymentId: string;
  /** Always the payment's currency. */
  currencyCode: string;
  amountMinor: number;
  reason: string;
  refundedByVersion: string;
  createdAt: Date;
}

export interface Payment {
  paymentId: string;
  idempotencyKey: string;
  orderId: string;
  customerId: string;
  currencyCode: string;
  amountMinor: number;
  paymentMethod: string;
  status: PaymentStatus;
  /** Set when `status` is DECLINED. */
  declineReason: DeclineReason | undefined;
  refundedMinor: number;
  /** Oldest first. */
  refunds: Refund[];
  chargedByVersion: string;
  createdAt: Date;
  updatedAt: Date;
}

export interface ChargeRequest extends ChargeTerms {
  idempotencyKey: string;
}

export interface RefundRequest extends RefundTerms {
  idempotencyKey: string;
}

export type PaymentFilter = { orderId: string } | { customerId: string };

export interface PaymentPage {
  /** Newest first. */
  payments: Payment[];
  /** Pass as `before` to get the next page; undefined on the last page. */
  next: number | undefined;
}

interface PaymentRow {
  payment_id: string;
  seq: number;
  idempotency_key: string;
  order_id: string;
  customer_id: string;
  currency_code: string;
  amount_minor: number;
  payment_method: string;
  status: PaymentStatus;
  decline_reason: DeclineReason | null;
  refunded_minor: number;
  charged_by_version: string;
  created_at: Date;
  updated_at: Date;
}

interface RefundRow {
  refund_id: string;
  idempotency_key: string;
  payment_id: string;
  amount_minor: number;
  requested_currency: string | null;
  requested_minor: number | null;
  reason: string;
  refunded_by_version: string;
  created_at: Date;
}

const PAYMENT_COLUMNS = `payment_id, seq, idempotency_key, order_id, customer_id, currency_code, amount_minor,
  payment_method, status, decline_reason, refunded_minor, charged_by_version, created_at, updated_at`;
const REFUND_COLUMNS = `refund_id, idempotency_key, payment_id, amount_minor, requested_currency, requested_minor,
  reason, refunded_by_version, created_at`;

/** A payment's refunds, oldest first, as JSON (`p` is the payments row). */
const REFUNDS_JSON = `(SELECT coalesce(json_agg(json_build_object(
    'refund_id', r.refund_id, 'idempotency_key', r.idempotency_key, 'payment_id', r.payment_id, 'amount_minor', r.amount_minor,
    'requested_currency', r.requested_currency, 'requested_minor', r.requested_minor, 'reason', r.reason,
    'refunded_by_version', r.refunded_by_version, 'created_at', r.created_at) ORDER BY r.seq), '[]')
  FROM refunds r WHERE r.payment_id = p.payment_id) AS refunds`;

/**
 * A charge in one statement: the payment is recorded unless its key was
 * used already, in which case the first payment is returned as it is now,
 * with its refunds. The unique key serialises racing calls with the same
 * key: the later one waits for the first to commit, then finds it (a race
 * lost to a call still in flight finds nothing here, and reads again).
 */
const CHARGE = statement(
  "payment.charge",
  `WITH charged AS (
     INSERT INTO payments (payment_id, idempotency_key, order_id, customer_id, currency_code, amount_minor,
       payment_method, status, decline_reason, charged_by_version)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
     ON CONFLICT (idempotency_key) DO NOTHING
     RETURNING ${PAYMENT_COLUMNS}
   )
   SELECT false AS replayed, c.*, '[]'::json AS refunds FROM charged c
   UNION ALL
   SELECT true, ${PAYMENT_COLUMNS.split(",")
     .map((c) => `p.${c.trim()}`)
     .join(", ")}, ${REFUNDS_JSON}
   FROM payments p WHERE p.idempotency_key = $2 AND NOT EXISTS (SELECT 1 FROM charged)`,
);

const PAYMENT_BY_ID = statement("payment.by-id", `SELECT ${PAYMENT_COLUMNS}, ${REFUNDS_JSON} FROM payments p WHERE p.payment_id = $1`);
const PAYMENT_BY_KEY = statement("payment.by-key", `SELECT ${PAYMENT_COLUMNS}, ${REFUNDS_JSON} FROM payments p WHERE p.idempotency_key = $1`);

/** Precondition violation types of refused refunds, as clients see them. */
const REFUSAL_TYPES: Record<RefundRefusal, string> = {
  DECLINED: "PAYMENT_DECLINED",
  CURRENCY: "CURRENCY_MISMATCH",
  NOTHING_LEFT: "NOTHING_LEFT_TO_REFUND",
  EXCEEDS_REMAINING: "REFUND_EXCEEDS_REMAINING",
};

/**
 * Payments and refunds over Postgres. Everything that makes a retry safe is
 * in the database (unique idempotency keys, locks, the rows themselves),
 * never in process memory: v1 and v2 share the database, and a retry may
 * land on either.
 *
 * Locking: each mutating call is one transaction that first takes a
 * transaction-scoped advisory lock on its idempotency key, so concurrent
 * calls with the same key run one after the other and the later ones find
 * the first one's committed result. A refund then locks its payment row, so
 * refunds of one payment under different keys also run one at a time and
 * each sees the refunded sum the previous one left. The order is always key
 * lock, then payment row, and a call holds one key lock, so no two calls
 * wait on each other in a cycle.
 */
export class Payments {
  /** What this version does differently (v2's risk screen), decided once from the version. */
  readonly features: Features;

  constructor(
    private readonly db: Database,
    /** Recorded on every charge and refund this process makes. */
    private readonly version: string,
  ) {
    this.features = featuresOf(version);
  }

  /**
   * Charges once per idempotency key. A decline is recorded like a capture
   * and is a normal result, not an error. The same key again returns the
   * first payment as it is now (`replayed`), or a ConflictError when it asks
   * for something else. A replay returns what the first call decided, even
   * when it ran on another version: a key charged by v1 stays captured when
   * its retry reaches v2's risk screen.
   */
  async charge(request: ChargeRequest): Promise<{ payment: Payment; replayed: boolean }> {
    // Decided up front (a pure rule), recorded only if the key is new.
    const outcome = chargeOutcome(request.paymentMethod, this.features);
    const { rows } = await this.db.query<PaymentRow & { replayed: boolean; refunds: RefundRow[] }>(CHARGE, [
      newId("pay"),
      request.idempotencyKey,
      request.orderId,
      request.customerId,
      request.currencyCode,
      request.amountMinor,
      request.paymentMethod,
      outcome.status,
      outcome.status === "DECLINED" ? outcome.reason : null,
      this.version,
    ]);
    let row = rows[0];
    if (!row) {
      // Lost the race to a call with the same key that was still in flight: it has committed now.
      const { rows: again } = await this.db.query<PaymentRow & { refunds: RefundRow[] }>(PAYMENT_BY_KEY, [request.idempotencyKey]);
      if (!again[0]) throw new Error(`payment with key ${request.idempotencyKey} was neither recorded nor found`);
      row = { ...again[0], replayed: true };
    }
    const payment = toPayment(row, row.refunds);
    if (!row.replayed) return { payment, replayed: false };
    const differences = chargeDifferences(payment, request);
    if (differences.length > 0) {
      throw new ConflictError(
        `idempotency key ${request.idempotencyKey} was already used for payment ${payment.paymentId} ` + `with a different ${differences.join(", ")}`,
      );
    }
    return { payment, replayed: true };
  }

  /**
   * Refunds once per idempotency key: `amount` undefined gives back
   * everything not yet refunded. Refused (RefusedError) for a declined
   * payment, another currency, or more than is left; NotFoundError for an
   * unknown payment; ConflictError when the key was used for another refund.
   */
  async refund(request: RefundRequest): Promise<{ refund: Refund; payment: Payment; replayed: boolean }> {
    return this.db.transaction(async (tx) => {
      await lockKey(tx, "refund", request.idempotencyKey);
      const { rows } = await tx.query<RefundRow>(`SELECT ${REFUND_COLUMNS} FROM refunds WHERE idempotency_key = $1`, [request.idempotencyKey]);
      const existing = rows[0];
      if (existing) {
        const differences = refundDifferences(refundTerms(existing), request);
        if (differences.length > 0) {
          throw new ConflictError(
            `idempotency key ${request.idempotencyKey} was already used for refund ${existing.refund_id} ` + `with a different ${differences.join(", ")}`,
          );
        }
        return { ...(await refundOf(tx, existing.payment_id, existing.refund_id)), replayed: true };
      }

      const payment = await loadPayment(tx, request.paymentId, { lock: true });
      if (!payment) throw new NotFoundError("payment", request.paymentId);
      const decision = decideRefund(payment, request.amount);
      if (decision.kind === "refuse") {
        throw new RefusedError(decision.reason, [{ type: REFUSAL_TYPES[decision.refusal], subject: payment.paymentId, description: decision.reason }]);
      }

      const refundId = newId("ref");
      await tx.query(
        `INSERT INTO refunds (refund_id, idempotency_key, payment_id, amount_minor, requested_currency, requested_minor,
           reason, refunded_by_version)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
        [
          refundId,
          request.idempotencyKey,
          payment.paymentId,
          decision.amountMinor,
          request.amount?.currencyCode ?? null,
          request.amount?.minorUnits ?? null,
          request.reason,
          this.version,
        ],
      );
      await tx.query("UPDATE payments SET refunded_minor = $2, status = $3, updated_at = now() WHERE payment_id = $1", [
        payment.paymentId,
        decision.refundedMinor,
        decision.status,
      ]);
      return { ...(await refundOf(tx, payment.paymentId, refundId)), replayed: false };
    });
  }

  async get(paymentId: string): Promise<Payment> {
    const { rows } = await this.db.query<PaymentRow & { refunds: RefundRow[] }>(PAYMENT_BY_ID, [paymentId]);
    if (!rows[0]) throw new NotFoundError("payment", paymentId);
    return toPayment(rows[0], rows[0].refunds);
  }

  /** One page of an order's or a customer's payments, newest first, older than `before` when given. */
  async list(filter: PaymentFilter, limit: number, before?: number): Promise<PaymentPage> {
    const [column, value] = "orderId" in filter ? ["order_id", filter.orderId] : ["customer_id", filter.customerId];
    const { rows } = await this.db.query<PaymentRow>(
      `SELECT ${PAYMENT_COLUMNS} FROM payments
       WHERE ${column} = $1 AND ($2::bigint IS NULL OR seq < $2)
       ORDER BY seq DESC LIMIT $3`,
      [value, before ?? null, limit + 1],
    );
    const page = rows.slice(0, limit);
    const refunds = await loadRefunds(
      this.db.pool,
      page.map((row) => row.payment_id),
    );
    return {
      payments: page.map((row) => toPayment(row, refunds.get(row.payment_id) ?? [])),
      next: rows.length > limit ? page.at(-1)?.seq : undefined,
    };
  }
}

function newId(prefix: "pay" | "ref"): string {
  return `${prefix}_${randomUUID().replaceAll("-", "")}`;
}

/**
 * Serialises every call with this key until the transaction ends; a racing
 * duplicate waits here and then reads the first call's committed rows (read
 * committed takes a new snapshot for each statement after the lock).
 */
async function lockKey(tx: Sql, kind: "refund", key: string): Promise<void> {
  await tx.query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [`payment:${kind}:${key}`]);
}

const PAYMENT_FOR_UPDATE = statement("payment.by-id-for-update", `SELECT ${PAYMENT_COLUMNS} FROM payments WHERE payment_id = $1 FOR UPDATE`);

/** A payment with its refunds; locked (for a refund) when `lock`. */
async function loadPayment(sql: Sql, paymentId: string, options: { lock?: boolean } = {}): Promise<Payment | undefined> {
  if (!options.lock) {
    const { rows } = await execute<PaymentRow & { refunds: RefundRow[] }>(sql, PAYMENT_BY_ID, [paymentId]);
    return rows[0] && toPayment(rows[0], rows[0].refunds);
  }
  const { rows } = await execute<PaymentRow>(sql, PAYMENT_FOR_UPDATE, [paymentId]);
  const row = rows[0];
  if (!row) return undefined;
  const refunds = await loadRefunds(sql, [row.payment_id]);
  return toPayment(row, refunds.get(row.payment_id) ?? []);
}

/** The refunds of `paymentIds`, each payment's oldest first. */
async function loadRefunds(sql: Sql, paymentIds: string[]): Promise<Map<string, RefundRow[]>> {
  const byPayment = new Map<string, RefundRow[]>();
  if (paymentIds.length === 0) return byPayment;
  const { rows } = await sql.query<RefundRow>(`SELECT ${REFUND_COLUMNS} FROM refunds WHERE payment_id = ANY($1::text[]) ORDER BY payment_id, seq`, [
    paymentIds,
  ]);
  for (const row of rows) {
    const list = byPayment.get(row.payment_id);
    if (list) list.push(row);
    else byPayment.set(row.payment_id, [row]);
  }
  return byPayment;
}

/** A refund with its payment as it is now. */
async function refundOf(sql: Sql, paymentId: string, refundId: string): Promise<{ refund: Refund; payment: Payment }> {
  const payment = (await loadPayment(sql, paymentId))!;
  const refund = payment.refunds.find((r) => r.refundId === refundId)!;
  return { refund, payment };
}

function refundTerms(row: RefundRow): RefundTerms {
  return {
    paymentId: row.payment_id,
    amount:
      row.requested_currency !== null && row.requested_minor !== null ? { currencyCode: row.requested_currency, minorUnits: row.requested_minor } : undefined,
    reason: row.reason,
  };
}

function toPayment(row: PaymentRow, refunds: RefundRow[]): Payment {
  return {
    paymentId: row.payment_id,
    idempotencyKey: row.idempotency_key,
    orderId: row.order_id,
    customerId: row.customer_id,
    currencyCode: row.currency_code,
    amountMinor: row.amount_minor,
    paymentMethod: row.payment_method,
    status: row.status,
    declineReason: row.decline_reason ?? undefined,
    refundedMinor: row.refunded_minor,
    // From a JSON column (REFUNDS_JSON) the numbers and times come as JSON has them.
    refunds: refunds.map((r) => ({
      refundId: r.refund_id,
      idempotencyKey: r.idempotency_key,
      paymentId: r.payment_id,
      currencyCode: row.currency_code,
      amountMinor: Number(r.amount_minor),
      reason: r.reason,
      refundedByVersion: r.refunded_by_version,
      createdAt: new Date(r.created_at),
    })),
    chargedByVersion: row.charged_by_version,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
