import { SignJWT } from "jose";
import { isCustomerId } from "./validation.js";

/**
 * A shopper's bearer token at the storefront, defined once: an HS256 JWT
 * whose subject is the customer id, with `iss`, `aud`, `iat` and `exp`. The
 * storefront checks tokens against these settings (its STOREFRONT_JWT_*
 * variables); `make token`, the load generator and the tests mint them here.
 */
export interface TokenSettings {
  /** HS256 key, as text (its UTF-8 bytes sign). */
  secret: string;
  issuer: string;
  audience: string;
}

/** The one algorithm: a token cannot pick a weaker one (or "none") for itself. */
export const SHOPPER_TOKEN_ALGORITHM = "HS256";

/**
 * The demo settings `make dev` starts the storefront with and `make token`
 * and `make load` sign with. The secret is public (it is in this
 * repository): it is for a laptop, never for a deployment, which must set
 * its own STOREFRONT_JWT_SECRET (the storefront has no default for it).
 */
export const DEMO_TOKENS: Readonly<TokenSettings> = Object.freeze({
  secret: "meshcart-demo-signing-key-for-local-use-only",
  issuer: "meshcart-demo",
  audience: "meshcart-storefront",
});

/** The key bytes of a token secret. */
export function tokenKey(settings: TokenSettings): Uint8Array {
  return new TextEncoder().encode(settings.secret);
}

export interface MintOptions extends TokenSettings {
  customerId: string;
  /** Lifetime in seconds. */
  ttlSeconds: number;
  /** Issue time; now when omitted (tests mint expired tokens with it). */
  now?: Date;
}

/** A token the storefront accepts for `customerId`. */
export async function mintShopperToken(options: MintOptions): Promise<string> {
  if (!isCustomerId(options.customerId)) {
    throw new Error("the customer id must be 1 to 64 characters of A-Z a-z 0-9 . _ @ -");
  }
  const issuedAt = Math.floor((options.now ?? new Date()).getTime() / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg: SHOPPER_TOKEN_ALGORITHM, typ: "JWT" })
    .setSubject(options.customerId)
    .setIssuer(options.issuer)
    .setAudience(options.audience)
    .setIssuedAt(issuedAt)
    .setExpirationTime(issuedAt + options.ttlSeconds)
    .sign(tokenKey(options));
}
