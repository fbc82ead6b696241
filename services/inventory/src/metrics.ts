import { Counter, Gauge, type Logger, type Registry } from "@meshcart/lib";
import type { StockLevel } from "./inventory.js";

/** A scrape never waits longer than this for the stock query. */
const STOCK_QUERY_TIMEOUT_MS = 2_000;

/**
 * Inventory's business figures. Stock is read from the database when
 * Prometheus scrapes, so it is exact whichever replica answers; SKU is a
 * bounded label (the catalogue). When the query fails the last values stay.
 */
export class InventoryMetrics {
  /** Holds that ran out before they were committed or released. */
  readonly expiredReservations: Counter;

  constructor(registry: Registry, stock: () => Promise<StockLevel[]>, logger: Logger) {
    const registers = [registry];
    this.expiredReservations = new Counter({
      name: "meshcart_inventory_expired_reservations_total",
      help: "Reservations freed because their hold ran out before a commit or release.",
      registers,
    });
    let last: StockLevel[] = [];
    let pending: Promise<void> | undefined;
    // Both gauges come from one query per scrape.
    const refresh = () =>
      (pending ??= withTimeout(stock(), STOCK_QUERY_TIMEOUT_MS)
        .then(
          (levels) => void (last = levels),
          (error: unknown) => logger.debug({ err: error }, "stock levels not read for /metrics; keeping the last ones"),
        )
        .finally(() => (pending = undefined)));
    new Gauge({
      name: "meshcart_inventory_available_stock",
      help: "Units of a SKU that can be reserved now (on hand minus reserved).",
      labelNames: ["sku"],
      registers,
      async collect() {
        await refresh();
        for (const level of last) this.set({ sku: level.sku }, level.available);
      },
    });
    new Gauge({
      name: "meshcart_inventory_reserved_stock",
      help: "Units of a SKU held by live reservations.",
      labelNames: ["sku"],
      registers,
      async collect() {
        await refresh();
        for (const level of last) this.set({ sku: level.sku }, level.reserved);
      },
    });
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
