import path from "node:path";
import { parseArgs } from "node:util";
import { repoRoot } from "@meshcart/stack/paths.js";
import { EVENT_CRASH_BOUND_MS } from "./crash-points.js";
import { CHAOS_OPTIONS, parseChaosOptions, type OptionName } from "./options.js";
import { newSeed } from "./random.js";
import { formatSummary, writeReport } from "./report.js";
import { runChaos } from "./run.js";

/*
 * `make chaos`: one bounded chaos run against a shop of its own (its own
 * Postgres and services on free loopback ports, so make dev may run beside
 * it), then a report. Exit status: 0 when every check passed, 1 when one
 * failed, 2 for bad options or a run that could not be carried out.
 */

const USAGE = `usage: node dev/chaos/dist/main.js [options]   (make chaos [CHAOS_SEED=] [CHAOS_DURATION=] [CHAOS_KILLS=] …)

${Object.entries(CHAOS_OPTIONS)
  .map(([name, o]) => `  --${name.padEnd(12)} ${o.variable.padEnd(18)} default ${o.default}`)
  .join("\n")}

  --outage 0 skips the Postgres outage; --outage-mode immediate stops it as a crash would.
  --broker-outage 0 skips the NATS outage.`;

/** Whatever happens, the run ends: its own bounds, then this one. */
const WATCHDOG_SLACK_MS = 5 * 60_000;

function fail(message: string): never {
  process.stderr.write(`chaos: ${message}\n`);
  process.exit(2);
}

let values: Record<string, string | boolean | undefined>;
try {
  values = parseArgs({
    options: { ...Object.fromEntries(Object.keys(CHAOS_OPTIONS).map((name) => [name, { type: "string" as const }])), help: { type: "boolean", short: "h" } },
  }).values;
} catch (error) {
  fail(`${error instanceof Error ? error.message : String(error)}\n${USAGE}`);
}
if (values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const parsed = parseChaosOptions(values as Partial<Record<OptionName, string>>, process.env);
if (!parsed.ok) fail(`invalid options:\n${parsed.problems.map((p) => `  - ${p}`).join("\n")}\n\n${USAGE}`);
const { command } = parsed;
const seed = command.seed ?? newSeed();
const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*$/, "").replace("T", "-");
const outDir = path.resolve(repoRoot, command.outDir ?? path.join(".data", "chaos", `${stamp}-seed${seed}`));

const began = Date.now();
const note = (message: string) => process.stdout.write(`chaos ${((Date.now() - began) / 1000).toFixed(1).padStart(6)}s  ${message}\n`);

const abort = new AbortController();
const bound = command.durationMs + command.outageMs + command.brokerOutageMs + EVENT_CRASH_BOUND_MS + WATCHDOG_SLACK_MS;
const watchdog = setTimeout(() => {
  note(`the run did not end within ${Math.round(bound / 1000)} s: stopping it`);
  abort.abort(new Error("watchdog"));
}, bound);
let interrupted = false;
const onSignal = () => {
  if (interrupted) process.exit(130);
  interrupted = true;
  note("interrupted: stopping the services and Postgres (again to quit at once)");
  abort.abort(new Error("interrupted"));
};
process.on("SIGINT", onSignal);
process.on("SIGTERM", onSignal);

try {
  const report = await runChaos({
    repoRoot,
    outDir,
    seed,
    durationMs: command.durationMs,
    kills: command.kills,
    services: command.services,
    rps: command.rps,
    minDownMs: 200,
    maxDownMs: 2_000,
    outageMs: command.outageMs,
    outageMode: command.outageMode,
    brokerOutageMs: command.brokerOutageMs,
    afterOrders: 20,
    logLevel: process.env.LOG_LEVEL || "info",
    settleTimeoutMs: 120_000,
    note,
    signal: abort.signal,
  });
  const written = await writeReport(outDir, report);
  process.stdout.write(
    `\n${formatSummary(report)}\nreport: ${path.relative(process.cwd(), written.json)}\nsummary: ${path.relative(process.cwd(), written.summary)}\n`,
  );
  process.exitCode = report.passed ? 0 : 1;
} catch (error) {
  process.stderr.write(`chaos: the run could not be carried out: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.stderr.write(`chaos: seed ${seed}; logs in ${path.join(outDir, "logs")}\n`);
  process.exitCode = 2;
} finally {
  clearTimeout(watchdog);
}
