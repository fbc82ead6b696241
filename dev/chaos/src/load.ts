import { spawn } from "node:child_process";
import path from "node:path";
import { DEMO_TOKENS } from "@meshcart/lib";

/** What the harness reads of loadgen's --json report (services/loadgen/src/stats.ts). */
export interface LoadReport {
  runId: string;
  due: number;
  completed: number;
  ok: number;
  errors: number;
  dropped: number;
  elapsedMs: number;
  achievedRps: number;
  outcomes: Record<string, { count: number; p50Ms?: number; p95Ms?: number; p99Ms?: number; maxMs?: number }>;
  restocks: { ok: number; failed: number; units: number };
}

export interface LoadOptions {
  repoRoot: string;
  storefront: string;
  inventory: string;
  runId: string;
  seed: number;
  rps: number;
  /** Either bound ends the run; at least one must be given. */
  durationMs?: number;
  requests?: number;
  /** loadgen's --mix; its default shop mix when omitted. */
  mix?: string;
  /** Deadline of each request. */
  timeoutMs: number;
}

export interface RunningLoad {
  /** The report once loadgen has finished on its own (or after stop()). */
  readonly done: Promise<LoadReport>;
  /** Asks loadgen to stop sending; it reports what it did. */
  stop(): void;
}

/**
 * The load generator's command line, exactly as `make load` runs it, as a
 * child process: the harness measures the shop from outside, like a user,
 * and loadgen's own report is the record of the calls made. Errors while a
 * service is dead are expected and counted, never a failure of the run.
 */
export function startLoad(options: LoadOptions): RunningLoad {
  const args = [
    path.join(options.repoRoot, "services/loadgen/dist/cli.js"),
    "--json",
    "--target",
    options.storefront,
    "--inventory",
    options.inventory,
    "--rps",
    String(options.rps),
    "--run-id",
    options.runId,
    "--seed",
    String(options.seed),
    "--timeout-ms",
    String(options.timeoutMs),
    ...(options.durationMs === undefined ? [] : ["--duration", `${Math.round(options.durationMs)}ms`]),
    ...(options.requests === undefined ? [] : ["--requests", String(options.requests)]),
    ...(options.mix === undefined ? [] : ["--mix", options.mix]),
  ];
  const inherited: NodeJS.ProcessEnv = { ...process.env };
  delete inherited.NODE_OPTIONS;
  const child = spawn(process.execPath, args, {
    env: {
      ...inherited,
      STOREFRONT_JWT_SECRET: DEMO_TOKENS.secret,
      STOREFRONT_JWT_ISSUER: DEMO_TOKENS.issuer,
      STOREFRONT_JWT_AUDIENCE: DEMO_TOKENS.audience,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const done = new Promise<LoadReport>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code, signal) => {
      // 1 only says the error rate passed a limit, and none is set here.
      if (code !== 0 && code !== 1) {
        reject(new Error(`loadgen exited with code ${code}, signal ${signal}:\n${stderr.trim()}`));
        return;
      }
      try {
        resolve(JSON.parse(stdout) as LoadReport);
      } catch {
        reject(new Error(`loadgen printed no JSON report:\n${stdout.slice(0, 500)}\n${stderr.trim()}`));
      }
    });
  });
  return {
    done,
    stop: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    },
  };
}
