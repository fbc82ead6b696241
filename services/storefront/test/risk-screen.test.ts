import { randomUUID } from "node:crypto";
import { createChannel, createClient, Status, type Channel, type Metadata } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InventoryServiceDefinition, ReservationState } from "@meshcart/contracts/meshcart/inventory/v1/inventory.js";
import { OrderEventType } from "@meshcart/contracts/meshcart/order/v1/order.js";
import { DeclineReason as PaymentDeclineReason, PaymentStatus, type Payment } from "@meshcart/contracts/meshcart/payment/v1/payment.js";
import { DeclineReason, OrderStatus, type PlaceOrderRequest } from "@meshcart/contracts/meshcart/storefront/v1/storefront.js";
import { paymentSummary } from "../src/messages.js";
import { bearer, Stack, token } from "./support/stack.js";

/**
 * Payment v2's risk screen as a shopper meets it: the storefront in front of
 * the real order and inventory processes and of payment running as v2 (the
 * canary). An order paid with pm_card_risky is declined by the screen, and
 * the order service treats that like any decline: REJECTED, the stock held
 * for it released, nothing taken. The storefront shows the reason in its own
 * words (its DeclineReason enum, the order's reason text) and which payment
 * version decided (charged_by_version), which is what the canary walkthrough
 * counts.
 */

let stack: Stack;
let alice: Metadata;
let inventoryChannel: Channel;

beforeAll(async () => {
  stack = await Stack.withBackends("storefront_risk", {}, { payment: { SERVICE_VERSION: "v2" } });
  await stack.startStorefront();
  alice = bearer(await token("alice"));
  inventoryChannel = createChannel(stack.address("inventory"));
});

afterAll(async () => {
  inventoryChannel?.close();
  await stack?.close();
});

function placeRequest(overrides: Partial<PlaceOrderRequest> = {}): PlaceOrderRequest {
  return { requestId: `risk-${randomUUID().slice(0, 8)}`, items: [{ sku: "MESH-CAP", quantity: 2 }], paymentMethod: "pm_card_risky", ...overrides };
}

async function available(sku: string): Promise<number> {
  return (await stack.storefront.getProduct({ sku })).product!.available;
}

describe("payment v2's risk screen through the storefront", () => {
  it("rejects an order paid with pm_card_risky, releases its stock, and shows the reason", async () => {
    const before = await available("MESH-CAP");
    const request = placeRequest();
    const order = (await stack.storefront.placeOrder(request, { metadata: alice })).order!;
    expect(order.status).toBe(OrderStatus.ORDER_STATUS_REJECTED);
    expect(order.state).toBe("ORDER_STATE_REJECTED");
    expect(order.reason).toBe("payment declined: risk screen");
    expect(order.history.map((u) => u.event)).toEqual(["ORDER_PLACED", "STOCK_RESERVED", "PAYMENT_DECLINED", "STOCK_RELEASED", "ORDER_REJECTED"]);
    expect(order.history.find((u) => u.event === "PAYMENT_DECLINED")!.detail).toContain("risk screen");

    // The stock held for it is free again.
    expect(await available("MESH-CAP")).toBe(before);
    const internal = (await stack.order.getOrder({ orderId: order.orderId })).order!;
    expect(internal.history.map((e) => e.type)).toContain(OrderEventType.ORDER_EVENT_TYPE_STOCK_RELEASED);
    const inventory = createClient(InventoryServiceDefinition, inventoryChannel);
    const { reservation } = await inventory.getReservation({ reservationId: internal.reservationId });
    expect(reservation!.state).toBe(ReservationState.RESERVATION_STATE_RELEASED);

    // The composed details name the reason and the version that decided.
    const details = await stack.storefront.getOrderDetails({ orderId: order.orderId }, { metadata: alice });
    expect(details.paymentStatus!.code).toBe(Status.OK);
    expect(details.payment).toMatchObject({
      status: "DECLINED",
      declineReason: DeclineReason.DECLINE_REASON_RISK_SCREEN,
      chargedByVersion: "v2",
      refunded: { minorUnits: 0 },
    });

    // Placing it again is the same rejected order: no second charge.
    const again = (await stack.storefront.placeOrder(request, { metadata: alice })).order!;
    expect(again).toMatchObject({ orderId: order.orderId, status: OrderStatus.ORDER_STATUS_REJECTED });
    const { payments } = await stack.payment.listPayments({ filter: { $case: "orderId", value: order.orderId }, pageSize: 10, pageToken: "" });
    expect(payments.map((p) => [p.status, p.declineReason])).toEqual([
      [PaymentStatus.PAYMENT_STATUS_DECLINED, PaymentDeclineReason.DECLINE_REASON_RISK_SCREEN],
    ]);
  });

  it("confirms the same basket paid with a card the screen does not flag, on the same v2", async () => {
    const order = (await stack.storefront.placeOrder(placeRequest({ paymentMethod: "pm_card_visa" }), { metadata: alice })).order!;
    expect(order.status).toBe(OrderStatus.ORDER_STATUS_CONFIRMED);
    const details = await stack.storefront.getOrderDetails({ orderId: order.orderId }, { metadata: alice });
    expect(details.payment).toMatchObject({ status: "CAPTURED", declineReason: DeclineReason.DECLINE_REASON_UNSPECIFIED, chargedByVersion: "v2" });
  });
});

describe("the storefront's decline reasons", () => {
  const payment = (declineReason: PaymentDeclineReason): Payment => ({
    paymentId: "pay_1",
    idempotencyKey: "ord_1.charge",
    orderId: "ord_1",
    customerId: "alice",
    amount: { currencyCode: "USD", minorUnits: 100 },
    paymentMethod: "pm_card_risky",
    status: PaymentStatus.PAYMENT_STATUS_DECLINED,
    declineReason,
    refunded: { currencyCode: "USD", minorUnits: 0 },
    refunds: [],
    createdAt: new Date(0),
    chargedByVersion: "v2",
  });

  it("names every reason of payment's in its own enum, and an unknown one as no reason", () => {
    expect(
      [
        PaymentDeclineReason.DECLINE_REASON_UNSPECIFIED,
        PaymentDeclineReason.DECLINE_REASON_CARD_DECLINED,
        PaymentDeclineReason.DECLINE_REASON_INSUFFICIENT_FUNDS,
        PaymentDeclineReason.DECLINE_REASON_RISK_SCREEN,
        PaymentDeclineReason.UNRECOGNIZED,
        99 as PaymentDeclineReason,
      ].map((reason) => paymentSummary(payment(reason)).declineReason),
    ).toEqual([
      DeclineReason.DECLINE_REASON_UNSPECIFIED,
      DeclineReason.DECLINE_REASON_CARD_DECLINED,
      DeclineReason.DECLINE_REASON_INSUFFICIENT_FUNDS,
      DeclineReason.DECLINE_REASON_RISK_SCREEN,
      DeclineReason.DECLINE_REASON_UNSPECIFIED,
      DeclineReason.DECLINE_REASON_UNSPECIFIED,
    ]);
  });
});
