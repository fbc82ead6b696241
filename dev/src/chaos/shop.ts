import { createWriteStream, type WriteStream } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { startNats, type LocalNats } from "../nats.js";
import { freePort } from "../net.js";
import { startPostgres, type LocalPostgres } from "../postgres.js";
import { startService, type ExitStatus, type ServiceProcess } from "../processes.js";
import { localServices, serviceEnv, type LocalService } from "../services.js";
import type { Victim } from "./plan.js";

export type ShopDatabase = "order" | "payment" | "inventory" | "fulfillment";

export interface ShopOptions {
  repoRoot: string;
  /** Service and Postgres logs go to <logDir>/<name>.log, kept across restarts. */
  logDir: string;
  /** LOG_LEVEL of every service. */
  logLevel: string;
  /** Added to a service's environment, on top of make dev's. */
  env?: Partial<Record<Victim, Record<string, string>>>;
  /** Ready bound of a (re)start; the machine may be busy. */
  readyTimeoutMs?: number;
}

interface Member {
  row: LocalService;
  env: Record<string, string>;
  log: WriteStream;
  process: ServiceProcess | undefined;
}

/**
 * meshcart as make dev runs it (the same rows, environment and start order),
 * but on free loopback ports and with a Postgres and a NATS of its own in a
 * throwaway directory: the harness stops and starts them, which it must
 * never do to anyone else's, and kills services that nobody else is using.
 */
export class ChaosShop {
  private constructor(
    readonly postgres: LocalPostgres,
    readonly nats: LocalNats,
    private readonly postgresDir: string,
    private readonly infraLogs: WriteStream[],
    private readonly members: Map<Victim, Member>,
    private readonly options: ShopOptions,
  ) {}

  static async start(options: ShopOptions): Promise<ChaosShop> {
    await fs.mkdir(options.logDir, { recursive: true });
    const postgresDir = await fs.mkdtemp(path.join(os.tmpdir(), "meshcart-chaos-pg-"));
    // Run as root, Postgres is another OS user, which must enter the directory.
    await fs.chmod(postgresDir, 0o755);
    const postgresLog = createWriteStream(path.join(options.logDir, "postgres.log"), { flags: "a" });
    let postgres: LocalPostgres;
    try {
      postgres = await startPostgres({
        dataDir: path.join(postgresDir, "data"),
        port: await freePort(),
        // Durable (fsync, synchronous commits): an immediate shutdown must
        // lose no acknowledged commit, or the checker would report the
        // harness's shortcut as the services' fault. Deleted by close().
        persistent: true,
        log: (line) => postgresLog.write(`${line}\n`),
      });
    } catch (error) {
      postgresLog.end();
      await fs.rm(postgresDir, { recursive: true, force: true });
      throw error;
    }

    const natsLog = createWriteStream(path.join(options.logDir, "nats.log"), { flags: "a" });
    let nats: LocalNats;
    try {
      nats = await startNats({ dataDir: path.join(postgresDir, "nats"), port: await freePort(), monitorPort: await freePort(), log: (line) => natsLog.write(`${line}\n`) });
    } catch (error) {
      natsLog.end();
      postgresLog.end();
      await postgres.stop().catch(() => undefined);
      await fs.rm(postgresDir, { recursive: true, force: true });
      throw error;
    }

    const ports = new Map<string, { grpc: number; admin: number }>();
    for (const row of localServices) ports.set(row.name, { grpc: await freePort(), admin: await freePort() });
    const members = new Map<Victim, Member>();
    for (const local of localServices) {
      const own = ports.get(local.name)!;
      // No fault-control endpoint: its port is derived from make dev's admin port.
      const row: LocalService = { ...local, grpcPort: own.grpc, adminPort: own.admin, faults: false, env: rewire(local.env, ports) };
      if (row.database) await postgres.ensureDatabase(row.database);
      const env = {
        ...serviceEnv(row, { ...(row.database ? { databaseUrl: postgres.url(row.database) } : {}), natsUrl: nats.url, logLevel: options.logLevel }),
        SHUTDOWN_TIMEOUT_MS: "3000",
        ...options.env?.[row.name as Victim],
      };
      const log = createWriteStream(path.join(options.logDir, `${row.name}.log`), { flags: "a" });
      members.set(row.name as Victim, { row, env, log, process: undefined });
    }

    const shop = new ChaosShop(postgres, nats, postgresDir, [postgresLog, natsLog], members, options);
    try {
      // make dev's order: a service comes after the services it calls.
      for (const name of members.keys()) await shop.start(name);
    } catch (error) {
      await shop.close();
      throw error;
    }
    return shop;
  }

  /** host:port of a service's gRPC API. */
  address(name: Victim): string {
    return `127.0.0.1:${this.member(name).row.grpcPort}`;
  }

  databaseUrl(name: ShopDatabase): string {
    const database = this.member(name).row.database;
    if (!database) throw new Error(`${name} has no database`);
    return this.postgres.url(database);
  }

  /** The running process of a service; throws while it is down. */
  process(name: Victim): ServiceProcess {
    const process = this.member(name).process;
    if (!process) throw new Error(`${name} is not running`);
    return process;
  }

  isRunning(name: Victim): boolean {
    return this.member(name).process !== undefined;
  }

  /**
   * Starts a service that is down; resolves with the milliseconds until it
   * was ready. `env` is added for this start only (a crash hook).
   */
  async start(name: Victim, env: Record<string, string> = {}): Promise<number> {
    const member = this.member(name);
    if (member.process) throw new Error(`${name} is running already`);
    const begun = performance.now();
    member.log.write(`--- chaos: starting ${name}${Object.keys(env).length ? ` with ${Object.entries(env).map(([k, v]) => `${k}=${v}`).join(" ")}` : ""} at ${new Date().toISOString()}\n`);
    member.process = await startService({
      name,
      entry: path.resolve(this.options.repoRoot, member.row.entry),
      env: { ...member.env, ...env },
      adminPort: member.row.adminPort,
      readyTimeoutMs: this.options.readyTimeoutMs ?? 60_000,
      keepLines: 500,
      onLine: (_name, line) => member.log.write(`${line}\n`),
    });
    return performance.now() - begun;
  }

  /** SIGKILL: no shutdown hook runs, nothing is handed over. */
  async kill9(name: Victim): Promise<ExitStatus> {
    const member = this.member(name);
    const process = this.process(name);
    member.log.write(`--- chaos: kill -9 ${name} (pid ${process.pid}) at ${new Date().toISOString()}\n`);
    await process.kill9();
    member.process = undefined;
    return process.exited;
  }

  /**
   * Waits up to `timeoutMs` for a service to exit on its own (a crash hook
   * killing it); resolves with its exit, or null when it still runs.
   */
  async exitOf(name: Victim, timeoutMs: number): Promise<ExitStatus | null> {
    const member = this.member(name);
    const process = this.process(name);
    let timer: NodeJS.Timeout | undefined;
    const exit = await Promise.race([process.exited, new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), timeoutMs)))]);
    clearTimeout(timer);
    if (exit) {
      member.log.write(`--- chaos: ${name} (pid ${process.pid}) exited by itself at ${new Date().toISOString()}\n`);
      member.process = undefined;
    }
    return exit;
  }

  private closing: Promise<void> | undefined;

  /** Stops every service (last started first), then NATS and Postgres, and deletes their data; idempotent. */
  close(): Promise<void> {
    this.closing ??= this.teardown();
    return this.closing;
  }

  private async teardown(): Promise<void> {
    for (const [name, member] of [...this.members].reverse()) {
      if (member.process) {
        await member.process.stop("SIGTERM", 15_000).catch(() => undefined);
        member.log.write(`--- chaos: stopped ${name}\n`);
        member.process = undefined;
      }
    }
    await this.nats.stop().catch(() => undefined);
    await this.postgres.stop().catch(() => undefined);
    await Promise.all([...[...this.members.values()].map((m) => endStream(m.log)), ...this.infraLogs.map(endStream)]);
    await fs.rm(this.postgresDir, { recursive: true, force: true });
  }

  private member(name: Victim): Member {
    const member = this.members.get(name);
    if (!member) throw new Error(`no service ${name}`);
    return member;
  }
}

/** make dev's rows name each other by their fixed ports (INVENTORY_ADDRESS…); here they are free ones. */
function rewire(env: Readonly<Record<string, string>>, ports: Map<string, { grpc: number }>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(env).map(([key, value]) => {
      const target = /^([A-Z]+)_ADDRESS$/.exec(key)?.[1]?.toLowerCase();
      const port = target === undefined ? undefined : ports.get(target)?.grpc;
      return [key, port === undefined ? value : `127.0.0.1:${port}`];
    }),
  );
}

function endStream(stream: WriteStream): Promise<void> {
  return new Promise((resolve) => stream.end(() => resolve()));
}
