import { errors, jwtVerify } from "jose";
import { SHOPPER_TOKEN_ALGORITHM, isCustomerId, tokenKey, type TokenSettings } from "@meshcart/lib";

/** Who is calling: the token's subject is the customer id. */
export interface Shopper {
  customerId: string;
}

/** Why a token was refused; the message is safe to return to the caller. */
export class TokenRejected extends Error {
  override name = "TokenRejected";
}

const CLOCK_TOLERANCE_SECONDS = 5;

/**
 * Checks shopper tokens (the kit's shopper-tokens.ts): signature, `iss`,
 * `aud`, `exp` (required) and `nbf`, and a `sub` that is a valid customer
 * id. Only HS256 is accepted, so a token cannot pick a weaker algorithm (or
 * "none") for itself.
 */
export class TokenVerifier {
  private readonly key: Uint8Array;

  constructor(private readonly settings: TokenSettings) {
    this.key = tokenKey(settings);
  }

  async verify(token: string): Promise<Shopper> {
    let subject: string | undefined;
    try {
      const { payload } = await jwtVerify(token, this.key, {
        algorithms: [SHOPPER_TOKEN_ALGORITHM],
        issuer: this.settings.issuer,
        audience: this.settings.audience,
        requiredClaims: ["exp", "sub"],
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
      });
      subject = payload.sub;
    } catch (error) {
      throw new TokenRejected(reasonOf(error));
    }
    if (!subject || !isCustomerId(subject)) {
      throw new TokenRejected("the token's subject is not a customer id (1 to 64 characters of A-Z a-z 0-9 . _ @ -)");
    }
    return { customerId: subject };
  }
}

function reasonOf(error: unknown): string {
  if (error instanceof errors.JWTExpired) return "the token has expired";
  if (error instanceof errors.JWTClaimValidationFailed) {
    return error.reason === "missing" ? `the token has no ${error.claim} claim` : `the token's ${error.claim} claim is not accepted here`;
  }
  if (error instanceof errors.JWSSignatureVerificationFailed) return "the token's signature does not verify";
  if (error instanceof errors.JOSEAlgNotAllowed) return "the token's algorithm is not accepted here (HS256 only)";
  return "the token is malformed";
}

/**
 * The bearer token of an `authorization` header value, or undefined when
 * the header is absent. A header that is present but not `Bearer <token>`
 * is refused.
 */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const match = /^Bearer +([A-Za-z0-9._~+/=-]+)\s*$/i.exec(header);
  if (!match?.[1]) throw new TokenRejected('the authorization header must be "Bearer <token>"');
  return match[1];
}
