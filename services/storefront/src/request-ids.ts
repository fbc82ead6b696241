import { createHash } from "node:crypto";

/** What order accepts as a request_id: 1 to 128 characters of [A-Za-z0-9._:-]. */
const ORDER_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * The idempotency key order sees for a shopper's checkout. Shoppers choose
 * their request_ids, so two shoppers may pick the same one; prefixing the
 * customer keeps their orders apart. `<customer>:<request_id>` when that is
 * a valid key (readable in order's logs and database); otherwise (customer
 * ids may contain "@", and the two together may be too long) a SHA-256 of
 * both, as `sf.<base64url>`. Customer ids never contain ":", so the readable
 * form is unambiguous, and the hashed form, without ":", never equals one.
 */
export function orderRequestId(customerId: string, requestId: string): string {
  const readable = `${customerId}:${requestId}`;
  if (ORDER_REQUEST_ID.test(readable)) return readable;
  const digest = createHash("sha256").update(customerId).update("\0").update(requestId).digest("base64url");
  return `sf.${digest}`;
}
