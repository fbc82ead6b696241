import fs from "node:fs/promises";
import path from "node:path";
import type { BrokerOutageRecord } from "./broker-outage.js";
import type { CrashPointsRecord } from "./crash-points.js";
import type { KillRecord } from "./kills.js";
import type { LoadReport } from "./load.js";
import { DATABASE_SERVICES, summariseCodes, type OutageRecord } from "./outage.js";
import type { PlannedKill, Victim } from "./plan.js";
import type { Settled } from "./settle.js";

export interface ChaosSettings {
  seed: number;
  durationMs: number;
  kills: number;
  services: Victim[];
  rps: number;
  minDownMs: number;
  maxDownMs: number;
  /** 0: no Postgres outage. */
  outageMs: number;
  outageMode: "fast" | "immediate";
  /** 0: no NATS outage. */
  brokerOutageMs: number;
  afterOrders: number;
}

export interface Check {
  name: string;
  passed: boolean;
  detail: string;
}

export interface ChaosReport {
  seed: number;
  settings: ChaosSettings;
  startedAt: string;
  elapsedMs: number;
  plan: PlannedKill[];
  kills: KillRecord[];
  killsByService: Record<Victim, number>;
  /** loadgen's reports: the load the kills hit, the loads across the outages and the crash points, the orders placed after recovery. */
  load: { kills: LoadReport; outage: LoadReport | null; brokerOutage: LoadReport | null; crashPoints: LoadReport; after: LoadReport };
  outage: OutageRecord | null;
  brokerOutage: BrokerOutageRecord | null;
  /** kill -9 at the event path's crash points (the services' own hooks). */
  crashPoints: CrashPointsRecord;
  /** After the kills (before the outage), and at the end: settled sagas and make verify's report. */
  settled: Settled[];
  checks: Check[];
  passed: boolean;
  /** Where the services' and Postgres's logs of the run are. */
  logDir: string;
}

type Findings = Omit<ChaosReport, "checks" | "passed">;

/** What must hold after the run; the run passes when every check does. */
export function judge(findings: Findings): Check[] {
  const { kills, plan, settled, outage, brokerOutage, crashPoints, load } = findings;
  const checks: Check[] = [
    {
      name: "every planned kill -9 was carried out and the service came back",
      passed: kills.length === plan.length && kills.every((k) => k.exit === "SIGKILL" && k.newPid !== k.pid),
      detail: `${kills.length} of ${plan.length} kills, exits: ${[...new Set(kills.map((k) => k.exit))].join(", ") || "none"}`,
    },
    ...settled.flatMap((s) => [
      {
        name: `after the ${s.after === "kills" ? "kills" : "run"}: every order is final and no saga is left`,
        passed: s.unfinishedOrders === 0 && s.sagaRuns === 0,
        detail:
          `${s.unfinishedOrders} unfinished orders, ${s.sagaRuns} saga runs left` + (s.settleMs === null ? "" : `, settled ${s.settleMs} ms after the load`),
      },
      {
        name: `after the ${s.after === "kills" ? "kills" : "run"}: every order event is published and applied by fulfillment`,
        passed: s.eventsOnTheirWay === 0,
        detail: `${s.eventsOnTheirWay} events still on their way, ${s.verify.checked.shipments ?? 0} shipments`,
      },
      {
        name: `after the ${s.after === "kills" ? "kills" : "run"}: the invariant checker (make verify) finds no violation`,
        passed: s.verify.violations.length === 0,
        detail: `${s.verify.violations.length} violations in ${s.verify.checked.orders} orders, ${s.verify.checked.payments} payments, ${s.verify.checked.reservations} reservations`,
      },
    ]),
    {
      name: "orders placed after recovery are all confirmed",
      passed: load.after.due > 0 && (load.after.outcomes.confirmed?.count ?? 0) === load.after.due,
      detail: `${load.after.outcomes.confirmed?.count ?? 0} of ${load.after.due} confirmed`,
    },
  ];
  if (brokerOutage) {
    const placed = Object.values(brokerOutage.ordersDuringOutage).reduce((sum, n) => sum + n, 0);
    const confirmed = brokerOutage.ordersDuringOutage.CONFIRMED ?? 0;
    checks.push(
      {
        name: "NATS down: checkouts went on (orders placed meanwhile were confirmed; none failed)",
        passed: confirmed > 0 && (brokerOutage.ordersDuringOutage.FAILED ?? 0) === 0,
        detail: `${placed} orders placed while NATS was down: ${
          Object.entries(brokerOutage.ordersDuringOutage)
            .map(([s, n]) => `${s} ${n}`)
            .join(", ") || "none"
        }; the outbox held up to ${brokerOutage.outboxPeak} events`,
      },
      {
        name: "NATS back: the outbox drained and fulfillment applied every event, without a restart",
        passed: brokerOutage.caughtUpMs !== null && brokerOutage.restarted.length === 0,
        detail: `caught up ${brokerOutage.caughtUpMs === null ? "never" : `${brokerOutage.caughtUpMs} ms`} after NATS was back; restarted: ${brokerOutage.restarted.join(", ") || "none"}`,
      },
    );
  }
  checks.push(
    ...crashPoints.points.map((p) => ({
      name: `kill -9 of ${p.what}`,
      passed: p.exit === "SIGKILL" && (p.service !== "order" || p.eventsInOutbox > 0),
      detail: `${p.service} killed itself at ${p.point}: ${p.exit}${p.crashedAfterMs === null ? "" : ` after ${p.crashedAfterMs} ms`}, ${p.eventsInOutbox} events unpublished at its death; restarted in ${p.restartMs} ms`,
    })),
    {
      name: "after the crash points: the restarted services published and applied every event (none twice: make verify)",
      passed: crashPoints.caughtUpMs !== null,
      detail: `caught up ${crashPoints.caughtUpMs === null ? "never" : `${crashPoints.caughtUpMs} ms`} after the last restart`,
    },
  );
  if (outage) {
    const seen = DATABASE_SERVICES.filter((s) => outage.notServingMs[s] !== null);
    const bad = outage.calls.filter((c) => c.code !== "UNAVAILABLE" || c.ms >= outage.callDeadlineMs);
    const back = DATABASE_SERVICES.filter((s) => outage.servingAgainMs[s] !== null);
    const answered = Object.entries(outage.firstOkMs).filter(([, ms]) => ms !== null);
    checks.push(
      {
        name: "Postgres down: inventory, payment, order and fulfillment report NOT_SERVING",
        passed: seen.length === DATABASE_SERVICES.length,
        detail: `NOT_SERVING seen on ${seen.join(", ") || "none"}`,
      },
      {
        name: "Postgres down: every call fails with UNAVAILABLE before its deadline",
        passed: outage.calls.length > 0 && bad.length === 0,
        detail: `${outage.calls.length} calls: ${summariseCodes(outage.calls)}; deadline ${outage.callDeadlineMs} ms`,
      },
      {
        name: "Postgres back: every service serves again without a restart",
        passed: back.length === DATABASE_SERVICES.length && outage.restarted.length === 0 && answered.length === Object.keys(outage.firstOkMs).length,
        detail: `SERVING again: ${back.join(", ") || "none"}; restarted: ${outage.restarted.join(", ") || "none"}; calls answering: ${answered.length} of ${Object.keys(outage.firstOkMs).length}`,
      },
    );
  }
  return checks;
}

const seconds = (ms: number | null | undefined) => (ms === null || ms === undefined ? "never" : `${(ms / 1000).toFixed(1)} s`);

function stats(values: readonly number[]): string {
  if (values.length === 0) return "-";
  const sorted = [...values].sort((a, b) => a - b);
  const median = sorted[Math.floor((sorted.length - 1) / 2)]!;
  return `median ${median} ms, max ${sorted.at(-1)} ms`;
}

function outcomes(load: LoadReport): string {
  return Object.entries(load.outcomes)
    .map(([outcome, p]) => `${outcome} ${p.count}`)
    .join(", ");
}

/** The human summary: what was done, what was found, the verdict. */
export function formatSummary(report: ChaosReport): string {
  const { settings, kills, load, outage, brokerOutage, crashPoints } = report;
  const final = report.settled.at(-1)!.verify;
  const lines = [
    `meshcart chaos run, seed ${report.seed} (repeat it with CHAOS_SEED=${report.seed})`,
    `  ${seconds(report.elapsedMs)} in all; load ${settings.rps} req/s for ${seconds(settings.durationMs)}`,
    "",
    "what it did",
    `  kills (kill -9): ${kills.length}: ${Object.entries(report.killsByService)
      .map(([s, n]) => `${s} ${n}`)
      .join(", ")}`,
    ...kills.map(
      (k) =>
        `    ${String(k.index).padStart(2)}. ${k.service.padEnd(10)} at ${seconds(k.killedAtMs).padStart(7)}  pid ${k.pid} -> ${k.newPid}  ` +
        `${String(k.sagasInFlight).padStart(3)} sagas in flight, ${String(k.eventsInOutbox).padStart(3)} events in the outbox, down ${k.downMs} ms, ready ${k.restartMs} ms after restart, ` +
        `those sagas finished ${seconds(k.sagasSettledMs)} after the kill`,
    ),
    `  restart to ready: ${stats(kills.map((k) => k.restartMs))}`,
    `  kill to the sagas in flight all finished: ${stats(kills.flatMap((k) => (k.sagasSettledMs === null ? [] : [k.sagasSettledMs])))}`,
    `  calls under the kills (loadgen): ${load.kills.due} requests, ${load.kills.errors} errors; ${outcomes(load.kills)}`,
  ];
  if (outage && load.outage) {
    const byService = (record: Record<string, number | null>) =>
      Object.entries(record)
        .map(([s, ms]) => `${s} ${ms === null ? "never" : `${ms} ms`}`)
        .join(", ");
    lines.push(
      `  Postgres stopped (${outage.mode} shutdown) for ${seconds(outage.downMs)}`,
      `    NOT_SERVING after: ${byService(outage.notServingMs)}; storefront (no database) said ${outage.storefrontHealth}`,
      `    probe calls while down: ${outage.calls.length}, ${summariseCodes(outage.calls)}, deadline ${outage.callDeadlineMs} ms`,
      `    SERVING again after: ${byService(outage.servingAgainMs)}; restarted: ${outage.restarted.join(", ") || "none"}`,
      `    first good answer after: ${byService(outage.firstOkMs)}`,
      `    calls across the outage (loadgen): ${load.outage.due} requests, ${load.outage.errors} errors; ${outcomes(load.outage)}`,
    );
  }
  if (brokerOutage && load.brokerOutage) {
    lines.push(
      `  NATS stopped for ${seconds(brokerOutage.downMs)}`,
      `    orders placed meanwhile: ${
        Object.entries(brokerOutage.ordersDuringOutage)
          .map(([s, n]) => `${s} ${n}`)
          .join(", ") || "none"
      }; the outbox held up to ${brokerOutage.outboxPeak} events`,
      `    caught up (outbox empty, every event applied) ${brokerOutage.caughtUpMs === null ? "never" : `${brokerOutage.caughtUpMs} ms`} after NATS was back; restarted: ${brokerOutage.restarted.join(", ") || "none"}`,
      `    calls across the outage (loadgen): ${load.brokerOutage.due} requests, ${load.brokerOutage.errors} errors; ${outcomes(load.brokerOutage)}`,
    );
  }
  lines.push(
    `  kill -9 at the event path's crash points (the services' own hooks, under load):`,
    ...crashPoints.points.map(
      (p) =>
        `    ${p.service.padEnd(11)} at ${p.point.padEnd(14)} ${p.exit}${p.crashedAfterMs === null ? "" : ` after ${p.crashedAfterMs} ms`}, ${p.eventsInOutbox} events unpublished, ready ${p.restartMs} ms after restart`,
    ),
    `    caught up (outbox empty, every event applied) ${crashPoints.caughtUpMs === null ? "never" : `${crashPoints.caughtUpMs} ms`} after the last restart`,
    `    calls across the crash points (loadgen): ${load.crashPoints.due} requests, ${load.crashPoints.errors} errors; ${outcomes(load.crashPoints)}`,
    `  orders placed after recovery: ${load.after.due}; ${outcomes(load.after)}`,
    "",
    "what it found",
    `  orders: ${final.checked.orders} (${
      Object.entries(final.states)
        .map(([s, n]) => `${s} ${n}`)
        .join(", ") || "none"
    })`,
    ...report.settled.map(
      (s) =>
        `  after the ${s.after === "kills" ? "kills" : "run"}: ${s.settleMs === null ? `NOT settled (${s.unfinishedOrders} orders unfinished, ${s.sagaRuns} saga runs, ${s.eventsOnTheirWay} events on their way)` : `settled ${seconds(s.settleMs)} after the load`}, ` +
        `${s.verify.violations.length} violations in ${s.verify.checked.orders} orders`,
    ),
    ...report.settled.flatMap((s) => [
      ...s.verify.violations.slice(0, 20).map((v) => `    - ${v}`),
      ...(s.verify.violations.length > 20 ? [`    … and ${s.verify.violations.length - 20} more (report.json)`] : []),
    ]),
    "",
    ...report.checks.map((c) => `  ${c.passed ? "ok  " : "FAIL"} ${c.name}: ${c.detail}`),
    "",
    report.passed ? "PASSED" : "FAILED",
  );
  return `${lines.join("\n")}\n`;
}

/** report.json (everything) and summary.txt (formatSummary) in `dir`. */
export async function writeReport(dir: string, report: ChaosReport): Promise<{ json: string; summary: string }> {
  await fs.mkdir(dir, { recursive: true });
  const json = path.join(dir, "report.json");
  const summary = path.join(dir, "summary.txt");
  await fs.writeFile(json, `${JSON.stringify(report, null, 2)}\n`);
  await fs.writeFile(summary, formatSummary(report));
  return { json, summary };
}
