/** Waiting for the next change of one order's shipment, from the moment of subscribing. */
export interface ChangeSubscription {
  /** Resolves at the first change since subscribing (at once if there was one), after `ms`, or when `signal` aborts. */
  next(ms: number, signal?: AbortSignal): Promise<void>;
  /** Stops listening; always call it. */
  cancel(): void;
}

/**
 * Tells WatchShipment streams of this process that a shipment changed here
 * (the consumer or the timer committed a step). Changes committed by another
 * replica are found by re-reading on a timer: a watcher subscribes before it
 * reads, so it never misses a change of its own process in between.
 */
export class ShipmentChanges {
  private readonly listeners = new Map<string, Set<() => void>>();

  changed(orderId: string): void {
    for (const listener of [...(this.listeners.get(orderId) ?? [])]) listener();
  }

  subscribe(orderId: string): ChangeSubscription {
    let pending = false;
    let wake: (() => void) | undefined;
    const listener = () => {
      pending = true;
      wake?.();
    };
    let set = this.listeners.get(orderId);
    if (!set) this.listeners.set(orderId, (set = new Set()));
    set.add(listener);
    const listeners = this.listeners;
    return {
      next(ms, signal) {
        return new Promise((resolve) => {
          if (pending || signal?.aborted) {
            pending = false;
            return resolve();
          }
          const done = () => {
            clearTimeout(timer);
            signal?.removeEventListener("abort", done);
            wake = undefined;
            pending = false;
            resolve();
          };
          const timer = setTimeout(done, ms);
          wake = done;
          signal?.addEventListener("abort", done, { once: true });
        });
      },
      cancel() {
        set.delete(listener);
        if (set.size === 0 && listeners.get(orderId) === set) listeners.delete(orderId);
        wake = undefined;
      },
    };
  }
}
