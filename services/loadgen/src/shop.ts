import { Metadata } from "nice-grpc";
import { SpanAttributes, inSpan, type Logger, type ServiceClient } from "@meshcart/lib";
import type { InventoryServiceDefinition } from "@meshcart/contracts/meshcart/inventory/v1/inventory.js";
import type { StorefrontServiceDefinition } from "@meshcart/contracts/meshcart/storefront/v1/storefront.js";
import type { LoadgenMetrics } from "./metrics.js";

export type StorefrontClient = ServiceClient<typeof StorefrontServiceDefinition>;
export type InventoryClient = ServiceClient<typeof InventoryServiceDefinition>;

export interface ShopProduct {
  sku: string;
  available: number;
}

/**
 * The catalogue as the shoppers see it (the storefront's ListProducts),
 * split into plentiful products, which normal orders buy, and scarce ones
 * (LOADGEN_SCARCE_SKUS), which only out_of_stock orders ask for, always
 * more than is available.
 */
export class Catalogue {
  private products: ShopProduct[] = [];
  private readonly scarceSkus: Set<string>;

  constructor(
    private readonly storefront: StorefrontClient,
    scarce: readonly string[],
  ) {
    this.scarceSkus = new Set(scarce);
  }

  get loaded(): boolean {
    return this.products.length > 0;
  }

  get all(): readonly ShopProduct[] {
    return this.products;
  }

  get plentiful(): ShopProduct[] {
    return this.products.filter((p) => !this.scarceSkus.has(p.sku));
  }

  get scarce(): ShopProduct[] {
    return this.products.filter((p) => this.scarceSkus.has(p.sku));
  }

  /** Reads every page of the catalogue; throws when the storefront does not answer. */
  async refresh(signal: AbortSignal, correlationId: string): Promise<void> {
    const products: ShopProduct[] = [];
    let pageToken = "";
    do {
      const page = await this.storefront.listProducts({ pageSize: 100, pageToken }, { signal, metadata: Metadata({ "x-request-id": correlationId }) });
      for (const p of page.products) products.push({ sku: p.sku, available: p.available });
      pageToken = page.nextPageToken;
    } while (pageToken);
    this.products = products;
  }
}

export interface RestockPolicy {
  /** Restock a plentiful product when fewer units than this are available. */
  below: number;
  /** Units per restock. */
  quantity: number;
}

/**
 * Keeps a long run's shop stocked, as an operator: inventory's Restock,
 * called directly (not a shopper's call, so not through the storefront),
 * with an idempotency id per restock (`lg.<run>.restock.<n>`) that a failed
 * attempt keeps until it succeeds, so a lost answer never restocks twice.
 * Scarce products are never restocked: out-of-stock refusals stay
 * demonstrable.
 */
export class Restocker {
  readonly counts = { ok: 0, failed: 0, units: 0 };
  /** Restocks whose answer was an error: tried again with the same id. */
  private readonly pending = new Map<string, { id: string; quantity: number }>();
  private sequence = 0;

  constructor(
    private readonly inventory: InventoryClient,
    private readonly catalogue: Catalogue,
    private readonly policy: RestockPolicy,
    private readonly runId: string,
    private readonly metrics: LoadgenMetrics,
    private readonly logger: Logger,
  ) {}

  /** One round: every low plentiful product (and every pending restock) once. */
  async check(signal: AbortSignal): Promise<void> {
    const low = this.catalogue.plentiful.filter((p) => p.available < this.policy.below).map((p) => p.sku);
    for (const sku of new Set([...this.pending.keys(), ...low])) {
      if (signal.aborted) return;
      const restock = this.pending.get(sku) ?? { id: `lg.${this.runId}.restock.${++this.sequence}`, quantity: this.policy.quantity };
      await this.restock(sku, restock, signal);
    }
  }

  private async restock(sku: string, restock: { id: string; quantity: number }, signal: AbortSignal): Promise<void> {
    try {
      await inSpan(
        "loadgen.restock",
        { attributes: { "meshcart.loadgen.role": "operator", "meshcart.loadgen.sku": sku, [SpanAttributes.correlationId]: restock.id } },
        () =>
          this.inventory.restock({ restockId: restock.id, sku, quantity: restock.quantity }, { signal, metadata: Metadata({ "x-request-id": restock.id }) }),
      );
      this.pending.delete(sku);
      this.counts.ok += 1;
      this.counts.units += restock.quantity;
      this.metrics.restocks.inc({ sku, result: "ok" });
      this.metrics.restockedUnits.inc({ sku }, restock.quantity);
      this.logger.info({ sku, quantity: restock.quantity, restock_id: restock.id }, `restocked ${sku} (+${restock.quantity}) as operator`);
    } catch (error) {
      this.pending.set(sku, restock);
      this.counts.failed += 1;
      this.metrics.restocks.inc({ sku, result: "failed" });
      this.logger.warn({ sku, restock_id: restock.id, err: error }, `restock of ${sku} failed; trying again with the same id`);
    }
  }
}
