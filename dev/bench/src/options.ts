import path from "node:path";
import { parseDuration } from "@meshcart/lib";

/** What one `make bench` run does; read from BENCH_* variables by benchOptions. */
export interface BenchOptions {
  /** Seconds of one load step (each concurrency level of the saturation search). */
  stepSeconds: number;
  /** Seconds of each latency run at a fixed fraction of saturation. */
  latencySeconds: number;
  /** Closed-loop concurrency levels tried, in order, while looking for saturation. */
  levels: number[];
  /** The fixed load, as a fraction of saturation, at which latency is measured. */
  latencyFraction: number;
  /** Interleaved rounds of off / 10 % / 100 % tracing (their medians are reported). */
  tracingRounds: number;
  /** Assemble each service's production artefact to measure its size (about 20 s per service). */
  artefacts: boolean;
  /** Folder that receives benchmarks.json, benchmarks.md and the SVG. */
  outDir: string;
  /** Quick mode: short steps, one tracing round, no artefacts; for trying the bench out, not for the record. */
  quick: boolean;
  /** Profile the services (node --cpu-prof) under checkout load at the end, and report where their CPU goes. */
  profile: boolean;
  /** NODE_OPTIONS for every service, to try runtime flags (e.g. V8 heap sizes) before adopting them. */
  nodeOptions: string | undefined;
  /** Seconds of each phase of the overload step (0.5×, 1×, 2×, 3×, 0.5× of saturation); 0 skips the step. */
  overloadSeconds: number;
  /** Seconds of each phase of the memory step (saturation, then 3×); 0 skips the step. */
  memorySeconds: number;
}

type Env = Record<string, string | undefined>;

const DEFAULT_STEP_SECONDS = 3;
const QUICK_STEP_SECONDS = 1;
/** Beyond this, throughput of every workload here has long stopped growing; more only queues. */
const LEVELS = [1, 2, 4, 8, 16, 32, 64, 128];

/**
 * BENCH_DURATION (seconds of one step: "3", "3s", "500ms"), BENCH_QUICK=1,
 * BENCH_ROUNDS, BENCH_ARTEFACTS=0, BENCH_PROFILE (on unless 0),
 * BENCH_OVERLOAD=0 and BENCH_MEMORY=0 (skip those steps), BENCH_NODE_OPTIONS
 * and BENCH_OUT. Quick runs write to
 * .data/bench unless BENCH_OUT says otherwise, so that a trial never
 * replaces the committed results in docs/.
 */
export function benchOptions(env: Env, repoRoot: string): BenchOptions {
  const quick = isOn(env.BENCH_QUICK);
  const stepSeconds = env.BENCH_DURATION ? parseSeconds(env.BENCH_DURATION, "BENCH_DURATION") : quick ? QUICK_STEP_SECONDS : DEFAULT_STEP_SECONDS;
  const tracingRounds = env.BENCH_ROUNDS ? parseCount(env.BENCH_ROUNDS, "BENCH_ROUNDS") : quick ? 1 : 2;
  const artefacts = env.BENCH_ARTEFACTS === undefined || env.BENCH_ARTEFACTS === "" ? !quick : isOn(env.BENCH_ARTEFACTS);
  const outDir = path.resolve(repoRoot, env.BENCH_OUT || (quick ? path.join(".data", "bench") : "docs"));
  return {
    stepSeconds,
    // Long enough for a p99 that rests on more than a handful of calls.
    latencySeconds: stepSeconds * 3,
    levels: LEVELS,
    latencyFraction: 0.5,
    tracingRounds,
    artefacts,
    outDir,
    quick,
    nodeOptions: env.BENCH_NODE_OPTIONS?.trim() || undefined,
    profile: env.BENCH_PROFILE === undefined || env.BENCH_PROFILE === "" ? !quick : isOn(env.BENCH_PROFILE),
    // Long enough for the queues and pools to reach their steady state under each load.
    overloadSeconds: env.BENCH_OVERLOAD === "0" ? 0 : stepSeconds * 5,
    memorySeconds: env.BENCH_MEMORY === "0" ? 0 : stepSeconds * 5,
  };
}

export function parseSeconds(text: string, name: string): number {
  const ms = parseDuration(text);
  if (ms === undefined) throw new Error(`${name} must be a duration such as 3, 3s, 500ms or 1m, not "${text}"`);
  const seconds = ms / 1000;
  if (seconds < 0.5 || seconds > 600) throw new Error(`${name} must be from 0.5 s to 10 min, not "${text}"`);
  return seconds;
}

function parseCount(text: string, name: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1 || value > 20) throw new Error(`${name} must be a whole number from 1 to 20, not "${text}"`);
  return value;
}

function isOn(value: string | undefined): boolean {
  return value !== undefined && ["1", "true", "yes", "on"].includes(value.trim().toLowerCase());
}
