import { z } from "zod";
import { DEMO_TOKENS, boolean, integer, serviceConfig, text, type Config } from "@meshcart/lib";
import { DEFAULT_MIX_TEXT, SCENARIOS, parseMix, parseRunDuration } from "./options.js";

function rate(min: number, max: number) {
  const message = `must be a number from ${min} to ${max}`;
  return z.coerce.number({ error: message }).min(min, message).max(max, message);
}

/**
 * Every environment variable the load generator reads. As a deployable it
 * is a service like the others (the kit's runtime: admin port with /healthz,
 * /readyz, /metrics; gRPC health on GRPC_PORT, nothing else); `cli.js`
 * reads the same variables, its flags on top.
 */
export const loadgenConfig = {
  ...serviceConfig,
  STOREFRONT_ADDRESS: text("localhost:50050").describe("host:port of the storefront, where the load generator's shoppers send their traffic."),
  INVENTORY_ADDRESS: text("localhost:50053").describe("host:port of the inventory service."),
  // The same variables as the storefront's, from the same Secret in the
  // cluster: the load generator signs its shoppers' tokens with that key.
  STOREFRONT_JWT_SECRET: text()
    .refine((value: string) => value.length >= 32, "must be at least 32 characters")
    .describe("HS256 key that signs shoppers' bearer tokens, at least 32 characters (required; make dev sets a demo key that make token also uses)."),
  STOREFRONT_JWT_ISSUER: text(DEMO_TOKENS.issuer).describe("The iss claim every token must carry."),
  STOREFRONT_JWT_AUDIENCE: text(DEMO_TOKENS.audience).describe("The aud claim every token must carry."),
  LOADGEN_RPS: rate(0.1, 10_000).default(10).describe("Requests started per second, on schedule whether or not earlier ones finished (open loop)."),
  LOADGEN_DURATION: text()
    .superRefine((value, context) => {
      const parsed = parseRunDuration(value);
      if (!parsed.ok) context.addIssue({ code: "custom", message: parsed.problem });
    })
    .optional()
    .describe("How long to send, e.g. 30s, 5m, 1h; unset or forever: until stopped. At the end the process exits (1 when LOADGEN_MAX_ERROR_RATE is passed)."),
  LOADGEN_REQUESTS: integer(1, 1_000_000_000).optional().describe("Stop after sending this many requests; unset: no limit."),
  LOADGEN_CONCURRENCY: integer(1, 10_000, 100).describe(
    "Most requests in flight at once; a request due while the cap is reached is not sent and counts as dropped.",
  ),
  LOADGEN_SHOPPERS: integer(1, 100_000, 20).describe("Demo customers shopper-1 … shopper-N, each with its own token."),
  LOADGEN_MIX: text(DEFAULT_MIX_TEXT)
    .superRefine((value, context) => {
      const parsed = parseMix(value);
      if (!parsed.ok) context.addIssue({ code: "custom", message: parsed.problem });
    })
    .describe(`Relative weights of the scenarios (${SCENARIOS.join(", ")}); unnamed ones keep their default, 0 turns one off.`),
  LOADGEN_TIMEOUT_MS: integer(100, 600_000, 10_000).describe("Deadline of each request (and of each TrackOrder stream)."),
  LOADGEN_MAX_ERROR_RATE: rate(0, 1)
    .optional()
    .describe("Share of errors (failed orders, unexpected statuses, dropped sends) above which a finished run exits 1; unset: never."),
  LOADGEN_RESTOCK: boolean(true).describe(
    "Restock as an operator: call inventory's Restock directly (INVENTORY_ADDRESS) when a product runs low, so a long run never drains the shop.",
  ),
  LOADGEN_RESTOCK_RETRIES: integer(0, 10, 2).describe(
    "App-level retries of a Restock failing with UNAVAILABLE or DEADLINE_EXCEEDED (it is idempotent on its id); 0 in the cluster, where Linkerd retries.",
  ),
  LOADGEN_RESTOCK_BELOW: integer(1, 1_000_000, 200).describe("Restock a product when fewer units than this are available."),
  LOADGEN_RESTOCK_QUANTITY: integer(1, 1_000_000, 1_000).describe("Units added by one restock."),
  LOADGEN_RESTOCK_INTERVAL_MS: integer(100, 3_600_000, 2_000).describe("How often stock is checked (through the storefront's ListProducts)."),
  LOADGEN_SCARCE_SKUS: text("MESH-STICKER-GOLD").describe(
    "Comma-separated SKUs kept scarce: never in normal orders, never restocked; out_of_stock orders ask for more than is available.",
  ),
  LOADGEN_SUMMARY_INTERVAL_MS: integer(1_000, 3_600_000, 15_000).describe("How often a summary line is logged: rate, success %, p50/p95/p99 by outcome."),
  LOADGEN_RUN_ID: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,40}$/, "must be 1 to 40 characters of A-Z a-z 0-9 _ -")
    .optional()
    .describe("Names the run in request ids (lg.<run>.<n>) and restock ids; random when unset."),
  LOADGEN_SEED: integer(0, 2 ** 31 - 1)
    .optional()
    .describe("Seed of the random choices (scenarios, shoppers, items), for a repeatable mix; random when unset."),
};

export type LoadgenConfig = Config<typeof loadgenConfig>;
