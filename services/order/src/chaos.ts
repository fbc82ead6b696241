import type { Logger } from "@meshcart/lib";

/**
 * A chaos hook for crash tests (services/order/test/crash.test.ts), off
 * unless ORDER_CRASH_POINT names one of these points. At that point the
 * saga kills its own process with SIGKILL, as a node failure or an OOM kill
 * would: no shutdown, no lease hand-over, nothing appended.
 *
 * - `before:<step>`: the step is about to call the other service.
 * - `after:<step>`: the other service answered (or the call failed) and the
 *   outcome is not yet appended to the log: the lost-answer case.
 *
 * `refund` covers both the compensation and the cancellation refund (and the
 * repeated charge that settles a charge in doubt); `release` covers the
 * compensation's release (and the return or fence that may follow it);
 * `return` is the cancellation's return of committed stock.
 */
export const CRASH_POINTS = [
  "before:reserve",
  "after:reserve",
  "before:charge",
  "after:charge",
  "before:commit",
  "after:commit",
  "before:refund",
  "after:refund",
  "before:release",
  "after:release",
  "before:return",
  "after:return",
] as const;

export type CrashPoint = (typeof CRASH_POINTS)[number];

/** Called by the saga at every crash point; a no-op unless one is configured. */
export type CrashHook = (point: CrashPoint) => void;

export function crashHook(target: CrashPoint | undefined, logger: Logger): CrashHook {
  if (target === undefined) return () => undefined;
  logger.warn({ crash_point: target }, "chaos: ORDER_CRASH_POINT is set; the process will kill itself there");
  return (point) => {
    if (point !== target) return;
    // pino writes synchronously, so this line is out before the signal lands.
    logger.warn({ crash_point: point }, "chaos: killing this process (SIGKILL)");
    process.kill(process.pid, "SIGKILL");
  };
}
