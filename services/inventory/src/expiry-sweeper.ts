import type { BackgroundTask, Logger } from "@meshcart/lib";
import type { Inventory } from "./inventory.js";

/**
 * Frees reservations whose hold ran out, so that a checkout that died
 * between reserving and committing never keeps stock locked away.
 */
export function expirySweeper(
  inventory: Inventory,
  intervalMs: number,
  logger: Logger,
  onExpired: (count: number) => void = () => undefined,
): BackgroundTask {
  return {
    name: "reservation-expiry",
    async run(signal) {
      while (!signal.aborted) {
        try {
          // Drain in batches so a backlog after an outage clears quickly.
          let expired: number;
          do {
            expired = await inventory.expireDue(100);
            if (expired > 0) {
              logger.info({ expired }, "released expired reservations");
              onExpired(expired);
            }
          } while (expired === 100 && !signal.aborted);
        } catch (error) {
          logger.warn({ err: error }, "reservation expiry sweep failed; will retry");
        }
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, intervalMs);
          signal.addEventListener("abort", () => (clearTimeout(timer), resolve()), { once: true });
        });
      }
    },
  };
}
