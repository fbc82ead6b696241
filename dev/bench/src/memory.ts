import { sleep } from "@meshcart/lib";
import type { LocalPostgres } from "@meshcart/stack/postgres.js";
import { localServices } from "@meshcart/stack/services.js";
import { memoryCgroups, type CgroupVersion, type MemoryCgroup, type MemoryReading } from "./cgroup.js";
import type { ChartResources } from "./chart-resources.js";
import { runGhz, type GhzCall, type LoadResult } from "./ghz.js";
import { startStack, type Stack } from "./stack.js";

/**
 * The memory step: a stack of its own in which every service runs in a
 * memory cgroup with its container's limit from the chart and the chart's
 * NODE_OPTIONS (the heap size it derives from the limit), driven through
 * the storefront at saturation (closed loop) and then at 3× saturation
 * (open loop). The kernel says what each service was charged (anonymous
 * memory and page cache, as for a pod), how often it hit its limit, and
 * whether its OOM killer had to act.
 */

export interface MemoryPhase {
  label: string;
  result: LoadResult;
}

export interface ServiceMemory {
  service: string;
  requestBytes: number;
  limitBytes: number;
  nodeOptions: string | undefined;
  /** Charged after start-up and a settle, before any load. */
  idleBytes: number;
  /**
   * The median working set (usage less inactive page cache, as the kubelet
   * counts it) under saturation: what the service needs to run steadily.
   */
  steadyBytes: number;
  /** Highest sample under saturation, and under 3× overload. */
  saturationPeakBytes: number;
  overloadPeakBytes: number;
  /** The kernel's high-water mark over the whole step (undefined where it keeps none). */
  kernelPeakBytes: number | undefined;
  limitHits: number;
  oomKills: number;
  /** How the process ended, if it did during the step (an OOM kill ends it with SIGKILL). */
  exited?: string;
}

export type MemoryMeasurement =
  { measured: false; reason: string } | { measured: true; cgroup: CgroupVersion; seconds: number; phases: MemoryPhase[]; services: ServiceMemory[] };

export interface MemoryContext {
  repoRoot: string;
  ghz: string;
  postgres: LocalPostgres;
  logLevel: string;
  chart: Map<string, ChartResources>;
  /** Every service's tracing settings, as the chart runs them. */
  env: Record<string, string>;
  seconds: number;
  /** The closed-loop concurrency and rate at which PlaceOrder saturated in this run. */
  saturation: { concurrency: number; okRps: number };
  /** The PlaceOrder call against a stack, for a tag unique to the run. */
  call: (stack: Stack, tag: string) => Promise<GhzCall>;
  log: (line: string) => void;
}

const SAMPLE_MS = 100;
const SETTLE_MS = 2_000;

export async function measureMemory(context: MemoryContext, tag: string): Promise<MemoryMeasurement> {
  const host = await memoryCgroups(`meshcart-bench-${process.pid}`);
  if ("unavailable" in host) return { measured: false, reason: host.unavailable };
  const groups = new Map<string, MemoryCgroup>();
  let stack: Stack | undefined;
  try {
    for (const service of localServices) {
      const chart = context.chart.get(service.name)!;
      groups.set(service.name, await host.create(service.name, chart.limitBytes));
    }
    stack = await startStack({
      label: "memory",
      databasePrefix: "bench_memory",
      postgres: context.postgres,
      repoRoot: context.repoRoot,
      env: context.env,
      logLevel: context.logLevel,
      serviceEnv: Object.fromEntries(
        localServices.map((s): [string, Record<string, string>] => {
          const nodeOptions = context.chart.get(s.name)!.nodeOptions;
          return [s.name, nodeOptions ? { NODE_OPTIONS: nodeOptions } : {}];
        }),
      ),
      cgroupProcs: Object.fromEntries([...groups.entries()].map(([name, group]) => [name, group.procsFile])),
    });
    const running = stack;
    const exits = new Map<string, string>();
    for (const s of running.services) void s.process.exited.then((status) => exits.set(s.name, status.signal ?? `exit ${status.code}`));

    await sleep(SETTLE_MS);
    const idle = await readAll(groups);
    const samples = new Map<string, number[]>([...groups.keys()].map((name) => [name, []]));
    const phases: MemoryPhase[] = [];
    const peaks: Map<string, number>[] = [];
    for (const [label, load] of [
      ["saturation (closed loop)", { concurrency: context.saturation.concurrency, seconds: context.seconds }],
      ["3× saturation (open loop)", { concurrency: 200, seconds: context.seconds, rps: context.saturation.okRps * 3, finishInFlight: true }],
    ] as const) {
      const peak = new Map<string, number>();
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          for (const [name, reading] of await readAll(groups)) {
            peak.set(name, Math.max(peak.get(name) ?? 0, reading.usageBytes));
            if (phases.length === 0) samples.get(name)!.push(reading.workingSetBytes);
          }
          await sleep(SAMPLE_MS);
        }
      })();
      const result = await runGhz(context.ghz, await context.call(running, `${tag}-${phases.length}`), load);
      sampling = false;
      await sampler;
      phases.push({ label, result });
      peaks.push(peak);
      context.log(
        `memory, ${label}: ${result.okRps.toFixed(0)} ok/s; ` +
          [...peak.entries()]
            .map(([name, bytes]) => `${name} ${(bytes / 2 ** 20).toFixed(0)} MiB of ${(groups.get(name)!.limitBytes / 2 ** 20).toFixed(0)}`)
            .join(", "),
      );
    }
    const end = await readAll(groups);
    const services: ServiceMemory[] = localServices.map((s) => {
      const chart = context.chart.get(s.name)!;
      const reading = end.get(s.name)!;
      const sorted = [...samples.get(s.name)!].sort((a, b) => a - b);
      return {
        service: s.name,
        requestBytes: chart.requestBytes,
        limitBytes: chart.limitBytes,
        nodeOptions: chart.nodeOptions,
        idleBytes: idle.get(s.name)!.usageBytes,
        steadyBytes: sorted[Math.floor(sorted.length / 2)] ?? Number.NaN,
        saturationPeakBytes: peaks[0]!.get(s.name) ?? Number.NaN,
        overloadPeakBytes: peaks[1]!.get(s.name) ?? Number.NaN,
        kernelPeakBytes: reading.peakBytes,
        limitHits: reading.limitHits,
        oomKills: reading.oomKills,
        ...(exits.has(s.name) ? { exited: exits.get(s.name)! } : {}),
      };
    });
    return { measured: true, cgroup: host.version, seconds: context.seconds, phases, services };
  } finally {
    await stack?.stop();
    await host.remove();
  }
}

async function readAll(groups: Map<string, MemoryCgroup>): Promise<Map<string, MemoryReading>> {
  const out = new Map<string, MemoryReading>();
  for (const [name, group] of groups) out.set(name, await group.read());
  return out;
}
