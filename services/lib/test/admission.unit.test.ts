import { Registry } from "prom-client";
import { describe, expect, it, vi } from "vitest";
import { Admission, type Permit } from "../src/admission.js";
import { OverloadedError } from "../src/domain-errors.js";
import { state } from "./helpers.js";

async function refusalOf(promise: Promise<unknown>): Promise<OverloadedError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(OverloadedError);
    return error as OverloadedError;
  }
  throw new Error("expected a refusal");
}

describe("admission control", () => {
  it("admits up to its limit, queues up to its queue, and refuses the rest at once", async () => {
    const admission = new Admission("checkouts", { limit: 2, queue: 1, queueTimeoutMs: 60_000 });
    const a = await admission.admit();
    const b = await admission.admit();
    const queued = admission.admit();
    expect(await state(queued)).toBe("pending");
    const refused = await refusalOf(admission.admit());
    expect(refused.message).toMatch(/^the shop is busy: checkouts are at capacity \(2 in progress, 1 waiting\); nothing was done, try again in about \d+ ms$/);
    expect(refused.retryAfterMs).toBeGreaterThanOrEqual(100);
    expect([admission.active, admission.queued]).toEqual([2, 1]);

    a.release();
    const c = await queued;
    expect([admission.active, admission.queued]).toEqual([2, 0]);
    // A permit released twice frees one place only.
    a.release();
    expect(admission.active).toBe(2);
    b.release();
    c.release();
    expect(admission.active).toBe(0);
  });

  it("admits waiters first come, first served while the queue drains", async () => {
    const admission = new Admission("calls", { limit: 1, queue: 3, queueTimeoutMs: 60_000 });
    const first = await admission.admit();
    const order: string[] = [];
    const waiters = ["w1", "w2", "w3"].map((name) => admission.admit().then((permit) => (order.push(name), permit)));
    first.release();
    let permit: Permit = await waiters[0]!;
    permit.release();
    permit = await waiters[1]!;
    permit.release();
    (await waiters[2]!).release();
    expect(order).toEqual(["w1", "w2", "w3"]);
  });

  it("admits the newest waiter first once the queue stands (its oldest has waited half the queue timeout)", async () => {
    vi.useFakeTimers();
    try {
      const admission = new Admission("calls", { limit: 1, queue: 3, queueTimeoutMs: 100 });
      const first = await admission.admit();
      const order: string[] = [];
      const waiter = (name: string) => admission.admit().then((permit) => (order.push(name), permit));
      const w1 = waiter("w1");
      await vi.advanceTimersByTimeAsync(30);
      const w2 = waiter("w2");
      await vi.advanceTimersByTimeAsync(20);
      const w3 = waiter("w3");
      // w1 has waited 50 ms: the queue stands, so the newest goes first.
      first.release();
      (await w3).release();
      // w1 (60 ms) still stands in front: newest first again.
      await vi.advanceTimersByTimeAsync(10);
      (await w2).release();
      (await w1).release();
      expect(order).toEqual(["w3", "w2", "w1"]);
    } finally {
      vi.useRealTimers();
    }
  });

  it("adaptive: learns each kind's unloaded latency from lone calls, lowers the limit when admitted calls run slower than the tolerance, raises it when they keep up", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date", "performance"] });
    try {
      const admission = new Admission("calls", { limit: 8, adaptive: { minLimit: 2, tolerance: 2 }, queue: 100, queueTimeoutMs: 60_000 });
      const round = rounds(admission);
      // Alone, a checkout takes 10 ms and a lookup 1 ms.
      for (let i = 0; i < 3; i++) await round("checkout", 1, 10);
      for (let i = 0; i < 3; i++) await round("lookup", 1, 1);
      expect(admission.limit).toBe(8);

      // Eight at once take 50 ms each: five times unloaded, above the tolerance of 2.
      for (let i = 0; i < 2; i++) await round("checkout", 8, 50);
      expect(admission.limit).toBe(4);
      for (let i = 0; i < 4; i++) await round("checkout", 4, 50);
      expect(admission.limit).toBe(2);
      for (let i = 0; i < 8; i++) await round("checkout", 2, 50);
      expect(admission.limit, "never below minLimit").toBe(2);

      // Lookups at 1.5 ms with the limit in full use: within the tolerance, so it climbs back by one per window.
      for (let i = 0; i < 100; i++) await round("lookup", admission.limit, 1.5);
      expect(admission.limit).toBeGreaterThan(2);
      for (let i = 0; i < 400 && admission.limit < 8; i++) await round("lookup", admission.limit, 1.5);
      expect(admission.limit, "never above the configured limit").toBe(8);
    } finally {
      vi.useRealTimers();
    }
  });

  it("adaptive: a limit not in full use does not grow, and a kind never seen alone is not judged", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date", "performance"] });
    try {
      const admission = new Admission("calls", { limit: 8, adaptive: { minLimit: 2, tolerance: 2 }, queue: 100, queueTimeoutMs: 60_000 });
      const round = rounds(admission);
      for (let i = 0; i < 20; i++) await round("unknown", 8, 500);
      expect(admission.limit).toBe(8);
      await round("checkout", 1, 10);
      for (let i = 0; i < 2; i++) await round("checkout", 8, 50);
      expect(admission.limit).toBe(4);
      // Fast, but only two at once under a limit of four: no evidence that more would keep up.
      for (let i = 0; i < 100; i++) await round("checkout", 2, 12);
      expect(admission.limit).toBe(4);
    } finally {
      vi.useRealTimers();
    }
  });

  it("adaptive: a call that another overlapped, even briefly, does not count as unloaded", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date", "performance"] });
    try {
      const admission = new Admission("calls", { limit: 8, adaptive: { minLimit: 2, tolerance: 2 }, queue: 100, queueTimeoutMs: 60_000 });
      // Started alone, overlapped by a short call, ended alone: 100 ms is not its unloaded latency.
      const long = await admission.admit(undefined, "checkout");
      const short = await admission.admit(undefined, "checkout");
      vi.advanceTimersByTime(1);
      short.release();
      vi.advanceTimersByTime(99);
      long.release();
      const round = rounds(admission);
      await round("checkout", 1, 10);
      // Were 100 ms the unloaded latency, eight calls at 50 ms would look fast; against 10 ms they are slow.
      for (let i = 0; i < 2; i++) await round("checkout", 8, 50);
      expect(admission.limit).toBe(4);
    } finally {
      vi.useRealTimers();
    }
  });

  it("refuses a waiter whose wait runs out, and one whose caller gives up, leaving the queue", async () => {
    const admission = new Admission("calls", { limit: 1, queue: 2, queueTimeoutMs: 20 });
    const held = await admission.admit();
    await refusalOf(admission.admit());
    expect(admission.queued).toBe(0);

    const gaveUp = new AbortController();
    const waiting = admission.admit(gaveUp.signal);
    gaveUp.abort();
    await refusalOf(waiting);
    expect(admission.queued).toBe(0);
    held.release();
    expect(admission.active).toBe(0);
  });

  it("lets work that must not be refused in over the limit, and counts it", async () => {
    const admission = new Admission("checkouts", { limit: 1, queue: 0, queueTimeoutMs: 1 });
    const resumed = admission.force();
    await refusalOf(admission.admit());
    const alsoResumed = admission.force();
    expect(admission.active).toBe(2);
    resumed.release();
    alsoResumed.release();
    (await admission.admit()).release();
  });

  it("exports what it admits and what it sheds", async () => {
    const registry = new Registry();
    const admission = new Admission("calls", { limit: 1, queue: 0, queueTimeoutMs: 1 }, { registry });
    const held = await admission.admit();
    await refusalOf(admission.admit());
    const text = await registry.metrics();
    expect(text).toContain('meshcart_admission_in_progress{scope="calls"} 1');
    expect(text).toContain('meshcart_admission_limit{scope="calls"} 1');
    expect(text).toContain('meshcart_admission_shed_total{scope="calls",reason="queue_full"} 1');
    held.release();
  });
});

/** Under fake timers: `n` calls of `kind` admitted at once, each held `ms`, then released. */
function rounds(admission: Admission) {
  return async (kind: string, n: number, ms: number) => {
    const permits = await Promise.all(Array.from({ length: n }, () => admission.admit(undefined, kind)));
    vi.advanceTimersByTime(ms);
    for (const permit of permits) permit.release();
  };
}
