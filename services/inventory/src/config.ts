import { boolean, databaseConfig, faultConfig, integer, serviceConfig, type Config } from "@meshcart/lib";

/** Every environment variable the inventory service reads. */
export const inventoryConfig = {
  ...serviceConfig,
  ...databaseConfig,
  ...faultConfig,
  INVENTORY_SEED_CATALOGUE: boolean(false).describe("Add the demo catalogue's missing products at start."),
  RESERVATION_TTL_SECONDS: integer(1, 3600, 300).describe("How long a reservation holds stock when the caller names no TTL."),
  EXPIRY_SWEEP_INTERVAL_MS: integer(100, 60_000, 1_000).describe("How often expired holds are looked for and freed."),
};

export type InventoryConfig = Config<typeof inventoryConfig>;
