import { megabytes, ms, percent, rate } from "./format.js";
import { TARGETS, type BenchReport } from "./report.js";
import { COLORS, linearScale, logScale, niceTicks, renderChart, type Panel } from "./svg.js";

/**
 * The report as one picture: how close each call comes to the physical
 * limit, its latency spread, what tracing costs, and each service's memory
 * and start-up, with every target drawn where it lies.
 */
export function benchmarkChart(report: BenchReport): string {
  const panels = [floorPanel(report), throughputPanel(report), latencyPanel(report), tracingPanel(report), memoryPanel(report), startPanel(report)].filter(
    (panel): panel is Panel => panel !== undefined,
  );
  const m = report.machine;
  const caption =
    `${m.cores} × ${m.cpuModel} · ${(m.memoryBytes / 2 ** 30).toFixed(0)} GiB · Node ${m.node} · ghz ${m.ghz} · ` +
    `${report.startedAt.slice(0, 10)} · baseline ${rate(report.baseline.rps)} calls/s (end of run: ${percent(report.baseline.drift, true)})`;
  return renderChart(panels, caption, "meshcart benchmark: throughput, latency and footprint against the physical limit");
}

/** A checkout's CPU as a multiple of its durable floor, with the target and the stretch drawn. */
function floorPanel(report: BenchReport): Panel | undefined {
  const floor = report.floor;
  const rows = report.workloads.filter((w) => w.cpu?.ofFloor !== undefined && Number.isFinite(w.cpu.ofFloor));
  if (!floor || rows.length === 0) return undefined;
  const max = Math.max(TARGETS.checkoutOfFloor * 1.2, ...rows.map((w) => w.cpu!.ofFloor!));
  return {
    title: "CPU per checkout, as a multiple of its durable floor",
    subtitle:
      `floor = ${floor.durableCommits} × a minimal durable commit (${floor.durableTransactionMs.toFixed(3)} ms) + ${floor.rpcs} × a raw gRPC hop (${floor.hopMs.toFixed(3)} ms) ` +
      `= ${ms(floor.floorMs)} ms, measured in this run`,
    scale: linearScale(max, niceTicks(max, 5), (v) => `${v.toFixed(0)}×`),
    rows: rows.map((w) => {
      const target = report.targets.find((t) => t.id === `checkout-floor:${w.id}`);
      const color = target ? (target.pass ? COLORS.pass : COLORS.miss) : COLORS.bar;
      return {
        label: w.label,
        bars: [{ value: w.cpu!.ofFloor!, color }],
        note: `${ms(w.cpu!.checkoutMsPerCall)} ms · ${w.cpu!.ofFloor!.toFixed(1)}× the floor`,
        noteColor: color,
      };
    }),
    references: [
      { value: TARGETS.checkoutOfFloor, label: "target" },
      { value: TARGETS.checkoutOfFloorStretch, label: "stretch" },
    ],
  };
}

function throughputPanel(report: BenchReport): Panel {
  const max = Math.max(1, ...report.workloads.map((w) => w.ofHopBound).filter(Number.isFinite));
  return {
    title: "Throughput at saturation, as a share of the hop bound",
    subtitle: "hop bound = raw grpc-js echo calls/s ÷ RPCs one call makes (100 % = every hop as cheap as the bare echo)",
    scale: linearScale(max, niceTicks(max, 5), (v) => percent(v)),
    rows: report.workloads.map((w) => ({
      label: w.label,
      bars: [{ value: w.ofHopBound, color: w.id === "echo" ? COLORS.baseline : COLORS.bar }],
      note: `${rate(w.saturation.rps)}/s · ${percent(w.ofHopBound)} of ${rate(w.hopBoundRps)}/s`,
    })),
  };
}

function latencyPanel(report: BenchReport): Panel {
  const values = report.workloads
    .flatMap((w) => [w.latency.p50Ms, w.latency.p99Ms, w.latency.p50Ms * TARGETS.p99OverP50])
    .filter((v) => Number.isFinite(v) && v > 0);
  const min = Math.min(...values);
  const max = Math.max(...values);
  return {
    title: `Latency at ${percent(report.settings.latencyFraction)} of saturation`,
    subtitle: `dots: p50 (blue), p95 (small), p99 (green within ${TARGETS.p99OverP50} × p50, red beyond); tick: ${TARGETS.p99OverP50} × p50; log scale`,
    scale: logScale(min, max, (v) => `${v >= 1 ? v.toFixed(0) : v} ms`),
    rows: report.workloads.map((w) => {
      const limit = w.latency.p50Ms * TARGETS.p99OverP50;
      const ok = w.latency.p99Ms <= limit;
      const isBaseline = w.id === "echo";
      return {
        label: w.label,
        range: {
          low: w.latency.p50Ms,
          high: Math.max(w.latency.p99Ms, limit),
          marks: [
            { value: limit, color: COLORS.limit, r: 2 },
            { value: w.latency.p50Ms, color: isBaseline ? COLORS.baseline : COLORS.bar, r: 5 },
            { value: w.latency.p95Ms, color: isBaseline ? COLORS.baseline : COLORS.bar, r: 3 },
            { value: w.latency.p99Ms, color: isBaseline ? COLORS.baseline : ok ? COLORS.pass : COLORS.miss, r: 5 },
          ],
        },
        note: `p50 ${ms(w.latency.p50Ms)} · p99 ${ms(w.latency.p99Ms)} ms`,
        ...(isBaseline ? {} : { noteColor: ok ? COLORS.ink : COLORS.miss }),
      };
    }),
  };
}

function tracingPanel(report: BenchReport): Panel | undefined {
  if (report.tracing.length === 0) return undefined;
  const max = Math.max(1.1, ...report.tracing.map((t) => t.throughputVsOff).filter(Number.isFinite));
  return {
    title: "What tracing costs: throughput relative to tracing off",
    subtitle: `same concurrency for every mode (the one that saturated with tracing off); median of ${report.settings.tracingRounds} interleaved round(s)`,
    scale: linearScale(max, niceTicks(max, 5), (v) => percent(v)),
    rows: report.tracing.map((t) => {
      const cost = 1 - t.throughputVsOff;
      const judged = t.mode === "10%";
      const ok = cost <= TARGETS.tracing10Cost;
      return {
        label: `${t.label.replace(/ \(.*\)$/, "")}, ${t.mode === "off" ? "off" : `${t.mode} sampled`}`,
        bars: [{ value: t.throughputVsOff, color: t.mode === "off" ? COLORS.baseline : judged ? (ok ? COLORS.pass : COLORS.miss) : COLORS.bar }],
        note: `${rate(t.throughputRps)}/s${t.mode === "off" ? "" : ` · ${percent(-cost, true)}`}`,
      };
    }),
    references: [{ value: 1 - TARGETS.tracing10Cost, label: `10 % sampling target: ≤ ${percent(TARGETS.tracing10Cost)} cost` }],
  };
}

function memoryPanel(report: BenchReport): Panel {
  const values = [...report.services.map((s) => s.loadRssMaxMb), report.echoProcess.loadRssMb].filter(Number.isFinite);
  const max = Math.max(TARGETS.rssMb * 1.1, ...values);
  return {
    title: "Memory: resident set size, idle and under load",
    subtitle: "light: idle after start-up; dark: highest under load in any tracing mode (MB = 10^6 bytes)",
    scale: linearScale(max, niceTicks(max, 6), (v) => `${v} MB`),
    rows: [
      {
        label: "baseline: raw grpc-js echo",
        bars: [
          { value: report.echoProcess.loadRssMb, color: COLORS.baseline },
          { value: report.echoProcess.idleRssMb, color: COLORS.grid },
        ],
        note: `${megabytes(report.echoProcess.idleRssMb)} → ${megabytes(report.echoProcess.loadRssMb)} MB`,
      },
      ...report.services.map((s) => {
        const ok = s.loadRssMaxMb <= TARGETS.rssMb;
        return {
          label: s.name,
          bars: [
            { value: s.loadRssMaxMb, color: ok ? COLORS.bar : COLORS.miss },
            { value: s.idleRssMb, color: COLORS.barLight },
          ],
          note: `${megabytes(s.idleRssMb)} → ${megabytes(s.loadRssMaxMb)} MB`,
          ...(ok ? {} : { noteColor: COLORS.miss }),
        };
      }),
    ],
    references: [{ value: TARGETS.rssMb, label: `limit ${TARGETS.rssMb} MB` }],
  };
}

function startPanel(report: BenchReport): Panel {
  const values = [...report.services.map((s) => s.startToReadyMs.max), report.echoProcess.startToReadyMs].filter(Number.isFinite);
  const max = Math.max(TARGETS.startToReadyMs * 1.1, ...values);
  return {
    title: "Start-up: process spawn until ready",
    subtitle: "services: until GET /readyz answers 200 (polled every 50 ms); dark: slowest start, light: median",
    scale: linearScale(max, niceTicks(max, 6), (v) => `${v} ms`),
    rows: [
      {
        label: "baseline: raw grpc-js echo",
        bars: [{ value: report.echoProcess.startToReadyMs, color: COLORS.baseline }],
        note: `${ms(report.echoProcess.startToReadyMs)} ms`,
      },
      ...report.services.map((s) => {
        const ok = s.startToReadyMs.max <= TARGETS.startToReadyMs;
        return {
          label: s.name,
          bars: [
            { value: s.startToReadyMs.max, color: ok ? COLORS.bar : COLORS.miss },
            { value: s.startToReadyMs.median, color: COLORS.barLight },
          ],
          note: `${ms(s.startToReadyMs.median)} / ${ms(s.startToReadyMs.max)} ms`,
          ...(ok ? {} : { noteColor: COLORS.miss }),
        };
      }),
    ],
    references: [{ value: TARGETS.startToReadyMs, label: `limit ${TARGETS.startToReadyMs / 1000} s` }],
  };
}
