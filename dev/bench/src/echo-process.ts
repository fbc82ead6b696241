import { spawn, type ChildProcess } from "node:child_process";
import { performance } from "node:perf_hooks";
import { signalOnExit } from "@meshcart/stack/children.js";
import { forEachLine, tail } from "@meshcart/stack/lines.js";
import { ECHO_READY_LINE, ECHO_SERVER_ENTRY } from "./echo.js";

export interface EchoProcess {
  pid: number;
  port: number;
  /** Spawn until it printed that it listens. */
  startToReadyMs: number;
  stop(): Promise<void>;
}

/** Starts the baseline's echo server (echo-server.ts) as its own process, as the services run. */
export async function startEchoServer(port: number): Promise<EchoProcess> {
  const began = performance.now();
  const child = spawn(process.execPath, [ECHO_SERVER_ENTRY, String(port)], { stdio: ["ignore", "pipe", "pipe"] });
  signalOnExit(child, "SIGKILL");
  const lines: string[] = [];
  const closed = new Promise<void>((resolve) => child.once("close", () => resolve()));
  const ready = new Promise<number>((resolve, reject) => {
    forEachLine(child.stdout, (line) => {
      lines.push(line);
      if (line.startsWith(`${ECHO_READY_LINE} `)) resolve(performance.now() - began);
    });
    forEachLine(child.stderr, (line) => lines.push(line));
    child.once("error", reject);
    void closed.then(() => reject(new Error(`the echo server exited before it listened:\n${tail(lines)}`)));
  });
  const startToReadyMs = await ready;
  return {
    pid: pidOf(child),
    port,
    startToReadyMs,
    async stop() {
      child.kill("SIGTERM");
      await closed;
    },
  };
}

function pidOf(child: ChildProcess): number {
  if (child.pid === undefined) throw new Error("the echo server has no pid");
  return child.pid;
}
