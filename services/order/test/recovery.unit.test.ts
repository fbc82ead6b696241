import { describe, expect, it } from "vitest";
import { createLogger, sleep } from "@meshcart/lib";
import type { EventStore } from "../src/event-store.js";
import { sagaRecovery, type Saga } from "../src/saga.js";

/**
 * When the recovery task looks for abandoned sagas: when the earliest
 * lease it saw runs out, at most every `intervalMs`, and at least once per
 * lease. With no saga anywhere it asks the database once per lease period,
 * not every interval.
 */

const logger = createLogger({ service: "recovery-test", version: "test", level: "silent" });
const HOUR = 3_600_000;

function fakes(answers: () => { claimed: string[]; nextLeaseEnd: Date | undefined }) {
  const scans: number[] = [];
  const started: string[] = [];
  const store = {
    async claimAbandoned() {
      scans.push(Date.now());
      return answers();
    },
  } as Pick<EventStore, "claimAbandoned">;
  const saga = {
    start: (orderId: string) => void started.push(orderId),
    drained: async () => undefined,
  } as unknown as Saga;
  return { store, saga, scans, started };
}

async function until(what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe("saga recovery", () => {
  it("with no saga running anywhere, looks once and then sleeps a whole lease", async () => {
    const { store, saga, scans } = fakes(() => ({ claimed: [], nextLeaseEnd: undefined }));
    const stop = new AbortController();
    const running = sagaRecovery(saga, store, { owner: "r", leaseMs: HOUR, intervalMs: 10, batch: 10 }, logger).run(stop.signal);
    await until("the first look", () => scans.length === 1);
    await sleep(300);
    expect(scans).toHaveLength(1);
    stop.abort();
    await running;
  });

  it("looks again when the earliest lease it saw runs out, and drives what it claims", async () => {
    let answer = { claimed: [] as string[], nextLeaseEnd: new Date(Date.now() + 150) as Date | undefined };
    const { store, saga, scans, started } = fakes(() => answer);
    const stop = new AbortController();
    const running = sagaRecovery(saga, store, { owner: "r", leaseMs: HOUR, intervalMs: 10, batch: 10 }, logger).run(stop.signal);
    await until("the first look", () => scans.length === 1);
    answer = { claimed: ["ord_1"], nextLeaseEnd: undefined };
    await until("the look at the lease's end", () => scans.length === 2);
    expect(started).toEqual(["ord_1"]);
    stop.abort();
    await running;
  });

  it("a full batch is followed by another look after the interval, not after the lease", async () => {
    const { store, saga, scans, started } = fakes(() => ({ claimed: ["a", "b"], nextLeaseEnd: undefined }));
    const stop = new AbortController();
    const running = sagaRecovery(saga, store, { owner: "r", leaseMs: HOUR, intervalMs: 20, batch: 2 }, logger).run(stop.signal);
    await until("three looks", () => scans.length >= 3);
    expect(started.length).toBeGreaterThanOrEqual(6);
    stop.abort();
    await running;
  });
});
