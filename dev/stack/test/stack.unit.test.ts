import { describe, expect, it } from "vitest";
import { localServices } from "../src/services.js";
import { startWaves, wire } from "../src/stack.js";

describe("the stack fixture's wiring of make dev's rows", () => {
  const storefront = localServices.find((row) => row.name === "storefront")!;

  it("points make dev's fixed addresses at the stack's own and leaves other variables as they are", () => {
    const own = { order: 20_001, payment: 20_002, inventory: 20_003, fulfillment: 20_004, storefront: 20_005 };
    const env = wire(storefront.env, (service) => `127.0.0.1:${own[service]}`);
    expect(env).toMatchObject({
      ORDER_ADDRESS: "127.0.0.1:20001",
      PAYMENT_ADDRESS: "127.0.0.1:20002",
      INVENTORY_ADDRESS: "127.0.0.1:20003",
      FULFILLMENT_ADDRESS: "127.0.0.1:20004",
      STOREFRONT_JWT_ISSUER: storefront.env.STOREFRONT_JWT_ISSUER,
    });
  });

  it("leaves out the address of a service the stack does not run, so that the harness gives its own", () => {
    const env = wire(storefront.env, (service) => (service === "order" ? "127.0.0.1:20001" : undefined));
    expect(env.ORDER_ADDRESS).toBe("127.0.0.1:20001");
    expect(env).not.toHaveProperty("PAYMENT_ADDRESS");
    expect(env).not.toHaveProperty("FULFILLMENT_ADDRESS");
  });

  it("starts a service after the services it calls, the others together", () => {
    expect(startWaves(["inventory", "payment", "order", "fulfillment", "storefront"])).toEqual([
      ["inventory", "payment", "fulfillment"],
      ["order"],
      ["storefront"],
    ]);
  });

  it("does not wait for a service that is not started with the others", () => {
    expect(startWaves(["order", "storefront"])).toEqual([["order"], ["storefront"]]);
    expect(startWaves(["storefront"])).toEqual([["storefront"]]);
  });
});
