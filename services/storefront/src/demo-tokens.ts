/**
 * The demo token settings `make dev` starts the storefront with and
 * `make token` signs with. The secret is public (it is in this repository):
 * it is for a laptop, never for a deployment, which must set its own
 * STOREFRONT_JWT_SECRET (the service has no default for it).
 */
export const DEMO_TOKENS = {
  secret: "meshcart-demo-signing-key-for-local-use-only",
  issuer: "meshcart-demo",
  audience: "meshcart-storefront",
} as const;
