import { SpanAttributes, inSpan, linkTo, type BackgroundTask, type Logger } from "@meshcart/lib";
import { pause } from "@meshcart/lib/events";
import type { FulfillmentMetrics } from "./metrics.js";
import type { ShipmentChanges } from "./shipment-changes.js";
import type { Timings } from "./shipment-state.js";
import type { ShipmentStore } from "./shipment-store.js";

/** After a failed step (the database away), the next try. */
const RETRY_MS = 2_000;

export interface ShipmentTimer extends BackgroundTask {
  /** A shipment was created here: look again now rather than at the next poll. */
  wake(): void;
}

/**
 * Moves shipments on, so the demo shows progress: PENDING to PACKED to
 * SHIPPED, each after its delay (FULFILLMENT_PACK_AFTER_MS,
 * FULFILLMENT_SHIP_AFTER_MS). It sleeps until the earliest shipment is due,
 * at most `sleeps.pendingMs` (shipments created by other replicas are
 * found then), and `sleeps.idleMs` when none is on its way (an idle
 * service asks nothing of its database), woken early by creations in this
 * process. Each shipment is locked
 * while it moves (SKIP LOCKED: replicas share the work, never a shipment).
 *
 * Each step is a trace of its own with a link to the span that created the
 * shipment: it happens seconds after the order's trace ended, on a timer,
 * not because of the order's call (docs/events.md, "Traces across the
 * broker").
 */
export function shipmentTimer(
  store: ShipmentStore,
  timings: Timings,
  sleeps: { pendingMs: number; idleMs: number },
  changes: ShipmentChanges,
  metrics: FulfillmentMetrics,
  logger: Logger,
): ShipmentTimer {
  let wakeUp = new AbortController();
  return {
    name: "shipment-timer",
    wake() {
      wakeUp.abort();
    },
    async run(signal) {
      while (!signal.aborted) {
        let sleepMs: number;
        try {
          for (;;) {
            const dueInMs = await store.nextDueInMs();
            if (dueInMs === undefined || dueInMs > 0) {
              sleepMs = dueInMs === undefined ? sleeps.idleMs : Math.min(sleeps.pendingMs, Math.max(10, dueInMs));
              break;
            }
            const moved = await inSpan("fulfillment.advance", {}, async (span) => {
              const step = await store.advanceOne(timings);
              if (!step) return undefined;
              const link = linkTo(step.shipment.traceparent);
              if (link) span.addLink(link);
              span.setAttributes({ [SpanAttributes.orderId]: step.shipment.orderId, "meshcart.shipment.state": step.shipment.state });
              return step;
            });
            if (!moved) {
              // Due, but locked by another replica moving it.
              sleepMs = 100;
              break;
            }
            changes.changed(moved.shipment.orderId);
            metrics.steps.inc({ step: moved.entry.type.toLowerCase() });
            logger.info(
              { order_id: moved.shipment.orderId, shipment_id: moved.shipment.shipmentId, state: moved.shipment.state },
              `shipment ${moved.shipment.state.toLowerCase()}`,
            );
            if (signal.aborted) return;
          }
        } catch (error) {
          logger.warn({ err: error }, "shipment timer: a step failed; will retry");
          sleepMs = RETRY_MS;
        }
        // Woken while working: look again at once.
        if (wakeUp.signal.aborted) {
          wakeUp = new AbortController();
          continue;
        }
        await pause(sleepMs, AbortSignal.any([signal, wakeUp.signal]));
        // Woken while sleeping: this wake is spent by the look it causes.
        if (wakeUp.signal.aborted) wakeUp = new AbortController();
      }
    },
  };
}
