import { spawn } from "node:child_process";

/** One RPC as ghz calls it. */
export interface GhzCall {
  /** host:port */
  target: string;
  /** package.Service/Method */
  method: string;
  /** Where ghz reads the method's types: a .proto file or a compiled descriptor set. */
  schema: { proto: string } | { protoset: string };
  /**
   * The request, as JSON with ghz's call-template actions ({{.RequestNumber}},
   * {{newUUID}}) evaluated per request. An array is sent round-robin, one
   * element per request.
   */
  data: unknown;
  metadata?: Record<string, string>;
}

/** How hard to push. */
export interface GhzLoad {
  concurrency: number;
  /** How long to run; ignored when `requests` is set. */
  seconds: number;
  /** Run exactly this many calls instead, each to its end (a count, not a rate). */
  requests?: number;
  /**
   * Open loop at this rate (requests are started on schedule, whether or not
   * earlier ones have answered); unset: closed loop, each worker sends its
   * next request when the last one answered.
   */
  rps?: number;
  /**
   * At the end of the duration, wait for the calls still in flight and
   * count them (ghz's --duration-stop=wait) instead of leaving them out:
   * for runs whose every call must be accounted for.
   */
  finishInFlight?: boolean;
}

/** What one ghz run measured, in the units the bench reports. */
export interface LoadResult {
  concurrency: number;
  /** Asked-for rate of an open-loop run. */
  offeredRps?: number;
  seconds: number;
  /** Calls that finished, whatever their status. */
  calls: number;
  ok: number;
  /** Non-OK statuses by name ("Unavailable": 3). */
  errors: Record<string, number>;
  /** Successful calls per second. */
  okRps: number;
  /** Latency of successful calls, in milliseconds. */
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  meanMs: number;
  /** Time to each non-OK status ("ResourceExhausted"), from the calls' own latency, and one of its messages. */
  errorTimes: Record<string, ErrorTimes>;
}

export interface ErrorTimes {
  count: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** One message the status came with (the last seen). */
  message: string;
}

/**
 * The settings every run shares, the baseline's included: that is what
 * makes the baseline a baseline. One connection (a service's clients keep
 * one channel per peer too); calls cut off by the end of the run are left
 * out of the tally instead of counting as errors.
 */
export const GHZ_COMMON_FLAGS: readonly string[] = ["--insecure", "--connections=1", "--duration-stop=ignore", "--timeout=20s", "--format=json"];

export function ghzArgs(call: GhzCall, load: GhzLoad): string[] {
  if (!Number.isInteger(load.concurrency) || load.concurrency < 1) throw new Error(`concurrency must be a positive integer, not ${load.concurrency}`);
  const schema = "proto" in call.schema ? `--proto=${call.schema.proto}` : `--protoset=${call.schema.protoset}`;
  const args = [
    ...GHZ_COMMON_FLAGS.map((flag) => (load.finishInFlight && flag.startsWith("--duration-stop=") ? "--duration-stop=wait" : flag)),
    schema,
    `--call=${call.method}`,
    `--data=${JSON.stringify(call.data)}`,
    `--concurrency=${load.concurrency}`,
    load.requests === undefined ? `--duration=${Math.round(load.seconds * 1000)}ms` : `--total=${load.requests}`,
  ];
  if (call.metadata) args.push(`--metadata=${JSON.stringify(call.metadata)}`);
  if (load.rps !== undefined) {
    // --async: a request starts on its tick even when every worker waits for
    // an answer, so a slow call delays no one (no coordinated omission).
    args.push(`--rps=${Math.max(1, Math.round(load.rps))}`, "--async");
  }
  args.push(call.target);
  return args;
}

interface GhzReport {
  count: number;
  total: number;
  average: number;
  statusCodeDistribution?: Record<string, number>;
  latencyDistribution?: { percentage: number; latency: number }[] | null;
  details?: { latency: number; status: string; error?: string }[] | null;
}

/**
 * Reads ghz's JSON report (-O json; durations are nanoseconds). Percentiles
 * are recomputed from the per-call details, successful calls only, with the
 * nearest-rank method, so that p95 exists (ghz lists 10/25/50/75/90/95/99
 * but drops a percentile whose value is 0).
 */
export function parseGhzReport(text: string, load: GhzLoad): LoadResult {
  let report: GhzReport;
  try {
    report = JSON.parse(text) as GhzReport;
  } catch {
    throw new Error(`ghz did not print a JSON report:\n${text.slice(0, 2000)}`);
  }
  if (typeof report.count !== "number" || typeof report.total !== "number") throw new Error("ghz's report has no count or total");
  const statuses = report.statusCodeDistribution ?? {};
  const ok = statuses.OK ?? 0;
  const errors = Object.fromEntries(Object.entries(statuses).filter(([status, n]) => status !== "OK" && n > 0));
  const seconds = report.total / 1e9;
  const latencies = (report.details ?? [])
    .filter((d) => d.status === "OK")
    .map((d) => d.latency / 1e6)
    .sort((a, b) => a - b);
  const failed = new Map<string, { latencies: number[]; message: string }>();
  for (const d of report.details ?? []) {
    if (d.status === "OK") continue;
    const entry = failed.get(d.status) ?? { latencies: [], message: "" };
    entry.latencies.push(d.latency / 1e6);
    if (d.error) entry.message = d.error;
    failed.set(d.status, entry);
  }
  const errorTimes = Object.fromEntries(
    [...failed.entries()].map(([status, { latencies: times, message }]) => {
      times.sort((a, b) => a - b);
      return [status, { count: times.length, p50Ms: percentile(times, 50), p99Ms: percentile(times, 99), maxMs: times.at(-1)!, message }];
    }),
  );
  return {
    concurrency: load.concurrency,
    ...(load.rps === undefined ? {} : { offeredRps: load.rps }),
    errorTimes,
    seconds,
    calls: report.count,
    ok,
    errors,
    okRps: seconds > 0 ? ok / seconds : 0,
    p50Ms: percentile(latencies, 50),
    p95Ms: percentile(latencies, 95),
    p99Ms: percentile(latencies, 99),
    meanMs: latencies.length ? latencies.reduce((sum, x) => sum + x, 0) / latencies.length : 0,
  };
}

/** Nearest rank of an ascending list; NaN for an empty one. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

/** Share of the finished calls that did not succeed. */
export function errorRate(result: Pick<LoadResult, "calls" | "ok">): number {
  return result.calls === 0 ? 0 : (result.calls - result.ok) / result.calls;
}

/** Runs ghz once and reads its report; ghz's own failures (bad data, no server) reject. */
export function runGhz(ghz: string, call: GhzCall, load: GhzLoad): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(ghz, ghzArgs(call, load), { stdio: ["ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    let err = "";
    child.stdout.on("data", (chunk: Buffer) => out.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => (err += chunk.toString()));
    child.once("error", reject);
    child.once("close", (code) => {
      const text = Buffer.concat(out).toString();
      if (code !== 0) {
        reject(new Error(`ghz ${call.method} exited ${code}: ${err.trim() || text.slice(0, 500)}`));
        return;
      }
      try {
        resolve(parseGhzReport(text, load));
      } catch (error) {
        reject(error instanceof Error ? new Error(`${error.message}\n${err}`) : error);
      }
    });
  });
}
