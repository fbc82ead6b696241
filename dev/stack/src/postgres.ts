import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import { signalGroup, signalOnExit } from "./children.js";
import { dropDatabase, ensureDatabase } from "./databases.js";
import { tail } from "./lines.js";
import { isPortFree } from "./net.js";
import { watchServer } from "./server-process.js";
import { postgresBinaries, postgresOsUser, type OsUser } from "./postgres-binaries.js";
import { assertSameMajorVersion, initialiseDataDir, prepareDataDir } from "./postgres-datadir.js";
import { clearStalePidFile } from "./postgres-pidfile.js";

export interface PostgresOptions {
  /** Created when missing; reused when it already holds a cluster. */
  dataDir: string;
  /** Listens on 127.0.0.1 only. */
  port: number;
  /** false: the data directory is deleted by stop(), and durability is traded for speed. */
  persistent: boolean;
  /** Every line initdb and the server print. */
  log?: (line: string) => void;
  /**
   * Further server settings (`-c name=value`), e.g. make bench's
   * `shared_preload_libraries=pg_stat_statements` to count statements.
   */
  settings?: Readonly<Record<string, string>>;
}

export interface PauseOptions {
  /**
   * Simulate a crash: an immediate shutdown (SIGQUIT) without a checkpoint,
   * so resume() goes through crash recovery. Default: a fast shutdown.
   */
  immediate?: boolean;
}

export interface LocalPostgres {
  readonly port: number;
  readonly dataDir: string;
  /** postgres://user:password@127.0.0.1:port/database */
  url(database: string): string;
  /** Creates the database unless it exists. */
  ensureDatabase(name: string): Promise<void>;
  /** Drops the database if it exists, ending its sessions. */
  dropDatabase(name: string): Promise<void>;
  /** Stops the server but keeps the data directory and port for resume(); an outage for clients. */
  pause(options?: PauseOptions): Promise<void>;
  /** Starts the server again on the same data directory and port. */
  resume(): Promise<void>;
  /** Stops the server; idempotent. Deletes the data directory unless persistent. */
  stop(): Promise<void>;
}

export const postgresCredentials = { user: "postgres", password: "postgres" } as const;

const readyTimeoutMs = 30_000;
const shutdownTimeoutMs = 15_000;

export async function startPostgres(options: PostgresOptions): Promise<LocalPostgres> {
  const dataDir = path.resolve(options.dataDir);
  const log = options.log ?? (() => undefined);
  const [binaries, runAs] = await Promise.all([postgresBinaries(), postgresOsUser()]);
  const { initialised } = await prepareDataDir(dataDir, runAs);
  const initialising = !initialised;
  if (initialising) {
    await initialiseDataDir({
      initdb: binaries.initdb,
      dataDir,
      runAs,
      ...postgresCredentials,
      durable: options.persistent,
      log,
    });
  } else {
    await assertSameMajorVersion(binaries.postgres, dataDir);
  }
  const server = new ServerProcess({
    binary: binaries.postgres,
    dataDir,
    port: options.port,
    runAs,
    durable: options.persistent,
    settings: options.settings ?? {},
    log,
  });
  try {
    await server.start();
  } catch (error) {
    // Nobody gets a handle to clean up a throwaway cluster that never started.
    if (initialising && !options.persistent) await fs.rm(dataDir, { recursive: true, force: true });
    throw error;
  }
  return new Cluster(server, dataDir, options.port, options.persistent);
}

class Cluster implements LocalPostgres {
  private state: "running" | "paused" | "stopped" = "running";

  constructor(
    private readonly server: ServerProcess,
    readonly dataDir: string,
    readonly port: number,
    private readonly persistent: boolean,
  ) {}

  url(database: string): string {
    const { user, password } = postgresCredentials;
    return `postgres://${user}:${password}@127.0.0.1:${this.port}/${encodeURIComponent(database)}`;
  }

  ensureDatabase(name: string): Promise<void> {
    return ensureDatabase(this.url("postgres"), name);
  }

  dropDatabase(name: string): Promise<void> {
    return dropDatabase(this.url("postgres"), name);
  }

  async pause(options: PauseOptions = {}): Promise<void> {
    if (this.state !== "running") throw new Error(`cannot pause Postgres: it is ${this.state}`);
    await this.server.stop(options.immediate ? "SIGQUIT" : "SIGINT");
    this.state = "paused";
  }

  async resume(): Promise<void> {
    if (this.state !== "paused") throw new Error(`cannot resume Postgres: it is ${this.state}`);
    await this.server.start();
    this.state = "running";
  }

  async stop(): Promise<void> {
    if (this.state === "stopped") return;
    this.state = "stopped";
    await this.server.stop("SIGINT");
    if (!this.persistent) await fs.rm(this.dataDir, { recursive: true, force: true });
  }
}

interface ServerOptions {
  binary: string;
  dataDir: string;
  port: number;
  runAs: OsUser | undefined;
  durable: boolean;
  settings: Readonly<Record<string, string>>;
  log: (line: string) => void;
}

/** One postgres server process at a time on a fixed data directory and port. */
class ServerProcess {
  private child: ChildProcess | undefined;
  private closed: Promise<void> = Promise.resolve();

  constructor(private readonly options: ServerOptions) {}

  async start(): Promise<void> {
    const { binary, dataDir, port, runAs, durable, settings, log } = this.options;
    await clearStalePidFile(dataDir, log);
    if (!(await isPortFree(port))) throw portInUse(port);

    const child = spawn(binary, ["-D", dataDir, "-p", String(port), ...serverSettings(durable, settings)], {
      cwd: dataDir,
      env: { ...process.env, LC_ALL: "C" },
      stdio: ["ignore", "pipe", "pipe"],
      // Its own process group, so a Ctrl-C in the terminal reaches only the
      // supervisor, which stops the services before Postgres.
      detached: true,
      ...(runAs ?? {}),
    });
    this.child = child;
    // An immediate shutdown: the only kind that needs no waiting.
    signalOnExit(child, "SIGQUIT");

    const {
      outcome: started,
      recent,
      closed,
    } = watchServer(child, {
      readyLine: "database system is ready to accept connections",
      readyTimeoutMs,
      log,
      onExit: (status, wasReady) => {
        if (this.child !== child) return;
        this.child = undefined;
        if (wasReady) log(`postgres exited unexpectedly (code ${status.code}, signal ${status.signal})`);
      },
    });
    this.closed = closed;
    const outcome = await started;
    if (outcome === "ready") return;

    if (outcome === "timeout") {
      await this.stop("SIGQUIT");
      throw new Error(`Postgres did not become ready within ${readyTimeoutMs} ms:\n${tail(recent)}`);
    }
    this.child = undefined;
    if (recent.some((line) => line.includes("Address already in use"))) throw portInUse(port);
    throw new Error(`Postgres exited during start-up (code ${outcome.code}, signal ${outcome.signal}):\n${tail(recent)}`);
  }

  /** SIGINT: fast shutdown; SIGQUIT: immediate shutdown, as after a crash. */
  async stop(signal: "SIGINT" | "SIGQUIT"): Promise<void> {
    const child = this.child;
    if (child === undefined) return this.closed;
    this.child = undefined;
    child.kill(signal);
    const escalation = setTimeout(() => signalGroup(child, "SIGKILL"), shutdownTimeoutMs);
    await this.closed;
    clearTimeout(escalation);
  }
}

function serverSettings(durable: boolean, extra: Readonly<Record<string, string>>): string[] {
  const settings: Record<string, string> = {
    listen_addresses: "127.0.0.1",
    // No Unix socket: nothing here uses one, and a lock file in a shared
    // socket directory would be one more thing a crashed run leaves behind.
    unix_socket_directories: "",
    ...(durable ? {} : { fsync: "off", synchronous_commit: "off", full_page_writes: "off" }),
    ...extra,
  };
  return Object.entries(settings).flatMap(([name, value]) => ["-c", `${name}=${value}`]);
}

function portInUse(port: number): Error {
  return new Error(
    `cannot start Postgres: 127.0.0.1:${port} is already in use. ` + `Stop whatever listens there (e.g. "lsof -i :${port}") or choose another port.`,
  );
}
