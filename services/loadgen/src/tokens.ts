import { mintShopperToken, type TokenSettings } from "@meshcart/lib";

const TTL_SECONDS = 3_600;

/**
 * Bearer tokens of the demo shoppers, minted with the storefront's settings
 * (the kit's shopper tokens). Each is minted once and again when half of its
 * hour has passed.
 */
export class ShopperTokens {
  private readonly minted = new Map<string, { token: Promise<string>; renewAt: number }>();

  constructor(private readonly settings: TokenSettings) {}

  token(customerId: string): Promise<string> {
    const now = Date.now();
    const known = this.minted.get(customerId);
    if (known && known.renewAt > now) return known.token;
    const token = mintShopperToken({ ...this.settings, customerId, ttlSeconds: TTL_SECONDS, now: new Date(now) });
    this.minted.set(customerId, { token, renewAt: now + (TTL_SECONDS / 2) * 1000 });
    return token;
  }
}

/** The demo customers: shopper-1 … shopper-N. */
export function shopperIds(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `shopper-${i + 1}`);
}
