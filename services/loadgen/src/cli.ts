// First: starts tracing before anything loads @grpc/grpc-js.
import "./cli-telemetry.js";
import { parseArgs } from "node:util";
import { ConfigError, DEMO_TOKENS, Registry, createLogger, flushTelemetry, formatDuration, loadConfig } from "@meshcart/lib";
import { loadgenConfig } from "./config.js";
import { TargetUnreachable } from "./generator.js";
import { formatProgress, formatReport } from "./stats.js";
import { createLoadgen } from "./setup.js";

/*
 * The load generator for a human (or CI): `make load RPS=50 DURATION=30s`
 * runs `node services/loadgen/dist/cli.js --rps 50 --duration 30s`. It reads
 * the same LOADGEN_* variables as the deployable, the flags on top, and the
 * storefront's demo token key unless STOREFRONT_JWT_SECRET is set. A live
 * progress line when stdout is a terminal, then a table by outcome (or JSON
 * with --json). Exit status: 0; 1 when --max-error-rate was passed; 2 for
 * bad options or a storefront that does not answer; 130 on a second Ctrl-C.
 */

const FLAGS = {
  target: "STOREFRONT_ADDRESS",
  inventory: "INVENTORY_ADDRESS",
  rps: "LOADGEN_RPS",
  duration: "LOADGEN_DURATION",
  requests: "LOADGEN_REQUESTS",
  concurrency: "LOADGEN_CONCURRENCY",
  shoppers: "LOADGEN_SHOPPERS",
  mix: "LOADGEN_MIX",
  "timeout-ms": "LOADGEN_TIMEOUT_MS",
  "max-error-rate": "LOADGEN_MAX_ERROR_RATE",
  "restock-below": "LOADGEN_RESTOCK_BELOW",
  "restock-quantity": "LOADGEN_RESTOCK_QUANTITY",
  scarce: "LOADGEN_SCARCE_SKUS",
  "run-id": "LOADGEN_RUN_ID",
  seed: "LOADGEN_SEED",
} as const;

const USAGE = `usage: node services/loadgen/dist/cli.js [options]   (make load RPS=50 DURATION=30s)

  --target host:port        the storefront (default localhost:50050, make dev's)
  --rps N                   requests started per second, open loop (default 10)
  --duration D              30s, 5m, 1h or forever (default: until Ctrl-C)
  --requests N              stop after N requests
  --concurrency N           most requests in flight; more due ones are dropped (default 100)
  --shoppers N              demo customers shopper-1..N (default 20)
  --mix LIST                scenario weights, e.g. order=50,declined=10,track=0
  --max-error-rate R        exit 1 when errors / requests is above R (0 to 1)
  --timeout-ms N            deadline of each request (default 10000)
  --inventory host:port     inventory, for the operator's restocks (default localhost:50053)
  --no-restock              never restock
  --restock-below N, --restock-quantity N, --scarce SKU,SKU, --run-id ID, --seed N
  --json                    print the report as JSON instead of the table
  -h, --help

Every option also reads its LOADGEN_* variable (docs/configuration.md).`;

function fail(message: string, code = 2): never {
  process.stderr.write(`loadgen: ${message}\n`);
  process.exit(code);
}

let parsed: ReturnType<typeof parse>;
function parse() {
  return parseArgs({
    options: {
      ...Object.fromEntries(Object.keys(FLAGS).map((flag) => [flag, { type: "string" as const }])),
      "no-restock": { type: "boolean" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    allowPositionals: false,
  });
}
try {
  parsed = parse();
} catch (error) {
  fail(`${error instanceof Error ? error.message : String(error)}\n${USAGE}`);
}
if (parsed.values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}

const values = parsed.values as Record<string, string | boolean | undefined>;
const env: Record<string, string | undefined> = { ...process.env };
// make dev's storefront checks tokens signed with the demo key.
env.STOREFRONT_JWT_SECRET ||= DEMO_TOKENS.secret;
const fromFlag = new Map<string, string>();
for (const [flag, variable] of Object.entries(FLAGS)) {
  const value = values[flag];
  // make passes unset variables as empty strings: those mean "not given".
  if (typeof value === "string" && value.trim() !== "") {
    env[variable] = value.trim();
    fromFlag.set(variable, `--${flag}`);
  }
}
if (values["no-restock"]) env.LOADGEN_RESTOCK = "false";

let config: ReturnType<typeof loadConfig<typeof loadgenConfig>>;
try {
  config = loadConfig(loadgenConfig, env);
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  const problems = error.problems.map((problem) => {
    const variable = problem.split(":")[0]!;
    const flag = fromFlag.get(variable);
    return flag ? `${flag} (${variable})${problem.slice(variable.length)}` : problem;
  });
  fail(`invalid options:\n${problems.map((p) => `  - ${p}`).join("\n")}\n\n${USAGE}`);
}

const json = values.json === true;
// Quiet unless asked: the terminal is for the progress line and the table.
const level = process.env.LOG_LEVEL ? config.LOG_LEVEL : "error";
const logger = createLogger({ service: "loadgen", version: config.SERVICE_VERSION, level, destination: process.stderr });
const loadgen = createLoadgen(config, logger, new Registry(), { startTimeoutMs: 5_000, summaries: false });

const stop = new AbortController();
let signals = 0;
const onSignal = () => {
  signals += 1;
  if (signals > 1) {
    process.stderr.write("\nloadgen: stopped\n");
    process.exit(130);
  }
  clearLine();
  process.stderr.write(`loadgen: stopping, waiting for ${loadgen.generator.progress().inFlight} requests in flight (Ctrl-C again to quit now)\n`);
  stop.abort();
};
process.on("SIGINT", onSignal);
process.on("SIGTERM", onSignal);

const live = process.stdout.isTTY === true && !json;
function clearLine(): void {
  if (live) process.stdout.write("\r\x1b[2K");
}

const durationMs = loadgen.generator.progress().durationMs;
const bounds = [
  ...(durationMs === undefined ? [] : [`for ${formatDuration(durationMs)}`]),
  ...(config.LOADGEN_REQUESTS ? [`${durationMs === undefined ? "for" : "or"} at most ${config.LOADGEN_REQUESTS} requests`] : []),
];
process.stderr.write(
  `loadgen: ${config.LOADGEN_RPS} req/s ${bounds.join(" ") || "until stopped"} against ${config.STOREFRONT_ADDRESS}, ` +
    `${config.LOADGEN_SHOPPERS} shoppers, run ${loadgen.runId}${live ? "; Ctrl-C stops" : ""}\n`,
);

// The live line: the rate over the last three seconds.
const samples: { at: number; due: number }[] = [];
const ticker = live
  ? setInterval(() => {
      const progress = loadgen.generator.progress();
      const now = performance.now();
      samples.push({ at: now, due: progress.due });
      while (samples.length > 1 && now - samples[0]!.at > 3_000) samples.shift();
      const first = samples[0]!;
      progress.recentRps = now > first.at ? ((progress.due - first.due) / (now - first.at)) * 1000 : 0;
      process.stdout.write(`\r\x1b[2K${formatProgress(progress)}`);
    }, 250)
  : undefined;

let code = 0;
try {
  const report = await loadgen.generator.run(stop.signal);
  if (ticker) clearInterval(ticker);
  clearLine();
  process.stdout.write(json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
  code = report.passed ? 0 : 1;
} catch (error) {
  if (ticker) clearInterval(ticker);
  clearLine();
  if (!(error instanceof TargetUnreachable)) throw error;
  process.stderr.write(`loadgen: ${error.message}; is make dev running?\n`);
  code = 2;
} finally {
  loadgen.close();
}
await flushTelemetry(2_000);
process.exitCode = code;
// Nothing should be left, but a handle must not keep the terminal waiting.
setTimeout(() => process.exit(code), 1_000).unref();
