import type { ChildProcess } from "node:child_process";
import { forEachLine } from "./lines.js";

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A local server process (Postgres, NATS) watched from its start. */
export interface WatchedServer {
  /** "ready" once it printed its ready line; else the time ran out, or it exited first. */
  outcome: Promise<"ready" | "timeout" | ExitStatus>;
  /** Its last 50 lines of output, for an error message. */
  recent: string[];
  /** Resolves once the process is gone, after `onExit` ran. */
  closed: Promise<void>;
}

/**
 * Follows a server process's output (each line to `log`) until it prints
 * `readyLine`, exits or `readyTimeoutMs` passes. `closed` waits for "close"
 * rather than "exit": a server's own children (Postgres's) hold the output
 * pipes, so it resolves only when all of them are gone.
 */
export function watchServer(
  child: ChildProcess,
  options: {
    readyLine: string;
    readyTimeoutMs: number;
    log: (line: string) => void;
    /** Called once it has exited; `wasReady` tells a crash after start-up from a failed start. */
    onExit: (status: ExitStatus, wasReady: boolean) => void;
  },
): WatchedServer {
  const recent: string[] = [];
  let isReady = false;
  let becomeReady: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => (becomeReady = resolve));
  const onLine = (line: string) => {
    recent.push(line);
    if (recent.length > 50) recent.shift();
    options.log(line);
    if (!isReady && line.includes(options.readyLine)) {
      isReady = true;
      becomeReady();
    }
  };
  forEachLine(child.stdout, onLine);
  forEachLine(child.stderr, onLine);
  const exited = new Promise<ExitStatus>((resolve) => {
    child.once("error", (error) => {
      recent.push(String(error));
      resolve({ code: null, signal: null });
    });
    child.once("close", (code, signal) => resolve({ code, signal }));
  });
  const closed = exited.then((status) => options.onExit(status, isReady));
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), options.readyTimeoutMs)));
  const outcome = Promise.race([ready.then(() => "ready" as const), exited, timedOut]).finally(() => clearTimeout(timer));
  return { outcome, recent, closed };
}
