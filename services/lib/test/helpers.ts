import { Writable } from "node:stream";
import { connect, createServer, type Server, type Socket } from "node:net";
import { createLogger, type Logger } from "../src/logger.js";
import { sleep } from "../src/sleep.js";

export type LogLine = Record<string, unknown> & { msg?: string; level?: string };

/** A logger whose JSON lines are kept in memory for assertions. */
export function capturedLogger(service = "test", level: "info" | "debug" = "debug"): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  let partial = "";
  const destination = new Writable({
    write(chunk: Buffer | string, _encoding, callback) {
      partial += chunk.toString();
      let newline: number;
      while ((newline = partial.indexOf("\n")) >= 0) {
        const line = partial.slice(0, newline);
        partial = partial.slice(newline + 1);
        if (line.trim()) lines.push(JSON.parse(line) as LogLine);
      }
      callback();
    },
  });
  return { logger: createLogger({ service, version: "test", level, destination }), lines };
}

export interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Settles to what `promise` settled to, or "pending" if it has not settled after the turns already queued. */
export async function state(promise: Promise<unknown>): Promise<"fulfilled" | "rejected" | "pending"> {
  const marker = Symbol("pending");
  const winner = await Promise.race([promise, new Promise((resolve) => setImmediate(() => resolve(marker)))]).then(
    (value) => (value === marker ? ("pending" as const) : ("fulfilled" as const)),
    () => "rejected" as const,
  );
  return winner;
}

/** A TCP port that was free a moment ago (for child processes that take a port number). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

/** Polls `check` until it returns a value other than undefined, failing after `timeoutMs`. */
export async function eventually<T>(check: () => T | undefined | Promise<T | undefined>, timeoutMs = 5_000, what = "condition"): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/**
 * A TCP relay in front of a server (the test Postgres): stopping it makes the
 * server unreachable to whoever connects through it, as a database restart
 * or a network fault would, without touching the server itself.
 */
export class TcpRelay {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly target: { host: string; port: number },
    public port: number,
  ) {}

  /** Starts relaying on `port` (a free one when 0). */
  static async start(target: { host: string; port: number }, port = 0): Promise<TcpRelay> {
    const relay = new TcpRelay(target, port);
    await relay.resume();
    return relay;
  }

  async resume(): Promise<void> {
    const server = createServer((client) => {
      const upstream = connect(this.target.port, this.target.host);
      this.sockets.add(client).add(upstream);
      const end = () => {
        client.destroy();
        upstream.destroy();
        this.sockets.delete(client);
        this.sockets.delete(upstream);
      };
      for (const socket of [client, upstream]) {
        socket.on("error", end);
        socket.on("close", end);
      }
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.port, "127.0.0.1", () => resolve());
    });
    this.server = server;
    const address = server.address();
    if (address !== null && typeof address !== "string") this.port = address.port;
  }

  /** Stops listening and cuts every relayed connection. */
  async pause(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    await closed;
  }
}
