import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { signalGroup, signalOnExit } from "./children.js";
import { tail } from "./lines.js";
import { isPortFree } from "./net.js";
import { watchServer } from "./server-process.js";
import { repoRoot } from "./paths.js";

/**
 * A local nats-server with JetStream, as `make dev`, the tests and the chaos
 * harness run it: loopback only, its file store in a folder of the caller's,
 * the pinned binary that `scripts/tools.sh nats-server` installs.
 */

export interface NatsOptions {
  /** JetStream's file store (created when missing, kept across restarts). */
  dataDir: string;
  /** Client port, on 127.0.0.1. */
  port: number;
  /** Monitoring port (/healthz, /varz, /jsz), on 127.0.0.1. */
  monitorPort: number;
  /** Every line the server prints. */
  log?: (line: string) => void;
}

export interface LocalNats {
  readonly port: number;
  readonly monitorPort: number;
  readonly dataDir: string;
  /** nats://127.0.0.1:<port> */
  readonly url: string;
  /**
   * Stops the server but keeps its store and ports for resume(): a broker
   * outage for its clients. `immediate` kills it (SIGKILL) as a crash would;
   * otherwise it shuts down cleanly.
   */
  pause(options?: { immediate?: boolean }): Promise<void>;
  /** Starts the server again on the same store and ports. */
  resume(): Promise<void>;
  /** Stops the server; idempotent. The store stays (the caller owns the folder). */
  stop(): Promise<void>;
}

const readyTimeoutMs = 20_000;
const shutdownTimeoutMs = 10_000;

/** Where tools.sh puts the pinned binary (MESHCART_TOOLS_DIR moves it, as it moves tools.sh's). */
export function natsServerBinary(): string {
  const dir = process.env.MESHCART_TOOLS_DIR ? path.resolve(process.env.MESHCART_TOOLS_DIR) : path.join(repoRoot, ".tools", "bin");
  return path.join(dir, "nats-server");
}

export async function startNats(options: NatsOptions): Promise<LocalNats> {
  const binary = natsServerBinary();
  if (!existsSync(binary)) {
    throw new Error(`${binary} is missing: run scripts/tools.sh nats-server (make dev and make test do)`);
  }
  const dataDir = path.resolve(options.dataDir);
  await fs.mkdir(dataDir, { recursive: true });
  const server = new NatsProcess(binary, { ...options, dataDir });
  await server.start();
  return new Broker(server, options.port, options.monitorPort, dataDir);
}

class Broker implements LocalNats {
  private state: "running" | "paused" | "stopped" = "running";
  readonly url: string;

  constructor(
    private readonly server: NatsProcess,
    readonly port: number,
    readonly monitorPort: number,
    readonly dataDir: string,
  ) {
    this.url = `nats://127.0.0.1:${port}`;
  }

  async pause(options: { immediate?: boolean } = {}): Promise<void> {
    if (this.state !== "running") throw new Error(`cannot pause NATS: it is ${this.state}`);
    await this.server.stop(options.immediate ? "SIGKILL" : "SIGTERM");
    this.state = "paused";
  }

  async resume(): Promise<void> {
    if (this.state !== "paused") throw new Error(`cannot resume NATS: it is ${this.state}`);
    await this.server.start();
    this.state = "running";
  }

  async stop(): Promise<void> {
    if (this.state === "stopped") return;
    this.state = "stopped";
    await this.server.stop("SIGTERM");
  }
}

/** One nats-server process at a time on a fixed store and ports. */
class NatsProcess {
  private child: ChildProcess | undefined;
  private closed: Promise<void> = Promise.resolve();

  constructor(
    private readonly binary: string,
    private readonly options: NatsOptions,
  ) {}

  async start(): Promise<void> {
    const { port, monitorPort, dataDir } = this.options;
    const log = this.options.log ?? (() => undefined);
    for (const taken of [port, monitorPort]) {
      if (!(await isPortFree(taken))) {
        throw new Error(`cannot start NATS: 127.0.0.1:${taken} is already in use. Stop whatever listens there (e.g. "lsof -i :${taken}").`);
      }
    }
    const child = spawn(
      this.binary,
      // JetStream's file store in dataDir; a fixed server name, so that a
      // restart finds its own store again whatever the host is called.
      [
        "--addr",
        "127.0.0.1",
        "--port",
        String(port),
        "--http_port",
        String(monitorPort),
        "--jetstream",
        "--store_dir",
        dataDir,
        "--server_name",
        "meshcart-local",
      ],
      // Its own process group: a Ctrl-C reaches only the supervisor, which
      // stops the services before the broker.
      { stdio: ["ignore", "pipe", "pipe"], detached: true },
    );
    this.child = child;
    signalOnExit(child, "SIGKILL");

    const {
      outcome: started,
      recent,
      closed,
    } = watchServer(child, {
      readyLine: "Server is ready",
      readyTimeoutMs,
      log,
      onExit: (status, wasReady) => {
        if (this.child !== child) return;
        this.child = undefined;
        if (wasReady) log(`nats-server exited unexpectedly (code ${status.code}, signal ${status.signal})`);
      },
    });
    this.closed = closed;
    const outcome = await started;
    if (outcome === "ready") return;
    if (outcome === "timeout") {
      await this.stop("SIGKILL");
      throw new Error(`NATS did not become ready within ${readyTimeoutMs} ms:\n${tail(recent)}`);
    }
    this.child = undefined;
    throw new Error(`NATS exited during start-up (code ${outcome.code}, signal ${outcome.signal}):\n${tail(recent)}`);
  }

  /** SIGTERM: a clean shutdown (the store is flushed); SIGKILL: as a crash. */
  async stop(signal: "SIGTERM" | "SIGKILL"): Promise<void> {
    const child = this.child;
    if (child === undefined) return this.closed;
    this.child = undefined;
    child.kill(signal);
    const escalation = setTimeout(() => signalGroup(child, "SIGKILL"), shutdownTimeoutMs);
    await this.closed;
    clearTimeout(escalation);
  }
}
