import { build, type Histogram } from "hdr-histogram-js";
import { formatDuration } from "@meshcart/lib";
import type { Scenario } from "./options.js";

/**
 * Counting what the load did: outcomes by scenario with their latencies,
 * for the whole run and for the window since the last summary.
 */

/** Outcomes that mean the system answered as it should (including business refusals and expected bad-input refusals). */
export const OK_OUTCOMES = new Set([
  "confirmed",
  "rejected_stock",
  "rejected_declined",
  "rejected_other",
  "invalid",
  "read_ok",
  "read_partial",
  "browse_ok",
  "stream_ok",
]);

export function isOk(outcome: string): boolean {
  return OK_OUTCOMES.has(outcome);
}

/** Latencies are recorded in microseconds: the histogram counts integers. */
const MICROS_PER_MS = 1_000;

/**
 * Latencies of a run or a window, in an HDR histogram (hdr-histogram-js):
 * three significant digits whatever the range, in little memory for a run
 * of any length.
 */
export class LatencyHistogram {
  private readonly histogram: Histogram = build({ numberOfSignificantValueDigits: 3 });

  get count(): number {
    return this.histogram.totalCount;
  }

  /** The highest latency recorded, in ms (0 when empty). */
  get max(): number {
    return this.histogram.maxValue / MICROS_PER_MS;
  }

  record(ms: number): void {
    this.histogram.recordValue(Math.max(0, Math.round(ms * MICROS_PER_MS)));
  }

  /** The latency below which a share `p` (0 to 1) of the recorded ones lie; undefined when empty. */
  percentile(p: number): number | undefined {
    if (this.count === 0) return undefined;
    return this.histogram.getValueAtPercentile(p * 100) / MICROS_PER_MS;
  }

  merge(other: LatencyHistogram): void {
    this.histogram.add(other.histogram);
  }
}

export interface Tally {
  count: number;
  /** Only requests that completed (not dropped ones). */
  latency: LatencyHistogram;
}

type Key = `${string} ${string}`;

function tallyOf(map: Map<Key, Tally>, key: Key): Tally {
  let tally = map.get(key);
  if (!tally) map.set(key, (tally = { count: 0, latency: new LatencyHistogram() }));
  return tally;
}

export class Stats {
  private readonly total = new Map<Key, Tally>();
  private window = new Map<Key, Tally>();

  record(scenario: Scenario, outcome: string, latencyMs: number | undefined): void {
    for (const map of [this.total, this.window]) {
      const tally = tallyOf(map, `${scenario} ${outcome}`);
      tally.count += 1;
      if (latencyMs !== undefined) tally.latency.record(latencyMs);
    }
  }

  /** Every (scenario, outcome) of the run. */
  rows(): Row[] {
    return rowsOf(this.total);
  }

  /** What happened since the previous call (or the start), then a new window. */
  takeWindow(): Row[] {
    const rows = rowsOf(this.window);
    this.window = new Map();
    return rows;
  }
}

export interface Row {
  scenario: Scenario;
  outcome: string;
  count: number;
  latency: LatencyHistogram;
}

function rowsOf(map: Map<Key, Tally>): Row[] {
  return [...map.entries()].map(([key, tally]) => {
    const [scenario, outcome] = key.split(" ") as [Scenario, string];
    return { scenario, outcome, count: tally.count, latency: tally.latency };
  });
}

export interface Percentiles {
  count: number;
  p50Ms?: number;
  p95Ms?: number;
  p99Ms?: number;
  maxMs?: number;
}

function percentiles(count: number, latency: LatencyHistogram): Percentiles {
  const round = (v: number | undefined) => (v === undefined ? undefined : Math.round(v * 10) / 10);
  if (latency.count === 0) return { count };
  return {
    count,
    p50Ms: round(latency.percentile(0.5)),
    p95Ms: round(latency.percentile(0.95)),
    p99Ms: round(latency.percentile(0.99)),
    maxMs: round(latency.max),
  };
}

/** Rows merged by outcome, across scenarios. */
export function byOutcome(rows: Row[]): Record<string, Percentiles> {
  const merged = new Map<string, { count: number; latency: LatencyHistogram }>();
  for (const row of rows) {
    const entry = merged.get(row.outcome) ?? { count: 0, latency: new LatencyHistogram() };
    entry.count += row.count;
    entry.latency.merge(row.latency);
    merged.set(row.outcome, entry);
  }
  return Object.fromEntries([...merged.entries()].sort(([a], [b]) => outcomeOrder(a, b)).map(([outcome, e]) => [outcome, percentiles(e.count, e.latency)]));
}

function outcomeOrder(a: string, b: string): number {
  return Number(isOk(b)) - Number(isOk(a)) || a.localeCompare(b);
}

export interface Totals {
  /** Requests due (sent or dropped). */
  due: number;
  completed: number;
  ok: number;
  errors: number;
  dropped: number;
  /** errors / due (dropped sends count as errors). */
  errorRate: number;
}

export function totals(rows: Row[]): Totals {
  let due = 0;
  let ok = 0;
  let dropped = 0;
  for (const row of rows) {
    due += row.count;
    if (isOk(row.outcome)) ok += row.count;
    if (row.outcome === "dropped") dropped += row.count;
  }
  const errors = due - ok;
  return { due, completed: due - dropped, ok, errors, dropped, errorRate: due === 0 ? 0 : errors / due };
}

// ---------------------------------------------------------------- the report

export interface ReportRow extends Percentiles {
  scenario: Scenario;
  outcome: string;
  ok: boolean;
}

export interface Report extends Totals {
  runId: string;
  target: string;
  targetRps: number;
  /** The configured duration; undefined: until stopped. */
  durationMs?: number;
  elapsedMs: number;
  /** Requests per second actually started. */
  achievedRps: number;
  /** Sends that left more than 100 ms after their scheduled time (the generator itself was short of CPU). */
  late: number;
  rows: ReportRow[];
  outcomes: Record<string, Percentiles>;
  restocks: { ok: number; failed: number; units: number };
  maxErrorRate?: number;
  /** False when maxErrorRate is set and the error rate passed it. */
  passed: boolean;
  /** Why the run ended: duration, requests, stopped. */
  ended: string;
}

export function reportRows(rows: Row[]): ReportRow[] {
  return rows
    .map((row) => ({ scenario: row.scenario, outcome: row.outcome, ok: isOk(row.outcome), ...percentiles(row.count, row.latency) }))
    .sort((a, b) => outcomeOrder(a.outcome, b.outcome) || b.count - a.count || a.scenario.localeCompare(b.scenario));
}

function ms(value: number | undefined): string {
  if (value === undefined) return "-";
  if (value >= 10_000) return `${(value / 1000).toFixed(1)}s`;
  return value >= 100 ? `${Math.round(value)}ms` : `${value.toFixed(1)}ms`;
}

function pct(share: number): string {
  return `${(share * 100).toFixed(1)}%`;
}

function table(header: string[], lines: string[][], rightFrom: number): string {
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const render = (cells: string[]) =>
    cells
      .map((c, i) => (i >= rightFrom ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [render(header), render(widths.map((w) => "-".repeat(w))), ...lines.map(render)].join("\n");
}

/** The final table: one line per outcome and scenario, then per outcome, then the totals. */
export function formatReport(report: Report): string {
  const share = (count: number) => pct(report.due === 0 ? 0 : count / report.due);
  const detail = table(
    ["outcome", "scenario", "count", "share", "p50", "p95", "p99", "max"],
    report.rows.map((r) => [
      `${r.ok ? " " : "!"} ${r.outcome}`,
      r.scenario,
      String(r.count),
      share(r.count),
      ms(r.p50Ms),
      ms(r.p95Ms),
      ms(r.p99Ms),
      ms(r.maxMs),
    ]),
    2,
  );
  const outcomes = table(
    ["outcome", "count", "share", "p50", "p95", "p99"],
    Object.entries(report.outcomes).map(([outcome, p]) => [
      `${isOk(outcome) ? " " : "!"} ${outcome}`,
      String(p.count),
      share(p.count),
      ms(p.p50Ms),
      ms(p.p95Ms),
      ms(p.p99Ms),
    ]),
    1,
  );
  const verdict =
    report.maxErrorRate === undefined
      ? ""
      : report.passed
        ? `, within the limit of ${pct(report.maxErrorRate)}`
        : `, ABOVE the limit of ${pct(report.maxErrorRate)}`;
  const lines = [
    `meshcart load against ${report.target} (run ${report.runId}, ended: ${report.ended})`,
    "",
    detail,
    "",
    outcomes,
    "",
    `${report.due} requests due in ${formatDuration(Math.round(report.elapsedMs))}: ${report.achievedRps.toFixed(1)}/s started (target ${report.targetRps}/s), ` +
      `${report.ok} ok, ${report.errors} errors (${pct(report.errorRate)}${verdict}), ${report.dropped} dropped at the concurrency cap, ${report.late} sent late`,
    `restocks: ${report.restocks.ok} (${report.restocks.units} units), ${report.restocks.failed} failed`,
    "(! marks errors: failed orders, unexpected statuses, dropped sends)",
  ];
  return `${lines.join("\n")}\n`;
}

export interface Progress {
  elapsedMs: number;
  durationMs?: number;
  due: number;
  inFlight: number;
  targetRps: number;
  /** Started per second over the last few seconds. */
  recentRps: number;
  ok: number;
  errors: number;
  dropped: number;
  p95Ms?: number;
}

/** The live line of the command line (TTY only). */
export function formatProgress(p: Progress): string {
  const done = p.ok + p.errors;
  const share = done === 0 ? 100 : (p.ok / done) * 100;
  const when = p.durationMs === undefined ? formatDuration(p.elapsedMs) : `${formatDuration(p.elapsedMs)}/${formatDuration(p.durationMs)}`;
  return (
    `${when}  ${p.recentRps.toFixed(1)}/s (target ${p.targetRps})  sent ${p.due}  in flight ${p.inFlight}  ` +
    `ok ${share.toFixed(1)}%  errors ${p.errors}  dropped ${p.dropped}  p95 ${ms(p.p95Ms)}`
  );
}

export interface Summary {
  window_s: number;
  rate: number;
  target_rps: number;
  success_pct: number;
  requests: number;
  errors: number;
  dropped: number;
  in_flight: number;
  outcomes: Record<string, Percentiles>;
}

/** The periodic summary (a log line): rate, success %, p50/p95/p99 by outcome over the window. */
export function summarize(rows: Row[], windowMs: number, targetRps: number, inFlight: number): { summary: Summary; message: string } {
  const t = totals(rows);
  const outcomes = byOutcome(rows);
  const summary: Summary = {
    window_s: Math.round(windowMs / 100) / 10,
    rate: Math.round((t.due / Math.max(windowMs, 1)) * 1000 * 10) / 10,
    target_rps: targetRps,
    success_pct: t.due === 0 ? 100 : Math.round((t.ok / t.due) * 1000) / 10,
    requests: t.due,
    errors: t.errors,
    dropped: t.dropped,
    in_flight: inFlight,
    outcomes,
  };
  const parts = Object.entries(outcomes).map(
    ([outcome, p]) => `${outcome} ${p.count}${p.p50Ms === undefined ? "" : ` (p50/p95/p99 ${ms(p.p50Ms)}/${ms(p.p95Ms)}/${ms(p.p99Ms)})`}`,
  );
  const message = `load: ${summary.rate}/s (target ${targetRps}), ${summary.success_pct}% ok; ${parts.join(", ") || "nothing sent"}`;
  return { summary, message };
}
