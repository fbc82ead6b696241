import path from "node:path";
import { databaseProbes } from "./calls.js";
import { killsByService, runKills } from "./kills.js";
import { startLoad, type LoadReport } from "./load.js";
import { runBrokerOutage, type BrokerOutageRecord } from "./broker-outage.js";
import { CRASH_TIMEOUT_MS, EVENT_CRASH_BOUND_MS, runCrashPoints, type CrashPointsRecord } from "./crash-points.js";
import { runOutage, type OutageRecord } from "./outage.js";
import { planKills } from "./plan.js";
import { seededRandom } from "./random.js";
import { judge, type ChaosReport, type ChaosSettings } from "./report.js";
import { firstOrderOf, settleAndVerify } from "./settle.js";
import { ChaosShop } from "./shop.js";
import { sleep } from "@meshcart/lib";

export interface ChaosOptions extends ChaosSettings {
  repoRoot: string;
  /** Service and Postgres logs go to <outDir>/logs. */
  outDir: string;
  /** The services' LOG_LEVEL. */
  logLevel: string;
  /** Longest wait for the sagas to settle at the end. */
  settleTimeoutMs: number;
  /** A line for the operator as each thing happens. */
  note: (message: string) => void;
  /** Aborting stops the run: the shop is torn down, whatever step was running fails, and the run rejects. */
  signal?: AbortSignal;
}

/** Orders only: the after-recovery check counts confirmations, so nothing else is sent. */
const ORDERS_ONLY = "order=1,out_of_stock=0,declined=0,invalid=0,get_order=0,details=0,browse=0,track=0";
/** The load around the outage: the longest it may take to start sending, and how long it runs on after Postgres is back. */
const OUTAGE_LOAD_LEAD_MS = 15_000;
const OUTAGE_LOAD_TAIL_MS = 5_000;
/** Longest wait for the services to serve again once Postgres is back. */
const OUTAGE_SETTLE_BOUND_MS = 30_000;
/**
 * The broker's acknowledgement wait in the chaos shop: a fulfillment killed
 * between its commit and its acknowledgement gets the event again this long
 * after the delivery (30 s by default), so the run sees the redelivery.
 */
const CHAOS_ACK_WAIT_MS = "5000";

/**
 * One chaos run, start to end: a fresh shop; the shop's usual load with
 * kill -9 of services at the seeded moments, each restarted after its
 * downtime; Postgres stopped for a while under load; NATS stopped for a
 * while under load; kill -9 at the event path's crash points (order's
 * relay before and after its publication, fulfillment between its commit
 * and its acknowledgement); orders placed once everything is back; then, once the
 * sagas and the order events have settled, the invariant check.
 * Everything the run did and found is in the report.
 */
export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const { note } = options;
  const settings: ChaosSettings = {
    seed: options.seed,
    durationMs: options.durationMs,
    kills: options.kills,
    services: options.services,
    rps: options.rps,
    minDownMs: options.minDownMs,
    maxDownMs: options.maxDownMs,
    outageMs: options.outageMs,
    outageMode: options.outageMode,
    brokerOutageMs: options.brokerOutageMs,
    afterOrders: options.afterOrders,
  };
  const random = seededRandom(options.seed);
  // Not at the very start (the load is still finding its feet) nor at the
  // very end (the last kill's recovery should happen under load too).
  const plan = planKills(random, {
    services: options.services,
    count: options.kills,
    fromMs: options.durationMs * 0.1,
    toMs: options.durationMs * 0.75,
    minDownMs: options.minDownMs,
    maxDownMs: options.maxDownMs,
  });
  note(`seed ${options.seed}; ${plan.length} kills planned: ${plan.map((k) => `${k.service}@${(k.atMs / 1000).toFixed(1)}s`).join(", ") || "none"}`);

  const startedAt = new Date();
  const begun = performance.now();
  const logDir = path.join(options.outDir, "logs");
  note(`starting Postgres, NATS and the services (logs in ${logDir})`);
  const shop = await ChaosShop.start({
    repoRoot: options.repoRoot,
    logDir,
    logLevel: options.logLevel,
    env: { fulfillment: { FULFILLMENT_ACK_WAIT_MS: CHAOS_ACK_WAIT_MS } },
  });
  const stopOnAbort = () => void shop.close();
  options.signal?.addEventListener("abort", stopOnAbort, { once: true });
  const probes = databaseProbes((name) => shop.address(name), `s${options.seed}`);
  try {
    const runId = (phase: string) => `chaos-${options.seed}-${phase}`;
    const load = (phase: string, rps: number, bound: { durationMs?: number; requests?: number }, mix?: string) =>
      startLoad({
        repoRoot: options.repoRoot,
        storefront: shop.address("storefront"),
        inventory: shop.address("inventory"),
        runId: runId(phase),
        seed: options.seed,
        rps,
        timeoutMs: 10_000,
        ...bound,
        ...(mix ? { mix } : {}),
      });

    note(`load: ${options.rps} req/s for ${(options.durationMs / 1000).toFixed(0)} s, with the kills`);
    const killsLoad = load("kills", options.rps, { durationMs: options.durationMs });
    const loadStartedAt = performance.now();
    const kills = await runKills(shop, plan, loadStartedAt, note, options.signal ?? new AbortController().signal);
    const killsReport = await killsLoad.done;
    note(`load done: ${killsReport.due} requests, ${killsReport.errors} errors; waiting for every saga to settle`);
    const afterKills = await settleAndVerify(shop, "kills", options.settleTimeoutMs);
    note(`after the kills: ${afterKills.unfinishedOrders} unfinished orders, ${afterKills.verify.violations.length} violations`);

    let outage: OutageRecord | null = null;
    let outageReport: LoadReport | null = null;
    if (options.outageMs > 0) {
      // Sagas in flight when the database goes: the load must be sending
      // already, not still starting up, when Postgres stops.
      // Bounded as a safeguard only: it is stopped once the services are back and its tail has run.
      const around = load("outage", options.rps, { durationMs: OUTAGE_LOAD_LEAD_MS + options.outageMs + OUTAGE_SETTLE_BOUND_MS + OUTAGE_LOAD_TAIL_MS });
      if (!(await firstOrderOf(shop, runId("outage"), OUTAGE_LOAD_LEAD_MS))) {
        around.stop();
        throw new Error(`the load around the outage placed no order within ${OUTAGE_LOAD_LEAD_MS} ms`);
      }
      outage = await runOutage(
        shop,
        probes.probes,
        {
          outageMs: options.outageMs,
          immediate: options.outageMode === "immediate",
          callDeadlineMs: 5_000,
          probeIntervalMs: 250,
          settleTimeoutMs: OUTAGE_SETTLE_BOUND_MS,
        },
        note,
      );
      await sleep(OUTAGE_LOAD_TAIL_MS);
      around.stop();
      outageReport = await around.done;
    }

    let brokerOutage: BrokerOutageRecord | null = null;
    let brokerOutageReport: LoadReport | null = null;
    if (options.brokerOutageMs > 0) {
      // Checkouts while the broker is away: the load must be placing orders when NATS stops.
      const around = load("broker", options.rps, { durationMs: OUTAGE_LOAD_LEAD_MS + options.brokerOutageMs + OUTAGE_SETTLE_BOUND_MS + OUTAGE_LOAD_TAIL_MS });
      if (!(await firstOrderOf(shop, runId("broker"), OUTAGE_LOAD_LEAD_MS))) {
        around.stop();
        throw new Error(`the load around the broker outage placed no order within ${OUTAGE_LOAD_LEAD_MS} ms`);
      }
      brokerOutage = await runBrokerOutage(shop, { outageMs: options.brokerOutageMs, settleTimeoutMs: OUTAGE_SETTLE_BOUND_MS }, note);
      await sleep(OUTAGE_LOAD_TAIL_MS);
      around.stop();
      brokerOutageReport = await around.done;
    }

    // The event path's crash points, under load: each armed process needs
    // an event to reach its point. Stopped once they are done.
    const aroundCrashes = load("crash-points", options.rps, { durationMs: OUTAGE_LOAD_LEAD_MS + EVENT_CRASH_BOUND_MS + options.settleTimeoutMs });
    if (!(await firstOrderOf(shop, runId("crash-points"), OUTAGE_LOAD_LEAD_MS))) {
      aroundCrashes.stop();
      throw new Error(`the load around the crash points placed no order within ${OUTAGE_LOAD_LEAD_MS} ms`);
    }
    const crashPoints: CrashPointsRecord = await runCrashPoints(shop, { crashTimeoutMs: CRASH_TIMEOUT_MS, settleTimeoutMs: options.settleTimeoutMs }, note);
    aroundCrashes.stop();
    const crashPointsReport = await aroundCrashes.done;

    note(`placing ${options.afterOrders} orders now that everything is back`);
    const after = await load("after", 5, { requests: options.afterOrders }, ORDERS_ONLY).done;

    note("waiting for every saga to settle, then checking the invariants");
    const final = await settleAndVerify(shop, "end", options.settleTimeoutMs);
    const findings = {
      seed: options.seed,
      settings,
      startedAt: startedAt.toISOString(),
      elapsedMs: Math.round(performance.now() - begun),
      plan,
      kills,
      killsByService: killsByService(kills),
      load: { kills: killsReport, outage: outageReport, brokerOutage: brokerOutageReport, crashPoints: crashPointsReport, after },
      outage,
      brokerOutage,
      crashPoints,
      settled: [afterKills, final],
      logDir,
    };
    const checks = judge(findings);
    return { ...findings, checks, passed: checks.every((c) => c.passed) };
  } finally {
    options.signal?.removeEventListener("abort", stopOnAbort);
    probes.close();
    note("stopping the services and Postgres");
    await shop.close();
  }
}
