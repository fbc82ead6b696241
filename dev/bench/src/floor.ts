import { execFile, spawn } from "node:child_process";
import { access, constants, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { postgresBinaries } from "@meshcart/stack/postgres-binaries.js";
import { postgresCredentials, type LocalPostgres } from "@meshcart/stack/postgres.js";
import { postgresCpuSeconds } from "./cpu.js";

const run = promisify(execFile);

/**
 * The durable floor of a checkout: what its durable work costs at the very
 * least on this machine, measured in the same run as the checkout. A
 * crash-safe checkout needs five durable commits (the order's intent with
 * its saga lease, the hold, the charge, the hold's commit, the order's
 * outcome) and five RPCs (the edge and four behind it), so its floor is
 * five minimal durable transactions plus five raw gRPC hops; the bench
 * holds a checkout's CPU to a multiple of it.
 */
export const FLOOR_SHAPE = { durableCommits: 5, rpcs: 5 } as const;

export interface DurableTransaction {
  /** The pgbench that ran it and its version. */
  pgbench: string;
  clients: number;
  seconds: number;
  transactions: number;
  tps: number;
  /** Postgres CPU (every backend, the WAL writer and friends) per transaction. */
  postgresCpuMsPerTransaction: number;
  /** The machine's 1-minute load average when it was measured (other work shows here). */
  loadAverage: number;
}

/** The one statement of the minimal durable transaction: one row into a table without indexes, committed with fsync on. */
const SCRIPT = "\\set v random(1, 1000000000)\nINSERT INTO floor_probe (v) VALUES (:v);\n";
const DATABASE = "bench_floor";
const CLIENTS = 32;

/**
 * pgbench: from the embedded Postgres's binaries when the package ships it,
 * else from PATH or Debian's postgresql-client (/usr/lib/postgresql/<n>/bin);
 * undefined when there is none.
 */
export async function findPgbench(): Promise<string | undefined> {
  const candidates: string[] = [];
  try {
    candidates.push(path.join(path.dirname((await postgresBinaries()).postgres), "pgbench"));
  } catch {
    // No embedded binaries on this platform: the others may still do.
  }
  for (const dir of (process.env.PATH ?? "").split(path.delimiter).filter(Boolean)) candidates.push(path.join(dir, "pgbench"));
  const debian = "/usr/lib/postgresql";
  const versions = await readdir(debian).catch(() => [] as string[]);
  for (const version of versions.filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a))) {
    candidates.push(path.join(debian, version, "bin", "pgbench"));
  }
  for (const candidate of candidates) {
    if (
      await access(candidate, constants.X_OK).then(
        () => true,
        () => false,
      )
    )
      return candidate;
  }
  return undefined;
}

/**
 * Runs the minimal durable transaction with pgbench against `postgres` (its
 * own database) at 32 clients in prepared mode, and returns what Postgres
 * spent on each.
 */
export async function measureDurableTransaction(postgres: LocalPostgres, pgbench: string, seconds: number): Promise<DurableTransaction> {
  await postgres.dropDatabase(DATABASE);
  await postgres.ensureDatabase(DATABASE);
  const client = new pg.Client({ connectionString: postgres.url(DATABASE) });
  client.on("error", () => undefined);
  await client.connect();
  try {
    await client.query("CREATE TABLE floor_probe (v bigint NOT NULL)");
  } finally {
    await client.end().catch(() => undefined);
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), "meshcart-floor-"));
  const script = path.join(dir, "insert.sql");
  await writeFile(script, SCRIPT);
  try {
    const version = (await run(pgbench, ["--version"])).stdout.trim();
    const cpuBefore = (await postgresCpuSeconds(postgres.dataDir))?.total;
    const output = await pgbenchRun(pgbench, [
      "-n",
      "-M",
      "prepared",
      "-c",
      String(CLIENTS),
      "-j",
      String(Math.min(CLIENTS, Math.max(1, os.availableParallelism()))),
      "-T",
      String(Math.max(1, Math.round(seconds))),
      "-f",
      script,
      "-h",
      "127.0.0.1",
      "-p",
      String(postgres.port),
      "-U",
      postgresCredentials.user,
      DATABASE,
    ]);
    const cpuAfter = (await postgresCpuSeconds(postgres.dataDir))?.total;
    const transactions = Number(/number of transactions actually processed: (\d+)/.exec(output)?.[1]);
    const tps = Number(/tps = ([\d.]+)/.exec(output)?.[1]);
    if (!Number.isFinite(transactions) || transactions <= 0) throw new Error(`pgbench processed no transaction:\n${output}`);
    const cpu = cpuBefore === undefined || cpuAfter === undefined ? Number.NaN : ((cpuAfter - cpuBefore) * 1000) / transactions;
    return {
      pgbench: `${pgbench} (${version})`,
      clients: CLIENTS,
      seconds: Math.round(seconds),
      transactions,
      tps,
      postgresCpuMsPerTransaction: cpu,
      loadAverage: os.loadavg()[0]!,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
    await postgres.dropDatabase(DATABASE).catch(() => undefined);
  }
}

function pgbenchRun(pgbench: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(pgbench, args, { env: { ...process.env, PGPASSWORD: postgresCredentials.password }, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.once("error", reject);
    child.once("close", (code) => (code === 0 ? resolve(output) : reject(new Error(`pgbench exited with ${code}:\n${output}`))));
  });
}
