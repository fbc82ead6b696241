import { Counter, Gauge, Histogram, Registry } from "@meshcart/lib";
import type { OrderEventData, OrderState } from "./order-state.js";

export type SagaOutcome = "confirmed" | "rejected" | "failed" | "cancelled";
export const SAGA_OUTCOMES: readonly SagaOutcome[] = ["confirmed", "rejected", "failed", "cancelled"];

/** Steps the saga driver runs (order-state.ts nextStep). */
const STEPS = ["reserve", "charge", "commit", "refund", "release", "return", "finish"] as const;
/** Steps that undo, which may be given up (STEP_ABANDONED). */
const UNDO_STEPS = ["refund", "release", "return"] as const;
/** Forward steps whose failure (or decline) starts compensation. */
const FORWARD_STEPS = ["reserve", "charge", "commit"] as const;

/**
 * The checkout's business figures. Labels are bounded enumerations; an
 * order or customer is never a label (that is what traces are for).
 */
export class OrderMetrics {
  /** How sagas end. */
  readonly outcomes: Counter<"outcome">;
  /** From the order's placement (or the cancellation request) to its final state. */
  readonly duration: Histogram<"outcome">;
  /** Compensations started, by the forward step that failed or was declined. */
  readonly compensations: Counter<"step" | "cause">;
  /** Saga steps run, by result: ok, retry (an undo step that failed and is tried again), or abandoned (given up, recorded as not done). */
  readonly steps: Counter<"step" | "result">;
  /** Sagas resumed by recovery: a dead replica's, or this replica's after a restart. */
  readonly recoveries: Counter;
  private running: () => number = () => 0;

  constructor(registry: Registry = new Registry()) {
    const registers = [registry];
    this.outcomes = new Counter({
      name: "meshcart_order_saga_outcomes_total",
      help: "Sagas that reached a final state, by outcome (confirmed, rejected, failed, cancelled).",
      labelNames: ["outcome"],
      registers,
    });
    this.duration = new Histogram({
      name: "meshcart_order_saga_duration_seconds",
      help: "Time from the order's placement (for cancelled: the cancellation request) to its final state.",
      labelNames: ["outcome"],
      buckets: [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    });
    this.compensations = new Counter({
      name: "meshcart_order_compensations_total",
      help: "Compensations started, by the forward step that failed or was declined, and why (failed, declined).",
      labelNames: ["step", "cause"],
      registers,
    });
    this.steps = new Counter({
      name: "meshcart_order_saga_steps_total",
      help: "Saga steps run, by step and result (ok, retry, abandoned: an undo step given up after failures retrying does not fix).",
      labelNames: ["step", "result"],
      registers,
    });
    this.recoveries = new Counter({
      name: "meshcart_order_saga_recoveries_total",
      help: "Sagas resumed by recovery (lease expired, or this replica restarted).",
      registers,
    });
    const running = () => this.running();
    new Gauge({
      name: "meshcart_order_sagas_running",
      help: "Sagas this replica is driving now.",
      registers,
      collect() {
        this.set(running());
      },
    });
    // Every series exists from the start, so rates and dashboards see zeros
    // rather than nothing.
    for (const outcome of SAGA_OUTCOMES) {
      this.outcomes.inc({ outcome }, 0);
      this.duration.zero({ outcome });
    }
    for (const step of FORWARD_STEPS) this.compensations.inc({ step, cause: "failed" }, 0);
    this.compensations.inc({ step: "charge", cause: "declined" }, 0);
    for (const step of STEPS) for (const result of ["ok", "retry"]) this.steps.inc({ step, result }, 0);
    for (const step of UNDO_STEPS) this.steps.inc({ step, result: "abandoned" }, 0);
  }

  /** Where the running-sagas gauge reads from. */
  trackRunning(running: () => number): void {
    this.running = running;
  }

  /** Records the business facts among events a saga step appended. */
  recordAppended(events: OrderEventData[], before: OrderState, after: OrderState, started: Date): void {
    for (const event of events) {
      if (event.type === "PAYMENT_DECLINED") this.compensations.inc({ step: "charge", cause: "declined" });
      if (event.type === "STEP_FAILED") this.compensations.inc({ step: event.step, cause: "failed" });
    }
    const outcome = outcomeOf(after);
    if (outcome && outcomeOf(before) !== outcome) {
      this.outcomes.inc({ outcome });
      this.duration.observe({ outcome }, Math.max(0, (Date.now() - started.getTime()) / 1000));
    }
  }
}

export function outcomeOf(state: OrderState): SagaOutcome | undefined {
  switch (state) {
    case "CONFIRMED":
      return "confirmed";
    case "REJECTED":
      return "rejected";
    case "FAILED":
      return "failed";
    case "CANCELLED":
      return "cancelled";
    default:
      return undefined;
  }
}
