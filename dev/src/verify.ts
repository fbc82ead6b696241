import pg from "pg";

/**
 * The cross-service invariants of meshcart, checked against the three
 * databases (`make verify`). Each service guards its own rules with
 * transactions and CHECK constraints; only a reconciliation across the
 * databases shows that the saga kept them consistent with each other.
 */

export interface DatabaseUrls {
  order: string;
  payment: string;
  inventory: string;
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

export interface Snapshot {
  orders: OrderRow[];
  payments: PaymentRow[];
  reservations: ReservationRow[];
  products: ProductRow[];
}

export interface Report {
  checked: { orders: number; payments: number; reservations: number; products: number };
  /** Orders by state, for the report. */
  states: Record<string, number>;
  violations: string[];
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
      violations.push(
        `${where}: initial + restocked (${product.initial + product.restocked}) != on_hand + sold (${product.on_hand + product.sold})`,
      );
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

  return {
    checked: {
      orders: snapshot.orders.length,
      payments: snapshot.payments.length,
      reservations: snapshot.reservations.length,
      products: snapshot.products.length,
    },
    states,
    violations,
  };
}

/** Reads what the checks need from the three databases. */
export async function readSnapshot(urls: DatabaseUrls): Promise<Snapshot> {
  const [orders, payments, inventory] = await Promise.all([
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
  ]);
  return { orders, payments, reservations: inventory[0], products: inventory[1] };
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
  const lines = [
    "meshcart invariant check",
    `  checked ${report.checked.orders} orders, ${report.checked.payments} payments, ${report.checked.reservations} reservations, ${report.checked.products} products`,
    `  orders by state: ${Object.entries(report.states).map(([s, n]) => `${s} ${n}`).join(", ") || "none"}`,
    `  violations: ${report.violations.length}`,
    ...report.violations.map((v) => `    - ${v}`),
  ];
  return `${lines.join("\n")}\n`;
}
