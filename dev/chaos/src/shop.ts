import { createWriteStream, type WriteStream } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { LocalNats } from "@meshcart/stack/nats.js";
import { freePort } from "@meshcart/stack/net.js";
import { startPostgres, type LocalPostgres } from "@meshcart/stack/postgres.js";
import type { ExitStatus, ServiceProcess } from "@meshcart/stack/processes.js";
import { localServices } from "@meshcart/stack/services.js";
import { Stack } from "@meshcart/stack/stack.js";
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

/**
 * meshcart as make dev runs it (the stack fixture: the same rows,
 * environment and start order), on free loopback ports, with a Postgres and
 * a NATS of its own in throwaway directories: the harness stops and starts
 * them, which it must never do to anyone else's, and kills services that
 * nobody else is using.
 */
export class ChaosShop {
  private constructor(
    readonly postgres: LocalPostgres,
    private readonly stack: Stack,
    private readonly postgresDir: string,
    private readonly logs: ReadonlyMap<Victim, WriteStream>,
    private readonly infraLogs: WriteStream[],
  ) {}

  static async start(options: ShopOptions): Promise<ChaosShop> {
    await fs.mkdir(options.logDir, { recursive: true });
    const postgresDir = await fs.mkdtemp(path.join(os.tmpdir(), "meshcart-chaos-pg-"));
    // Run as root, Postgres is another OS user, which must enter the directory.
    await fs.chmod(postgresDir, 0o755);
    const logFile = (name: string) => createWriteStream(path.join(options.logDir, `${name}.log`), { flags: "a" });
    const postgresLog = logFile("postgres");
    const natsLog = logFile("nats");
    const logs = new Map(localServices.map((row) => [row.name as Victim, logFile(row.name)]));
    const endLogs = () => Promise.all([postgresLog, natsLog, ...logs.values()].map(endStream));
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
      await endLogs();
      await fs.rm(postgresDir, { recursive: true, force: true });
      throw error;
    }

    let stack: Stack;
    try {
      stack = await Stack.create({
        repoRoot: options.repoRoot,
        database: async (_service, localName) => {
          await postgres.ensureDatabase(localName);
          return { url: postgres.url(localName) };
        },
        broker: { log: (line) => natsLog.write(`${line}\n`) },
        logLevel: options.logLevel,
        // make dev's environment, collector settings included.
        telemetry: true,
        faults: false,
        ...(options.env ? { env: options.env } : {}),
        readyTimeoutMs: options.readyTimeoutMs ?? 60_000,
        stopTimeoutMs: 15_000,
        keepLines: 500,
        onLine: (name, line) => logs.get(name)?.write(`${line}\n`),
      });
    } catch (error) {
      await postgres.stop().catch(() => undefined);
      await endLogs();
      await fs.rm(postgresDir, { recursive: true, force: true });
      throw error;
    }

    const shop = new ChaosShop(postgres, stack, postgresDir, logs, [postgresLog, natsLog]);
    try {
      // make dev's order: a service comes after the services it calls.
      for (const name of stack.services) await shop.start(name);
    } catch (error) {
      await shop.close();
      throw error;
    }
    return shop;
  }

  /** The shop's broker (an outage is pause() and resume()). */
  get nats(): LocalNats {
    return this.stack.nats;
  }

  /** host:port of a service's gRPC API. */
  address(name: Victim): string {
    return this.stack.address(name);
  }

  databaseUrl(name: ShopDatabase): string {
    return this.stack.databaseUrl(name);
  }

  /** The running process of a service; throws while it is down. */
  process(name: Victim): ServiceProcess {
    return this.stack.process(name);
  }

  isRunning(name: Victim): boolean {
    return this.stack.isRunning(name);
  }

  /** Starts a service that is down; resolves with the milliseconds until it was ready. */
  async start(name: Victim): Promise<number> {
    if (this.isRunning(name)) throw new Error(`${name} is running already`);
    const begun = performance.now();
    this.mark(name, `starting ${name}`);
    await this.stack.start(name);
    return performance.now() - begun;
  }

  /**
   * Starts a service that is down with a crash hook armed (`env`). Under
   * load it may reach its crash point before it is even ready (the outbox
   * relay publishes what the last kill left at once): exitOf then sees it.
   */
  async arm(name: Victim, env: Record<string, string>): Promise<void> {
    if (this.isRunning(name)) throw new Error(`${name} is running already`);
    this.mark(
      name,
      `starting ${name} with ${Object.entries(env)
        .map(([k, v]) => `${k}=${v}`)
        .join(" ")}`,
    );
    await this.stack.start(name, env, { mayExitBeforeReady: true });
  }

  /** SIGKILL: no shutdown hook runs, nothing is handed over. */
  async kill9(name: Victim): Promise<ExitStatus> {
    this.mark(name, `kill -9 ${name} (pid ${this.process(name).pid})`);
    return this.stack.kill9(name);
  }

  /**
   * Waits up to `timeoutMs` for a service to exit on its own (a crash hook
   * killing it); resolves with its exit, or null when it still runs.
   */
  async exitOf(name: Victim, timeoutMs: number): Promise<ExitStatus | null> {
    const process = this.process(name);
    let timer: NodeJS.Timeout | undefined;
    const exit = await Promise.race([process.exited, new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), timeoutMs)))]);
    clearTimeout(timer);
    if (exit) {
      this.mark(name, `${name} (pid ${process.pid}) exited by itself`);
      await this.stack.crashed(name);
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
    for (const name of this.stack.services.reverse()) {
      if (!this.stack.isRunning(name)) continue;
      await this.stack.stop(name).catch(() => undefined);
      this.logs.get(name)?.write(`--- chaos: stopped ${name}\n`);
    }
    await this.stack.close();
    await this.postgres.stop().catch(() => undefined);
    await Promise.all([...this.logs.values(), ...this.infraLogs].map(endStream));
    await fs.rm(this.postgresDir, { recursive: true, force: true });
  }

  private mark(name: Victim, what: string): void {
    this.logs.get(name)?.write(`--- chaos: ${what} at ${new Date().toISOString()}\n`);
  }
}

function endStream(stream: WriteStream): Promise<void> {
  return new Promise((resolve) => stream.end(() => resolve()));
}
