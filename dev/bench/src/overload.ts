import { performance } from "node:perf_hooks";
import pg from "pg";
import { sleep } from "@meshcart/lib";
import { runGhz, type GhzCall, type LoadResult } from "./ghz.js";

/**
 * The overload step: PlaceOrder through the storefront, open loop (calls
 * start on schedule whether or not earlier ones answered, as shoppers do),
 * at multiples of the closed-loop saturation measured in the same run:
 * 0.5×, 1×, 2×, 3×, then 0.5× again to see the shop come back. The
 * saturation is measured again first, sustained: closed loop at the
 * saturation search's best concurrency for as long as a phase. The
 * search's steps are short, and work a checkout causes later (the
 * shipment it starts, packed and shipped seconds after) falls outside
 * them; a phase of the overload step pays for it. Every call
 * is accounted for (in-flight calls are waited for at the end of a phase).
 * Meanwhile every service's /readyz is probed as the kubelet would, with
 * the chart's probe timeout; afterwards the order database says how many
 * orders each phase placed, how many of those the caller was not told
 * about (placed, answered with an error), and how long the orders of the
 * 3× phase took to be all final.
 */

export const OVERLOAD_MULTIPLES = [0.5, 1, 2, 3, 0.5] as const;

/** Final states (docs/order-saga.md). */
const FINAL_STATES = ["CONFIRMED", "REJECTED", "FAILED", "CANCELLED"];

export interface ReadinessTally {
  /** Probes sent (every service, every PROBE_INTERVAL_MS). */
  probes: number;
  /** Answered 503, or not at all within the probe timeout. */
  notReady: number;
  /** Of those, not answered within the probe timeout. */
  timedOut: number;
  /** Slowest answer, in ms (a probe that timed out counts as the timeout). */
  slowestMs: number;
}

export interface OverloadPhase {
  multiple: number;
  offeredRps: number;
  result: LoadResult;
  readiness: ReadinessTally;
  /** Orders this phase's calls wrote. */
  placed: number;
  /** Of those, orders whose caller was answered with an error (told DEADLINE_EXCEEDED, or worse). */
  placedNotOk: number;
  /** Of this phase's orders, not final when its last call had answered. */
  nonFinalAtEnd: number;
}

export interface OverloadMeasurement {
  workload: string;
  /** Sustained closed-loop saturation, the phases' reference. */
  saturationRps: number;
  /** The concurrency it was measured at, and what the saturation search's short steps gave there. */
  saturationConcurrency: number;
  searchedRps: number;
  seconds: number;
  phases: OverloadPhase[];
  /** The chart's readiness probe timeout, with which /readyz was probed. */
  readinessTimeoutMs: number;
  /** order's ORDER_RECOVERY_INTERVAL_MS: the orders of the 3× phase should be final within it. */
  recoveryIntervalMs: number;
  /** From the end of the 3× phase until each of its orders was final (undefined: not within the wait). */
  peakFinalAfterMs: number | undefined;
  /** Orders of the whole step not final at its end, and after waiting for them. */
  nonFinalAtEnd: number;
  nonFinalAfterWait: number;
}

export interface OverloadContext {
  ghz: string;
  /** The PlaceOrder call for a tag that is part of every request_id of the run. */
  call: (tag: string) => GhzCall;
  /** Whose request ids the orders carry in the order database (customer:request_id). */
  requestIdPrefix: string;
  orderDatabaseUrl: string;
  adminPorts: number[];
  /** The saturation search's result: its best step. */
  searched: { rps: number; concurrency: number };
  seconds: number;
  readinessTimeoutMs: number;
  recoveryIntervalMs: number;
  /** Each service's recent log lines: why a call failed otherwise than shed, in its own words. */
  serviceLogs: () => Map<string, string[]>;
  log: (line: string) => void;
}

const PROBE_INTERVAL_MS = 250;
/** Open loop: ghz's workers only send; enough of them that a slow answer delays no start. */
const WORKERS = 200;
/** How long the step waits, at the end, for orders that are not final yet. */
const FINAL_WAIT_MS = 60_000;

export async function measureOverload(context: OverloadContext, tag: string): Promise<OverloadMeasurement> {
  const db = new pg.Client({ connectionString: context.orderDatabaseUrl, application_name: "bench-overload" });
  db.on("error", () => undefined);
  await db.connect();
  const counts = async (like: string) => {
    const { rows } = await db.query<{ placed: number; non_final: number }>(
      "SELECT count(*)::int AS placed, count(*) FILTER (WHERE state <> ALL($2))::int AS non_final FROM orders WHERE request_id LIKE $1",
      [like, FINAL_STATES],
    );
    return rows[0]!;
  };
  const likeOf = (phaseTag: string) => `${context.requestIdPrefix}${phaseTag}-%`;
  try {
    const phases: OverloadPhase[] = [];
    let peakFinalAfterMs: number | undefined;
    let peakEnded: number | undefined;
    let peakTag: string | undefined;
    const sustained = await runGhz(context.ghz, context.call(`${tag}-sat`), {
      concurrency: context.searched.concurrency,
      seconds: context.seconds,
      finishInFlight: true,
    });
    const saturationRps = sustained.okRps;
    context.log(
      `overload: sustained saturation ${saturationRps.toFixed(0)} calls/s at concurrency ${context.searched.concurrency} over ${context.seconds} s ` +
        `(the search's short steps: ${context.searched.rps.toFixed(0)})`,
    );
    for (const [index, multiple] of OVERLOAD_MULTIPLES.entries()) {
      const phaseTag = `${tag}-p${index}`;
      const offeredRps = saturationRps * multiple;
      const prober = probeReadiness(context.adminPorts, context.readinessTimeoutMs);
      // While the shop comes back from the peak, the peak's orders are watched until all are final.
      const watch = peakTag && peakEnded !== undefined ? watchFinal(counts, likeOf(peakTag), peakEnded) : undefined;
      const result = await runGhz(context.ghz, context.call(phaseTag), {
        concurrency: WORKERS,
        seconds: context.seconds,
        rps: offeredRps,
        finishInFlight: true,
      });
      const readiness = await prober.stop();
      const ended = performance.now();
      const { placed, non_final: nonFinalAtEnd } = await counts(likeOf(phaseTag));
      if (watch) peakFinalAfterMs = await watch.stop();
      phases.push({ multiple, offeredRps, result, readiness, placed, placedNotOk: Math.max(0, placed - result.ok), nonFinalAtEnd });
      if (multiple === Math.max(...OVERLOAD_MULTIPLES)) {
        peakEnded = ended;
        peakTag = phaseTag;
      }
      const errors = Object.entries(result.errorTimes)
        .map(([status, t]) => `${status} ${t.count} (p50 ${t.p50Ms.toFixed(0)} ms, p99 ${t.p99Ms.toFixed(0)} ms)`)
        .join(", ");
      // Anything but shed load deserves its reason: the services' own warnings and errors of the phase.
      if (Object.keys(result.errorTimes).some((status) => status !== "ResourceExhausted")) {
        for (const [service, lines] of context.serviceLogs()) {
          for (const line of lines.filter((l) => /"level":"(warn|error|fatal)"/.test(l)).slice(-5))
            context.log(`overload ${multiple}×, ${service} said: ${line}`);
        }
      }
      context.log(
        `overload ${multiple}× (${offeredRps.toFixed(0)}/s offered): ${result.okRps.toFixed(0)} ok/s, p50 ${result.p50Ms.toFixed(1)} ms, p99 ${result.p99Ms.toFixed(1)} ms` +
          `${errors ? `; errors: ${errors}` : ""}; ${placed} placed, ${Math.max(0, placed - result.ok)} of them not answered OK, ${nonFinalAtEnd} not final; ` +
          `readiness: ${readiness.notReady} of ${readiness.probes} probes not ready, slowest ${readiness.slowestMs.toFixed(0)} ms`,
      );
    }
    const all = `${context.requestIdPrefix}${tag}-%`;
    const nonFinalAtEnd = (await counts(all)).non_final;
    const waited = watchFinal(counts, all, performance.now());
    const settled = await waited.untilDone(FINAL_WAIT_MS);
    const nonFinalAfterWait = (await counts(all)).non_final;
    context.log(
      `overload: ${nonFinalAtEnd} order(s) not final at the end, ${nonFinalAfterWait} after ${settled === undefined ? `${FINAL_WAIT_MS / 1000} s` : `${settled.toFixed(0)} ms`}`,
    );
    return {
      workload: "storefront PlaceOrder (end to end)",
      saturationRps,
      saturationConcurrency: context.searched.concurrency,
      searchedRps: context.searched.rps,
      seconds: context.seconds,
      phases,
      readinessTimeoutMs: context.readinessTimeoutMs,
      recoveryIntervalMs: context.recoveryIntervalMs,
      peakFinalAfterMs,
      nonFinalAtEnd,
      nonFinalAfterWait,
    };
  } finally {
    await db.end().catch(() => undefined);
  }
}

/** Polls until the orders matching `like` are all final; the time from `since` (performance.now()) when they were. */
function watchFinal(counts: (like: string) => Promise<{ non_final: number }>, like: string, since: number) {
  let done: number | undefined;
  let stopped = false;
  const loop = (async () => {
    while (!stopped && done === undefined) {
      const { non_final } = await counts(like).catch(() => ({ non_final: Number.NaN }));
      if (non_final === 0) done = performance.now() - since;
      else await sleep(100);
    }
  })();
  return {
    async stop(): Promise<number | undefined> {
      // One last look: it may have become final while the load ran.
      if (done === undefined && (await counts(like)).non_final === 0) done = performance.now() - since;
      stopped = true;
      await loop;
      return done;
    },
    async untilDone(maxMs: number): Promise<number | undefined> {
      const limit = setTimeout(() => (stopped = true), maxMs);
      await loop;
      clearTimeout(limit);
      return done;
    },
  };
}

/** GET /readyz of every admin port every PROBE_INTERVAL_MS with the probe's timeout, as the kubelet does. */
function probeReadiness(ports: number[], timeoutMs: number) {
  const tally: ReadinessTally = { probes: 0, notReady: 0, timedOut: 0, slowestMs: 0 };
  let stopped = false;
  const probeOne = async (port: number) => {
    const started = performance.now();
    try {
      const response = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(timeoutMs) });
      await response.arrayBuffer();
      if (response.status !== 200) tally.notReady += 1;
      tally.slowestMs = Math.max(tally.slowestMs, performance.now() - started);
    } catch {
      tally.notReady += 1;
      tally.timedOut += 1;
      tally.slowestMs = Math.max(tally.slowestMs, timeoutMs);
    }
    tally.probes += 1;
  };
  const loop = (async () => {
    while (!stopped) {
      const next = sleep(PROBE_INTERVAL_MS);
      await Promise.all(ports.map(probeOne));
      await next;
    }
  })();
  return {
    async stop(): Promise<ReadinessTally> {
      stopped = true;
      await loop;
      return tally;
    },
  };
}
