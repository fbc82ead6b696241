import { describe, expect, it } from "vitest";
import { createLogger, sleep } from "@meshcart/lib";
import { expirySweeper } from "../src/expiry-sweeper.js";
import type { Inventory } from "../src/inventory.js";

/**
 * When the expiry sweeper asks the database anything: once at start, then
 * when the next hold it knows of runs out (as the last sweep reported it,
 * or as a hold made in this process announces it), and otherwise only
 * after its longest sleep. Idle, it asks nothing.
 */

const logger = createLogger({ service: "sweeper-test", version: "test", level: "silent" });
const HOUR = 3_600_000;

/** An inventory whose sweeps are counted and answer with a scripted next deadline. */
function fakeInventory(next: () => Date | undefined) {
  const sweeps: number[] = [];
  const inventory = {
    async sweep() {
      sweeps.push(Date.now());
      return { expired: 0, nextExpiry: next() };
    },
  } as unknown as Inventory;
  return { inventory, sweeps };
}

async function until(what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe("the expiry sweeper", () => {
  it("with no hold anywhere, sweeps once and then sleeps its longest sleep", async () => {
    const { inventory, sweeps } = fakeInventory(() => undefined);
    const stop = new AbortController();
    const running = expirySweeper(inventory, HOUR, logger).run(stop.signal);
    await until("the first sweep", () => sweeps.length === 1);
    await sleep(300);
    expect(sweeps).toHaveLength(1);
    stop.abort();
    await running;
  });

  it("wakes for a hold made in this process, and for the next deadline a sweep reports", async () => {
    let nextExpiry: Date | undefined;
    const { inventory, sweeps } = fakeInventory(() => nextExpiry);
    const stop = new AbortController();
    const sweeper = expirySweeper(inventory, HOUR, logger);
    const running = sweeper.run(stop.signal);
    await until("the first sweep", () => sweeps.length === 1);

    // A hold made here, due in 100 ms: the sweeper wakes for it, not after an hour.
    sweeper.holdMade(new Date(Date.now() + 100));
    await until("the sweep for the new hold", () => sweeps.length === 2);

    // That sweep reports another hold due soon (made by another replica): it wakes for that one too.
    nextExpiry = new Date(Date.now() + 300);
    sweeper.holdMade(new Date(Date.now()));
    await until("the sweep after it", () => sweeps.length === 3);
    nextExpiry = undefined;
    await until("the sweep for the reported deadline", () => sweeps.length === 4);
    stop.abort();
    await running;
  });

  it("a hold made while a sweep is in flight is not missed", async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let calls = 0;
    const inventory = {
      async sweep() {
        calls += 1;
        if (calls === 1) await gate;
        return { expired: 0, nextExpiry: undefined };
      },
    } as unknown as Inventory;
    const stop = new AbortController();
    const sweeper = expirySweeper(inventory, HOUR, logger);
    const running = sweeper.run(stop.signal);
    await until("the first sweep to start", () => calls === 1);
    sweeper.holdMade(new Date(Date.now() + 50));
    release();
    await until("a sweep for the hold made meanwhile", () => calls === 2);
    stop.abort();
    await running;
  });
});
