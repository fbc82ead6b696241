import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createLogger } from "@meshcart/lib";
import type { FulfillmentMetrics } from "../src/metrics.js";
import { ShipmentChanges } from "../src/shipment-changes.js";
import type { ShipmentStore } from "../src/shipment-store.js";
import { shipmentTimer } from "../src/shipment-timer.js";

/**
 * When the shipment timer looks at its database: an idle service asks
 * nothing of it but one look per `idleMs`; shipments on their way are
 * looked at by their due time, at most `pendingMs` apart; a creation here
 * wakes it at once.
 */

const logger = createLogger({ service: "shipment-timer-test", version: "test", level: "silent" });

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

function timerOver(due: { inMs: number | undefined }) {
  const store = { nextDueInMs: vi.fn(async () => due.inMs), advanceOne: vi.fn(async () => undefined) };
  const metrics = { steps: { inc: vi.fn() } } as unknown as FulfillmentMetrics;
  const timer = shipmentTimer(
    store as unknown as ShipmentStore,
    { packAfterMs: 0, shipAfterMs: 0 },
    { pendingMs: 1_000, idleMs: 60_000 },
    new ShipmentChanges(),
    metrics,
    logger,
  );
  const stop = new AbortController();
  const running = timer.run(stop.signal);
  return {
    timer,
    looks: () => store.nextDueInMs.mock.calls.length,
    async stop() {
      stop.abort();
      await running;
    },
  };
}

describe("the shipment timer", () => {
  it("with nothing on its way, looks once per idle period, and at once when a creation wakes it", async () => {
    const due = { inMs: undefined as number | undefined };
    const t = timerOver(due);
    await vi.advanceTimersByTimeAsync(0);
    expect(t.looks()).toBe(1);
    await vi.advanceTimersByTimeAsync(59_000);
    expect(t.looks()).toBe(1);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(t.looks()).toBe(2);

    t.timer.wake();
    await vi.advanceTimersByTimeAsync(0);
    expect(t.looks()).toBe(3);
    await t.stop();
  });

  it("with a shipment on its way, looks by its due time, at most the pending period apart", async () => {
    const due = { inMs: 400 as number | undefined };
    const t = timerOver(due);
    await vi.advanceTimersByTimeAsync(0);
    expect(t.looks()).toBe(1);
    await vi.advanceTimersByTimeAsync(400);
    expect(t.looks()).toBe(2);
    due.inMs = 30_000;
    await vi.advanceTimersByTimeAsync(400);
    expect(t.looks()).toBe(3);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(t.looks()).toBe(4);
    await t.stop();
  });
});
