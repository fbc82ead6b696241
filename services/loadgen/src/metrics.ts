import { Counter, Gauge, Histogram, LATENCY_BUCKETS, Registry } from "@meshcart/lib";
import { SCENARIOS } from "./options.js";

/**
 * The load generator's own figures on /metrics, besides the kit's client
 * metrics of its calls (meshcart_grpc_client_calls_*, grpc_client_*).
 * Labels are bounded: scenarios, outcomes (a fixed set plus error_<code>),
 * the catalogue's SKUs.
 */
export class LoadgenMetrics {
  readonly requests: Counter<"scenario" | "outcome">;
  readonly duration: Histogram<"scenario" | "outcome">;
  readonly inFlight: Gauge;
  readonly targetRps: Gauge;
  readonly late: Counter;
  readonly restocks: Counter<"sku" | "result">;
  readonly restockedUnits: Counter<"sku">;

  constructor(registry: Registry = new Registry()) {
    const registers = [registry];
    this.requests = new Counter({
      name: "meshcart_loadgen_requests_total",
      help: "Requests of the load by scenario and outcome (dropped: due while the concurrency cap was reached, not sent).",
      labelNames: ["scenario", "outcome"],
      registers,
    });
    this.duration = new Histogram({
      name: "meshcart_loadgen_request_duration_seconds",
      help: "From a request's scheduled start to its outcome (open loop: a late start counts), by scenario and outcome.",
      labelNames: ["scenario", "outcome"],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.inFlight = new Gauge({ name: "meshcart_loadgen_requests_in_flight", help: "Requests sent and not finished.", registers });
    this.targetRps = new Gauge({ name: "meshcart_loadgen_target_rps", help: "Requests per second the load generator is asked for.", registers });
    this.late = new Counter({
      name: "meshcart_loadgen_late_sends_total",
      help: "Sends that left more than 100 ms after their scheduled time: the load generator is short of CPU.",
      registers,
    });
    this.restocks = new Counter({
      name: "meshcart_loadgen_restocks_total",
      help: "Restocks the load generator made as an operator, by SKU and result (ok, failed).",
      labelNames: ["sku", "result"],
      registers,
    });
    this.restockedUnits = new Counter({
      name: "meshcart_loadgen_restocked_units_total",
      help: "Units added by the load generator's restocks, by SKU.",
      labelNames: ["sku"],
      registers,
    });
    for (const scenario of SCENARIOS) this.requests.inc({ scenario, outcome: "dropped" }, 0);
  }
}
