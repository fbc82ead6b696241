import { readFileSync } from "node:fs";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import YAML from "yaml";
import { outboundRoutes, loadContract } from "../../scripts/mesh/contract.mjs";
import { MESH_UID, renderAll } from "../../scripts/dashboards/render.mjs";
import { pods, render, type K8sObject } from "../deploy/support/chart.js";
import { repoRoot } from "../deploy/support/paths.js";
import { analyze, substitute, type Selector } from "./promql.js";

/*
 * The mesh dashboards (dashboards/meshcart-mesh.json and the linkerd-<kind>
 * dashboards the viz dashboard links to) are made of the Linkerd proxies'
 * own metrics. Nothing here can scrape a proxy, so every query is parsed
 * with Prometheus's grammar and held to the list of metric families, labels
 * and label values read from linkerd2-proxy's source
 * (test/dashboards/linkerd-proxy-metrics.yaml), plus the labels viz's scrape
 * job adds (the same file, and the chart's pod labels for the part that
 * copies them).
 */

interface Family {
  type: "counter" | "gauge" | "histogram";
  name: string;
  labels: string;
  labelSets: string[];
  extraLabels?: string[];
  legacy?: boolean;
}
interface Fixture {
  labelSets: Record<string, string[]>;
  values: Record<string, string[]>;
  families: Record<string, Family>;
  scrape: { job: string; source: string; targetLabels: string[]; podLabels: string; kubernetesPodLabels: string[] };
}
interface Target {
  expr: string;
}
interface Panel {
  type: string;
  title: string;
  targets?: Target[];
  datasource?: { uid: string };
  options?: { content?: string };
}
interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: { name: string; type: string; query?: string | { query: string } }[] };
}

const fixture = YAML.parse(readFileSync(path.join(repoRoot, "test/dashboards/linkerd-proxy-metrics.yaml"), "utf8")) as Fixture;
const generated = renderAll();
const dashboards = Object.fromEntries(Object.entries(generated).map(([file, text]) => [file, JSON.parse(text as string) as Dashboard]));
const contract = loadContract();

/** What Grafana puts in place of the variables, for parsing: any plausible value. */
const VARIABLES: Record<string, string> = {
  namespace: "meshcart",
  deployment: "order",
  statefulset: "postgres",
  pod: "order-5d9c7b8f6d-x2x7q",
  replicaset: "order-5d9c7b8f6d",
  service: "payment",
  __rate_interval: "1m",
  __range: "1h",
  datasource: "prometheus",
};

/** Prometheus's sanitizing of a Kubernetes label name into a label, as viz's relabel_configs then strip linkerd_io_. */
function scrapedPodLabel(name: string): string {
  return name.replace(/[^a-zA-Z0-9_]/g, "_").replace(/^linkerd_io_/, "");
}

function familyLabels(family: Family): string[] {
  const sets = family.labelSets.map((set) => {
    const labels = fixture.labelSets[set];
    if (!labels) throw new Error(`${family.name}: unknown label set ${set}`);
    return labels;
  });
  return [...new Set([...sets.flat(), ...(family.extraLabels ?? [])])];
}

/** The labels a series of the family has in viz's Prometheus. */
function storedLabels(family: Family, targetLabels: Set<string>): Set<string> {
  const out = new Set(targetLabels);
  for (const label of familyLabels(family)) out.add(targetLabels.has(label) ? `exported_${label}` : label);
  return out;
}

interface Resolved {
  family: string;
  labels: Set<string>;
}

function resolver(targetLabels: Set<string>) {
  return (metric: string): Resolved | string => {
    const direct = fixture.families[metric];
    if (direct) {
      if (direct.type === "histogram") return `${metric} is a histogram: query ${metric}_bucket, _sum or _count`;
      return { family: metric, labels: storedLabels(direct, targetLabels) };
    }
    const histogram = /^(.*)_(bucket|sum|count)$/.exec(metric);
    const base = histogram ? fixture.families[histogram[1]!] : undefined;
    if (histogram && base?.type === "histogram") {
      const labels = storedLabels(base, targetLabels);
      if (histogram[2] === "bucket") labels.add("le");
      return { family: histogram[1]!, labels };
    }
    return `${metric} is not a metric of linkerd2-proxy release/v2.359.0 listed in test/dashboards/linkerd-proxy-metrics.yaml`;
  };
}

/** Every problem of one query against the fixture. */
function problemsOf(expr: string, targetLabels: Set<string>): { problems: string[]; families: string[] } {
  const resolve = resolver(targetLabels);
  const { selectors, groupings, errors } = analyze(substitute(expr, VARIABLES));
  const problems = [...errors];
  const families: string[] = [];
  const labelsOf = (selector: Selector): Set<string> | undefined => {
    const resolved = resolve(selector.metric);
    return typeof resolved === "string" ? undefined : resolved.labels;
  };
  if (selectors.length === 0) problems.push("no metric");
  for (const selector of selectors) {
    if (!selector.metric) {
      problems.push(`a selector without a metric name: ${JSON.stringify(selector.matchers)}`);
      continue;
    }
    const resolved = resolve(selector.metric);
    if (typeof resolved === "string") {
      problems.push(resolved);
      continue;
    }
    families.push(resolved.family);
    for (const { label, op, value } of selector.matchers) {
      if (!resolved.labels.has(label)) problems.push(`${selector.metric} has no label ${label}`);
      const known = fixture.values[label];
      if (!known) continue;
      const used = op === "=" || op === "!=" ? [value] : /^[A-Za-z0-9_|]*$/.test(value) ? value.split("|") : [];
      for (const v of used)
        if (!known.includes(v))
          problems.push(`${selector.metric}: ${label} is never "${v}" (the proxy writes ${known.map((k) => JSON.stringify(k)).join(", ")})`);
    }
  }
  for (const { clause, labels, selectors: scoped } of groupings) {
    const sets = scoped.map(labelsOf).filter((s): s is Set<string> => s !== undefined);
    for (const label of labels) {
      if (sets.length > 0 && !sets.some((s) => s.has(label))) problems.push(`${clause} (${label}): none of ${scoped.map((s) => s.metric).join(", ")} has it`);
    }
  }
  return { problems, families };
}

function queriesOf(dashboard: Dashboard): { where: string; expr: string }[] {
  const out: { where: string; expr: string }[] = [];
  for (const panel of dashboard.panels) for (const t of panel.targets ?? []) out.push({ where: `${dashboard.uid} / ${panel.title}`, expr: t.expr });
  for (const variable of dashboard.templating.list) {
    const query = typeof variable.query === "string" ? variable.query : variable.query?.query;
    const labelValues = /^label_values\((.+),\s*(\w+)\)$/.exec(query ?? "");
    // label_values(<selector>, <label>): the selector must be valid, and have the label.
    if (labelValues) out.push({ where: `${dashboard.uid} / variable ${variable.name}`, expr: `count by (${labelValues[2]}) (${labelValues[1]})` });
  }
  return out;
}

let objects: K8sObject[];
let targetLabels: Set<string>;

beforeAll(async () => {
  objects = await render(["--set", "payment.v2.enabled=true", "--set", "payment.canary.weight=10"]);
  const podLabels = pods(objects)
    .filter((p) => !p.isTest)
    .flatMap((p) => Object.keys(p.labels));
  targetLabels = new Set([...fixture.scrape.targetLabels, ...[...podLabels, ...fixture.scrape.kubernetesPodLabels].map(scrapedPodLabel)]);
});

describe("the proxy-metric fixture", () => {
  it("names, for every family, the source files of its name and labels, and label sets that exist", () => {
    for (const [name, family] of Object.entries(fixture.families)) {
      expect(family.name, name).toMatch(/\.rs\b/);
      expect(family.labels, name).toMatch(/\.rs\b/);
      expect(["counter", "gauge", "histogram"], name).toContain(family.type);
      if (family.type === "counter") expect(name).toMatch(/_total$/);
      expect(() => familyLabels({ ...family, name }), name).not.toThrow();
    }
  });

  it("lists only families some panel relies on", () => {
    const used = new Set<string>();
    for (const dashboard of Object.values(dashboards)) {
      for (const { expr } of queriesOf(dashboard)) for (const f of problemsOf(expr, targetLabels).families) used.add(f);
    }
    expect(Object.keys(fixture.families).filter((f) => !used.has(f))).toEqual([]);
  });

  it("renames a proxy label that viz's scrape also sets, as Prometheus does (exported_)", () => {
    const labels = storedLabels({ type: "counter", name: "x.rs", labels: "x.rs", labelSets: [], extraLabels: ["namespace", "route_name"] }, targetLabels);
    expect(labels.has("exported_namespace")).toBe(true);
    expect(labels.has("route_name")).toBe(true);
    // The chart's pod labels arrive too, sanitized: app.kubernetes.io/name → app_kubernetes_io_name.
    expect(targetLabels.has("app_kubernetes_io_name")).toBe(true);
    expect(targetLabels.has("pod_template_hash")).toBe(true);
  });
});

describe("the checker", () => {
  const check = (expr: string) => problemsOf(expr, targetLabels).problems;

  it("accepts what the proxy exports", () => {
    expect(check('sum by (route_name, le) (rate(outbound_grpc_route_request_duration_seconds_bucket{parent_name="payment", deployment="order"}[1m]))')).toEqual(
      [],
    );
    expect(check('sum by (srv_name) (tcp_open_connections{tls="true", direction="inbound"})')).toEqual([]);
  });

  it("refuses a metric, a label, a label value or a grouping the proxy does not have", () => {
    expect(check("rate(outbound_grpc_route_requests_total[1m])")).toEqual([expect.stringMatching(/is not a metric/)]);
    expect(check('rate(outbound_grpc_route_request_statuses_total{grpc_method="Charge"}[1m])')).toEqual([expect.stringMatching(/has no label grpc_method/)]);
    expect(check('rate(outbound_grpc_route_request_statuses_total{grpc_status="Unavailable"}[1m])')).toEqual([
      expect.stringMatching(/grpc_status is never "Unavailable"/),
    ]);
    expect(check("sum by (method) (rate(outbound_grpc_route_retry_requests_total[1m]))")).toEqual([expect.stringMatching(/by \(method\)/)]);
    expect(check("outbound_grpc_route_request_duration_seconds")).toEqual([expect.stringMatching(/is a histogram/)]);
    expect(check("sum(rate(outbound_grpc_route_request_statuses_total[1m])")).not.toEqual([]);
  });
});

describe("the mesh dashboards", () => {
  it("are what scripts/dashboards/render.mjs makes (npm run generate)", () => {
    for (const [file, text] of Object.entries(generated)) expect(readFileSync(path.join(repoRoot, file), "utf8"), file).toBe(text);
  });

  it("query only metrics, labels and label values the Linkerd 2.20 proxies export", () => {
    const problems: string[] = [];
    let count = 0;
    for (const dashboard of Object.values(dashboards)) {
      for (const { where, expr } of queriesOf(dashboard)) {
        count += 1;
        for (const p of problemsOf(expr, targetLabels).problems) problems.push(`${where}: ${p}`);
      }
    }
    expect(count).toBeGreaterThan(60);
    expect(problems).toEqual([]);
  });

  it("give each panel a title of its own, the Prometheus variable as data source and only variables they define", () => {
    for (const dashboard of Object.values(dashboards)) {
      const titles = dashboard.panels.filter((p) => p.type !== "row").map((p) => p.title);
      expect(new Set(titles).size, dashboard.uid).toBe(titles.length);
      const defined = new Set([...dashboard.templating.list.map((v) => v.name), "__rate_interval", "__range"]);
      for (const panel of dashboard.panels.filter((p) => p.targets)) {
        expect(panel.datasource?.uid, panel.title).toBe("${datasource}");
        for (const t of panel.targets!) for (const m of t.expr.matchAll(/\$(\w+)/g)) expect(defined, `${dashboard.uid} / ${panel.title}`).toContain(m[1]);
      }
    }
  });

  it("exist for every kind of row the viz dashboard links to Grafana (GrafanaLink.jsx: /grafana/d/linkerd-<kind>?var-<kind>=<name>&var-namespace=<ns>)", () => {
    // The tables meshcart's namespace shows in viz 2.20: namespaces, deployments,
    // pods, the Postgres statefulset, replica sets and services.
    for (const kind of ["namespace", "deployment", "pod", "statefulset", "replicaset", "service"]) {
      const dashboard = dashboards[`dashboards/linkerd-${kind}.json`];
      expect(dashboard?.uid, kind).toBe(`linkerd-${kind}`);
      const variables = dashboard!.templating.list.map((v) => v.name);
      expect(variables, kind).toContain("namespace");
      expect(variables, kind).toContain(kind);
      expect(JSON.stringify(dashboard!.panels), kind).toContain(`$${kind}`);
    }
    expect(dashboards[`dashboards/${MESH_UID}.json`]?.uid).toBe(MESH_UID);
  });

  it("list every GRPCRoute the chart attaches to each Service, with its RPC, beside that Service's panels", () => {
    const mesh = dashboards[`dashboards/${MESH_UID}.json`]!;
    const routes = objects.filter((o) => o.kind === "GRPCRoute" && o.spec.parentRefs[0].kind === "Service");
    expect(routes.length).toBeGreaterThan(10);
    for (const route of routes) {
      const service = route.spec.parentRefs[0].name as string;
      const table = mesh.panels.find((p) => p.title === `${service}: its GRPCRoutes, one per RPC`);
      expect(table, service).toBeDefined();
      const line = table!.options!.content!.split("\n").find((l) => l.startsWith(`| \`${route.metadata.name}\` |`));
      expect(line, route.metadata.name).toBeDefined();
      for (const rule of route.spec.rules) for (const m of rule.matches) expect(line).toContain(m.method.method ?? m.method.service);
      for (const p of ["requests/s per route", "success rate per route", "latency p95 per route"]) {
        expect(
          mesh.panels.some((x) => x.title === `${service}: ${p}` && x.targets![0]!.expr.includes(`parent_name="${service}"`)),
          `${service}: ${p}`,
        ).toBe(true);
      }
    }
    expect(Object.keys(contract.services).flatMap((s) => outboundRoutes(contract, s)).length).toBe(routes.length);
  });

  it("watch the chart's rate-limited Server and circuit-broken Services", () => {
    const mesh = JSON.stringify(dashboards[`dashboards/${MESH_UID}.json`]);
    const limit = objects.find((o) => o.kind === "HTTPLocalRateLimitPolicy")!;
    expect(mesh).toContain(`srv_name=\\"${limit.spec.targetRef.name}\\"`);
    const broken = objects
      .filter((o) => o.kind === "Service" && o.metadata.annotations?.["balancer.linkerd.io/failure-accrual"] === "consecutive")
      .map((o) => o.metadata.name);
    expect(broken.length).toBeGreaterThan(1);
    const watched = /backend_name=~\\"([^"\\]+)\\"/.exec(mesh)?.[1]?.split("|");
    expect(watched?.sort()).toEqual(broken.sort());
  });
});
