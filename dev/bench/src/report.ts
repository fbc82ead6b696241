import type { MemoryMeasurement } from "./memory.js";
import type { OverloadMeasurement } from "./overload.js";
import { overloadTargets } from "./overload-report.js";
import type { ArtefactSize } from "./artefacts.js";
import type { DatabaseActivity } from "./db-counts.js";
import { FLOOR_SHAPE, type DurableTransaction } from "./floor.js";
import { errorRate, type LoadResult } from "./ghz.js";
import type { ProfileSummary } from "./cpu-profile.js";
import type { Machine } from "./machine.js";
import type { Saturation } from "./saturation.js";
import { MB, change, median, ratio } from "./stats.js";
import type { TracingMode } from "./tracing.js";
import type { Workload } from "./workloads.js";

/** What a run measured, before any figure is derived from it. */
export interface Measurements {
  startedAt: string;
  finishedAt: string;
  command: string;
  machine: Machine;
  settings: {
    stepSeconds: number;
    latencySeconds: number;
    latencyFraction: number;
    levels: readonly number[];
    tracingRounds: number;
    postgresDurable: boolean;
    logLevel: string;
  };
  workloads: WorkloadMeasurement[];
  /** The minimal durable transaction (pgbench), the floor's durable half; absent when it could not be measured (`floorSkipped` says why). */
  floor?: DurableTransaction;
  floorSkipped?: string;
  /** What the services asked of Postgres while nothing called them. */
  idle?: IdleMeasurement;
  /** The baseline once more at the end, at its saturating concurrency: how much the machine changed under the run. */
  baselineAgain: LoadResult;
  tracing: TracingMeasurement[];
  /** The echo server's own footprint, the floor for the services'. */
  echoProcess: ProcessFootprint;
  services: ServiceMeasurement[];
  nodeBinaryBytes: number;
  /** Why artefact sizes are missing (BENCH_ARTEFACTS=0, quick mode), when they are. */
  artefactsSkipped?: string;
  /** Where each service's CPU went under checkout load (BENCH_PROFILE). */
  profiles?: ProfiledService[];
  /** The overload step (overload.ts). */
  overload?: OverloadMeasurement;
  /** The memory step (memory.ts). */
  memory?: MemoryMeasurement;
}

export interface ProfiledService extends ProfileSummary {
  service: string;
  workload: string;
}

export interface WorkloadMeasurement {
  workload: Workload;
  saturation: Saturation;
  /** Open loop at latencyFraction of the saturation throughput. */
  latency: LoadResult;
  /** meshcart RPCs the services answered per call, from their metrics (undefined for the echo server, which has none). */
  rpcsPerCallMeasured?: number;
  /** Milliseconds of CPU per call at saturation (the best step), by process (services, postgres, ghz); absent without /proc. */
  cpuMsPerCall?: Record<string, number>;
  /** Statements and durable commits per call in each service's database (counted over the warm-up), for workloads that count them. */
  database?: { calls: number; perDatabase: DatabaseActivity[] };
  /** The machine's 1-minute load average when the saturation search ended. */
  loadAverage?: number;
}

export interface IdleMeasurement {
  seconds: number;
  /** Totals over the window, by service. */
  perDatabase: DatabaseActivity[];
}

export interface TracingMeasurement {
  workload: Workload;
  mode: TracingMode;
  /** Closed loop at the concurrency that saturated with tracing off; one per round. */
  throughput: LoadResult[];
  /** Open loop at the same rate for every mode (a fraction of the saturation with tracing off); one per round. */
  latency: LoadResult[];
  /** Bytes of OTLP exports received per successful call. */
  exportBytesPerCall?: number;
}

export interface ProcessFootprint {
  idleRssBytes: number;
  loadRssBytes: number;
  startToReadyMs: number[];
}

export interface ServiceMeasurement extends ProcessFootprint {
  name: string;
  /** Peak RSS under load per tracing mode. */
  loadRssByMode: Record<string, number>;
  artefact?: ArtefactSize;
}

// --- the report ---------------------------------------------------------------

export interface BenchReport {
  schema: 1;
  startedAt: string;
  finishedAt: string;
  command: string;
  machine: Machine;
  settings: Measurements["settings"] & { ghzCommon: string };
  baseline: {
    rps: number;
    concurrency: number;
    p50Ms: number;
    p99Ms: number;
    rpsAtEnd: number;
    /** Relative change of the baseline between the start and the end of the run. */
    drift: number;
  };
  workloads: WorkloadRow[];
  /** The durable floor of a checkout, measured in this run; absent when pgbench was missing. */
  floor?: FloorRow;
  floorSkipped?: string;
  idle?: {
    seconds: number;
    perDatabase: { database: string; statementsPerSecond: number; healthChecksPerSecond: number; statements: { query: string; calls: number }[] }[];
  };
  tracing: TracingRow[];
  services: ServiceRow[];
  echoProcess: { idleRssMb: number; loadRssMb: number; startToReadyMs: number };
  nodeBinaryMb: number;
  artefactsSkipped?: string;
  profiles?: ProfiledService[];
  overload?: OverloadMeasurement;
  memory?: MemoryMeasurement;
  targets: TargetResult[];
}

export interface WorkloadRow {
  id: string;
  label: string;
  method: string;
  rpcsPerCall: number;
  rpcsPerCallMeasured?: number;
  saturation: {
    rps: number;
    concurrency: number;
    stoppedBecause: Saturation["stoppedBecause"];
    steps: { concurrency: number; okRps: number; p50Ms: number; p99Ms: number; errorRate: number }[];
  };
  /** Baseline throughput divided by the RPCs one call makes: what this call could do if every hop were as cheap as the echo. */
  hopBoundRps: number;
  ofHopBound: number;
  /** CPU per call by process, and what the machine's cores allow at that cost (cores ÷ CPU per call, the load tool included); `ofFloor`: total ÷ the durable floor. */
  /**
   * CPU per call by process (the reaction's Postgres apart); the total, and
   * the checkout's (without the reaction, REACTING_SERVICES), which
   * `ofFloor` compares with the durable floor.
   */
  cpu?: { msPerCall: Record<string, number>; totalMsPerCall: number; checkoutMsPerCall: number; boundRps: number; ofFloor?: number };
  /**
   * Per call, by service's database; the totals are the checkout's (its
   * call and saga), and `reaction` what the services acting on its
   * published events did afterwards (REACTING_SERVICES).
   */
  database?: { perDatabase: DatabaseActivity[]; statements: number; commits: number; reaction: { statements: number; commits: number } };
  /** The machine's 1-minute load average when its saturation search ended. */
  loadAverage?: number;
  throughputVsBaseline: number;
  latency: {
    offeredRps: number;
    achievedRps: number;
    p50Ms: number;
    p95Ms: number;
    p99Ms: number;
    p99OverP50: number;
    p50VsBaseline: number;
    p99VsBaseline: number;
    errorRate: number;
  };
}

export interface FloorRow {
  durableCommits: number;
  rpcs: number;
  /** Postgres CPU of one minimal durable transaction. */
  durableTransactionMs: number;
  /** CPU of one raw gRPC hop: the echo server and the load tool, per call at the baseline's saturation. */
  hopMs: number;
  /** durableCommits × durableTransactionMs + rpcs × hopMs. */
  floorMs: number;
  pgbench: DurableTransaction;
}

export interface TracingRow {
  workload: string;
  label: string;
  mode: TracingMode["id"];
  rounds: number;
  throughputRps: number;
  throughputVsOff: number;
  throughputVsBaseline: number;
  /** Every round's throughput, to judge the noise. */
  throughputRounds: number[];
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  p99VsOff: number;
  exportBytesPerCall?: number;
}

export interface ServiceRow {
  name: string;
  idleRssMb: number;
  loadRssMb: number;
  /** Highest under load across tracing modes. */
  loadRssMaxMb: number;
  loadRssByModeMb: Record<string, number>;
  loadRssVsBaseline: number;
  startToReadyMs: { max: number; median: number; all: number[] };
  startToReadyVsBaseline: number;
  artefactMb?: number;
  artefactFiles?: number;
  artefactVsNodeBinary?: number;
}

export interface TargetResult {
  id: string;
  /** What is held to the target, e.g. "order CreateOrder" or "payment". */
  subject: string;
  rule: string;
  measured: number;
  limit: number;
  unit: string;
  pass: boolean;
}

/**
 * The services that act on a checkout's published events after it has
 * ended (the shipment a confirmed order starts): not part of the checkout,
 * whose cost the targets bound, so their statements are reported apart.
 */
export const REACTING_SERVICES: ReadonlySet<string> = new Set(["fulfillment"]);
/** The CPU Postgres spends in the reacting services' databases, a column of its own. */
export const REACTION_POSTGRES = "postgres (reaction)";
const REACTION_CPU: ReadonlySet<string> = new Set([...REACTING_SERVICES, REACTION_POSTGRES]);

/** The targets of the benchmark (issues 9 and 15), as numbers. */
export const TARGETS = {
  /** CPU of a checkout, at most this multiple of its durable floor measured in the same run. */
  checkoutOfFloor: 10,
  /** The stretch: reported with the target, not a verdict of its own. */
  checkoutOfFloorStretch: 5,
  /** SQL statements (round trips) per checkout in every database together, at most. */
  statementsPerCheckout: 15,
  /** Durable commits per checkout in every database together, at most. */
  commitsPerCheckout: 6,
  /** Statements per second beyond health checks with nothing to do, every service together, at most. */
  idleStatementsPerSecond: 0.2,
  /** p99 at most this multiple of p50, at latencyFraction of saturation. */
  p99OverP50: 5,
  /** Peak RSS under load, at most (MB = 10^6 bytes). */
  rssMb: 120,
  /** Process spawn until ready, at most. */
  startToReadyMs: 1_000,
  /** Throughput lost with 10 % of traces sampled, at most. */
  tracing10Cost: 0.1,
} as const;

export function buildReport(m: Measurements, ghzCommon: string): BenchReport {
  const echo = m.workloads.find((w) => w.workload.target === "echo");
  if (!echo) throw new Error("the measurements have no baseline");
  const baselineRps = echo.saturation.best.okRps;
  const baselineLatency = echo.latency;
  const floor = floorRow(m.floor, echo.cpuMsPerCall);

  const workloads = m.workloads.map((w): WorkloadRow => {
    const rps = w.saturation.best.okRps;
    const hopBoundRps = baselineRps / w.workload.rpcsPerCall;
    return {
      id: w.workload.id,
      label: w.workload.label,
      method: w.workload.method,
      rpcsPerCall: w.workload.rpcsPerCall,
      ...(w.rpcsPerCallMeasured === undefined ? {} : { rpcsPerCallMeasured: w.rpcsPerCallMeasured }),
      saturation: {
        rps,
        concurrency: w.saturation.best.concurrency,
        stoppedBecause: w.saturation.stoppedBecause,
        steps: w.saturation.steps.map((s) => ({ concurrency: s.concurrency, okRps: s.okRps, p50Ms: s.p50Ms, p99Ms: s.p99Ms, errorRate: errorRate(s) })),
      },
      hopBoundRps,
      ofHopBound: ratio(rps, hopBoundRps),
      ...(w.cpuMsPerCall ? { cpu: cpuRow(w.cpuMsPerCall, m.machine.cores, w.workload.checkout ? floor : undefined) } : {}),
      ...(w.database ? { database: databaseRow(w.database.perDatabase) } : {}),
      ...(w.loadAverage === undefined ? {} : { loadAverage: w.loadAverage }),
      throughputVsBaseline: ratio(rps, baselineRps),
      latency: {
        offeredRps: w.latency.offeredRps ?? Number.NaN,
        achievedRps: w.latency.okRps,
        p50Ms: w.latency.p50Ms,
        p95Ms: w.latency.p95Ms,
        p99Ms: w.latency.p99Ms,
        p99OverP50: ratio(w.latency.p99Ms, w.latency.p50Ms),
        p50VsBaseline: ratio(w.latency.p50Ms, baselineLatency.p50Ms),
        p99VsBaseline: ratio(w.latency.p99Ms, baselineLatency.p99Ms),
        errorRate: errorRate(w.latency),
      },
    };
  });

  const tracing = tracingRows(m.tracing, baselineRps);
  const echoLoadRss = m.echoProcess.loadRssBytes;
  const echoStart = median(m.echoProcess.startToReadyMs);
  const services = m.services.map((s): ServiceRow => {
    const byMode = Object.fromEntries(Object.entries(s.loadRssByMode).map(([mode, bytes]) => [mode, bytes / MB]));
    const loadRssMax = Math.max(s.loadRssBytes, ...Object.values(s.loadRssByMode));
    const starts = s.startToReadyMs;
    return {
      name: s.name,
      idleRssMb: s.idleRssBytes / MB,
      loadRssMb: s.loadRssBytes / MB,
      loadRssMaxMb: loadRssMax / MB,
      loadRssByModeMb: byMode,
      loadRssVsBaseline: ratio(s.loadRssBytes, echoLoadRss),
      startToReadyMs: { max: Math.max(...starts), median: median(starts), all: starts },
      startToReadyVsBaseline: ratio(median(starts), echoStart),
      ...(s.artefact
        ? { artefactMb: s.artefact.bytes / MB, artefactFiles: s.artefact.files, artefactVsNodeBinary: ratio(s.artefact.bytes, m.nodeBinaryBytes) }
        : {}),
    };
  });

  const report: BenchReport = {
    schema: 1,
    startedAt: m.startedAt,
    finishedAt: m.finishedAt,
    command: m.command,
    machine: m.machine,
    settings: { ...m.settings, ghzCommon },
    baseline: {
      rps: baselineRps,
      concurrency: echo.saturation.best.concurrency,
      p50Ms: baselineLatency.p50Ms,
      p99Ms: baselineLatency.p99Ms,
      rpsAtEnd: m.baselineAgain.okRps,
      drift: change(m.baselineAgain.okRps, baselineRps),
    },
    workloads,
    ...(floor ? { floor } : {}),
    ...(m.floorSkipped ? { floorSkipped: m.floorSkipped } : {}),
    ...(m.idle
      ? {
          idle: {
            seconds: m.idle.seconds,
            perDatabase: m.idle.perDatabase.map((d) => ({
              database: d.database,
              statementsPerSecond: d.statements / m.idle!.seconds,
              healthChecksPerSecond: d.healthChecks / m.idle!.seconds,
              statements: d.byStatement,
            })),
          },
        }
      : {}),
    tracing,
    services,
    echoProcess: { idleRssMb: m.echoProcess.idleRssBytes / MB, loadRssMb: echoLoadRss / MB, startToReadyMs: echoStart },
    nodeBinaryMb: m.nodeBinaryBytes / MB,
    ...(m.artefactsSkipped ? { artefactsSkipped: m.artefactsSkipped } : {}),
    ...(m.profiles ? { profiles: m.profiles } : {}),
    ...(m.overload ? { overload: m.overload } : {}),
    ...(m.memory ? { memory: m.memory } : {}),
    targets: [],
  };
  report.targets = [...checkTargets(report), ...overloadTargets(m.overload, m.memory)];
  return report;
}

function cpuRow(msPerCall: Record<string, number>, cores: number, floor: FloorRow | undefined): NonNullable<WorkloadRow["cpu"]> {
  const totalMsPerCall = Object.values(msPerCall).reduce((sum, v) => sum + v, 0);
  const checkoutMsPerCall = Object.entries(msPerCall).reduce((sum, [name, v]) => (REACTION_CPU.has(name) ? sum : sum + v), 0);
  return {
    msPerCall,
    totalMsPerCall,
    checkoutMsPerCall,
    boundRps: totalMsPerCall > 0 ? (cores * 1000) / totalMsPerCall : Number.NaN,
    ...(floor ? { ofFloor: ratio(checkoutMsPerCall, floor.floorMs) } : {}),
  };
}

/** The floor from the durable transaction and the baseline's CPU per call; undefined when either is missing. */
function floorRow(pgbench: DurableTransaction | undefined, echoCpu: Record<string, number> | undefined): FloorRow | undefined {
  if (!pgbench || !echoCpu) return undefined;
  const hopMs = Object.values(echoCpu).reduce((sum, v) => sum + v, 0);
  const durableTransactionMs = pgbench.postgresCpuMsPerTransaction;
  return {
    durableCommits: FLOOR_SHAPE.durableCommits,
    rpcs: FLOOR_SHAPE.rpcs,
    durableTransactionMs,
    hopMs,
    floorMs: FLOOR_SHAPE.durableCommits * durableTransactionMs + FLOOR_SHAPE.rpcs * hopMs,
    pgbench,
  };
}

function tracingRows(measured: readonly TracingMeasurement[], baselineRps: number): TracingRow[] {
  const rows = measured.map((t) => ({
    workload: t.workload.id,
    label: t.workload.label,
    mode: t.mode.id,
    rounds: t.throughput.length,
    throughputRps: median(t.throughput.map((r) => r.okRps)),
    throughputVsOff: Number.NaN,
    throughputVsBaseline: Number.NaN,
    throughputRounds: t.throughput.map((r) => r.okRps),
    p50Ms: median(t.latency.map((r) => r.p50Ms)),
    p95Ms: median(t.latency.map((r) => r.p95Ms)),
    p99Ms: median(t.latency.map((r) => r.p99Ms)),
    p99VsOff: Number.NaN,
    ...(t.exportBytesPerCall === undefined ? {} : { exportBytesPerCall: t.exportBytesPerCall }),
  }));
  for (const row of rows) {
    const off = rows.find((r) => r.workload === row.workload && r.mode === "off");
    row.throughputVsOff = ratio(row.throughputRps, off?.throughputRps);
    row.throughputVsBaseline = ratio(row.throughputRps, baselineRps);
    row.p99VsOff = ratio(row.p99Ms, off?.p99Ms);
  }
  return rows;
}

function databaseRow(perDatabase: DatabaseActivity[]): NonNullable<WorkloadRow["database"]> {
  const sum = (rows: DatabaseActivity[]) => ({
    statements: rows.reduce((total, d) => total + d.statements, 0),
    commits: rows.reduce((total, d) => total + d.commits, 0),
  });
  return {
    perDatabase,
    ...sum(perDatabase.filter((d) => !REACTING_SERVICES.has(d.database))),
    reaction: sum(perDatabase.filter((d) => REACTING_SERVICES.has(d.database))),
  };
}

/** PASS or MISS for every target, from the report's own figures. */
export function checkTargets(report: Pick<BenchReport, "workloads" | "services" | "tracing" | "floor" | "idle">): TargetResult[] {
  const results: TargetResult[] = [];
  for (const w of report.workloads) {
    const ofFloor = w.cpu?.ofFloor;
    if (ofFloor === undefined || !report.floor) continue;
    results.push({
      id: `checkout-floor:${w.id}`,
      subject: w.label,
      rule:
        `CPU per checkout ≤ ${TARGETS.checkoutOfFloor} × the durable floor (${report.floor.durableCommits} durable commits + ${report.floor.rpcs} raw hops, ` +
        `measured in this run; stretch ${TARGETS.checkoutOfFloorStretch}×)`,
      measured: ofFloor,
      limit: TARGETS.checkoutOfFloor,
      unit: "× floor",
      pass: ofFloor <= TARGETS.checkoutOfFloor,
    });
  }
  const counted = report.workloads.find((w) => w.id === "create-order")?.database;
  if (counted) {
    const subject = report.workloads.find((w) => w.id === "create-order")!.label;
    results.push({
      id: "statements-per-checkout",
      subject,
      rule: `SQL statements per checkout ≤ ${TARGETS.statementsPerCheckout} (the checkout's databases, BEGIN and COMMIT included; ${[...REACTING_SERVICES].join(", ")}'s reaction apart)`,
      measured: counted.statements,
      limit: TARGETS.statementsPerCheckout,
      unit: "per call",
      pass: counted.statements <= TARGETS.statementsPerCheckout,
    });
    results.push({
      id: "commits-per-checkout",
      subject,
      rule: `durable commits per checkout ≤ ${TARGETS.commitsPerCheckout} (the checkout's databases)`,
      measured: counted.commits,
      limit: TARGETS.commitsPerCheckout,
      unit: "per call",
      pass: counted.commits <= TARGETS.commitsPerCheckout,
    });
  }
  if (report.idle) {
    const perSecond = report.idle.perDatabase.reduce((sum, d) => sum + d.statementsPerSecond, 0);
    results.push({
      id: "idle-statements",
      subject: "every service, idle",
      rule: `statements beyond health checks with no traffic ≤ ${TARGETS.idleStatementsPerSecond}/s`,
      measured: perSecond,
      limit: TARGETS.idleStatementsPerSecond,
      unit: "per second",
      pass: perSecond <= TARGETS.idleStatementsPerSecond,
    });
  }
  for (const w of report.workloads) {
    if (w.id === "echo") continue;
    results.push({
      id: `p99-over-p50:${w.id}`,
      subject: w.label,
      rule: `p99 ≤ ${TARGETS.p99OverP50} × p50 at 50 % of saturation`,
      measured: w.latency.p99OverP50,
      limit: TARGETS.p99OverP50,
      unit: "× p50",
      pass: w.latency.p99OverP50 <= TARGETS.p99OverP50,
    });
  }
  for (const s of report.services) {
    results.push({
      id: `rss:${s.name}`,
      subject: s.name,
      rule: `RSS under load ≤ ${TARGETS.rssMb} MB (highest of every tracing mode)`,
      measured: s.loadRssMaxMb,
      limit: TARGETS.rssMb,
      unit: "MB",
      pass: s.loadRssMaxMb <= TARGETS.rssMb,
    });
    results.push({
      id: `start-to-ready:${s.name}`,
      subject: s.name,
      rule: `start-to-ready ≤ ${TARGETS.startToReadyMs / 1000} s (slowest start)`,
      measured: s.startToReadyMs.max,
      limit: TARGETS.startToReadyMs,
      unit: "ms",
      pass: s.startToReadyMs.max <= TARGETS.startToReadyMs,
    });
  }
  for (const row of report.tracing.filter((t) => t.mode === "10%")) {
    const cost = 1 - row.throughputVsOff;
    results.push({
      id: `tracing-10:${row.workload}`,
      subject: row.label,
      rule: `10 % sampling costs ≤ ${pct(TARGETS.tracing10Cost)} of throughput`,
      measured: cost,
      limit: TARGETS.tracing10Cost,
      unit: "of throughput",
      pass: cost <= TARGETS.tracing10Cost,
    });
  }
  return results;
}

function pct(fraction: number): string {
  return `${Math.round(fraction * 100)} %`;
}
