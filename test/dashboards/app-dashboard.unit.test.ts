import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { repoRoot } from "../deploy/support/paths.js";
import { analyze, substitute } from "./promql.js";

/*
 * The meshcart dashboard's single-number panels (services/order/test/
 * metrics.test.ts checks its metric names against live services). A count
 * or a ratio of something that has not happened must read 0, not "No
 * data": a counter that was never incremented has no series, so its sum
 * is empty, and so is a ratio over it.
 */

interface Panel {
  type: string;
  title: string;
  targets?: { expr: string }[];
}

const dashboard = JSON.parse(readFileSync(path.join(repoRoot, "dashboards/meshcart.json"), "utf8")) as { panels: Panel[] };
const VARIABLES = { __range: "1h", __rate_interval: "1m", service: "order", datasource: "prometheus" };

describe("the meshcart dashboard's stat panels", () => {
  const stats = dashboard.panels.filter((p) => p.type === "stat");

  it("parse as PromQL", () => {
    expect(stats.length).toBeGreaterThan(4);
    for (const panel of stats) for (const t of panel.targets ?? []) expect(analyze(substitute(t.expr, VARIABLES)).errors, panel.title).toEqual([]);
  });

  it("show 0 rather than No data when what they count has not happened (or vector(0) on every count and numerator)", () => {
    for (const panel of stats) {
      for (const { expr } of panel.targets ?? []) {
        if (expr.startsWith("histogram_quantile(")) continue; // a latency of nothing is rightly no data
        const numerator = expr.split(" / ")[0]!;
        expect(numerator, panel.title).toContain("or vector(0)");
      }
    }
  });
});
