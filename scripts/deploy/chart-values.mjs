// The chart's values as Helm computes them for an install: values.yaml with
// each -f file merged over it in order (maps merge key by key, anything else
// replaces, null removes). For the deploy scripts, which must agree with
// the chart on what it installs (make mesh: is there a Jaeger to send the
// proxies' spans to?), and for the tests.
//
//   node scripts/deploy/chart-values.mjs jaeger.enabled [values.yaml ...]   prints the value as JSON
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";

export const chartDir = fileURLToPath(new URL("../../helm/meshcart/", import.meta.url));

function merge(base, over) {
  if (over === undefined) return base;
  const isMap = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
  if (!isMap(base) || !isMap(over)) return over;
  const out = { ...base };
  for (const [key, value] of Object.entries(over)) {
    if (value === null) delete out[key];
    else out[key] = merge(base[key], value);
  }
  return out;
}

/** The merged values of the chart's values.yaml and the given files. */
export function chartValues(files = []) {
  let values = parse(readFileSync(path.join(chartDir, "values.yaml"), "utf8"));
  for (const file of files) values = merge(values, parse(readFileSync(file, "utf8")) ?? {});
  return values;
}

/** A value by its dotted key (`jaeger.enabled`); undefined when absent. */
export function valueAt(values, dotted) {
  return dotted.split(".").reduce((v, key) => (v === null || v === undefined ? undefined : v[key]), values);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [key, ...files] = process.argv.slice(2);
  if (!key) {
    console.error("usage: node scripts/deploy/chart-values.mjs <dotted.key> [values.yaml ...]");
    process.exit(2);
  }
  console.log(JSON.stringify(valueAt(chartValues(files.filter(Boolean)), key) ?? null));
}
