import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { Database, Registry, createLogger, migrate } from "@meshcart/lib";
import type { MsgHdrs } from "@meshcart/lib/events";
import { OrderEvent } from "@meshcart/contracts/meshcart/events/v1/order_events.js";
import type { EventMessage } from "../src/event-messages.js";
import type { EventPublisher } from "../src/event-publisher.js";
import { OutboxMetrics } from "../src/outbox-metrics.js";
import { OutboxRelay, type OutboxCrashPoint } from "../src/outbox-relay.js";
import { OrderNotifier } from "../src/order-notifier.js";
import { OutboxStore } from "../src/outbox-store.js";
import { TestDatabases } from "./support/database.js";
import { eventually, unique } from "./support/wait.js";

/**
 * The outbox relay over a real order database (its migrations applied),
 * with a scripted broker in place of JetStream: what it publishes, in
 * which order, what it marks, and what happens when the broker fails, when
 * the relay dies between the acknowledgement and the mark, and when two
 * replicas' relays run at once.
 */

const MIGRATIONS = fileURLToPath(new URL("../migrations", import.meta.url));
const logger = createLogger({ service: "order-outbox-test", version: "test", level: "silent" });
vi.setConfig({ testTimeout: 30_000, hookTimeout: 120_000 });

const databases = new TestDatabases();
let db: Database;
let databaseUrl: string;
let store: OutboxStore;

beforeAll(async () => {
  const database = await databases.create("order_outbox");
  databaseUrl = database.url;
  db = new Database({ url: database.url, poolMax: 10, statementTimeoutMs: 10_000, applicationName: "order-outbox-test", logger });
  await migrate(db, MIGRATIONS, logger);
  store = new OutboxStore(db);
}, 120_000);

afterAll(async () => {
  await db?.close();
  await databases.dropAll();
}, 60_000);

// Each test starts from an empty log and a free lease.
beforeEach(async () => {
  await db.query("TRUNCATE order_events, saga_runs, orders, outbox_relay");
});

/** A broker that stores by event id, answers "duplicate" for an id it has, and fails what the test says. */
class ScriptedBroker implements EventPublisher {
  readonly stored = new Map<string, EventMessage>();
  /** Every attempt, in the order made: event id and outcome. */
  readonly attempts: { eventId: string; outcome: "stored" | "duplicate" | "failed" }[] = [];
  fail: (message: EventMessage) => boolean = () => false;

  async publish(message: EventMessage, _headers: MsgHdrs): Promise<"stored" | "duplicate"> {
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 3));
    if (this.fail(message)) {
      this.attempts.push({ eventId: message.eventId, outcome: "failed" });
      throw new Error("broker unreachable");
    }
    const outcome = this.stored.has(message.eventId) ? "duplicate" : "stored";
    if (outcome === "stored") this.stored.set(message.eventId, message);
    this.attempts.push({ eventId: message.eventId, outcome });
    return outcome;
  }
}

interface Running {
  relay: OutboxRelay;
  metrics: OutboxMetrics;
  registry: Registry;
  stop(): Promise<void>;
}

const running: Running[] = [];

afterEach(async () => {
  for (const relay of running.splice(0)) await relay.stop();
});

/** The relay's leader gauge: 1 while it holds the lease. */
async function leading(relay: Running): Promise<number> {
  const text = await relay.registry.getSingleMetricAsString("meshcart_order_outbox_relay_leader");
  return Number(/^meshcart_order_outbox_relay_leader (\d+)$/m.exec(text)?.[1]);
}

function startRelay(
  broker: EventPublisher,
  options: { owner?: string; crash?: (point: OutboxCrashPoint) => void; leaseMs?: number; pollMs?: number } = {},
): Running {
  const registry = new Registry();
  const metrics = new OutboxMetrics(registry, store, logger);
  const relay = new OutboxRelay(
    store,
    broker,
    {
      owner: options.owner ?? "replica-a",
      leaseMs: options.leaseMs ?? 5_000,
      pollMs: options.pollMs ?? 20,
      batchOrders: 3,
      concurrency: 4,
      retryMaxMs: 50,
      crash: options.crash,
    },
    metrics,
    logger,
  );
  const stop = new AbortController();
  const done = relay.run(stop.signal).catch(() => undefined);
  const handle = {
    relay,
    metrics,
    registry,
    async stop() {
      stop.abort();
      await done;
    },
  };
  running.push(handle);
  return handle;
}

type Logged = { type: string; data?: Record<string, unknown> };

/** An order with its log, as the saga would have written it (events from sequence 1). */
async function order(events: Logged[], extra: { customer?: string; traceparent?: string } = {}): Promise<string> {
  const orderId = `ord_${unique("o").replaceAll("-", "")}`;
  await db.query(
    `INSERT INTO orders (order_id, request_id, request_digest, customer_id, state, version, payment_method, lines, currency_code, total_minor, payment_id, failure_reason, created_at, updated_at, traceparent)
     VALUES ($1, $1, 'd', $2, 'CONFIRMED', $3, 'pm_card_visa', $4, 'USD', 2400, 'pay_1', $5, now(), now(), $6)`,
    [
      orderId,
      extra.customer ?? "alice",
      events.length,
      JSON.stringify([{ sku: "MESH-MUG", quantity: 2, unitPriceMinor: 1200 }]),
      events.some((e) => e.type === "ORDER_CANCELLED") ? "changed my mind" : null,
      extra.traceparent ?? null,
    ],
  );
  await append(orderId, events, 1);
  return orderId;
}

async function append(orderId: string, events: Logged[], from: number): Promise<void> {
  for (const [index, event] of events.entries()) {
    await db.query("INSERT INTO order_events (order_id, sequence, type, state_after, data, occurred_at) VALUES ($1, $2, $3, 'X', $4, now())", [
      orderId,
      from + index,
      event.type,
      JSON.stringify({ type: event.type, ...event.data }),
    ]);
  }
}

const CHECKOUT: Logged[] = [
  { type: "ORDER_PLACED" },
  { type: "STOCK_RESERVED" },
  { type: "PAYMENT_CAPTURED" },
  { type: "RESERVATION_COMMITTED" },
  { type: "ORDER_CONFIRMED" },
];
const CANCELLATION: Logged[] = [
  { type: "CANCELLATION_REQUESTED", data: { reason: "changed my mind" } },
  { type: "PAYMENT_REFUNDED" },
  { type: "STOCK_RETURNED" },
  { type: "ORDER_CANCELLED" },
];

async function unpublished(): Promise<number> {
  return (await store.backlog()).waiting;
}

describe("the outbox relay", () => {
  it("publishes the final events only, as meshcart.events.v1.OrderEvent under their event ids, and marks them", async () => {
    const confirmed = await order(CHECKOUT, { customer: "bob" });
    const cancelled = await order([...CHECKOUT, ...CANCELLATION]);
    const rejected = await order([
      { type: "ORDER_PLACED" },
      { type: "STOCK_UNAVAILABLE" },
      { type: "ORDER_REJECTED", data: { reason: "not enough MESH-MUG" } },
    ]);
    const failed = await order([
      { type: "ORDER_PLACED" },
      { type: "STEP_FAILED" },
      { type: "STOCK_RELEASED" },
      { type: "ORDER_FAILED", data: { reason: "inventory away" } },
    ]);
    const running = await order([{ type: "ORDER_PLACED" }]);
    const broker = new ScriptedBroker();
    startRelay(broker);
    await eventually("every final event published", async () => ((await unpublished()) === 0 && broker.stored.size === 5 ? true : undefined));

    const subjects = Object.fromEntries([...broker.stored.values()].map((m) => [m.eventId, m.subject]));
    expect(subjects).toEqual({
      [`${confirmed}.5`]: "meshcart.orders.confirmed",
      [`${cancelled}.5`]: "meshcart.orders.confirmed",
      [`${cancelled}.9`]: "meshcart.orders.cancelled",
      [`${rejected}.3`]: "meshcart.orders.rejected",
      [`${failed}.4`]: "meshcart.orders.failed",
    });
    expect([...broker.stored.keys()].some((id) => id.startsWith(running))).toBe(false);

    const confirmation = OrderEvent.decode(broker.stored.get(`${confirmed}.5`)!.body);
    expect(confirmation).toMatchObject({ eventId: `${confirmed}.5`, orderId: confirmed, sequence: 5, customerId: "bob" });
    expect(confirmation.payload).toEqual({
      $case: "confirmed",
      value: { lines: [{ sku: "MESH-MUG", quantity: 2 }], total: { currencyCode: "USD", minorUnits: 2400 }, paymentId: "pay_1" },
    });
    expect(OrderEvent.decode(broker.stored.get(`${cancelled}.9`)!.body).payload).toEqual({ $case: "cancelled", value: { reason: "changed my mind" } });
    expect(OrderEvent.decode(broker.stored.get(`${rejected}.3`)!.body).payload).toEqual({ $case: "rejected", value: { reason: "not enough MESH-MUG" } });

    const { rows } = await db.query("SELECT order_id, sequence FROM order_events WHERE published_at IS NOT NULL ORDER BY order_id, sequence");
    expect(rows).toHaveLength(5);
  });

  it("publishes each order's events in sequence, never a later one before an earlier one is acknowledged, even while the broker fails", async () => {
    const orders = await Promise.all(Array.from({ length: 8 }, () => order([...CHECKOUT, ...CANCELLATION])));
    const broker = new ScriptedBroker();
    // Every other attempt fails, at random.
    broker.fail = () => Math.random() < 0.5;
    startRelay(broker);
    await eventually("every event published despite the failures", async () => ((await unpublished()) === 0 ? true : undefined));
    expect(broker.attempts.some((a) => a.outcome === "failed")).toBe(true);
    for (const orderId of orders) {
      const attempts = broker.attempts.filter((a) => a.eventId.startsWith(`${orderId}.`));
      const firstCancel = attempts.findIndex((a) => a.eventId === `${orderId}.9`);
      const confirmedAt = attempts.findIndex((a) => a.eventId === `${orderId}.5` && a.outcome !== "failed");
      expect(confirmedAt, `order ${orderId}: ${JSON.stringify(attempts)}`).toBeGreaterThanOrEqual(0);
      expect(firstCancel, `order ${orderId}: ${JSON.stringify(attempts)}`).toBeGreaterThan(confirmedAt);
    }
  });

  it("waits out a broker that is away, then publishes everything, counting the failures", async () => {
    const first = await order(CHECKOUT);
    const broker = new ScriptedBroker();
    broker.fail = () => true;
    const { metrics, registry } = startRelay(broker);
    await eventually("a few failed attempts", async () => (broker.attempts.length >= 3 ? true : undefined));
    expect(await unpublished()).toBe(1);
    const backlog = await registry.getSingleMetricAsString("meshcart_order_outbox_backlog_events");
    expect(backlog).toContain("meshcart_order_outbox_backlog_events 1");
    expect((await metrics.failures.get()).values[0]!.value).toBeGreaterThanOrEqual(3);
    broker.fail = () => false;
    await eventually("the event published once the broker is back", async () => (broker.stored.has(`${first}.5`) ? true : undefined));
    await eventually("the backlog drained", async () => ((await unpublished()) === 0 ? true : undefined));
  });

  it("dying between the acknowledgement and the mark publishes the events again under the same ids: the broker keeps one of each", async () => {
    const orderId = await order(CHECKOUT);
    const broker = new ScriptedBroker();
    let crashes = 0;
    const crashing = startRelay(broker, {
      crash: (point) => {
        if (point === "after:publish") {
          crashes += 1;
          throw new Error("killed");
        }
      },
    });
    await eventually("the crash", async () => (crashes >= 1 ? true : undefined));
    await crashing.stop();
    expect(broker.stored.has(`${orderId}.5`)).toBe(true);
    expect(await unpublished()).toBe(1);

    const { metrics } = startRelay(broker);
    await eventually("the event marked", async () => ((await unpublished()) === 0 ? true : undefined));
    expect(broker.attempts.filter((a) => a.eventId === `${orderId}.5`).map((a) => a.outcome)).toEqual(expect.arrayContaining(["stored", "duplicate"]));
    expect(broker.stored.size).toBe(1);
    const published = await metrics.published.get();
    expect(published.values.find((v) => v.labels.result === "duplicate")?.value).toBeGreaterThanOrEqual(1);
  });

  it("one replica's relay publishes at a time; another takes over once it hands the lease back", async () => {
    const broker = new ScriptedBroker();
    const a = startRelay(broker, { owner: "replica-a" });
    await eventually("replica a to lead", async () => ((await leading(a)) === 1 ? true : undefined));
    const b = startRelay(broker, { owner: "replica-b" });
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await leading(b)).toBe(0);
    const early = await order(CHECKOUT);
    await eventually("a publishes", async () => (broker.stored.has(`${early}.5`) ? true : undefined));

    await a.stop();
    const late = await order(CHECKOUT);
    await eventually("b takes over and publishes", async () => (broker.stored.has(`${late}.5`) ? true : undefined), 10_000);
    expect(await leading(b)).toBe(1);
  });

  it("idle, asks nothing of the database until news wakes it; then publishes at once", async () => {
    const broker = new ScriptedBroker();
    const calls: string[] = [];
    const spies = (["claim", "next", "anyUnpublished", "markPublished"] as const).map((method) => {
      const original = store[method].bind(store) as (...args: unknown[]) => Promise<unknown>;
      return vi.spyOn(store, method).mockImplementation((...args: unknown[]) => {
        calls.push(method);
        return original(...args) as never;
      });
    });
    try {
      // The safety look is an hour away: only news can move it.
      const relay = startRelay(broker, { pollMs: 3_600_000 });
      await eventually("the first look (claim, then the queue)", async () => (calls.includes("next") ? true : undefined));
      const orderId = await order(CHECKOUT);
      const asked = calls.length;
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(calls.length, `asked while idle: ${calls.slice(asked).join(", ")}`).toBe(asked);
      expect(broker.stored.size).toBe(0);
      relay.relay.wake();
      await eventually("the woken relay published", async () => (broker.stored.has(`${orderId}.5`) && (await unpublished()) === 0 ? true : undefined));
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
  });

  it("finds what news missed with one cheap look per poll, and lets its lease lapse while idle", async () => {
    const broker = new ScriptedBroker();
    const relay = startRelay(broker, { pollMs: 100, leaseMs: 1_000 });
    await eventually("leading", async () => ((await leading(relay)) === 1 ? true : undefined));
    const orderId = await order(CHECKOUT);
    await eventually("published without news", async () => (broker.stored.has(`${orderId}.5`) ? true : undefined));
    await eventually("the lease lapsed with nothing to do", async () => ((await leading(relay)) === 0 ? true : undefined), 5_000);
    const { rows } = await db.query<{ running: boolean }>("SELECT lease_until > now() AS running FROM outbox_relay");
    expect(rows[0]?.running).toBe(false);
  });

  it("hears from the order notifier when another replica ended an order, and after connecting", async () => {
    const notifier = new OrderNotifier(databaseUrl, logger, "replica-a");
    let news = 0;
    notifier.onNews(() => (news += 1));
    notifier.start();
    try {
      await eventually("news on connecting", async () => (news === 1 ? true : undefined));
      // Delivered in the order sent: the last one shows the earlier ones were heard and ignored.
      await db.query("SELECT pg_notify('order_events', 'ord_1 2 replica-b STOCK_RESERVED'), pg_notify('order_events', 'ord_2 5 replica-a CONFIRMED')");
      await db.query("SELECT pg_notify('order_events', 'ord_3 5 replica-b CONFIRMED')");
      await eventually("news of the other replica's confirmation", async () => (news >= 2 ? true : undefined));
      expect(news).toBe(2);
      // An older replica's payload has no state: it may have ended the order.
      await db.query("SELECT pg_notify('order_events', 'ord_4 4 replica-b')");
      await eventually("news of an older replica's append", async () => (news >= 3 ? true : undefined));
    } finally {
      await notifier.stop();
    }
  });

  it("reads its queue through the partial index of unpublished events", async () => {
    await order(CHECKOUT);
    const client = await db.pool.connect();
    try {
      await client.query("SET enable_seqscan = off");
      const plan = (
        await client.query(
          "EXPLAIN SELECT count(*) FROM order_events WHERE published_at IS NULL AND type IN ('ORDER_CONFIRMED', 'ORDER_CANCELLED', 'ORDER_REJECTED', 'ORDER_FAILED')",
        )
      ).rows
        .map((r: Record<string, string>) => r["QUERY PLAN"])
        .join("\n");
      expect(plan).toContain("order_events_unpublished");
    } finally {
      client.release();
    }
  });
});
