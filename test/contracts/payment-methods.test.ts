import { describe, expect, it } from "vitest";
import { PAYMENT_METHODS as ORDER_ACCEPTS } from "../../services/order/src/grpc-handlers.js";
import { PAYMENT_METHODS as PAYMENT_KNOWS } from "../../services/payment/src/rules.js";
import { PAYMENT_METHODS as STOREFRONT_ACCEPTS } from "../../services/storefront/src/grpc-handlers.js";

/**
 * The storefront and order refuse an unknown payment method before any order
 * exists, each with its own list (they do not share payment's code). The
 * lists must be payment's: a method missing at the edge could never be
 * used, and one payment does not know would fail deep in the saga.
 */
describe("the test payment methods", () => {
  it("are the same at the storefront, in order and in payment", () => {
    const sorted = (list: readonly string[]) => [...list].sort();
    expect(sorted(STOREFRONT_ACCEPTS)).toEqual(sorted(PAYMENT_KNOWS));
    expect(sorted(ORDER_ACCEPTS)).toEqual(sorted(PAYMENT_KNOWS));
  });
});
