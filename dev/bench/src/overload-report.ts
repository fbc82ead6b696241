import { ms, percent, rate } from "./format.js";
import type { MemoryMeasurement } from "./memory.js";
import type { OverloadMeasurement, OverloadPhase } from "./overload.js";
import type { TargetResult } from "./report.js";

/** The overload and memory targets (issue 16), as numbers. */
export const OVERLOAD_TARGETS = {
  /** Successful calls/s at 2× and 3× the saturation rate, at least this share of saturation. */
  goodputAt2x: 0.8,
  goodputAt3x: 0.7,
  /** p99 of the calls admitted under overload, at most this multiple of the p99 at 0.5× before it. */
  admittedP99: 3,
  /** Shed calls (RESOURCE_EXHAUSTED) answered within this, at the 99th percentile. */
  shedP99Ms: 250,
  /** The 0.5× after the peak: at least this share of the offered calls succeed. */
  recoveredGoodput: 0.95,
  /** Peak memory charged under 3× overload, at most this share of the container's limit: the headroom. */
  peakOfLimit: 0.8,
} as const;

const MiB = 2 ** 20;
const mib = (bytes: number | undefined) => (bytes === undefined || !Number.isFinite(bytes) ? "n/a" : (bytes / MiB).toFixed(0));

/** Codes a caller must never get for overload: an outage (mesh-retried) or a bug. */
const NEVER = ["Unavailable", "Internal", "Unknown"];

function first(o: OverloadMeasurement): OverloadPhase {
  return o.phases[0]!;
}

function at(o: OverloadMeasurement, multiple: number): OverloadPhase[] {
  return o.phases.filter((p) => p.multiple === multiple);
}

export function overloadTargets(o: OverloadMeasurement | undefined, memory: MemoryMeasurement | undefined): TargetResult[] {
  const results: TargetResult[] = [];
  if (o && o.phases.length > 0) {
    const subject = o.workload;
    for (const [multiple, share] of [
      [2, OVERLOAD_TARGETS.goodputAt2x],
      [3, OVERLOAD_TARGETS.goodputAt3x],
    ] as const) {
      const phase = at(o, multiple)[0];
      if (!phase) continue;
      const measured = phase.result.okRps / o.saturationRps;
      results.push({
        id: `goodput:${multiple}x`,
        subject,
        rule: `successful calls/s at ${multiple}× saturation (open loop) ≥ ${percent(share)} of saturation`,
        measured,
        limit: share,
        unit: "of saturation",
        pass: measured >= share,
      });
    }
    const unloaded = first(o).result.p99Ms;
    for (const phase of o.phases.filter((p) => p.multiple > 1)) {
      const measured = phase.result.p99Ms / unloaded;
      results.push({
        id: `admitted-p99:${phase.multiple}x`,
        subject,
        rule: `p99 of the calls admitted at ${phase.multiple}× ≤ ${OVERLOAD_TARGETS.admittedP99} × the p99 at 0.5× before the load (${ms(unloaded)} ms)`,
        measured,
        limit: OVERLOAD_TARGETS.admittedP99,
        unit: "× unloaded p99",
        pass: measured <= OVERLOAD_TARGETS.admittedP99,
      });
    }
    const shed = o.phases.flatMap((p) => (p.result.errorTimes.ResourceExhausted ? [p.result.errorTimes.ResourceExhausted.p99Ms] : []));
    const shedP99 = shed.length > 0 ? Math.max(...shed) : 0;
    results.push({
      id: "shed-fast",
      subject,
      rule: `shed calls (RESOURCE_EXHAUSTED) answered within ${OVERLOAD_TARGETS.shedP99Ms} ms (p99, the slowest phase)`,
      measured: shedP99,
      limit: OVERLOAD_TARGETS.shedP99Ms,
      unit: "ms",
      pass: shedP99 <= OVERLOAD_TARGETS.shedP99Ms,
    });
    const never = o.phases.reduce((sum, p) => sum + NEVER.reduce((n, code) => n + (p.result.errorTimes[code]?.count ?? 0), 0), 0);
    results.push({
      id: "no-outage-answers",
      subject,
      rule: "no UNAVAILABLE, INTERNAL or UNKNOWN answer in any phase (overload is RESOURCE_EXHAUSTED; a placed order's caller gets its outcome or DEADLINE_EXCEEDED)",
      measured: never,
      limit: 0,
      unit: "calls",
      pass: never === 0,
    });
    const notReady = o.phases.reduce((sum, p) => sum + p.readiness.notReady, 0);
    results.push({
      id: "ready-under-load",
      subject: "every service",
      rule: `/readyz answers 200 within the chart's probe timeout (${o.readinessTimeoutMs} ms) in every phase`,
      measured: notReady,
      limit: 0,
      unit: "probes failed",
      pass: notReady === 0,
    });
    const after = o.phases.at(-1)!;
    const recovered = after.result.okRps / after.offeredRps;
    results.push({
      id: "recovered",
      subject,
      rule: `after the peak, at 0.5× again: ≥ ${percent(OVERLOAD_TARGETS.recoveredGoodput)} of the offered calls succeed, with p99 ≤ ${OVERLOAD_TARGETS.admittedP99} × the p99 before the load`,
      measured: recovered,
      limit: OVERLOAD_TARGETS.recoveredGoodput,
      unit: "of offered",
      pass: recovered >= OVERLOAD_TARGETS.recoveredGoodput && after.result.p99Ms <= OVERLOAD_TARGETS.admittedP99 * unloaded,
    });
    const finalMs = o.peakFinalAfterMs ?? Number.POSITIVE_INFINITY;
    results.push({
      id: "final-after-peak",
      subject: "order",
      rule: `every order of the 3× phase final within the recovery interval (ORDER_RECOVERY_INTERVAL_MS, ${o.recoveryIntervalMs} ms) after it, and every order of the step final in the end`,
      measured: finalMs,
      limit: o.recoveryIntervalMs,
      unit: "ms",
      pass: finalMs <= o.recoveryIntervalMs && o.nonFinalAfterWait === 0,
    });
  }
  if (memory?.measured) {
    for (const s of memory.services) {
      results.push({
        id: `oom:${s.service}`,
        subject: s.service,
        rule: `no OOM kill under its chart limit (${mib(s.limitBytes)} MiB) at saturation and at 3× overload`,
        measured: s.oomKills + (s.exited ? 1 : 0),
        limit: 0,
        unit: "kills",
        pass: s.oomKills === 0 && !s.exited,
      });
      const peak = Math.max(s.overloadPeakBytes, s.saturationPeakBytes);
      results.push({
        id: `memory-headroom:${s.service}`,
        subject: s.service,
        rule: `peak memory charged ≤ ${percent(OVERLOAD_TARGETS.peakOfLimit)} of its chart limit (${mib(s.limitBytes)} MiB)`,
        measured: peak / s.limitBytes,
        limit: OVERLOAD_TARGETS.peakOfLimit,
        unit: "of limit",
        pass: peak <= OVERLOAD_TARGETS.peakOfLimit * s.limitBytes,
      });
      results.push({
        id: `memory-request:${s.service}`,
        subject: s.service,
        rule: `its chart request (${mib(s.requestBytes)} MiB) ≥ its steady usage at saturation`,
        measured: s.steadyBytes / MiB,
        limit: s.requestBytes / MiB,
        unit: "MiB",
        pass: s.requestBytes >= s.steadyBytes,
      });
    }
  }
  return results;
}

/** The overload and memory sections of the results block. */
export function overloadMarkdown(o: OverloadMeasurement | undefined, memory: MemoryMeasurement | undefined): string[] {
  const lines: string[] = [];
  if (o) {
    const unloaded = first(o).result.p99Ms;
    lines.push(
      "",
      "#### Overload",
      "",
      `${o.workload}, open loop (calls start on schedule, answered or not), ${o.seconds} s per phase at multiples of this run's closed-loop saturation, ` +
        `measured sustained right before them: **${rate(o.saturationRps)} calls/s** at concurrency ${o.saturationConcurrency} over ${o.seconds} s ` +
        `(the saturation search's short steps gave ${rate(o.searchedRps)}: work a checkout causes seconds later, its shipment, falls outside them). ` +
        `Each phase runs right after the one before; every call is waited for and counted. ` +
        `Latency is of successful calls; time to error is how long a failed call took, by status. "Placed, not told" counts orders the phase wrote ` +
        `whose caller got an error (DEADLINE_EXCEEDED says the order goes on). /readyz of every service probed every 250 ms with the chart's probe timeout (${o.readinessTimeoutMs} ms).`,
      "",
      "| phase | offered /s | ok /s | of saturation | p50 ms | p99 ms | p99 ÷ p99 at 0.5× | errors: count (p50 / p99 ms to the error) | placed | placed, not told | not final at its end | /readyz failed (slowest ms) |",
      "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
      ...o.phases.map((p, i) => {
        const errors =
          Object.entries(p.result.errorTimes)
            .map(([status, t]) => `${status} ${rate(t.count)} (${ms(t.p50Ms)} / ${ms(t.p99Ms)})`)
            .join("; ") || "none";
        return (
          `| ${p.multiple}×${i === o.phases.length - 1 ? " again" : ""} | ${rate(p.offeredRps)} | ${rate(p.result.okRps)} | ${percent(p.result.okRps / o.saturationRps)} | ` +
          `${ms(p.result.p50Ms)} | ${ms(p.result.p99Ms)} | ${(p.result.p99Ms / unloaded).toFixed(2)} | ${errors} | ${rate(p.placed)} | ${rate(p.placedNotOk)} | ${rate(p.nonFinalAtEnd)} | ` +
          `${p.readiness.notReady} of ${p.readiness.probes} (${ms(p.readiness.slowestMs)}) |`
        );
      }),
      "",
      `After the step: ${rate(o.nonFinalAtEnd)} order(s) not final at its end, ${rate(o.nonFinalAfterWait)} after waiting; ` +
        `the orders of the 3× phase were all final ${o.peakFinalAfterMs === undefined ? "not within the wait" : `${ms(o.peakFinalAfterMs)} ms after it`} ` +
        `(recovery interval ${o.recoveryIntervalMs} ms).`,
    );
    const messages = new Map<string, string>();
    for (const p of o.phases) for (const [status, t] of Object.entries(p.result.errorTimes)) if (t.message) messages.set(status, t.message);
    if (messages.size > 0) {
      lines.push("", "What the errors said (one message per status):", "");
      for (const [status, message] of messages) lines.push(`- ${status}: \`${message.replaceAll("`", "'")}\``);
    }
  }
  if (memory) {
    lines.push("", "#### Memory inside the chart's limits", "");
    if (!memory.measured) {
      lines.push(`Not measurable on this machine: ${memory.reason}.`);
    } else {
      const [saturation, overload] = memory.phases;
      lines.push(
        `A stack of its own in which each service runs in a memory cgroup (${memory.cgroup}) with its container's limit and NODE_OPTIONS from the chart ` +
          "(`helm template`, default values), tracing on as the chart runs it (every span exported), " +
          `${memory.seconds} s of PlaceOrder at saturation (closed loop at concurrency ${saturation?.result.concurrency}: ${rate(saturation?.result.okRps ?? Number.NaN)} ok/s), ` +
          `then ${memory.seconds} s at 3× saturation (open loop, ${rate(overload?.result.offeredRps ?? Number.NaN)} offered: ${rate(overload?.result.okRps ?? Number.NaN)} ok/s). ` +
          "Memory charged by the kernel (anonymous memory and page cache, as for a pod), sampled every 100 ms; steady: the median under saturation. MiB = 2^20 bytes.",
        "",
        "| service | request MiB | limit MiB | NODE_OPTIONS | idle MiB | steady MiB | peak at saturation MiB | peak at 3× MiB | kernel's peak MiB | peak ÷ limit | limit hits | OOM kills |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ...memory.services.map(
          (s) =>
            `| ${s.service} | ${mib(s.requestBytes)} | ${mib(s.limitBytes)} | \`${s.nodeOptions ?? ""}\` | ${mib(s.idleBytes)} | ${mib(s.steadyBytes)} | ` +
            `${mib(s.saturationPeakBytes)} | ${mib(s.overloadPeakBytes)} | ${mib(s.kernelPeakBytes)} | ${percent(Math.max(s.saturationPeakBytes, s.overloadPeakBytes) / s.limitBytes)} | ` +
            `${s.limitHits} | ${s.oomKills}${s.exited ? ` (ended: ${s.exited})` : ""} |`,
        ),
      );
    }
  }
  return lines;
}
