import { execFile } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { parse, parseAllDocuments } from "yaml";
import { helmValues, readVersions, tags } from "../../../scripts/deploy/image-tag.mjs";
import { repoRoot, toolsBin } from "./paths.js";

const run = promisify(execFile);

export const chartDir = path.join(repoRoot, "helm", "meshcart");
export const namespace = "meshcart";

/** The value sets the chart documents: the defaults, then each values-*.yaml. */
export const valueSets: { name: string; file?: string }[] = [
  { name: "default" },
  ...readdirSync(chartDir)
    .filter((f) => /^values-.+\.yaml$/.test(f))
    .sort()
    .map((f) => ({ name: f.replace(/^values-|\.yaml$/g, ""), file: path.join(chartDir, f) })),
];

/**
 * Value sets of the tests alone (test/deploy/values/*.yaml): they set what no
 * documented profile does (pod settings, extraEnv), to check where it lands.
 * chart-test.sh and apiserver-test.sh render them too.
 */
export const testValuesDir = path.join(repoRoot, "test", "deploy", "values");
export const testValueSets: { name: string; file: string }[] = readdirSync(testValuesDir)
  .filter((f) => f.endsWith(".yaml"))
  .sort()
  .map((f) => ({ name: `test ${f.replace(/\.yaml$/, "")}`, file: path.join(testValuesDir, f) }));

/** Rendered Kubernetes JSON below the fields the checks name: untyped by nature. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Manifest = any;

// A loose shape of what the chart renders: enough for the checks.
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: Manifest;
  data?: Record<string, string>;
  stringData?: Record<string, string>;
}

export function helmBinary(): string {
  const helm = path.join(toolsBin, "helm");
  if (!existsSync(helm)) throw new Error("helm is missing: run `scripts/tools.sh helm` (make test installs it)");
  return helm;
}

/** The content-derived tags `make deploy` passes, as a values file. */
let tagsFile: Promise<string> | undefined;
export function imageTagsFile(): Promise<string> {
  tagsFile ??= (async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "meshcart-chart-"));
    const file = path.join(dir, "tags.yaml");
    await fs.writeFile(file, helmValues(tags()));
    return file;
  })();
  return tagsFile;
}

/** `helm template` of the chart with the image tags and the given values files/flags. */
export async function render(extra: string[] = []): Promise<K8sObject[]> {
  const kubeVersion = readVersions().KUBERNETES_SCHEMA_VERSION!;
  const { stdout } = await run(
    helmBinary(),
    ["template", "meshcart", chartDir, "--namespace", namespace, "--kube-version", kubeVersion, "-f", await imageTagsFile(), ...extra],
    { maxBuffer: 64 * 1024 * 1024 },
  );
  return parseAllDocuments(stdout)
    .map((doc) => doc.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null && typeof o === "object");
}

/** Pod templates (and test Pods) with what owns them. */
export interface PodOf {
  owner: K8sObject;
  replicas: number;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  spec: Manifest;
  isTest: boolean;
}

export function pods(objects: K8sObject[]): PodOf[] {
  const out: PodOf[] = [];
  for (const o of objects) {
    if (o.kind === "Deployment" || o.kind === "StatefulSet") {
      out.push({
        owner: o,
        replicas: o.spec.replicas ?? 1,
        labels: o.spec.template.metadata?.labels ?? {},
        annotations: o.spec.template.metadata?.annotations ?? {},
        spec: o.spec.template.spec,
        isTest: false,
      });
    } else if (o.kind === "Pod") {
      out.push({
        owner: o,
        replicas: 1,
        labels: o.metadata.labels ?? {},
        annotations: o.metadata.annotations ?? {},
        spec: o.spec,
        isTest: o.metadata.annotations?.["helm.sh/hook"] === "test",
      });
    }
  }
  return out;
}

/** Kubernetes quantities ("64Mi", "1Gi", "128974848", "10m") in bytes or cores. */
export function quantity(value: string | number): number {
  if (typeof value === "number") return value;
  const match = /^([0-9.]+)(m|k|Ki|M|Mi|G|Gi|T|Ti)?$/.exec(value);
  if (!match) throw new Error(`not a quantity: ${value}`);
  const units: Record<string, number> = { "": 1, m: 1e-3, k: 1e3, Ki: 1024, M: 1e6, Mi: 1024 ** 2, G: 1e9, Gi: 1024 ** 3, T: 1e12, Ti: 1024 ** 4 };
  return Number(match[1]) * units[match[2] ?? ""]!;
}

/**
 * The chart's values as Helm computes them for an install: values.yaml with
 * each file merged over it in order (maps merge key by key, anything else
 * replaces, null removes). The tests' own oracle for which optional parts a
 * value set installs; the deploy scripts ask helm itself (mesh.sh).
 */
export function chartValues(files: readonly string[] = []): Manifest {
  let values = parse(readFileSync(path.join(chartDir, "values.yaml"), "utf8"));
  for (const file of files) values = mergeValues(values, parse(readFileSync(file, "utf8")) ?? {});
  return values;
}

function mergeValues(base: Manifest, over: Manifest): Manifest {
  if (over === undefined) return base;
  const isMap = (v: unknown) => v !== null && typeof v === "object" && !Array.isArray(v);
  if (!isMap(base) || !isMap(over)) return over;
  const out = { ...base };
  for (const [key, value] of Object.entries(over)) {
    if (value === null) delete out[key];
    else out[key] = mergeValues(base[key], value);
  }
  return out;
}

/** A value by its dotted key (`jaeger.enabled`); undefined when absent. */
export function chartValueAt(values: Manifest, dotted: string): unknown {
  return dotted.split(".").reduce((v, key) => (v === null || v === undefined ? undefined : v[key]), values);
}
