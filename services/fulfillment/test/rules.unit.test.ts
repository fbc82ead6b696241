import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { OrderEvent } from "@meshcart/contracts/meshcart/events/v1/order_events.js";
import { InvalidEventError, readEvent } from "../src/event-consumer.js";
import { asOf } from "../src/fulfillment.js";
import {
  advance,
  decide,
  isFinalShipment,
  shipmentIdFor,
  trackingNumberFor,
  type OrderFact,
  type Shipment,
  type ShipmentHistoryEntry,
} from "../src/shipment-state.js";

const timings = { packAfterMs: 1_000, shipAfterMs: 2_000 };
const now = new Date("2026-12-01T10:00:00Z");
const confirmed: OrderFact = { kind: "confirmed", eventId: "ord_1.4", orderId: "ord_1", customerId: "alice", lines: [{ sku: "MESH-MUG", quantity: 2 }] };
const cancelled: OrderFact = { kind: "cancelled", eventId: "ord_1.8", orderId: "ord_1", customerId: "alice", reason: "changed my mind" };

/** The shipment after a sequence of facts and timer steps, as the store would apply them. */
function run(steps: ("confirmed" | "cancelled" | "tick")[]): { shipment: Shipment | undefined; history: ShipmentHistoryEntry[] } {
  let shipment: Shipment | undefined;
  const history: ShipmentHistoryEntry[] = [];
  for (const step of steps) {
    if (step === "tick") {
      const moved = shipment && advance(shipment, now, timings);
      if (moved) {
        shipment = moved.shipment;
        history.push(moved.entry);
      }
      continue;
    }
    const decision = decide(shipment, step === "confirmed" ? confirmed : cancelled, now, timings);
    if (decision.outcome !== "unchanged") {
      shipment = decision.shipment;
      history.push(decision.entry);
    }
  }
  return { shipment, history };
}

describe("a shipment's rules", () => {
  it("a confirmation creates a PENDING shipment named after the order, due after the pack delay", () => {
    const decision = decide(undefined, confirmed, now, timings, "00-aa-bb-01");
    expect(decision.outcome).toBe("created");
    if (decision.outcome !== "created") return;
    expect(decision.shipment).toMatchObject({ shipmentId: "shp_1", state: "PENDING", version: 1, lines: confirmed.lines, traceparent: "00-aa-bb-01" });
    expect(decision.shipment.nextStepAt).toEqual(new Date(now.getTime() + timings.packAfterMs));
    expect(decision.entry).toMatchObject({ sequence: 1, type: "CREATED", stateAfter: "PENDING" });
  });

  it("the timer packs, then ships with a tracking number, then stops", () => {
    const { shipment, history } = run(["confirmed", "tick", "tick", "tick"]);
    expect(history.map((e) => e.type)).toEqual(["CREATED", "PACKED", "SHIPPED"]);
    expect(shipment).toMatchObject({ state: "SHIPPED", version: 3, trackingNumber: trackingNumberFor("shp_1"), nextStepAt: undefined });
  });

  it.each([
    [["confirmed", "cancelled"], "CANCELLED", ["CREATED", "CANCELLED"], false],
    [["confirmed", "tick", "cancelled"], "CANCELLED", ["CREATED", "PACKED", "CANCELLED"], false],
    [["confirmed", "tick", "tick", "cancelled"], "SHIPPED", ["CREATED", "PACKED", "SHIPPED", "CANCEL_TOO_LATE"], true],
    // The confirmation came second (it was delayed, or dead-lettered and replayed): nothing ships.
    [["cancelled", "confirmed", "tick"], "CANCELLED", ["CANCELLED"], false],
  ] as const)("%j ends %s with %j (late: %s)", (steps, state, types, late) => {
    const { shipment, history } = run([...steps]);
    expect(shipment?.state).toBe(state);
    expect(history.map((e) => e.type)).toEqual(types);
    expect(shipment?.cancelledTooLate).toBe(late);
    expect(history.map((e) => e.sequence)).toEqual(history.map((_, i) => i + 1));
  });

  it("whatever arrives, however often and in whatever order: one shipment, never active once cancelled, never two creations", () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom("confirmed", "cancelled", "tick"), { minLength: 1, maxLength: 12 }), (steps) => {
        const { shipment, history } = run(steps as ("confirmed" | "cancelled" | "tick")[]);
        const sawCancel = steps.includes("cancelled");
        if (!shipment) return steps.every((s) => s === "tick");
        expect(history.filter((e) => e.type === "CREATED").length).toBeLessThanOrEqual(1);
        expect(history.filter((e) => e.type === "CANCELLED" || e.type === "CANCEL_TOO_LATE").length).toBe(sawCancel ? 1 : 0);
        if (sawCancel) expect(shipment.state === "CANCELLED" || (shipment.state === "SHIPPED" && shipment.cancelledTooLate)).toBe(true);
        expect(shipment.version).toBe(history.length);
        expect(shipment.nextStepAt === undefined).toBe(isFinalShipment(shipment.state));
        return true;
      }),
    );
  });

  it("names shipments and tracking numbers stably", () => {
    expect(shipmentIdFor("ord_abc")).toBe("shp_abc");
    expect(trackingNumberFor("shp_abc")).toBe(trackingNumberFor("shp_abc"));
    expect(trackingNumberFor("shp_abc")).not.toBe(trackingNumberFor("shp_abd"));
  });

  it("a watcher reading late sees each step as it was (no tracking number before SHIPPED, no late cancel before it happened)", () => {
    const { shipment, history } = run(["confirmed", "tick", "tick", "cancelled"]);
    const views = history.map((entry) => asOf(shipment!, entry, history));
    expect(views.map((v) => [v.state, v.trackingNumber, v.cancelledTooLate])).toEqual([
      ["PENDING", undefined, false],
      ["PACKED", undefined, false],
      ["SHIPPED", shipment!.trackingNumber, false],
      ["SHIPPED", shipment!.trackingNumber, true],
    ]);
  });
});

describe("reading an order event off the wire", () => {
  const encode = (event: Partial<OrderEvent>) =>
    OrderEvent.encode({ eventId: "ord_1.4", orderId: "ord_1", sequence: 4, occurredAt: now, customerId: "alice", payload: undefined, ...event }).finish();
  const confirmation = { $case: "confirmed" as const, value: { lines: [{ sku: "MESH-MUG", quantity: 2 }], total: undefined, paymentId: "pay_1" } };

  it("reads a confirmation and a cancellation", () => {
    expect(readEvent({ subject: "meshcart.orders.confirmed", data: encode({ payload: confirmation }) })).toEqual({ fact: confirmed, occurredAt: now });
    expect(
      readEvent({
        subject: "meshcart.orders.cancelled",
        data: encode({ eventId: "ord_1.8", payload: { $case: "cancelled", value: { reason: "changed my mind" } } }),
      }).fact,
    ).toEqual(cancelled);
  });

  it.each([
    [
      "bytes that are not an OrderEvent",
      { subject: "meshcart.orders.confirmed", data: new Uint8Array([0xff, 0xff, 0xff]) },
      /not a meshcart.events.v1.OrderEvent/,
    ],
    ["an event without an id", { subject: "meshcart.orders.confirmed", data: encode({ eventId: "", payload: confirmation }) }, /event_id is empty/],
    ["an event without a payload", { subject: "meshcart.orders.confirmed", data: encode({}) }, /no payload/],
    [
      "a payload on the wrong subject",
      { subject: "meshcart.orders.cancelled", data: encode({ payload: confirmation }) },
      /a confirmed event on meshcart.orders.cancelled/,
    ],
    [
      "a confirmation without lines",
      { subject: "meshcart.orders.confirmed", data: encode({ payload: { ...confirmation, value: { ...confirmation.value, lines: [] } } }) },
      /without lines/,
    ],
    [
      "a kind fulfillment does not act on",
      { subject: "meshcart.orders.rejected", data: encode({ payload: { $case: "rejected", value: { reason: "declined" } } }) },
      /does not act on rejected/,
    ],
  ])("refuses %s as an event that can never be applied", (_what, message, why) => {
    expect(() => readEvent(message)).toThrow(InvalidEventError);
    expect(() => readEvent(message)).toThrow(why);
  });
});
