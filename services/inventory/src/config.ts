import { boolean, databaseConfig, integer, serviceConfig, type Config } from "@meshcart/lib";

/** Every environment variable the inventory service reads. */
export const inventoryConfig = {
  ...serviceConfig,
  ...databaseConfig,
  /** Add the demo catalogue's products that are missing at start. */
  INVENTORY_SEED_CATALOGUE: boolean(false),
  /** How long a reservation holds stock when the caller names no TTL. */
  RESERVATION_TTL_SECONDS: integer(1, 3600, 300),
  /** How often expired holds are looked for and freed. */
  EXPIRY_SWEEP_INTERVAL_MS: integer(100, 60_000, 1_000),
};

export type InventoryConfig = Config<typeof inventoryConfig>;
