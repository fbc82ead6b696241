import { parseArgs } from "node:util";
import { DEMO_TOKENS, mintShopperToken, parseDuration } from "@meshcart/lib";

/*
 * `make token CUSTOMER=alice [TTL=1h]`: prints a bearer token for the
 * storefront that `make dev` runs (the demo key, issuer and audience), and
 * nothing else, so that `TOKEN=$(make -s token CUSTOMER=alice)` works.
 * STOREFRONT_JWT_SECRET, _ISSUER and _AUDIENCE override the demo settings
 * (for a storefront configured otherwise).
 */

const usage = "usage: make token CUSTOMER=<customer id> [TTL=<seconds, or 30m, 2h, 1d>]";

function seconds(ttl: string): number {
  const ms = parseDuration(ttl);
  if (ms === undefined) throw new Error(`TTL "${ttl}" is not a duration such as 3600, 30m, 2h or 1d`);
  const value = Math.round(ms / 1000);
  if (value < 1 || value > 30 * 86_400) throw new Error(`TTL must be from 1 second to 30 days, not "${ttl}"`);
  return value;
}

try {
  const { values } = parseArgs({ options: { customer: { type: "string" }, ttl: { type: "string" } } });
  const customerId = values.customer?.trim();
  if (!customerId) throw new Error(`CUSTOMER is required\n${usage}`);
  const env = (name: string) => process.env[name] || undefined;
  const token = await mintShopperToken({
    secret: env("STOREFRONT_JWT_SECRET") ?? DEMO_TOKENS.secret,
    issuer: env("STOREFRONT_JWT_ISSUER") ?? DEMO_TOKENS.issuer,
    audience: env("STOREFRONT_JWT_AUDIENCE") ?? DEMO_TOKENS.audience,
    customerId,
    ttlSeconds: seconds(values.ttl?.trim() || "1h"),
  });
  process.stdout.write(`${token}\n`);
} catch (error) {
  process.stderr.write(`make token: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 2;
}
