import { SignJWT } from "jose";

/**
 * The storefront's demo token settings (services/storefront/src/demo-tokens.ts;
 * a test keeps the two equal): what `make load` signs with against make dev.
 * A public key, for a laptop only; a deployment gives the load generator the
 * storefront's own secret.
 */
export const DEMO_TOKENS = {
  secret: "meshcart-demo-signing-key-for-local-use-only",
  issuer: "meshcart-demo",
  audience: "meshcart-storefront",
} as const;

export interface TokenSettings {
  secret: string;
  issuer: string;
  audience: string;
}

const TTL_SECONDS = 3_600;

/**
 * Bearer tokens of the demo shoppers, as the storefront checks them (HS256,
 * iss, aud, exp, sub = the customer id). Each is minted once and again when
 * half of its hour has passed.
 */
export class ShopperTokens {
  private readonly key: Uint8Array;
  private readonly minted = new Map<string, { token: Promise<string>; renewAt: number }>();

  constructor(private readonly settings: TokenSettings) {
    this.key = new TextEncoder().encode(settings.secret);
  }

  token(customerId: string): Promise<string> {
    const now = Date.now();
    const known = this.minted.get(customerId);
    if (known && known.renewAt > now) return known.token;
    const issuedAt = Math.floor(now / 1000);
    const token = new SignJWT({})
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .setSubject(customerId)
      .setIssuer(this.settings.issuer)
      .setAudience(this.settings.audience)
      .setIssuedAt(issuedAt)
      .setExpirationTime(issuedAt + TTL_SECONDS)
      .sign(this.key);
    this.minted.set(customerId, { token, renewAt: now + (TTL_SECONDS / 2) * 1000 });
    return token;
  }
}

/** The demo customers: shopper-1 … shopper-N. */
export function shopperIds(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `shopper-${i + 1}`);
}
