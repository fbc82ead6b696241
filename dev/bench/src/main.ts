import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { repoRoot } from "@meshcart/stack/paths.js";
import { benchmarkChart } from "./chart.js";
import { GHZ_COMMON_FLAGS } from "./ghz.js";
import { resultsMarkdown, spliceResults } from "./markdown.js";
import { benchOptions } from "./options.js";
import { buildReport } from "./report.js";
import { runBench } from "./run.js";

/*
 * `make bench`: measures meshcart's local services against the physical
 * limit of this machine (a raw grpc-js echo server under the same ghz load),
 * then writes benchmarks.json, the results block of benchmarks.md and
 * benchmarks.svg (docs/ by default). Targets are checked and reported as
 * PASS or MISS; a MISS is a finding, not a failure of the run.
 */

const started = Date.now();
const log = (line: string) => process.stdout.write(`[bench ${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}\n`);

// Ctrl-C: exit; the exit hooks of the process supervisors kill the services and Postgres.
process.once("SIGINT", () => process.exit(130));
process.once("SIGTERM", () => process.exit(143));

const options = benchOptions(process.env, repoRoot);
const toolsBin = path.join(repoRoot, ".tools", "bin");
const ghz = path.join(toolsBin, "ghz");
if (!existsSync(ghz)) throw new Error(`${ghz} is missing: run scripts/tools.sh ghz (make bench does)`);

const settings = Object.entries(process.env)
  .filter(([key, value]) => key.startsWith("BENCH_") && value)
  .map(([key, value]) => `${key}=${value}`)
  .sort();
const command = ["make bench", ...settings].join(" ");
log(
  `${command}: steps of ${options.stepSeconds} s, ${options.tracingRounds} tracing round(s), artefacts ${options.artefacts ? "on" : "off"}, results to ${path.relative(repoRoot, options.outDir) || "."}`,
);

const measurements = await runBench(options, {
  repoRoot,
  ghz,
  toolsBin,
  postgresDurable: true,
  logLevel: "info",
  command,
  log,
});
const report = buildReport(measurements, GHZ_COMMON_FLAGS.join(" "));

await fs.mkdir(options.outDir, { recursive: true });
const chartFile = "benchmarks.svg";
await fs.writeFile(path.join(options.outDir, "benchmarks.json"), `${JSON.stringify(report, null, 2)}\n`);
await fs.writeFile(path.join(options.outDir, chartFile), benchmarkChart(report));
const markdownPath = path.join(options.outDir, "benchmarks.md");
const existing = existsSync(markdownPath) ? await fs.readFile(markdownPath, "utf8") : undefined;
await fs.writeFile(markdownPath, spliceResults(existing, resultsMarkdown(report, chartFile)));

for (const target of report.targets) log(`${target.pass ? "PASS" : "MISS"}  ${target.subject}: ${target.rule}`);
log(`wrote ${["benchmarks.json", "benchmarks.md", chartFile].map((f) => path.relative(repoRoot, path.join(options.outDir, f))).join(", ")}`);
// Every child is stopped; a handle some library left open must not keep the terminal waiting.
setTimeout(() => process.exit(0), 1_000).unref();
