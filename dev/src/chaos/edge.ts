import { SignJWT } from "jose";
import { Metadata } from "nice-grpc";
import { createLogger, createServiceClient, openChannel } from "@meshcart/lib";
import { OrderStatus, StorefrontServiceDefinition } from "@meshcart/lib/gen/meshcart/storefront/v1/storefront.js";
import { demoJwt } from "../services.js";
import { codeName } from "./calls.js";

/** The shopper the harness checks out as, apart from loadgen's shopper-N. */
export const PROBE_SHOPPER = "chaos-probe";

/** A demo token for the storefront that ChaosShop runs, signed with make dev's demo key. */
export function demoToken(customerId: string, ttlSeconds = 3_600): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(customerId)
    .setIssuer(demoJwt.issuer)
    .setAudience(demoJwt.audience)
    .setIssuedAt(now)
    .setExpirationTime(now + ttlSeconds)
    .sign(new TextEncoder().encode(demoJwt.secret));
}

export interface EdgeCheckout {
  /** One PlaceOrder through the storefront: "confirmed", the order's other status, or the gRPC code. */
  place(deadlineMs: number): Promise<string>;
  close(): void;
}

/**
 * A shopper's checkout through the public edge: storefront → order →
 * inventory and payment, every hop of a sale. Confirmed means every
 * connection on the way works again, not only the process that was killed.
 */
export function edgeCheckout(storefront: string, runId: string): EdgeCheckout {
  const channel = openChannel(storefront);
  const client = createServiceClient(
    StorefrontServiceDefinition,
    channel,
    { address: storefront, attemptTimeoutMs: 30_000, retries: 0 },
    createLogger({ service: "chaos", version: "dev", level: "silent" }),
  );
  const token = demoToken(PROBE_SHOPPER);
  let placed = 0;
  return {
    async place(deadlineMs) {
      const requestId = `chaos.${runId}.edge.${++placed}`;
      const metadata = Metadata({ authorization: `Bearer ${await token}`, "x-request-id": requestId });
      try {
        const { order } = await client.placeOrder(
          { requestId, items: [{ sku: "MESH-MUG", quantity: 1 }], paymentMethod: "pm_card_visa" },
          { deadline: deadlineMs, metadata },
        );
        const status = order?.status ?? OrderStatus.ORDER_STATUS_UNSPECIFIED;
        return status === OrderStatus.ORDER_STATUS_CONFIRMED ? "confirmed" : (OrderStatus[status] ?? "UNKNOWN").replace("ORDER_STATUS_", "").toLowerCase();
      } catch (error) {
        return codeName(error);
      }
    },
    close: () => channel.close(),
  };
}
