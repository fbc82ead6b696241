import { describe, expect, it } from "vitest";
import { parseExposition } from "../src/prometheus.js";

/** The test harness's reader of /metrics: as strict as Prometheus, no stricter. */
describe("parseExposition", () => {
  it("reads the special values in any case, as Prometheus does (prom-client writes Nan)", () => {
    const exposition = parseExposition(
      [
        "# HELP nodejs_eventloop_lag_mean_seconds The mean of the recorded event loop delays.",
        "# TYPE nodejs_eventloop_lag_mean_seconds gauge",
        'nodejs_eventloop_lag_mean_seconds{service_name="order"} Nan',
        "# HELP up_bound An upper bound.",
        "# TYPE up_bound gauge",
        "up_bound +Inf",
        'up_bound{side="low"} -Inf',
        "",
      ].join("\n"),
    );
    expect(exposition.samples("nodejs_eventloop_lag_mean_seconds")[0]!.value).toBeNaN();
    expect(exposition.samples("up_bound").map((s) => s.value)).toEqual([Infinity, -Infinity]);
  });

  it("refuses a value that is no number", () => {
    expect(() => parseExposition("# TYPE x gauge\nx twelve\n")).toThrow(/bad value/);
  });
});
