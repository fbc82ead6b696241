/**
 * A shipment's rules (docs/events.md): what an order event does to it, and
 * how the timer moves it on. Pure: the store applies what these functions
 * decide, and the tests read the rules from here.
 */

export type ShipmentState = "PENDING" | "PACKED" | "SHIPPED" | "CANCELLED";
export type ShipmentEventType = "CREATED" | "PACKED" | "SHIPPED" | "CANCELLED" | "CANCEL_TOO_LATE";

export const FINAL_SHIPMENT_STATES: ReadonlySet<ShipmentState> = new Set(["SHIPPED", "CANCELLED"]);

export function isFinalShipment(state: ShipmentState): boolean {
  return FINAL_SHIPMENT_STATES.has(state);
}

export interface ShipmentLine {
  sku: string;
  quantity: number;
}

export interface Shipment {
  shipmentId: string;
  orderId: string;
  customerId: string;
  state: ShipmentState;
  /** Sequence of its newest history entry. */
  version: number;
  lines: ShipmentLine[];
  trackingNumber?: string;
  cancelledTooLate: boolean;
  /** When the timer moves it on; none once final. */
  nextStepAt?: Date;
  /** The span that created it: the timer's later work links to it. */
  traceparent?: string;
  createdAt: Date;
  updatedAt: Date;
}

export interface ShipmentHistoryEntry {
  sequence: number;
  type: ShipmentEventType;
  stateAfter: ShipmentState;
  detail: string;
  occurredAt: Date;
}

/** The order events fulfillment acts on, as it reads them (meshcart.events.v1). */
export type OrderFact =
  | { kind: "confirmed"; eventId: string; orderId: string; customerId: string; lines: ShipmentLine[] }
  | { kind: "cancelled"; eventId: string; orderId: string; customerId: string; reason: string };

/**
 * What an order event leads to, by outcome (the label of
 * meshcart_fulfillment_events_total):
 * - created: a confirmed order gets its shipment;
 * - cancelled: cancelled before the parcel left;
 * - cancel_too_late: the parcel had left: recorded on the shipment, not applied;
 * - cancelled_before_confirmation: the cancellation came first (its
 *   confirmation was delayed or dead-lettered): a cancelled shipment is
 *   recorded, so that a confirmation arriving later ships nothing;
 * - unchanged: the event changes nothing (the shipment exists already, is
 *   cancelled already, or its late cancellation is recorded already).
 */
export type Decision =
  | { outcome: "created"; shipment: Shipment; entry: ShipmentHistoryEntry }
  | { outcome: "cancelled" | "cancel_too_late" | "cancelled_before_confirmation"; shipment: Shipment; entry: ShipmentHistoryEntry }
  | { outcome: "unchanged"; why: string };

export type DecisionOutcome = Decision["outcome"];
export const DECISION_OUTCOMES: readonly DecisionOutcome[] = ["created", "cancelled", "cancel_too_late", "cancelled_before_confirmation", "unchanged"];

export interface Timings {
  /** From the shipment's creation to PACKED. */
  packAfterMs: number;
  /** From PACKED to SHIPPED. */
  shipAfterMs: number;
}

/** One shipment per order, named after it: a second creation for the order is the same shipment. */
export function shipmentIdFor(orderId: string): string {
  return `shp_${orderId.replace(/^ord_/, "")}`;
}

/** What `fact` does to the order's shipment (`current`, if it has one), at `now`. */
export function decide(current: Shipment | undefined, fact: OrderFact, now: Date, timings: Timings, traceparent?: string): Decision {
  if (fact.kind === "confirmed") {
    if (current) {
      return { outcome: "unchanged", why: `the order has shipment ${current.shipmentId} already (${current.state.toLowerCase()})` };
    }
    const shipment: Shipment = {
      shipmentId: shipmentIdFor(fact.orderId),
      orderId: fact.orderId,
      customerId: fact.customerId,
      state: "PENDING",
      version: 1,
      lines: fact.lines,
      cancelledTooLate: false,
      nextStepAt: new Date(now.getTime() + timings.packAfterMs),
      traceparent,
      createdAt: now,
      updatedAt: now,
    };
    return { outcome: "created", shipment, entry: entry(shipment, "CREATED", "the order is confirmed: waiting to be packed", now) };
  }

  const reason = fact.reason ? ` (${fact.reason})` : "";
  if (!current) {
    const shipment: Shipment = {
      shipmentId: shipmentIdFor(fact.orderId),
      orderId: fact.orderId,
      customerId: fact.customerId,
      state: "CANCELLED",
      version: 1,
      lines: [],
      cancelledTooLate: false,
      traceparent,
      createdAt: now,
      updatedAt: now,
    };
    return {
      outcome: "cancelled_before_confirmation",
      shipment,
      entry: entry(shipment, "CANCELLED", `the order was cancelled before its confirmation arrived: nothing will ship${reason}`, now),
    };
  }
  switch (current.state) {
    case "PENDING":
    case "PACKED": {
      const shipment: Shipment = { ...current, state: "CANCELLED", version: current.version + 1, nextStepAt: undefined, updatedAt: now };
      return { outcome: "cancelled", shipment, entry: entry(shipment, "CANCELLED", `the order was cancelled before the parcel left${reason}`, now) };
    }
    case "SHIPPED": {
      if (current.cancelledTooLate) return { outcome: "unchanged", why: "its late cancellation is recorded already" };
      const shipment: Shipment = { ...current, cancelledTooLate: true, version: current.version + 1, updatedAt: now };
      return {
        outcome: "cancel_too_late",
        shipment,
        entry: entry(
          shipment,
          "CANCEL_TOO_LATE",
          `the order was cancelled after the parcel had left (tracking ${current.trackingNumber ?? "unknown"}): it comes back as a return${reason}`,
          now,
        ),
      };
    }
    case "CANCELLED":
      return { outcome: "unchanged", why: "the shipment is cancelled already" };
  }
}

/** The timer's next step for a shipment that is due, or undefined when it has none (final). */
export function advance(current: Shipment, now: Date, timings: Timings): { shipment: Shipment; entry: ShipmentHistoryEntry } | undefined {
  switch (current.state) {
    case "PENDING": {
      const shipment: Shipment = {
        ...current,
        state: "PACKED",
        version: current.version + 1,
        nextStepAt: new Date(now.getTime() + timings.shipAfterMs),
        updatedAt: now,
      };
      return { shipment, entry: entry(shipment, "PACKED", "packed: waiting for the carrier", now) };
    }
    case "PACKED": {
      const trackingNumber = trackingNumberFor(current.shipmentId);
      const shipment: Shipment = { ...current, state: "SHIPPED", version: current.version + 1, trackingNumber, nextStepAt: undefined, updatedAt: now };
      return { shipment, entry: entry(shipment, "SHIPPED", `handed to the carrier, tracking ${trackingNumber}`, now) };
    }
    case "SHIPPED":
    case "CANCELLED":
      return undefined;
  }
}

/** The demo carrier's tracking number: derived from the shipment, so a repeated step gives the same one. */
export function trackingNumberFor(shipmentId: string): string {
  let hash = 2166136261;
  for (const char of shipmentId) hash = Math.imul(hash ^ char.charCodeAt(0), 16777619) >>> 0;
  return `MC${hash.toString().padStart(10, "0")}`;
}

function entry(shipment: Shipment, type: ShipmentEventType, detail: string, now: Date): ShipmentHistoryEntry {
  return { sequence: shipment.version, type, stateAfter: shipment.state, detail, occurredAt: now };
}
