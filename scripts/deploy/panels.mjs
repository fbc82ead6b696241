// make e2e's check that a walkthrough's Grafana panel has data: each mesh
// walkthrough names the panel of the meshcart mesh dashboard that shows its
// effect, with a marker
//
//   <!-- e2e-panel: <panel title> [| label=value | label=~regex ...] -->
//
// and this asks viz's Prometheus (its HTTP API) for that panel's own
// queries, read from dashboards/meshcart-mesh.json, with the dashboard's
// variables filled in as Grafana would. A panel has data when one of its
// queries returns a series matching the marker's labels with a value above
// zero. Prometheus scrapes every 10 s, so each panel is asked again for up
// to PANEL_WAIT seconds (60) before it counts as empty.
//
//   PROMETHEUS_URL=http://127.0.0.1:19090 node scripts/deploy/panels.mjs docs/walkthroughs/retries.md
//   node scripts/deploy/panels.mjs --list docs/walkthroughs/retries.md    the markers, one a line
//
// Environment: PROMETHEUS_URL (required to check), MESHCART_NAMESPACE
// (default meshcart), PANEL_WAIT (seconds, default 60).
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const DASHBOARD = "dashboards/meshcart-mesh.json";

/**
 * What Grafana would put in place of the dashboard's variables and macros.
 * The window is wide enough to reach back over a whole walkthrough's last
 * steps (a rollback, a mended pod) to the traffic it made.
 */
export function variables(namespace) {
  return { namespace, __rate_interval: "5m", __range: "15m", __interval: "30s" };
}

/** The markers of a walkthrough: { title, filters: [{ label, op, value }] }[]. */
export function markers(markdown) {
  const out = [];
  for (const match of markdown.matchAll(/<!--\s*e2e-panel:\s*(.*?)\s*-->/g)) {
    const [title, ...rest] = match[1].split(/\s+\|\s+/);
    const filters = rest.map((part) => {
      const filter = /^([a-zA-Z_][a-zA-Z0-9_]*)(=~|=)(.*)$/.exec(part.trim());
      if (!filter) throw new Error(`e2e-panel "${title}": "${part}" is not label=value or label=~regex`);
      return { label: filter[1], op: filter[2], value: filter[3] };
    });
    out.push({ title: title.trim(), filters });
  }
  return out;
}

/** The queries of a panel of the dashboard, found by title. */
export function panelQueries(dashboard, title) {
  const panel = dashboard.panels.find((p) => p.title === title);
  if (!panel) throw new Error(`${dashboard.uid} has no panel "${title}"`);
  const exprs = (panel.targets ?? []).map((t) => t.expr);
  if (exprs.length === 0) throw new Error(`${dashboard.uid}: panel "${title}" has no query`);
  return exprs;
}

export function substitute(expr, values) {
  return expr.replace(/\$\{(\w+)(?::\w+)?\}|\$(\w+)/g, (whole, braced, bare) => {
    const value = values[braced ?? bare];
    if (value === undefined) throw new Error(`no value for ${whole} in ${expr}`);
    return value;
  });
}

function matches(labels, { label, op, value }) {
  const actual = labels[label] ?? "";
  return op === "=" ? actual === value : new RegExp(`^(?:${value})$`).test(actual);
}

/** The series of an instant-query result that match every filter and are above zero. */
export function withData(result, filters) {
  return result.filter((s) => filters.every((f) => matches(s.metric, f)) && Number.isFinite(Number(s.value[1])) && Number(s.value[1]) > 0);
}

async function query(base, expr, fetchImpl) {
  const url = `${base.replace(/\/$/, "")}/api/v1/query?query=${encodeURIComponent(expr)}`;
  const response = await fetchImpl(url);
  const body = await response.json().catch(() => ({}));
  if (!response.ok || body.status !== "success") throw new Error(`Prometheus refused ${expr}: HTTP ${response.status} ${body.error ?? ""}`);
  if (body.data.resultType !== "vector") throw new Error(`${expr}: a ${body.data.resultType}, not a vector`);
  return body.data.result;
}

const show = (s) =>
  `{${Object.entries(s.metric)
    .map(([k, v]) => `${k}="${v}"`)
    .join(", ")}} ${s.value[1]}`;

/**
 * Asks for each marker's panel until it has data or `waitMs` has passed.
 * Returns { ok, lines }: one line per panel, what it found or why it failed.
 */
export async function checkPanels({ markdown, dashboard, prometheusUrl, namespace, waitMs = 60_000, intervalMs = 5_000, fetchImpl = globalThis.fetch, sleep }) {
  const pause = sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
  const values = variables(namespace);
  const lines = [];
  let ok = true;
  const wanted = markers(markdown);
  if (wanted.length === 0) return { ok: false, lines: ["no <!-- e2e-panel: ... --> marker in the walkthrough"] };
  for (const { title, filters } of wanted) {
    const exprs = panelQueries(dashboard, title).map((e) => substitute(e, values));
    const what = filters.length ? ` (${filters.map((f) => `${f.label}${f.op}${f.value}`).join(", ")})` : "";
    const deadline = Date.now() + waitMs;
    let found = [];
    const seen = [];
    for (;;) {
      seen.length = 0;
      for (const expr of exprs) {
        const result = await query(prometheusUrl, expr, fetchImpl);
        seen.push(...result);
        found = withData(result, filters);
        if (found.length > 0) break;
      }
      if (found.length > 0 || Date.now() >= deadline) break;
      await pause(intervalMs);
    }
    if (found.length > 0) {
      lines.push(`panel "${title}"${what}: ${found.length} series with data, e.g. ${show(found[0])}`);
    } else {
      ok = false;
      lines.push(
        `panel "${title}"${what}: no data after ${Math.round(waitMs / 1000)} s; its queries returned ${seen.length ? seen.slice(0, 5).map(show).join("; ") : "nothing"}\n  queries: ${exprs.join("\n           ")}`,
      );
    }
  }
  return { ok, lines };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const list = args[0] === "--list";
  const file = list ? args[1] : args[0];
  if (!file) {
    console.error("usage: node scripts/deploy/panels.mjs [--list] <docs/walkthroughs/x.md>");
    process.exit(2);
  }
  const markdown = readFileSync(path.resolve(root, file), "utf8");
  if (list) {
    for (const m of markers(markdown)) console.log([m.title, ...m.filters.map((f) => `${f.label}${f.op}${f.value}`)].join(" | "));
    process.exit(0);
  }
  const prometheusUrl = process.env.PROMETHEUS_URL;
  if (!prometheusUrl) {
    console.error("panels.mjs: PROMETHEUS_URL must name viz's Prometheus (make e2e port-forwards it)");
    process.exit(2);
  }
  const dashboard = JSON.parse(readFileSync(path.join(root, DASHBOARD), "utf8"));
  const { ok, lines } = await checkPanels({
    markdown,
    dashboard,
    prometheusUrl,
    namespace: process.env.MESHCART_NAMESPACE || "meshcart",
    waitMs: Number(process.env.PANEL_WAIT ?? 60) * 1000,
  });
  for (const line of lines) console.error(`    ${line}`);
  process.exit(ok ? 0 : 1);
}
