import { ConfigError, DEMO_TOKENS, decimal, integer, serviceConfig, text, type Config } from "@meshcart/lib";

/** Every environment variable the storefront reads. It owns no database. */
export const storefrontConfig = {
  ...serviceConfig,
  ORDER_ADDRESS: text("localhost:50051").describe("host:port of the order service."),
  INVENTORY_ADDRESS: text("localhost:50053").describe("host:port of the inventory service."),
  PAYMENT_ADDRESS: text("localhost:50052").describe("host:port of the payment service."),
  FULFILLMENT_ADDRESS: text("localhost:50054").describe("host:port of the fulfillment service."),
  // No default on purpose: a deployment that forgets it must not start with
  // a key everybody knows. `make dev` and `make token` share a demo key.
  STOREFRONT_JWT_SECRET: text()
    .refine((value: string) => value.length >= 32, "must be at least 32 characters")
    .describe("HS256 key that signs shoppers' bearer tokens, at least 32 characters (required; make dev sets a demo key that make token also uses)."),
  STOREFRONT_JWT_ISSUER: text(DEMO_TOKENS.issuer).describe("The iss claim every token must carry."),
  STOREFRONT_JWT_AUDIENCE: text(DEMO_TOKENS.audience).describe("The aud claim every token must carry."),
  STOREFRONT_DEFAULT_DEADLINE_MS: integer(100, 300_000, 5_000).describe(
    "Deadline of a unary call that brings none; every call it makes to the services behind carries it.",
  ),
  STOREFRONT_MAX_DEADLINE_MS: integer(100, 600_000, 30_000).describe(
    "Cap on a unary call's deadline: whatever the caller brings, the services behind are not held longer.",
  ),
  STOREFRONT_MAX_STREAM_MS: integer(1_000, 3_600_000, 600_000).describe("Deadline of a TrackOrder stream that brings none, and cap on the one it brings."),
  // Admission control (services/lib/src/admission.ts) of the unary calls:
  // shed here, at the edge, a call costs the least. Eight at most:
  // PlaceOrder's closed-loop throughput peaks at about 8 calls in flight
  // (make bench), and every call admitted beyond the knee adds only
  // latency. Below that the limit follows latency: where the knee is
  // depends on the machine and its neighbours. Not below four: on a busy
  // machine latency also rises with the neighbours' load, which fewer calls
  // in progress cannot lower, and four still gave 85 % of the throughput.
  STOREFRONT_MAX_CALLS: integer(1, 10_000, 8).describe(
    "Unary calls in progress at most (TrackOrder streams and health apart); more wait in the queue, or are refused with RESOURCE_EXHAUSTED. The ceiling of the adaptive limit.",
  ),
  STOREFRONT_MIN_CALLS: integer(1, 10_000, 4).describe(
    "The adaptive limit of calls in progress never goes below this (nor STOREFRONT_MAX_CALLS, when that is lower).",
  ),
  STOREFRONT_CALL_TOLERANCE: decimal(0, 100, 3).describe(
    "How many times its unloaded latency (learnt from calls that ran alone) an admitted call may take on average before the limit of calls in progress comes down; 0 holds it fixed at STOREFRONT_MAX_CALLS.",
  ),
  STOREFRONT_CALL_QUEUE: integer(0, 10_000, 8).describe(
    "Calls that may wait for a place when STOREFRONT_MAX_CALLS are in progress; beyond them, refused at once.",
  ),
  STOREFRONT_CALL_QUEUE_MS: integer(1, 60_000, 25).describe("Longest a call waits in the queue before it is refused (RESOURCE_EXHAUSTED)."),
  STOREFRONT_PART_TIMEOUT_MS: integer(50, 60_000, 2_000).describe(
    "Longest GetOrderDetails waits for its payment, product or shipment part before answering without it.",
  ),
};

export type StorefrontConfig = Config<typeof storefrontConfig>;

/** Rules that span variables, reported like loadConfig's own problems. */
export function checkStorefrontConfig(config: StorefrontConfig): StorefrontConfig {
  const problems: string[] = [];
  if (config.STOREFRONT_DEFAULT_DEADLINE_MS > config.STOREFRONT_MAX_DEADLINE_MS) {
    problems.push("STOREFRONT_DEFAULT_DEADLINE_MS: must not exceed STOREFRONT_MAX_DEADLINE_MS");
  }
  if (config.STOREFRONT_CALL_TOLERANCE > 0 && config.STOREFRONT_CALL_TOLERANCE <= 1) {
    problems.push("STOREFRONT_CALL_TOLERANCE: must be above 1 (calls may take that many times their unloaded latency), or 0 for a fixed limit");
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}
