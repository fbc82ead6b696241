// helm test: one order placed through the storefront reaches CONFIRMED.
//
//   node helm-test/order.mjs <storefront host:port> [timeout seconds]
//
// Runs in the storefront image (mounted at /app/helm-test) with the
// release's STOREFRONT_JWT_SECRET; mints a shopper token with the image's
// own `make token` program, places an order for one demo mug, and follows
// it with GetOrder until it is CONFIRMED (or REJECTED/FAILED: a failure).
/* global AbortSignal */
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createChannel, createClient, Metadata } from "nice-grpc";
import { OrderStatus, StorefrontServiceDefinition } from "@meshcart/contracts/meshcart/storefront/v1/storefront.js";

const [address, timeoutArg = "60"] = process.argv.slice(2);
if (!address) {
  console.error("usage: node order.mjs <storefront host:port> [timeout seconds]");
  process.exit(2);
}
const deadline = Date.now() + Number(timeoutArg) * 1000;

const mintToken = fileURLToPath(new URL("../services/storefront/dist/mint-token.js", import.meta.url));
const customer = "helm-test";
const token = execFileSync(process.execPath, [mintToken, "--customer", customer, "--ttl", "10m"], { encoding: "utf8" }).trim();
const metadata = Metadata({ authorization: `Bearer ${token}` });

const channel = createChannel(address);
const storefront = createClient(StorefrontServiceDefinition, channel);
const requestId = `helm-test-${Date.now()}`;
try {
  const placed = await storefront.placeOrder(
    { requestId, items: [{ sku: "MESH-MUG", quantity: 1 }], paymentMethod: "pm_card_visa" },
    { metadata, signal: AbortSignal.timeout(Math.max(1_000, deadline - Date.now())) },
  );
  let order = placed.order;
  if (!order) throw new Error("PlaceOrder answered without an order");
  console.log(`placed ${order.orderId}: ${OrderStatus[order.status]}`);
  while (order.status === OrderStatus.ORDER_STATUS_PROCESSING && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    order = (await storefront.getOrder({ orderId: order.orderId }, { metadata, signal: AbortSignal.timeout(5_000) })).order ?? order;
  }
  if (order.status !== OrderStatus.ORDER_STATUS_CONFIRMED) {
    throw new Error(`order ${order.orderId} is ${OrderStatus[order.status]}${order.reason ? ` (${order.reason})` : ""}, not CONFIRMED`);
  }
  console.log(`ok   ${order.orderId} CONFIRMED`);
  console.log("1 passed, 0 failed");
} catch (error) {
  console.log(`FAIL ${error instanceof Error ? error.message : String(error)}`);
  console.log("0 passed, 1 failed");
  process.exitCode = 1;
} finally {
  channel.close();
}
