import { z } from "zod";
import { databaseConfig, integer, serviceConfig, text, type Config } from "@meshcart/lib";
import { natsConfig } from "@meshcart/lib/events";
import { CRASH_POINTS } from "./chaos.js";
import { OUTBOX_CRASH_POINTS } from "./outbox-relay.js";

/** Every environment variable the order service reads. */
export const orderConfig = {
  ...serviceConfig,
  ...databaseConfig,
  ...natsConfig,
  INVENTORY_ADDRESS: text("localhost:50053").describe("host:port of the inventory service."),
  PAYMENT_ADDRESS: text("localhost:50052").describe("host:port of the payment service."),
  ORDER_STEP_TIMEOUT_MS: integer(50, 60_000, 2_000).describe("Deadline of one call to inventory or payment."),
  // On for `make dev`, where nothing else retries; the chart sets 0 because
  // Linkerd retries there, and two layers would multiply attempts.
  ORDER_CLIENT_RETRIES: integer(0, 10, 3).describe(
    "App-level retries of a call failing with UNAVAILABLE or DEADLINE_EXCEEDED before a saga step counts as failed.",
  ),
  ORDER_SAGA_LEASE_MS: integer(1_000, 600_000, 15_000).describe(
    "How long a saga lease lasts without renewal; another replica resumes a dead replica's sagas after it.",
  ),
  ORDER_RECOVERY_INTERVAL_MS: integer(100, 600_000, 2_000).describe(
    "Shortest time between two looks for abandoned sagas; each look sleeps until the earliest running lease ends, at most one lease (ORDER_SAGA_LEASE_MS).",
  ),
  ORDER_RETRY_MAX_MS: integer(10, 600_000, 10_000).describe("Upper bound of the backoff between compensation retries."),
  ORDER_UNDO_ATTEMPTS: integer(1, 1_000, 10).describe(
    "Attempts of a compensation or cancellation step whose calls keep failing in a way retrying does not fix (INTERNAL, PERMISSION_DENIED, an unexpected refusal) before it is recorded as not done and the saga ends; transient failures are retried until they pass.",
  ),
  ORDER_MAX_WAIT_MS: integer(100, 600_000, 20_000).describe("Longest CreateOrder or CancelOrder waits for the outcome, whatever the caller's deadline."),
  // Admission control (services/lib/src/admission.ts): a checkout holds its
  // place from CreateOrder until its saga ends, whoever waits for it.
  ORDER_MAX_CHECKOUTS: integer(1, 10_000, 16).describe(
    "Checkouts and cancellations in progress at most (from the call until the saga ends); more wait in the queue, or are refused with RESOURCE_EXHAUSTED before anything is written.",
  ),
  ORDER_CHECKOUT_QUEUE: integer(0, 10_000, 8).describe(
    "Checkouts that may wait for a place when ORDER_MAX_CHECKOUTS are in progress; beyond them, refused at once.",
  ),
  ORDER_CHECKOUT_QUEUE_MS: integer(1, 60_000, 100).describe("Longest a checkout waits in the queue before it is refused (RESOURCE_EXHAUSTED)."),
  ORDER_CRASH_POINT: z
    .enum(CRASH_POINTS, { error: `must be one of ${CRASH_POINTS.join(", ")}` })
    .optional()
    .describe("Chaos hook for crash tests: the saga SIGKILLs its own process at this point. Never set in a deployment."),
  ORDER_OUTBOX_POLL_MS: integer(20, 600_000, 30_000).describe(
    "How long an idle outbox relay waits before looking for unpublished events itself. Final events wake it at once (this replica's, and the other replicas' through their NOTIFY), so this only bounds the delay after a lost notification.",
  ),
  ORDER_OUTBOX_LEASE_MS: integer(1_000, 600_000, 10_000).describe(
    "Lease of the outbox relay: one replica publishes at a time, and another takes over this long after it stopped renewing.",
  ),
  ORDER_OUTBOX_PUBLISH_TIMEOUT_MS: integer(100, 60_000, 2_000).describe(
    "How long the relay waits for the broker to acknowledge an event; unacknowledged, the event stays in the outbox and is published again.",
  ),
  ORDER_OUTBOX_CRASH_POINT: z
    .enum(OUTBOX_CRASH_POINTS, { error: `must be one of ${OUTBOX_CRASH_POINTS.join(", ")}` })
    .optional()
    .describe("Chaos hook for crash tests: the outbox relay SIGKILLs its own process at this point. Never set in a deployment."),
};

export type OrderConfig = Config<typeof orderConfig>;
