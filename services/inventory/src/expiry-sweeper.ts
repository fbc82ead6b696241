import type { BackgroundTask, Logger } from "@meshcart/lib";
import type { Inventory } from "./inventory.js";

/** Holds freed per statement; a backlog (after an outage) is drained batch after batch. */
const BATCH = 100;
/** Never sooner than this after a sweep: a due hold locked by a commit in flight is that commit's to settle. */
const MIN_SLEEP_MS = 200;
/** After a failed sweep (the database away), the next try. */
const RETRY_MS = 5_000;

export interface ExpirySweeper extends BackgroundTask {
  /** A hold was made here with this deadline: the sweeper wakes for it if it would sleep past it. */
  holdMade(expiresAt: Date): void;
}

/**
 * Frees reservations whose hold ran out, so that a checkout that died
 * between reserving and committing never keeps stock locked away. It
 * sleeps until the next live hold's deadline (each sweep says when that
 * is), woken earlier by holds made in this process, and at most
 * `maxIntervalMs` (holds made by other replicas are found then): with no
 * hold to free it asks nothing of the database.
 */
export function expirySweeper(
  inventory: Inventory,
  maxIntervalMs: number,
  logger: Logger,
  onExpired: (count: number) => void = () => undefined,
): ExpirySweeper {
  const alarm = new Alarm();
  return {
    name: "reservation-expiry",
    holdMade(expiresAt) {
      alarm.wakeBy(expiresAt.getTime());
    },
    async run(signal) {
      while (!signal.aborted) {
        let wakeAt: number;
        try {
          let swept: Awaited<ReturnType<Inventory["sweep"]>>;
          do {
            swept = await inventory.sweep(BATCH);
            if (swept.expired > 0) {
              logger.info({ expired: swept.expired }, "released expired reservations");
              onExpired(swept.expired);
            }
          } while (swept.expired === BATCH && !signal.aborted);
          const now = Date.now();
          const next = swept.nextExpiry?.getTime() ?? Number.POSITIVE_INFINITY;
          wakeAt = Math.min(now + maxIntervalMs, Math.max(next, now + MIN_SLEEP_MS));
        } catch (error) {
          logger.warn({ err: error }, "reservation expiry sweep failed; will retry");
          wakeAt = Date.now() + Math.min(RETRY_MS, maxIntervalMs);
        }
        await alarm.sleepUntil(wakeAt, signal);
      }
    },
  };
}

/** A sleep until a time that can be brought forward, also while nobody sleeps yet. */
class Alarm {
  private at = Number.POSITIVE_INFINITY;
  /** The earliest time asked for while nobody slept: the next sleep ends by then. */
  private pending = Number.POSITIVE_INFINITY;
  private timer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;

  sleepUntil(until: number, signal: AbortSignal): Promise<void> {
    const at = Math.min(until, this.pending);
    this.pending = Number.POSITIVE_INFINITY;
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const done = () => {
        clearTimeout(this.timer);
        signal.removeEventListener("abort", done);
        this.wake = undefined;
        this.at = Number.POSITIVE_INFINITY;
        resolve();
      };
      this.wake = done;
      this.at = at;
      this.timer = setTimeout(done, Math.max(0, at - Date.now()));
      signal.addEventListener("abort", done, { once: true });
    });
  }

  /** Wakes the sleeper by `at` at the latest (a hold due then is freed then). */
  wakeBy(at: number): void {
    if (!this.wake) {
      this.pending = Math.min(this.pending, at);
      return;
    }
    if (at >= this.at) return;
    this.at = at;
    clearTimeout(this.timer);
    this.timer = setTimeout(this.wake, Math.max(0, at - Date.now()));
  }
}
