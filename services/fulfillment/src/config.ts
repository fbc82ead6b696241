import { z } from "zod";
import { ConfigError, databaseConfig, integer, serviceConfig, type Config } from "@meshcart/lib";
import { natsConfig } from "@meshcart/lib/events";
import { CONSUMER_CRASH_POINTS } from "./event-consumer.js";

/** Every environment variable the fulfillment service reads. */
export const fulfillmentConfig = {
  ...serviceConfig,
  ...databaseConfig,
  ...natsConfig,
  FULFILLMENT_PACK_AFTER_MS: integer(0, 3_600_000, 2_000).describe(
    "How long a new shipment waits before the timer packs it (the window in which a cancellation stops it cheaply).",
  ),
  FULFILLMENT_SHIP_AFTER_MS: integer(0, 3_600_000, 3_000).describe(
    "How long a packed shipment waits for the carrier; once shipped, a cancellation is recorded as too late.",
  ),
  FULFILLMENT_MAX_DELIVERIES: integer(1, 100, 5).describe(
    "Deliveries of an order event that keeps failing (not because the database is away) before it goes to the dead-letter subject meshcart.deadletter.fulfillment.",
  ),
  FULFILLMENT_ACK_WAIT_MS: integer(1_000, 600_000, 30_000).describe(
    "How long the broker waits for the consumer's acknowledgement before it redelivers an event.",
  ),
  FULFILLMENT_POLL_MS: integer(50, 60_000, 1_000).describe(
    "Longest the shipment timer sleeps while shipments are on their way, and how often WatchShipment re-reads: changes made by this replica are seen at once, other replicas' after this.",
  ),
  FULFILLMENT_IDLE_LOOK_MS: integer(1_000, 3_600_000, 30_000).describe(
    "How long the shipment timer sleeps while no shipment is on its way anywhere. A shipment created by this replica wakes it at once; this bounds how long another replica's shipments wait when that replica stopped.",
  ),
  FULFILLMENT_CRASH_POINT: z
    .enum(CONSUMER_CRASH_POINTS, { error: `must be one of ${CONSUMER_CRASH_POINTS.join(", ")}` })
    .optional()
    .describe("Chaos hook for crash tests: the event consumer SIGKILLs its own process at this point. Never set in a deployment."),
};

export type FulfillmentConfig = Config<typeof fulfillmentConfig> & { NATS_URL: string };

/** Rules that span variables, reported like loadConfig's own problems. */
export function checkFulfillmentConfig(config: Config<typeof fulfillmentConfig>): FulfillmentConfig {
  if (!config.NATS_URL) throw new ConfigError(["NATS_URL: fulfillment consumes the order events from the broker; set it to its nats:// URL (not set)"]);
  return { ...config, NATS_URL: config.NATS_URL };
}
