import { Counter, Registry } from "@meshcart/lib";
import { DECLINE_REASONS, type DeclineReason } from "./rules.js";

/**
 * Payment's business figures: charges by outcome, declines by reason,
 * refunds. A replayed call (same idempotency key) is not counted again.
 * Never a customer, payment or order as a label.
 */
export class PaymentMetrics {
  readonly charges: Counter<"outcome">;
  readonly declines: Counter<"reason">;
  readonly refunds: Counter;

  constructor(registry: Registry = new Registry()) {
    const registers = [registry];
    this.charges = new Counter({
      name: "meshcart_payment_charges_total",
      help: "Charges recorded, by outcome (captured, declined); replays are not counted.",
      labelNames: ["outcome"],
      registers,
    });
    this.declines = new Counter({
      name: "meshcart_payment_declines_total",
      help: "Declined charges, by reason (card_declined, insufficient_funds, risk_screen).",
      labelNames: ["reason"],
      registers,
    });
    this.refunds = new Counter({
      name: "meshcart_payment_refunds_total",
      help: "Refunds recorded; replays are not counted.",
      registers,
    });
    for (const outcome of ["captured", "declined"]) this.charges.inc({ outcome }, 0);
    for (const reason of DECLINE_REASONS) this.declines.inc({ reason: reason.toLowerCase() }, 0);
  }

  charged(status: string, reason: DeclineReason | undefined): void {
    if (status === "DECLINED") {
      this.charges.inc({ outcome: "declined" });
      this.declines.inc({ reason: (reason ?? "unknown").toLowerCase() });
    } else {
      this.charges.inc({ outcome: "captured" });
    }
  }
}
