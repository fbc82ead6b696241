import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkInvariants, readSnapshot } from "@meshcart/stack/verify.js";
import { OtlpReceiver } from "@meshcart/testing/otlp-receiver.js";
import { parseExposition } from "@meshcart/testing/prometheus.js";
import type { Report } from "../src/stats.js";
import { Shop } from "./support/shop.js";

/**
 * The load generator against the real shop (four processes, three
 * databases) for a few seconds: what it counts by outcome is what the
 * databases hold, and the shop is consistent afterwards (make verify's
 * invariants). Then the deployable: ready while sending, metrics, summary
 * lines, a clean stop.
 */

const CLI = fileURLToPath(new URL("../dist/cli.js", import.meta.url));

let shop: Shop;

beforeAll(async () => {
  shop = await Shop.start("loadgen");
});

afterAll(async () => {
  await shop?.close();
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The command line, as `make load` runs it. */
function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const inherited: NodeJS.ProcessEnv = { ...process.env };
  delete inherited.NODE_OPTIONS;
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...inherited, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })));
}

async function query<R extends pg.QueryResultRow>(url: string, text: string, values: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<R>(text, values)).rows;
  } finally {
    await client.end();
  }
}

function count(report: Report, outcome: string): number {
  return report.outcomes[outcome]?.count ?? 0;
}

describe("loadgen against the local services", () => {
  let report: Report;

  beforeAll(async () => {
    const run = await cli(
      [
        "--rps",
        "15",
        "--duration",
        "4s",
        "--run-id",
        "t1",
        "--seed",
        "42",
        "--restock-below",
        "900",
        "--restock-quantity",
        "100",
        "--max-error-rate",
        "0",
        "--json",
      ],
      { ...shop.loadgenEnv(), LOADGEN_RESTOCK_INTERVAL_MS: "1000" },
    );
    expect(run.stderr).toContain("run t1");
    expect(run.code, run.stderr).toBe(0);
    report = JSON.parse(run.stdout) as Report;
  }, 60_000);

  it("sends at the asked rate, open loop, with every kind of request and no error", () => {
    expect(report).toMatchObject({ runId: "t1", ended: "duration", due: 60, errors: 0, dropped: 0, passed: true });
    expect(report.achievedRps).toBeGreaterThan(10);
    expect(report.achievedRps).toBeLessThan(17);
    expect(count(report, "confirmed")).toBeGreaterThan(0);
    expect(
      Object.keys(report.outcomes).every((o) =>
        ["confirmed", "rejected_stock", "rejected_declined", "invalid", "read_ok", "browse_ok", "stream_ok"].includes(o),
      ),
    ).toBe(true);
    for (const row of report.rows) expect(row.p99Ms).toBeGreaterThan(0);
  });

  it("counts by outcome what the databases hold", async () => {
    const orders = await query<{ state: string; why: string | null; n: number }>(
      shop.url("order"),
      `SELECT o.state,
              (SELECT e.type FROM order_events e WHERE e.order_id = o.order_id AND e.type IN ('STOCK_UNAVAILABLE', 'PAYMENT_DECLINED') LIMIT 1) AS why,
              count(*)::int AS n
       FROM orders o WHERE o.customer_id LIKE 'shopper-%' AND o.request_id LIKE '%:lg.t1.%'
       GROUP BY 1, 2`,
    );
    const held = (state: string, why: string | null = null) => orders.find((o) => o.state === state && o.why === why)?.n ?? 0;
    expect(held("CONFIRMED")).toBe(count(report, "confirmed"));
    expect(held("REJECTED", "STOCK_UNAVAILABLE")).toBe(count(report, "rejected_stock"));
    expect(held("REJECTED", "PAYMENT_DECLINED")).toBe(count(report, "rejected_declined"));
    // Nothing else: invalid requests and reads wrote no order.
    expect(orders.reduce((sum, o) => sum + o.n, 0)).toBe(count(report, "confirmed") + count(report, "rejected_stock") + count(report, "rejected_declined"));

    const payments = await query<{ status: string; n: number }>(
      shop.url("payment"),
      "SELECT status, count(*)::int AS n FROM payments WHERE customer_id LIKE 'shopper-%' GROUP BY status",
    );
    const paid = (status: string) => payments.find((p) => p.status === status)?.n ?? 0;
    expect(paid("CAPTURED")).toBe(count(report, "confirmed"));
    expect(paid("DECLINED")).toBe(count(report, "rejected_declined"));
    expect(payments.reduce((sum, p) => sum + p.n, 0)).toBe(count(report, "confirmed") + count(report, "rejected_declined"));

    const restocks = await query<{ sku: string; quantity: number }>(
      shop.url("inventory"),
      "SELECT sku, quantity::int AS quantity FROM restocks WHERE restock_id LIKE 'lg.t1.restock.%'",
    );
    expect(report.restocks.ok).toBeGreaterThan(0);
    expect(restocks).toHaveLength(report.restocks.ok);
    expect(restocks.reduce((sum, r) => sum + r.quantity, 0)).toBe(report.restocks.units);
    // The scarce product stays scarce.
    expect(restocks.map((r) => r.sku)).not.toContain("MESH-STICKER-GOLD");
  });

  it("leaves the shop consistent (make verify)", async () => {
    const result = checkInvariants(
      await readSnapshot({ order: shop.url("order"), payment: shop.url("payment"), inventory: shop.url("inventory"), fulfillment: shop.url("fulfillment") }),
    );
    expect(result.violations).toEqual([]);
    expect(result.checked.orders).toBeGreaterThan(0);
  });
});

describe("loadgen's command line", () => {
  it("exits 1 when the error rate passes --max-error-rate (dropped sends count)", async () => {
    // Every catalogue read takes at least 100 ms while a send is due every
    // 5 ms with one slot: most sends must be dropped, however fast the machine.
    const control = shop.faultsUrl("inventory");
    expect((await fetch(control, { method: "PUT", body: '{"*":{"rate":0,"latencyMs":100}}' })).status).toBe(200);
    let run: Awaited<ReturnType<typeof cli>>;
    try {
      run = await cli(
        [
          "--rps",
          "200",
          "--requests",
          "40",
          "--concurrency",
          "1",
          "--mix",
          "browse=1,order=0,out_of_stock=0,declined=0,invalid=0,get_order=0,details=0,track=0",
          "--max-error-rate",
          "0.1",
          "--no-restock",
        ],
        shop.loadgenEnv(),
      );
    } finally {
      expect((await fetch(control, { method: "DELETE" })).status).toBe(200);
    }
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/^! dropped +browse +\d+/m);
    expect(run.stdout).toMatch(/ABOVE the limit of 10\.0%/);
  });

  it("sees a fault toggled at runtime in inventory, and sees it go", async () => {
    const browse = [
      "--rps",
      "50",
      "--requests",
      "60",
      "--mix",
      "browse=1,order=0,out_of_stock=0,declined=0,invalid=0,get_order=0,details=0,track=0",
      "--no-restock",
      "--json",
    ];
    const control = shop.faultsUrl("inventory");
    const errorRate = async () => {
      const run = await cli(browse, shop.loadgenEnv());
      expect(run.code, run.stderr).toBe(0);
      return JSON.parse(run.stdout) as Report;
    };
    expect((await errorRate()).errors).toBe(0);
    // Browsing is half GetProduct (which the storefront does not retry), half ListProducts.
    expect((await fetch(control, { method: "PUT", body: '{"GetProduct":{"rate":1,"code":"UNAVAILABLE"}}' })).status).toBe(200);
    const faulty = await errorRate();
    expect(faulty.errors).toBeGreaterThan(10);
    expect(faulty.errors).toBeLessThan(50);
    expect(count(faulty, "error_unavailable")).toBe(faulty.errors);
    expect((await fetch(control, { method: "DELETE" })).status).toBe(200);
    expect((await errorRate()).errors).toBe(0);
  });

  it("traces each request from the shopper: a loadgen.<scenario> span with its gRPC calls below", async () => {
    const receiver = await OtlpReceiver.start();
    try {
      const run = await cli(
        [
          "--rps",
          "20",
          "--requests",
          "10",
          "--mix",
          "order=1,out_of_stock=0,declined=0,invalid=0,get_order=0,details=0,browse=0,track=0",
          "--no-restock",
          "--run-id",
          "t4",
        ],
        {
          ...shop.loadgenEnv(),
          OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
          OTEL_EXPORTER_OTLP_PROTOCOL: "grpc",
        },
      );
      expect(run.code, run.stderr).toBe(0);
      // The command line flushes its spans before it exits.
      const spans = receiver.spans().filter((s) => s.service === "loadgen");
      const roots = spans.filter((s) => s.name === "loadgen.order");
      expect(roots).toHaveLength(10);
      const root = roots[0]!;
      expect(root.parentSpanId).toBe("");
      expect(root.attributes).toMatchObject({
        "meshcart.loadgen.scenario": "order",
        "meshcart.loadgen.outcome": "confirmed",
        "meshcart.correlation_id": expect.stringMatching(/^lg\.t4\.\d+$/),
        "meshcart.order.id": expect.stringMatching(/^ord_/),
      });
      const call = spans.find((s) => s.parentSpanId === root.spanId && s.kind === "CLIENT");
      expect(call?.name).toBe("grpc.meshcart.storefront.v1.StorefrontService/PlaceOrder");
      expect(call?.traceId).toBe(root.traceId);
    } finally {
      await receiver.stop();
    }
  });

  it("says which option is wrong", async () => {
    const run = await cli(["--rps", "fast", "--duration", "soon"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("--rps (LOADGEN_RPS): must be a number from 0.1 to 10000");
    expect(run.stderr).toContain('--duration (LOADGEN_DURATION): "soon" is not a duration');
  });
});

describe("loadgen as a deployable", () => {
  it("is ready while sending, exports its metrics, logs summaries and stops cleanly", async () => {
    const { process, adminPort } = await shop.startLoadgen({
      LOADGEN_RPS: "10",
      LOADGEN_RUN_ID: "t2",
      LOADGEN_SUMMARY_INTERVAL_MS: "1000",
      LOADGEN_RESTOCK: "false",
    });
    const scrape = async () => parseExposition(await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text());
    await expect.poll(async () => (await scrape()).sum("meshcart_loadgen_requests_total", { outcome: "confirmed" }), { timeout: 15_000 }).toBeGreaterThan(0);
    await expect.poll(() => process.logs().some((line) => line.includes('"msg":"load: ')), { timeout: 15_000 }).toBe(true);
    const metrics = await scrape();
    expect(metrics.sum("meshcart_loadgen_target_rps")).toBe(10);
    expect(metrics.sum("meshcart_grpc_client_calls_started_total", { grpc_method: "PlaceOrder" })).toBeGreaterThan(0);
    expect((await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status).toBe(200);

    const summary = JSON.parse(process.logs().find((line) => line.includes('"msg":"load: '))!) as Record<string, unknown>;
    expect(summary).toMatchObject({ service: "loadgen", target_rps: 10, success_pct: expect.any(Number), outcomes: expect.any(Object) });

    expect(await process.stop("SIGTERM", 15_000)).toEqual({ code: 0, signal: null });
    const ended = process.logs().find((line) => line.includes("load run ended (stopped)"));
    expect(ended).toBeDefined();
    const result = checkInvariants(
      await readSnapshot({ order: shop.url("order"), payment: shop.url("payment"), inventory: shop.url("inventory"), fulfillment: shop.url("fulfillment") }),
    );
    expect(result.violations).toEqual([]);
  });

  it("ends by itself after LOADGEN_REQUESTS and exits 0", async () => {
    const { process } = await shop.startLoadgen({ LOADGEN_RPS: "20", LOADGEN_REQUESTS: "40", LOADGEN_RUN_ID: "t3", LOADGEN_RESTOCK: "false" });
    expect(await process.exited).toEqual({ code: 0, signal: null });
    expect(process.logs().some((line) => line.includes("load run ended (requests): 40 requests"))).toBe(true);
  });
});
