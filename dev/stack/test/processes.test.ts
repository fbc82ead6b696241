import http from "node:http";
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { freePort } from "../src/net.js";
import { startService, type ServiceProcess, type ServiceSpec } from "../src/processes.js";
import { fakeServiceEntry, isAlive } from "@meshcart/testing/helpers.js";

const running: ServiceProcess[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((service) => service.kill9()));
});

async function fake(env: Record<string, string> = {}, extra: Partial<ServiceSpec> = {}): Promise<ServiceProcess> {
  const adminPort = await freePort();
  const service = await startService({
    name: "fake",
    entry: fakeServiceEntry,
    adminPort,
    env: { ADMIN_PORT: String(adminPort), ...env },
    ...extra,
  });
  running.push(service);
  return service;
}

function readyz(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    http
      .get({ host: "127.0.0.1", port, path: "/readyz", agent: false }, (response) => {
        response.resume();
        resolve(response.statusCode);
      })
      .once("error", () => resolve(undefined));
  });
}

function configOf(service: ServiceProcess): Record<string, unknown> {
  const line = service.logs().find((entry) => entry.includes('"msg":"starting"'));
  if (line === undefined) throw new Error("no start line");
  return (JSON.parse(line) as { config: Record<string, unknown> }).config;
}

describe("startService", () => {
  it("resolves only once /readyz answers 200, with the environment passed and every line captured", async () => {
    const adminPort = await freePort();
    const seen: [string, string][] = [];
    const begun = Date.now();
    const inherited = process.env.NODE_OPTIONS;
    process.env.NODE_OPTIONS = "--max-old-space-size=64";
    const starting = startService({
      name: "catalogue",
      entry: fakeServiceEntry,
      adminPort,
      env: { ADMIN_PORT: String(adminPort), FAKE_READY_AFTER_MS: "400", FAKE_EXTRA: "yes", LOG_LEVEL: "debug" },
      onLine: (name, line) => seen.push([name, line]),
    });
    if (inherited === undefined) delete process.env.NODE_OPTIONS;
    else process.env.NODE_OPTIONS = inherited;
    const service = await starting;
    running.push(service);

    expect(Date.now() - begun).toBeGreaterThanOrEqual(400);
    expect(await readyz(adminPort)).toBe(200);
    expect(service.pid).toBeGreaterThan(0);
    expect(isAlive(service.pid)).toBe(true);
    expect(configOf(service)).toMatchObject({ ADMIN_PORT: String(adminPort), FAKE_EXTRA: "yes", LOG_LEVEL: "debug" });
    expect(configOf(service).NODE_OPTIONS).toBeUndefined();
    expect(service.logs()).toEqual(expect.arrayContaining(["a plain line that is not JSON", "a line on stderr"]));
    expect(seen.map(([name]) => name)).toEqual(seen.map(() => "catalogue"));
    expect(seen.map(([, line]) => line)).toEqual(service.logs());
  });

  it("stops gracefully with SIGTERM, letting the service drain", async () => {
    const service = await fake({ FAKE_DRAIN_MS: "200" });
    const status = await service.stop();
    expect(status).toEqual({ code: 0, signal: null });
    expect(await service.exited).toEqual(status);
    const messages = service
      .logs()
      .slice(-2)
      .map((line) => (JSON.parse(line) as { msg: string }).msg);
    expect(messages).toEqual(["draining", "drained"]);
    expect(await service.stop()).toEqual(status);
  });

  it("escalates to SIGKILL when the service does not stop in time", async () => {
    const service = await fake({ FAKE_IGNORE_SIGTERM: "1" });
    const status = await service.stop("SIGTERM", 300);
    expect(status).toEqual({ code: null, signal: "SIGKILL" });
    expect(service.logs().some((line) => line.includes("ignoring SIGTERM"))).toBe(true);
  });

  it("kill9 ends the process at once", async () => {
    const service = await fake({ FAKE_IGNORE_SIGTERM: "1" });
    await service.kill9();
    expect(await service.exited).toEqual({ code: null, signal: "SIGKILL" });
    expect(isAlive(service.pid)).toBe(false);
  });

  it("reports a service that exits on its own through exited", async () => {
    const service = await fake({ FAKE_CRASH_AFTER_MS: "100" });
    expect(await service.exited).toEqual({ code: 3, signal: null });
    expect(service.logs().at(-1)).toContain("crashing on purpose");
  });

  it("rejects with the exit status and last lines when the service exits before it is ready", async () => {
    const adminPort = await freePort();
    const attempt = startService({
      name: "doomed",
      entry: fakeServiceEntry,
      adminPort,
      env: { ADMIN_PORT: String(adminPort), FAKE_EXIT_BEFORE_READY: "2" },
    });
    await expect(attempt).rejects.toThrow(/doomed exited before it was ready \(code 2, signal null\)/);
    await expect(attempt).rejects.toThrow(/cannot start: configured to fail/);
  });

  it("returns a process armed to die that exits before it is ready, exited, when told it may", async () => {
    const adminPort = await freePort();
    const service = await startService({
      name: "armed",
      entry: fakeServiceEntry,
      adminPort,
      env: { ADMIN_PORT: String(adminPort), FAKE_EXIT_BEFORE_READY: "2" },
      mayExitBeforeReady: true,
    });
    expect(await service.exited).toEqual({ code: 2, signal: null });
    expect(service.logs().join("\n")).toContain("cannot start: configured to fail");
  });

  it("rejects and kills the process when it is not ready in time", async () => {
    const adminPort = await freePort();
    const lines: string[] = [];
    const attempt = startService({
      name: "slow",
      entry: fakeServiceEntry,
      adminPort,
      env: { ADMIN_PORT: String(adminPort), FAKE_READY_AFTER_MS: "60000" },
      readyTimeoutMs: 500,
      onLine: (_name, line) => lines.push(line),
    });
    await expect(attempt).rejects.toThrow(/slow was not ready within 500 ms/);
    expect(lines.some((line) => line.includes('"msg":"starting"'))).toBe(true);
    expect(await readyz(adminPort)).toBeUndefined();
  });

  it("stops waiting and kills the process when start-up is aborted", async () => {
    const adminPort = await freePort();
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 200);
    await expect(
      startService({
        name: "aborted",
        entry: fakeServiceEntry,
        adminPort,
        env: { ADMIN_PORT: String(adminPort), FAKE_READY_AFTER_MS: "60000" },
        signal: abort.signal,
      }),
    ).rejects.toThrow(/aborted: start-up aborted/);
    expect(await readyz(adminPort)).toBeUndefined();
  });

  it("refuses an admin port that is already taken", async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const address = blocker.address();
    if (address === null || typeof address === "string") throw new Error("no port");
    try {
      await expect(startService({ name: "clash", entry: fakeServiceEntry, adminPort: address.port, env: {} })).rejects.toThrow(
        `clash: admin port ${address.port} is already in use`,
      );
    } finally {
      blocker.close();
    }
  });

  it("refuses an entry point that does not exist", async () => {
    await expect(startService({ name: "unbuilt", entry: "/nonexistent/main.js", adminPort: await freePort(), env: {} })).rejects.toThrow(
      "unbuilt: /nonexistent/main.js does not exist; build it first (tsc -b)",
    );
  });

  it("keeps only the last keepLines lines when asked", async () => {
    const service = await fake({}, { keepLines: 2 });
    expect(service.logs()).toHaveLength(2);
  });
});
