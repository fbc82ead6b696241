import { readFileSync } from "node:fs";
import type { Exposition } from "./prometheus.js";

/**
 * What a Grafana dashboard queries, read for the tests that hold it to
 * what the services export (services/order/test/metrics.test.ts,
 * services/fulfillment/test/metrics.test.ts).
 */

export interface Panel {
  title?: string;
  type: string;
  targets?: { expr: string }[];
  panels?: Panel[];
}

const PROMQL_WORDS = new Set(["by", "without", "and", "or", "unless", "on", "ignoring", "group_left", "group_right", "bool", "offset", "inf", "nan"]);

/** The metric selectors of a PromQL expression: each metric name with the label names it matches on. */
export function selectors(expr: string): { metric: string; labels: string[] }[] {
  const found: { metric: string; labels: string[] }[] = [];
  const text = expr
    .replace(/\$\{[^}]+\}|\$\w+/g, "1s") // Grafana variables
    .replace(/\[[^\]]*\]/g, "") // ranges
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " "); // grouping labels
  const selector = /([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*(\{[^}]*\})|([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?/g;
  for (const match of text.matchAll(selector)) {
    if (match[2] !== undefined) {
      const labels = [...match[2].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"/g)].map((m) => m[1]!);
      if (match[1]) found.push({ metric: match[1], labels });
    } else if (match[3] && !match[4] && !PROMQL_WORDS.has(match[3].toLowerCase()) && !/^\d/.test(match[3])) {
      found.push({ metric: match[3], labels: [] });
    }
  }
  return found;
}

export function allPanels(panels: Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}

/** Every query of a dashboard file, with its panel's title. */
export function dashboardQueries(file: string): { panel: string; expr: string }[] {
  const dashboard = JSON.parse(readFileSync(file, "utf8")) as { panels: Panel[] };
  return allPanels(dashboard.panels).flatMap((panel) => (panel.targets ?? []).map((t) => ({ panel: panel.title ?? "", expr: t.expr })));
}

/**
 * What the queries ask for that the scrapes do not have: a metric nobody
 * exports, or a label it does not carry. `include` picks the metrics to
 * hold to these scrapes (the others are another test's).
 */
export function unexported(
  queries: { panel: string; expr: string }[],
  scrapes: Iterable<Exposition>,
  include: (metric: string) => boolean = () => true,
): string[] {
  const exported = new Map<string, Set<string>>();
  for (const exposition of scrapes) {
    for (const family of exposition.families.values()) {
      for (const sample of family.samples) {
        const labels = exported.get(sample.name) ?? new Set<string>();
        for (const label of Object.keys(sample.labels)) labels.add(label);
        exported.set(sample.name, labels);
      }
    }
  }
  const problems: string[] = [];
  for (const { panel, expr } of queries) {
    const used = selectors(expr);
    if (used.length === 0) problems.push(`${panel}: no metric in ${expr}`);
    for (const { metric, labels } of used.filter((u) => include(u.metric))) {
      const known = exported.get(metric);
      if (!known) problems.push(`${panel}: ${metric} is not exported`);
      else for (const label of labels) if (!known.has(label)) problems.push(`${panel}: ${metric} has no label ${label}`);
    }
  }
  return problems;
}
