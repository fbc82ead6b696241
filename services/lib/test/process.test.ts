import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { createChannel, createClient } from "nice-grpc";
import { HealthDefinition } from "nice-grpc-server-health";
import { HealthCheckResponse_ServingStatus } from "nice-grpc-server-health/lib/proto/grpc/health/v1/health.js";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { InventoryServiceDefinition } from "@meshcart/contracts/meshcart/inventory/v1/inventory.js";
import { eventually, freePort, type LogLine } from "./helpers.js";

const FIXTURE = fileURLToPath(new URL("./fixtures/service.mjs", import.meta.url));
const EXIT_LOGGING_FIXTURE = fileURLToPath(new URL("./fixtures/exit-logging.mjs", import.meta.url));
const DIST = fileURLToPath(new URL("../dist/index.js", import.meta.url));

interface Child {
  process: ChildProcess;
  stdout(): string;
  stderr(): string;
  lines(): LogLine[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const children: Child[] = [];

/** Runs the fixture service with exactly `env` (plus PATH): nothing leaks in from the test's environment. */
function startFixture(env: Record<string, string>, script = FIXTURE): Child {
  const child = spawn(process.execPath, [script], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  // "close" rather than "exit": all output has been read by then.
  const exited = once(child, "close").then(([code, signal]) => ({
    code: code as number | null,
    signal: signal as NodeJS.Signals | null,
  }));
  const handle: Child = {
    process: child,
    stdout: () => stdout,
    stderr: () => stderr,
    lines: () =>
      stdout
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as LogLine),
    exited,
  };
  children.push(handle);
  return handle;
}

async function exitOf(child: Child, timeoutMs = 15_000) {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`fixture did not exit; stdout:\n${child.stdout()}\nstderr:\n${child.stderr()}`)), timeoutMs);
  });
  try {
    return await Promise.race([child.exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Waits for the "started" line, then for an answer on the admin port: the
 * line is written inside startServiceRuntime, before the entry point wires
 * the signals, while an answer means its event loop has turned since.
 */
async function started(child: Child): Promise<LogLine> {
  const line = await eventually(
    () => {
      if (child.process.exitCode !== null) throw new Error(`fixture exited early:\n${child.stderr()}`);
      return child.lines().find((l) => l.msg === "fixture started");
    },
    15_000,
    "the fixture to start",
  );
  expect((await fetch(`http://127.0.0.1:${String(line.admin_port)}/readyz`)).status).toBe(200);
  return line;
}

beforeAll(() => {
  if (!existsSync(DIST)) throw new Error(`${DIST} is missing: run \`tsc -b services/lib\` before the tests`);
});

afterEach(() => {
  for (const child of children.splice(0)) {
    if (child.process.exitCode === null && child.process.signalCode === null) child.process.kill("SIGKILL");
  }
});

describe("a service process", () => {
  it("exits with status 2 and lists every configuration problem, without a stack trace", async () => {
    const child = startFixture({ GRPC_PORT: "abc", LOG_LEVEL: "loud", SHUTDOWN_TIMEOUT_MS: "5", FIXTURE_FAIL_AT_START: "maybe" });
    const { code } = await exitOf(child);
    expect(code).toBe(2);
    const stderr = child.stderr();
    expect(stderr.split("\n")).toEqual([
      "invalid configuration:",
      '  - GRPC_PORT: must be an integer from 1 to 65535 (got "abc")',
      '  - LOG_LEVEL: must be one of fatal, error, warn, info, debug, trace, silent (got "loud")',
      '  - SHUTDOWN_TIMEOUT_MS: must be an integer from 100 to 120000 (got "5")',
      '  - FIXTURE_FAIL_AT_START: must be "true" or "false" (got "maybe")',
      "",
    ]);
    expect(stderr).not.toMatch(/^\s+at /m);
    expect(child.stdout()).toBe("");
  }, 20_000);

  it("exits with status 1 and the stack on any other start-up failure", async () => {
    const child = startFixture({ FIXTURE_FAIL_AT_START: "true" });
    const { code } = await exitOf(child);
    expect(code).toBe(1);
    expect(child.stderr()).toMatch(/^fatal: Error: fixture failed on purpose\n\s+at /);
  }, 20_000);

  it("starts with a good environment, serves, and exits 0 after a graceful shutdown on SIGTERM", async () => {
    const [grpcPort, adminPort] = [await freePort(), await freePort()];
    const child = startFixture({ GRPC_PORT: String(grpcPort), ADMIN_PORT: String(adminPort), SERVICE_VERSION: "v9" });
    const line = await started(child);
    expect(line).toMatchObject({ grpc_port: grpcPort, admin_port: adminPort, version: "v9", service: "fixture", level: "info" });

    expect((await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status).toBe(200);
    const channel = createChannel(`127.0.0.1:${grpcPort}`);
    try {
      const health = createClient(HealthDefinition, channel);
      expect(await health.check({ service: InventoryServiceDefinition.fullName })).toEqual({
        status: HealthCheckResponse_ServingStatus.SERVING,
      });
      const inventory = createClient(InventoryServiceDefinition, channel);
      expect(await inventory.getProduct({ sku: "MESH-MUG" })).toMatchObject({ product: { sku: "MESH-MUG" } });
    } finally {
      channel.close();
    }

    child.process.kill("SIGTERM");
    const { code, signal } = await exitOf(child);
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    const messages = child.lines().map((l) => l.msg);
    expect(child.lines().find((l) => l.msg === "shutting down: not ready any more")?.reason).toBe("SIGTERM");
    // The last line before the exit is not lost.
    expect(messages.at(-1), child.stdout()).toBe("stopped");
    expect(child.lines().at(-1)?.outcome).toBe("drained");
    expect(child.stderr()).toBe("");
  }, 30_000);

  it("writes its last log lines before an exit completely and in order, even with a busy threadpool", async () => {
    const child = startFixture({}, EXIT_LOGGING_FIXTURE);
    expect((await exitOf(child)).code).toBe(0);
    expect(child.lines().map((l) => (l.i === undefined ? l.msg : `${l.msg} ${String(l.i)}`))).toEqual([
      "started",
      "last lines 1",
      "last lines 2",
      "last lines 3",
      "last lines 4",
      "last lines 5",
      "stopped",
    ]);
  }, 20_000);

  it("exits at once, with status 1, on a second signal during the drain delay", async () => {
    const [grpcPort, adminPort] = [await freePort(), await freePort()];
    const child = startFixture({
      GRPC_PORT: String(grpcPort),
      ADMIN_PORT: String(adminPort),
      SHUTDOWN_DRAIN_DELAY_MS: "60000",
    });
    await started(child);
    child.process.kill("SIGTERM");
    await eventually(() => child.lines().find((l) => l.msg === "shutting down: not ready any more"), 10_000, "shutdown");
    expect((await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status).toBe(503);
    child.process.kill("SIGINT");
    const { code } = await exitOf(child, 10_000);
    expect(code).toBe(1);
    expect(child.lines().at(-1)).toMatchObject({ msg: "second signal: exiting now", signal: "SIGINT", level: "warn" });
  }, 30_000);
});
