import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { parseAllDocuments } from "yaml";

const run = promisify(execFile);

/** What the chart gives one service's container: the memory step runs the service under exactly this. */
export interface ChartResources {
  service: string;
  /** resources.requests.memory, in bytes. */
  requestBytes: number;
  /** resources.limits.memory, in bytes. */
  limitBytes: number;
  /** The NODE_OPTIONS the chart sets (the heap size it derives from the limit); undefined when it sets none. */
  nodeOptions: string | undefined;
  /** How long the kubelet waits for /readyz before counting a failed probe (readinessProbe.timeoutSeconds, 1 s when unset). */
  readinessTimeoutMs: number;
}

/**
 * The chart's resources and NODE_OPTIONS of each service, as Helm renders
 * them with the default values: the chart is the one place these are
 * defined, so the bench asks it rather than keeping numbers of its own.
 */
export async function chartResources(repoRoot: string, helm: string, services: readonly string[]): Promise<Map<string, ChartResources>> {
  if (!existsSync(helm)) throw new Error(`${helm} is missing: run scripts/tools.sh helm (make bench does)`);
  // The chart requires an image tag for every Dockerfile target; the bench renders, it deploys nothing.
  const images = (await import(pathToFileURL(path.join(repoRoot, "scripts", "deploy", "image-tag.mjs")).href)) as { services(root?: string): string[] };
  const tagged = images.services(repoRoot);
  const { stdout } = await run(
    helm,
    [
      "template",
      "meshcart",
      path.join(repoRoot, "helm", "meshcart"),
      "--show-only",
      "templates/deployment.yaml",
      "--set",
      tagged.map((s) => `${s}.image.tag=bench`).join(","),
    ],
    { maxBuffer: 16 * 1024 * 1024 },
  );
  const found = new Map<string, ChartResources>();
  for (const doc of parseAllDocuments(stdout)) {
    const object = doc.toJS() as Deployment | null;
    if (object?.kind !== "Deployment") continue;
    for (const container of object.spec.template.spec.containers) {
      if (!services.includes(container.name) || found.has(container.name)) continue;
      const limit = container.resources?.limits?.memory;
      const request = container.resources?.requests?.memory;
      if (limit === undefined || request === undefined) throw new Error(`the chart gives ${container.name} no memory request or limit`);
      found.set(container.name, {
        service: container.name,
        requestBytes: quantityBytes(request),
        limitBytes: quantityBytes(limit),
        nodeOptions: container.env?.find((e) => e.name === "NODE_OPTIONS")?.value,
        readinessTimeoutMs: (container.readinessProbe?.timeoutSeconds ?? 1) * 1_000,
      });
    }
  }
  for (const service of services) if (!found.has(service)) throw new Error(`the chart renders no Deployment with a ${service} container`);
  return found;
}

interface Deployment {
  kind: string;
  spec: {
    template: {
      spec: {
        containers: {
          name: string;
          env?: { name: string; value?: string }[];
          readinessProbe?: { timeoutSeconds?: number };
          resources?: { requests?: { memory?: string | number }; limits?: { memory?: string | number } };
        }[];
      };
    };
  };
}

/** A Kubernetes memory quantity ("256Mi", "1Gi", "300M", "268435456") in bytes. */
export function quantityBytes(value: string | number): number {
  if (typeof value === "number") return value;
  const match = /^([0-9.]+)(k|Ki|M|Mi|G|Gi)?$/.exec(value.trim());
  if (!match) throw new Error(`not a memory quantity: ${value}`);
  const units: Record<string, number> = { "": 1, k: 1e3, Ki: 1024, M: 1e6, Mi: 1024 ** 2, G: 1e9, Gi: 1024 ** 3 };
  return Math.round(Number(match[1]) * units[match[2] ?? ""]!);
}
