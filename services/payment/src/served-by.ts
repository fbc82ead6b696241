import { hostname } from "node:os";
import type { ServedBy } from "@meshcart/contracts/meshcart/payment/v1/payment.js";
import type { PaymentConfig } from "./config.js";

/**
 * Who answers: named in every response so that a canary split (v1 and v2
 * behind one service) is visible to callers and in load-test results.
 */
export function servedBy(config: Pick<PaymentConfig, "SERVICE_VERSION" | "POD_NAME">): ServedBy {
  return { version: config.SERVICE_VERSION, instance: config.POD_NAME ?? `${hostname()}:${process.pid}` };
}
