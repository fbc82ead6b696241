import { NotFoundError } from "@meshcart/lib";
import type { ShipmentChanges } from "./shipment-changes.js";
import { isFinalShipment, type Shipment, type ShipmentHistoryEntry, type ShipmentState } from "./shipment-state.js";
import type { ShipmentStore } from "./shipment-store.js";

/** The read side of fulfillment: what the gRPC API asks. */
export class Fulfillment {
  constructor(
    private readonly store: ShipmentStore,
    private readonly changes: ShipmentChanges,
    /** How often a watcher re-reads when nothing in this process told it of a change. */
    private readonly pollMs: number,
  ) {}

  async get(orderId: string): Promise<{ shipment: Shipment; history: ShipmentHistoryEntry[] }> {
    const shipment = await this.store.byOrder(orderId);
    if (!shipment) throw new NotFoundError("shipment of order", orderId);
    return { shipment, history: await this.store.historyAfter(orderId, 0) };
  }

  list(limit: number, state: ShipmentState | undefined, after?: { createdAt: string; shipmentId: string }): Promise<{ shipments: Shipment[]; more: boolean }> {
    return this.store.list(limit, state, after);
  }

  /**
   * The shipment's history, then each new step, until it is final, or
   * `signal` aborts (the caller's deadline). NotFoundError when there is no
   * shipment at all: fulfillment cannot tell an order whose confirmation
   * is on its way from one that will never have a shipment, its caller can.
   */
  async *watch(orderId: string, signal: AbortSignal): AsyncGenerator<{ entry: ShipmentHistoryEntry; shipment: Shipment }> {
    let seen = 0;
    while (!signal.aborted) {
      const subscription = this.changes.subscribe(orderId);
      try {
        const fresh = await this.store.historyAfter(orderId, seen);
        if (seen === 0 && fresh.length === 0) throw new NotFoundError("shipment of order", orderId);
        if (fresh.length > 0) {
          const shipment = await this.store.byOrder(orderId);
          if (!shipment) throw new Error(`shipment of order ${orderId} has history but no row`);
          for (const entry of fresh) {
            seen = entry.sequence;
            yield { entry, shipment: asOf(shipment, entry, fresh) };
          }
          if (isFinalShipment(fresh.at(-1)!.stateAfter)) return;
        }
        await subscription.next(this.pollMs, signal);
      } finally {
        subscription.cancel();
      }
    }
  }
}

/** The shipment as it was right after `entry` (read later, it may have moved on since). */
export function asOf(current: Shipment, entry: ShipmentHistoryEntry, history: readonly ShipmentHistoryEntry[]): Shipment {
  const late = history.find((e) => e.type === "CANCEL_TOO_LATE");
  return {
    ...current,
    state: entry.stateAfter,
    version: entry.sequence,
    trackingNumber: entry.stateAfter === "SHIPPED" ? current.trackingNumber : undefined,
    // Recorded before the entries read now, or at one of them up to this one.
    cancelledTooLate: current.cancelledTooLate && (late === undefined || late.sequence <= entry.sequence),
    nextStepAt: entry.sequence === current.version ? current.nextStepAt : undefined,
    updatedAt: entry.occurredAt,
  };
}
