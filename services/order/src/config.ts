import { z } from "zod";
import { databaseConfig, integer, serviceConfig, text, type Config } from "@meshcart/lib";

/** Every environment variable the order service reads. */
export const orderConfig = {
  ...serviceConfig,
  ...databaseConfig,
  /** host:port of the inventory service. */
  INVENTORY_ADDRESS: text("localhost:50053"),
  /** host:port of the payment service. */
  PAYMENT_ADDRESS: text("localhost:50052"),
  /** Deadline of one call to inventory or payment. */
  ORDER_STEP_TIMEOUT_MS: integer(50, 60_000, 2_000),
  /**
   * App-level retries of a failed call (UNAVAILABLE, DEADLINE_EXCEEDED)
   * before a saga step counts as failed. On for `make dev`, where nothing
   * else retries; 0 in the cluster, where Linkerd retries.
   */
  ORDER_CLIENT_RETRIES: integer(0, 10, 3),
  /** How long a saga lease lasts; a crashed replica's sagas resume after it. */
  ORDER_SAGA_LEASE_MS: integer(1_000, 600_000, 15_000),
  /** How often abandoned sagas are looked for. */
  ORDER_RECOVERY_INTERVAL_MS: integer(100, 600_000, 2_000),
  /** Upper bound of a compensation step's retry backoff. */
  ORDER_RETRY_MAX_MS: integer(10, 600_000, 10_000),
  /** Longest CreateOrder/CancelOrder wait for an outcome, whatever the caller's deadline. */
  ORDER_MAX_WAIT_MS: integer(100, 600_000, 20_000),
  /** Identity of this replica for saga leases; the pod name in Kubernetes. */
  POD_NAME: z.string().optional(),
};

export type OrderConfig = Config<typeof orderConfig>;
