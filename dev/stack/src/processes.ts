import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs/promises";
import http from "node:http";
import { signalGroup, signalOnExit } from "./children.js";
import { forEachLine, tail } from "./lines.js";
import { isPortFree } from "./net.js";
import { sleep } from "@meshcart/lib";

export interface ServiceSpec {
  /** Used in messages and passed to onLine. */
  name: string;
  /** Absolute path of the compiled entry point, run with this Node. */
  entry: string;
  /** Added to this process's environment (minus NODE_OPTIONS); wins on conflicts. */
  env: Record<string, string>;
  /** Ready means GET http://127.0.0.1:<adminPort>/readyz answers 200. */
  adminPort: number;
  /** Default 20 000. */
  readyTimeoutMs?: number;
  /**
   * A process armed to kill itself (a crash point) may get there before it
   * is ready; then startService returns it, exited, instead of failing.
   */
  mayExitBeforeReady?: boolean;
  /** Every stdout and stderr line, as it arrives. */
  onLine?: (name: string, line: string) => void;
  /** How many lines logs() keeps; default all of them. */
  keepLines?: number;
  /** Aborting while waiting for readiness kills the process and rejects. */
  signal?: AbortSignal;
  /**
   * A cgroup's cgroup.procs file the process joins before Node starts (a
   * shell writes its pid there, then execs Node), so that all its memory is
   * charged there from the first page (the bench's memory step).
   */
  cgroupProcs?: string;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ServiceProcess {
  readonly name: string;
  readonly pid: number;
  /** Captured stdout and stderr lines, oldest first. */
  logs(): string[];
  /** Settles once the process has exited and its output is fully read. */
  readonly exited: Promise<ExitStatus>;
  /** Sends `signal` (default SIGTERM), then SIGKILL after `timeoutMs` (default 10 000). */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<ExitStatus>;
  kill9(): Promise<void>;
}

const pollIntervalMs = 50;

export async function startService(spec: ServiceSpec): Promise<ServiceProcess> {
  const { name, entry, adminPort } = spec;
  const isFile = await fs.stat(entry).then(
    (stat) => stat.isFile(),
    () => false,
  );
  if (!isFile) throw new Error(`${name}: ${entry} does not exist; build it first (tsc -b)`);
  // Otherwise a process from an earlier run still answering /readyz there
  // would make a service that never started look ready.
  if (!(await isPortFree(adminPort))) {
    throw new Error(`${name}: admin port ${adminPort} is already in use; is an earlier run still going? (ss -ltnp shows who holds it)`);
  }

  const [command, args] = spec.cgroupProcs
    ? ["/bin/sh", ["-c", 'echo $$ > "$0" && exec "$1" --enable-source-maps "$2"', spec.cgroupProcs, process.execPath, entry]]
    : [process.execPath, ["--enable-source-maps", entry]];
  const child = spawn(command, args, {
    env: childEnv(spec.env),
    stdio: ["ignore", "pipe", "pipe"],
    // Its own process group, so a Ctrl-C in the terminal reaches only the
    // supervisor, which decides the order in which things stop.
    detached: true,
  });
  await new Promise<void>((resolve, reject) => {
    child.once("spawn", resolve);
    child.once("error", reject);
  });
  const service = new Service(spec, child);
  try {
    await service.waitUntilReady(spec.readyTimeoutMs ?? 20_000, spec.signal, spec.mayExitBeforeReady ?? false);
  } catch (error) {
    await service.kill9();
    throw error;
  }
  return service;
}

/** Vitest and debuggers put loaders and --inspect into NODE_OPTIONS; services must not inherit them. */
function childEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const inherited: NodeJS.ProcessEnv = { ...process.env };
  delete inherited.NODE_OPTIONS;
  return { ...inherited, ...env };
}

class Service implements ServiceProcess {
  readonly name: string;
  readonly pid: number;
  readonly exited: Promise<ExitStatus>;
  private readonly adminPort: number;
  private readonly lines: string[] = [];
  private status: ExitStatus | undefined;

  constructor(
    spec: ServiceSpec,
    private readonly child: ChildProcess,
  ) {
    if (child.pid === undefined) throw new Error(`${spec.name}: spawned without a pid`);
    this.name = spec.name;
    this.pid = child.pid;
    this.adminPort = spec.adminPort;
    const keep = spec.keepLines ?? Infinity;
    const onLine = (line: string) => {
      this.lines.push(line);
      if (this.lines.length > keep) this.lines.shift();
      spec.onLine?.(spec.name, line);
    };
    forEachLine(child.stdout, onLine);
    forEachLine(child.stderr, onLine);
    this.exited = new Promise((resolve) => {
      child.once("close", (code, signal) => {
        this.status = { code, signal };
        resolve(this.status);
      });
    });
    signalOnExit(child, "SIGKILL");
  }

  logs(): string[] {
    return [...this.lines];
  }

  async waitUntilReady(timeoutMs: number, abort: AbortSignal | undefined, mayExit: boolean): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.status) {
        if (mayExit) return;
        throw new Error(
          `${this.name} exited before it was ready (code ${this.status.code}, signal ${this.status.signal}). ` + `Last lines:\n${tail(this.lines)}`,
        );
      }
      if (abort?.aborted) throw new Error(`${this.name}: start-up aborted`, { cause: abort.reason });
      if (await answersReady(this.adminPort)) return;
      if (Date.now() >= deadline) {
        throw new Error(
          `${this.name} was not ready within ${timeoutMs} ms (GET http://127.0.0.1:${this.adminPort}/readyz). ` + `Last lines:\n${tail(this.lines)}`,
        );
      }
      await Promise.race([sleep(pollIntervalMs), this.exited]);
    }
  }

  async stop(signal: NodeJS.Signals = "SIGTERM", timeoutMs = 10_000): Promise<ExitStatus> {
    if (this.status) return this.status;
    this.child.kill(signal);
    const escalation = setTimeout(() => signalGroup(this.child, "SIGKILL"), timeoutMs);
    const status = await this.exited;
    clearTimeout(escalation);
    return status;
  }

  async kill9(): Promise<void> {
    await this.stop("SIGKILL");
  }
}

function answersReady(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    // No keep-alive agent: pooled sockets would outlive the check and hold
    // the service's shutdown up.
    const request = http.get({ host: "127.0.0.1", port, path: "/readyz", agent: false, timeout: 1_000 }, (response) => {
      response.resume();
      resolve(response.statusCode === 200);
    });
    request.once("timeout", () => request.destroy());
    request.once("error", () => resolve(false));
  });
}
