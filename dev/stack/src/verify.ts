import pg from "pg";

/**
 * The cross-service invariants of meshcart, checked against the databases
 * (`make verify`). Each service guards its own rules with transactions and
 * CHECK constraints; only a reconciliation across the databases shows that
 * the saga kept them consistent with each other, and that the order events
 * reached fulfillment: published from the outbox, applied once each.
 */

export interface DatabaseUrls {
  order: string;
  payment: string;
  inventory: string;
  /** With it, the order events and the shipments are reconciled too. */
  fulfillment?: string;
}

export interface OrderRow {
  order_id: string;
  state: string;
  has_live_saga: boolean;
}

export interface PaymentRow {
  payment_id: string;
  order_id: string;
  status: string;
  amount_minor: number;
  refunded_minor: number;
  refunds_sum: number;
}

export interface ReservationRow {
  reservation_id: string;
  state: string;
}

export interface ProductRow {
  sku: string;
  initial: number;
  restocked: number;
  on_hand: number;
  reserved: number;
  sold: number;
  held_lines: number;
  committed_lines: number;
}

/** An order event that others may act on, in the order log (the outbox). */
export interface PublishedEventRow {
  order_id: string;
  sequence: number;
  type: string;
  published: boolean;
}

export interface ShipmentRow {
  order_id: string;
  shipment_id: string;
  state: string;
  cancelled_too_late: boolean;
}

/** A shipment history entry that an order event caused. */
export interface AppliedRow {
  event_id: string;
  shipment_id: string;
  type: string;
}

export interface DeadLetterRow {
  stream_sequence: number;
  subject: string;
  event_id: string | null;
  reason: string;
}

/** What fulfillment holds, and what the order log says was published. */
export interface EventsSnapshot {
  events: PublishedEventRow[];
  shipments: ShipmentRow[];
  /** processed_events: every order event fulfillment handled, by id. */
  processed: { event_id: string; outcome: string }[];
  applied: AppliedRow[];
  deadLetters: DeadLetterRow[];
}

export interface Snapshot {
  orders: OrderRow[];
  payments: PaymentRow[];
  reservations: ReservationRow[];
  products: ProductRow[];
  /** Present when fulfillment's database was read. */
  fulfillment?: EventsSnapshot;
}

export interface Report {
  checked: { orders: number; payments: number; reservations: number; products: number; shipments?: number; events?: number };
  /** Orders by state, for the report. */
  states: Record<string, number>;
  violations: string[];
  /**
   * Order events still on their way, which is not a violation while the
   * services run: committed and not yet published (the outbox), or
   * published and not yet applied by fulfillment. Settled, there are none.
   */
  pending: string[];
}

const FINAL = new Set(["CONFIRMED", "REJECTED", "FAILED", "CANCELLED"]);
const CAPTURING = new Set(["CAPTURED", "PARTIALLY_REFUNDED", "REFUNDED"]);

/** The saga's reservation id for an order (docs/order-saga.md). */
function reservationOf(orderId: string): string {
  return `${orderId}.stock`;
}

export function checkInvariants(snapshot: Snapshot): Report {
  const violations: string[] = [];
  const states: Record<string, number> = {};
  const paymentsByOrder = new Map<string, PaymentRow[]>();
  for (const payment of snapshot.payments) {
    const list = paymentsByOrder.get(payment.order_id) ?? [];
    list.push(payment);
    paymentsByOrder.set(payment.order_id, list);
  }
  const reservations = new Map(snapshot.reservations.map((r) => [r.reservation_id, r.state]));
  const orderIds = new Set(snapshot.orders.map((o) => o.order_id));

  for (const order of snapshot.orders) {
    states[order.state] = (states[order.state] ?? 0) + 1;
    const payments = paymentsByOrder.get(order.order_id) ?? [];
    const captured = payments.filter((p) => CAPTURING.has(p.status));
    const net = captured.reduce((sum, p) => sum + p.amount_minor - p.refunded_minor, 0);
    const reservation = reservations.get(reservationOf(order.order_id));
    const where = `order ${order.order_id} (${order.state})`;

    if (!FINAL.has(order.state)) {
      if (!order.has_live_saga) violations.push(`${where} is unfinished and no saga will resume it`);
      continue;
    }
    if (order.state === "CONFIRMED") {
      if (captured.length !== 1) violations.push(`${where} has ${captured.length} captured charges, not exactly one`);
      else if (captured[0]!.refunded_minor !== 0) violations.push(`${where} has a refunded charge`);
      if (reservation !== "COMMITTED") violations.push(`${where} has reservation state ${reservation ?? "none"}, not COMMITTED`);
    } else {
      if (net !== 0) violations.push(`${where} has a net charge of ${net}`);
      if (reservation === "HELD" || reservation === "COMMITTED") {
        violations.push(`${where} still holds stock (reservation ${reservation})`);
      }
    }
  }

  for (const payment of snapshot.payments) {
    if (!orderIds.has(payment.order_id)) {
      violations.push(`payment ${payment.payment_id} references order ${payment.order_id}, which does not exist`);
    }
    if (payment.refunded_minor > payment.amount_minor || payment.refunds_sum > payment.amount_minor) {
      violations.push(`payment ${payment.payment_id} refunded more than it charged`);
    }
    if (payment.refunds_sum !== payment.refunded_minor) {
      violations.push(`payment ${payment.payment_id} records ${payment.refunded_minor} refunded but its refunds add up to ${payment.refunds_sum}`);
    }
  }

  for (const product of snapshot.products) {
    const where = `SKU ${product.sku}`;
    if (product.initial + product.restocked !== product.on_hand + product.sold) {
      violations.push(`${where}: initial + restocked (${product.initial + product.restocked}) != on_hand + sold (${product.on_hand + product.sold})`);
    }
    if (product.reserved < 0 || product.reserved > product.on_hand) {
      violations.push(`${where}: reserved ${product.reserved} is outside 0..on_hand (${product.on_hand})`);
    }
    if (product.reserved !== product.held_lines) {
      violations.push(`${where}: reserved ${product.reserved} != units of live reservations ${product.held_lines}`);
    }
    if (product.sold !== product.committed_lines) {
      violations.push(`${where}: sold ${product.sold} != units of committed reservations ${product.committed_lines}`);
    }
  }

  const pending: string[] = [];
  if (snapshot.fulfillment) checkEvents(snapshot.orders, snapshot.fulfillment, violations, pending);

  return {
    checked: {
      orders: snapshot.orders.length,
      payments: snapshot.payments.length,
      reservations: snapshot.reservations.length,
      products: snapshot.products.length,
      ...(snapshot.fulfillment ? { shipments: snapshot.fulfillment.shipments.length, events: snapshot.fulfillment.events.length } : {}),
    },
    states,
    violations,
    pending,
  };
}

/** The event id of an order event (services/order/src/event-messages.ts). */
function eventIdOf(event: Pick<PublishedEventRow, "order_id" | "sequence">): string {
  return `${event.order_id}.${event.sequence}`;
}

/**
 * Choreography's invariants: every confirmed order has exactly one
 * shipment, which is not cancelled; every cancelled order has none active
 * (cancelled, or shipped with its late cancellation recorded); rejected
 * and failed orders have none; no order event was lost (each is published,
 * then applied, or still on its way: pending) or applied twice, and none
 * was dead-lettered.
 */
function checkEvents(orders: readonly OrderRow[], world: EventsSnapshot, violations: string[], pending: string[]): void {
  const shipments = new Map(world.shipments.map((s) => [s.order_id, s]));
  const processed = new Map(world.processed.map((p) => [p.event_id, p.outcome]));
  const deadLetters = new Map(world.deadLetters.filter((d) => d.event_id).map((d) => [d.event_id!, d]));
  const eventsByOrder = new Map<string, PublishedEventRow[]>();
  for (const event of world.events) {
    const list = eventsByOrder.get(event.order_id) ?? [];
    list.push(event);
    eventsByOrder.set(event.order_id, list);
  }
  const orderIds = new Set(orders.map((o) => o.order_id));
  /** Events accounted for as pending or violating already. */
  const reported = new Set<string>();

  /** Where the order's event of `type` is, when fulfillment has not applied it: pending, or a violation. */
  const notApplied = (where: string, order: OrderRow, type: string): void => {
    const event = eventsByOrder.get(order.order_id)?.find((e) => e.type === type);
    if (!event) {
      violations.push(`${where} has no ${type} event in its log`);
      return;
    }
    const id = eventIdOf(event);
    reported.add(id);
    const dead = deadLetters.get(id);
    if (dead) violations.push(`${where}: its ${type} event ${id} was dead-lettered (${dead.reason})`);
    else if (processed.has(id)) violations.push(`${where}: fulfillment handled its ${type} event ${id} (${processed.get(id)}) and has nothing to show for it`);
    else if (!event.published) pending.push(`${where}: ${type} ${id} is in the outbox, not yet published`);
    else pending.push(`${where}: ${type} ${id} is published, not yet applied by fulfillment`);
  };

  for (const order of orders) {
    const shipment = shipments.get(order.order_id);
    const where = `order ${order.order_id} (${order.state})`;
    switch (order.state) {
      case "CONFIRMED":
        if (!shipment) notApplied(where, order, "ORDER_CONFIRMED");
        else if (shipment.state === "CANCELLED") violations.push(`${where} has a cancelled shipment ${shipment.shipment_id}`);
        break;
      case "CANCELLED":
        if (!shipment) notApplied(where, order, "ORDER_CONFIRMED");
        else if (shipment.state === "SHIPPED" ? !shipment.cancelled_too_late : shipment.state !== "CANCELLED") notApplied(where, order, "ORDER_CANCELLED");
        break;
      case "CANCELLING":
        // Confirmed, being cancelled: its shipment may exist, in any state.
        break;
      default:
        if (shipment) violations.push(`${where} has shipment ${shipment.shipment_id} (${shipment.state}), and was never confirmed`);
    }
  }

  for (const shipment of world.shipments) {
    if (!orderIds.has(shipment.order_id)) violations.push(`shipment ${shipment.shipment_id} is for order ${shipment.order_id}, which does not exist`);
  }

  for (const event of world.events) {
    if (!event.published) continue;
    // Other kinds are published for other consumers; fulfillment subscribes to these.
    if (event.type !== "ORDER_CONFIRMED" && event.type !== "ORDER_CANCELLED") continue;
    const id = eventIdOf(event);
    if (!processed.has(id) && !deadLetters.has(id) && !reported.has(id)) {
      pending.push(`order ${event.order_id}: ${event.type} ${id} is published, not yet applied by fulfillment`);
    }
  }

  const effects = new Map<string, number>();
  for (const applied of world.applied) effects.set(applied.event_id, (effects.get(applied.event_id) ?? 0) + 1);
  for (const [id, count] of effects) {
    if (count > 1) violations.push(`order event ${id} was applied ${count} times`);
  }
  const created = new Map<string, number>();
  for (const applied of world.applied) {
    if (applied.type === "CREATED") created.set(applied.shipment_id, (created.get(applied.shipment_id) ?? 0) + 1);
  }
  for (const [shipmentId, count] of created) {
    if (count > 1) violations.push(`shipment ${shipmentId} was created ${count} times`);
  }
  // Every dead letter waits for an operator.
  for (const dead of world.deadLetters) {
    if (!dead.event_id || !reported.has(dead.event_id)) {
      violations.push(
        `a message on ${dead.subject} (stream sequence ${dead.stream_sequence}${dead.event_id ? `, event ${dead.event_id}` : ""}) was dead-lettered: ${dead.reason}`,
      );
    }
  }
}

/** Reads what the checks need from the databases. */
export async function readSnapshot(urls: DatabaseUrls): Promise<Snapshot> {
  const [orders, payments, inventory, fulfillment] = await Promise.all([
    query<OrderRow>(
      urls.order,
      [],
      `SELECT o.order_id, o.state, (s.order_id IS NOT NULL) AS has_live_saga
       FROM orders o LEFT JOIN saga_runs s ON s.order_id = o.order_id`,
    ),
    query<PaymentRow>(
      urls.payment,
      ["amount_minor", "refunded_minor", "refunds_sum"],
      `SELECT p.payment_id, p.order_id, p.status, p.amount_minor, p.refunded_minor,
              COALESCE((SELECT sum(r.amount_minor) FROM refunds r WHERE r.payment_id = p.payment_id), 0)::bigint AS refunds_sum
       FROM payments p`,
    ),
    Promise.all([
      query<ReservationRow>(urls.inventory, [], "SELECT reservation_id, state FROM reservations"),
      query<ProductRow>(
        urls.inventory,
        ["initial", "restocked", "on_hand", "reserved", "sold", "held_lines", "committed_lines"],
        `SELECT p.sku, p.initial, p.restocked, p.on_hand, p.reserved, p.sold,
                COALESCE(sum(l.quantity) FILTER (WHERE r.state = 'HELD'), 0)::bigint AS held_lines,
                COALESCE(sum(l.quantity) FILTER (WHERE r.state = 'COMMITTED'), 0)::bigint AS committed_lines
         FROM products p
         LEFT JOIN reservation_lines l ON l.sku = p.sku
         LEFT JOIN reservations r ON r.reservation_id = l.reservation_id
         GROUP BY p.sku ORDER BY p.sku`,
      ),
    ]),
    urls.fulfillment ? readEvents(urls.order, urls.fulfillment) : Promise.resolve(undefined),
  ]);
  return { orders, payments, reservations: inventory[0], products: inventory[1], ...(fulfillment ? { fulfillment } : {}) };
}

/**
 * Fulfillment's side, read after the order log's: an event fulfillment has
 * applied is then one the log had published already, never the reverse
 * (each read is one consistent view of its database).
 */
async function readEvents(orderUrl: string, fulfillmentUrl: string): Promise<EventsSnapshot> {
  const events = await query<PublishedEventRow>(
    orderUrl,
    [],
    `SELECT order_id, sequence, type, published_at IS NOT NULL AS published FROM order_events
     WHERE type IN ('ORDER_CONFIRMED', 'ORDER_CANCELLED', 'ORDER_REJECTED', 'ORDER_FAILED')`,
  );
  const [shipments, processed, applied, deadLetters] = await Promise.all([
    query<ShipmentRow>(fulfillmentUrl, [], "SELECT order_id, shipment_id, state, cancelled_too_late FROM shipments"),
    query<{ event_id: string; outcome: string }>(fulfillmentUrl, [], "SELECT event_id, outcome FROM processed_events"),
    query<AppliedRow>(fulfillmentUrl, [], "SELECT event_id, shipment_id, type FROM shipment_events WHERE event_id IS NOT NULL"),
    query<DeadLetterRow>(fulfillmentUrl, ["stream_sequence"], "SELECT stream_sequence, subject, event_id, reason FROM dead_letters"),
  ]);
  return { events, shipments, processed, applied, deadLetters };
}

/** Runs `text`; `counts` are bigint columns, which pg returns as text, turned into numbers. */
async function query<R extends pg.QueryResultRow>(url: string, counts: (keyof R & string)[], text: string): Promise<R[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  client.on("error", () => undefined);
  await client.connect();
  try {
    // One consistent view per database, even while services keep writing.
    await client.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    const { rows } = await client.query<R>(text);
    await client.query("COMMIT");
    return rows.map((row) => {
      const converted: Record<string, unknown> = { ...row };
      for (const column of counts) converted[column] = Number(row[column]);
      return converted as R;
    });
  } finally {
    await client.end().catch(() => undefined);
  }
}

export function formatReport(report: Report): string {
  const { checked } = report;
  const lines = [
    "meshcart invariant check",
    `  checked ${checked.orders} orders, ${checked.payments} payments, ${checked.reservations} reservations, ${checked.products} products` +
      (checked.shipments === undefined ? "" : `, ${checked.shipments} shipments, ${checked.events} order events`),
    `  orders by state: ${
      Object.entries(report.states)
        .map(([s, n]) => `${s} ${n}`)
        .join(", ") || "none"
    }`,
    `  order events on their way (outbox or consumer; not a violation while the services run): ${report.pending.length}`,
    ...report.pending.slice(0, 20).map((p) => `    - ${p}`),
    ...(report.pending.length > 20 ? [`    … and ${report.pending.length - 20} more`] : []),
    `  violations: ${report.violations.length}`,
    ...report.violations.map((v) => `    - ${v}`),
  ];
  return `${lines.join("\n")}\n`;
}
