import { describe, expect, it } from "vitest";
import { ClientError, Status } from "nice-grpc";
import { OrderStatus, type Order } from "@meshcart/contracts/meshcart/storefront/v1/storefront.js";
import { DEMO_TOKENS, loadConfig } from "@meshcart/lib";
import { TokenVerifier } from "../../storefront/src/tokens.js";
import { loadgenConfig } from "../src/config.js";
import { seededRandom } from "../src/generator.js";
import { DEFAULT_MIX, parseMix, parseRunDuration } from "../src/options.js";
import { errorOutcome, orderOutcome } from "../src/scenarios.js";
import { LatencyHistogram, Stats, byOutcome, formatProgress, formatReport, reportRows, summarize, totals, type Report } from "../src/stats.js";
import { ShopperTokens, shopperIds } from "../src/tokens.js";

describe("options", () => {
  it("parse durations, forever included", () => {
    expect(parseRunDuration("30s")).toEqual({ ok: true, ms: 30_000 });
    expect(parseRunDuration("1h30m")).toEqual({ ok: true, ms: 5_400_000 });
    expect(parseRunDuration("500ms")).toEqual({ ok: true, ms: 500 });
    expect(parseRunDuration("90")).toEqual({ ok: true, ms: 90_000 });
    expect(parseRunDuration("forever")).toEqual({ ok: true, ms: undefined });
    expect(parseRunDuration("soon")).toMatchObject({ ok: false, problem: expect.stringContaining("not a duration") });
    expect(parseRunDuration("5x")).toMatchObject({ ok: false });
    expect(parseRunDuration("0")).toEqual({ ok: true, ms: undefined });
  });

  it("parse a mix over the defaults", () => {
    expect(parseMix("order=50,track=0")).toEqual({ ok: true, mix: { ...DEFAULT_MIX, order: 50, track: 0 } });
    expect(parseMix("orders=5")).toMatchObject({ ok: false, problem: expect.stringContaining('"orders" is not a scenario') });
    expect(parseMix("order")).toMatchObject({ ok: false });
    expect(
      parseMix(
        Object.keys(DEFAULT_MIX)
          .map((s) => `${s}=0`)
          .join(","),
      ),
    ).toMatchObject({ ok: false, problem: expect.stringContaining("nothing to send") });
  });

  it("validate the environment with every problem at once", () => {
    expect(() => loadConfig(loadgenConfig, { LOADGEN_RPS: "fast", LOADGEN_DURATION: "soon", LOADGEN_MIX: "x=1", STOREFRONT_JWT_SECRET: "short" })).toThrow(
      /STOREFRONT_JWT_SECRET: must be at least 32[\s\S]*LOADGEN_RPS: must be a number[\s\S]*LOADGEN_DURATION: "soon" is not a duration[\s\S]*LOADGEN_MIX: "x" is not a scenario/,
    );
    const config = loadConfig(loadgenConfig, { STOREFRONT_JWT_SECRET: DEMO_TOKENS.secret });
    expect(config).toMatchObject({ LOADGEN_RPS: 10, LOADGEN_CONCURRENCY: 100, LOADGEN_RESTOCK: true, STOREFRONT_ADDRESS: "localhost:50050" });
    expect(config.LOADGEN_DURATION).toBeUndefined();
  });
});

describe("demo tokens", () => {
  it("are minted per shopper, once, and the storefront accepts them", async () => {
    const tokens = new ShopperTokens(DEMO_TOKENS);
    const first = await tokens.token("shopper-1");
    expect(await tokens.token("shopper-1")).toBe(first);
    expect(await new TokenVerifier(DEMO_TOKENS).verify(first)).toEqual({ customerId: "shopper-1" });
    expect(shopperIds(3)).toEqual(["shopper-1", "shopper-2", "shopper-3"]);
  });
});

describe("outcomes", () => {
  const order = (status: OrderStatus, events: string[] = []): Order =>
    ({ orderId: "ord_1", status, history: events.map((event, i) => ({ sequence: i + 1, event })) }) as unknown as Order;

  it("classify orders by status and history", () => {
    expect(orderOutcome(order(OrderStatus.ORDER_STATUS_CONFIRMED))).toBe("confirmed");
    expect(orderOutcome(order(OrderStatus.ORDER_STATUS_REJECTED, ["ORDER_PLACED", "STOCK_UNAVAILABLE", "ORDER_REJECTED"]))).toBe("rejected_stock");
    expect(orderOutcome(order(OrderStatus.ORDER_STATUS_REJECTED, ["PAYMENT_DECLINED", "ORDER_REJECTED"]))).toBe("rejected_declined");
    expect(orderOutcome(order(OrderStatus.ORDER_STATUS_FAILED))).toBe("failed");
    expect(orderOutcome(order(OrderStatus.ORDER_STATUS_PROCESSING))).toBe("unfinished");
    expect(orderOutcome(undefined)).toBe("unfinished");
  });

  it("name errors by status", () => {
    expect(errorOutcome(new ClientError("/x", Status.UNAVAILABLE, "down"))).toBe("error_unavailable");
    expect(errorOutcome(new ClientError("/x", Status.DEADLINE_EXCEEDED, "slow"))).toBe("error_deadline_exceeded");
    expect(errorOutcome(Object.assign(new Error("aborted"), { name: "AbortError" }))).toBe("aborted");
    expect(errorOutcome(new Error("?"))).toBe("error_client");
  });
});

describe("stats", () => {
  it("keep percentiles to three significant digits, across merged windows", () => {
    const first = new LatencyHistogram();
    const second = new LatencyHistogram();
    for (let ms = 1; ms <= 1000; ms++) (ms % 2 ? first : second).record(ms + 0.25);
    first.merge(second);
    expect(first.count).toBe(1000);
    const within = (value: number | undefined, expected: number) => expect(Math.abs(value! - expected) / expected).toBeLessThan(0.001);
    within(first.percentile(0.5), 500.25);
    within(first.percentile(0.99), 990.25);
    within(first.percentile(1), 1000.25);
    within(first.max, 1000.25);
    expect(new LatencyHistogram().percentile(0.5)).toBeUndefined();
  });

  it("count errors (dropped sends included) against every request due", () => {
    const stats = new Stats();
    for (let i = 0; i < 89; i++) stats.record("order", "confirmed", 10 + i);
    stats.record("declined", "rejected_declined", 30);
    stats.record("invalid", "invalid", 2);
    for (let i = 0; i < 4; i++) stats.record("order", "error_unavailable", 5);
    for (let i = 0; i < 5; i++) stats.record("order", "dropped", undefined);
    const rows = stats.rows();
    expect(totals(rows)).toEqual({ due: 100, completed: 95, ok: 91, errors: 9, dropped: 5, errorRate: 0.09 });
    expect(Object.keys(byOutcome(rows))).toEqual(["confirmed", "invalid", "rejected_declined", "dropped", "error_unavailable"]);
    const { summary, message } = summarize(stats.takeWindow(), 10_000, 10, 3);
    expect(summary).toMatchObject({ rate: 10, success_pct: 91, requests: 100, errors: 9, dropped: 5, in_flight: 3 });
    expect(message).toMatch(/^load: 10\/s \(target 10\), 91% ok; confirmed 89 \(p50\/p95\/p99 /);
    expect(stats.takeWindow()).toEqual([]);

    const report: Report = {
      runId: "r",
      target: "sf:1",
      targetRps: 10,
      elapsedMs: 10_000,
      achievedRps: 9.5,
      late: 0,
      ...totals(rows),
      rows: reportRows(rows),
      outcomes: byOutcome(rows),
      restocks: { ok: 1, failed: 0, units: 100 },
      maxErrorRate: 0.05,
      passed: false,
      ended: "duration",
    };
    const table = formatReport(report);
    expect(table).toMatch(/^ {2}confirmed +order +89 +89\.0%/m);
    expect(table).toMatch(/^! dropped +order +5 +5\.0% +- +- +- +-$/m);
    expect(table).toContain("9 errors (9.0%, ABOVE the limit of 5.0%)");
    expect(formatProgress({ elapsedMs: 1500, durationMs: 30_000, due: 15, inFlight: 2, targetRps: 10, recentRps: 9.9, ok: 12, errors: 1, dropped: 0 })).toBe(
      "1.5s/30s  9.9/s (target 10)  sent 15  in flight 2  ok 92.3%  errors 1  dropped 0  p95 -",
    );
  });

  it("repeat a seeded mix", () => {
    const a = seededRandom(7);
    const b = seededRandom(7);
    const first = Array.from({ length: 5 }, () => a());
    expect(Array.from({ length: 5 }, () => b())).toEqual(first);
    expect(first.every((x) => x >= 0 && x < 1)).toBe(true);
  });
});
