import { boolean, databaseConfig, faultConfig, integer, serviceConfig, type Config } from "@meshcart/lib";

/** Every environment variable the inventory service reads. */
export const inventoryConfig = {
  ...serviceConfig,
  ...databaseConfig,
  ...faultConfig,
  INVENTORY_SEED_CATALOGUE: boolean(false).describe("Add the demo catalogue's missing products at start."),
  RESERVATION_TTL_SECONDS: integer(1, 3600, 300).describe("How long a reservation holds stock when the caller names no TTL."),
  EXPIRY_SWEEP_INTERVAL_MS: integer(100, 600_000, 60_000).describe(
    "Longest the expiry sweeper sleeps: it wakes when the next hold it knows of runs out, and at least this often for holds made by other replicas.",
  ),
};

export type InventoryConfig = Config<typeof inventoryConfig>;
