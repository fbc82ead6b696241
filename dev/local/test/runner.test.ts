import fs from "node:fs/promises";
import path from "node:path";
import pg from "pg";
import { afterEach, describe, expect, inject, it } from "vitest";
// The type of inject("pgUrl").
import type {} from "@meshcart/testing/context.js";
import { withDatabase } from "@meshcart/stack/databases.js";
import { freePort } from "@meshcart/stack/net.js";
import { runDev, type DevOptions } from "../src/runner.js";
import type { LocalService } from "@meshcart/stack/services.js";
import { fakeServiceEntry, tempDir } from "@meshcart/testing/helpers.js";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

async function fakeService(name: string, env: Record<string, string> = {}): Promise<LocalService> {
  return {
    name,
    entry: fakeServiceEntry,
    grpcPort: await freePort(),
    adminPort: await freePort(),
    database: `meshcart_${name.replace("-", "_")}`,
    env: { FAKE_CHECK_DATABASE: "1", ...env },
  };
}

async function run(services: LocalService[], overrides: Partial<DevOptions> = {}, onText: (text: string) => void = () => undefined) {
  const dir = await tempDir("runner");
  cleanups.push(dir.remove);
  let output = "";
  const dataDir = path.join(dir.path, "postgres");
  const code = await runDev({
    repoRoot: dir.path,
    services,
    postgres: { dataDir, port: await freePort(), persistent: false },
    logLevel: "info",
    exitAfterReady: false,
    shutdown: new AbortController().signal,
    write: (text) => {
      output += text;
      onText(text);
    },
    colorize: false,
    ...overrides,
  });
  return { code, output, dataDir };
}

describe("runDev", () => {
  it("starts Postgres and the services, prints their logs and the banner, then stops in reverse order", async () => {
    const services = [await fakeService("fake-a"), await fakeService("fake-b")];
    const { code, output, dataDir } = await run(services, { exitAfterReady: true });

    expect(code).toBe(0);
    expect(output).toMatch(/fake-a {3}│ \[[\d:.]+\] INFO: database reachable\nfake-a {3}│ {5}database: "meshcart_fake_a"\n/);
    expect(output).toContain('fake-b   │     database: "meshcart_fake_b"');
    expect(output).toContain("fake-a   │ a plain line that is not JSON\n");
    expect(output).toContain("meshcart is running. Ctrl-C stops everything.");
    expect(output).toContain(`fake-a    gRPC localhost:${services[0]?.grpcPort}`);
    const order = ["stopping fake-b", "stopping fake-a", "stopping Postgres", "dev      │ stopped\n"].map((text) => output.indexOf(text));
    expect(order.every((index) => index >= 0)).toBe(true);
    expect(order).toEqual([...order].sort((a, b) => a - b));
    expect(output).toContain("fake-b   │ [");
    expect(output).not.toContain("did not stop cleanly");
    await expect(fs.access(dataDir)).rejects.toThrow();
  });

  it("with DATABASE_URL, creates the services' databases on that Postgres and leaves it running", async () => {
    const server = inject("pgUrl");
    const service = await fakeService("fake-ext");
    const { code, output } = await run([service], { exitAfterReady: true, postgres: { external: server } });
    expect(code).toBe(0);
    expect(output).toContain("using the Postgres of DATABASE_URL");
    expect(output).not.toContain("stopping Postgres");
    expect(output).toContain("leaving the Postgres of DATABASE_URL running");
    // The service reached its own database there, and the server still answers.
    expect(output).toContain(`database: "${service.database}"`);
    const client = new pg.Client({ connectionString: withDatabase(server, service.database!) });
    await client.connect();
    try {
      expect((await client.query("select current_database() as name")).rows[0].name).toBe(service.database);
    } finally {
      await client.end();
    }
    const admin = new pg.Client({ connectionString: server });
    await admin.connect();
    await admin.query(`drop database if exists "${service.database}" with (force)`).finally(() => admin.end());
  });

  it("passes the contract variables to each service", async () => {
    const service = await fakeService("fake-env", { FAKE_EXTRA: "from the row" });
    const { code, output } = await run([service], { exitAfterReady: true, logLevel: "warn" });
    expect(code).toBe(0);
    for (const expected of [
      `"GRPC_PORT": "${service.grpcPort}"`,
      `"ADMIN_PORT": "${service.adminPort}"`,
      '"LOG_LEVEL": "warn"',
      '"SERVICE_VERSION": "dev"',
      '"DEPLOYMENT_ENVIRONMENT": "local"',
      '"FAKE_EXTRA": "from the row"',
    ]) {
      expect(output).toContain(expected);
    }
    expect(output).toMatch(/"DATABASE_URL": "postgres:\/\/postgres:postgres@127\.0\.0\.1:\d+\/meshcart_fake_env"/);
  });

  it("on shutdown, lets the services drain before stopping Postgres and exits 0", async () => {
    const shutdown = new AbortController();
    const services = [await fakeService("fake-drain", { FAKE_DRAIN_MS: "300" })];
    const { code, output } = await run(services, { shutdown: shutdown.signal }, (text) => {
      if (text.includes("meshcart is running")) setTimeout(() => shutdown.abort(), 50);
    });
    expect(code).toBe(0);
    expect(output.indexOf("INFO: draining")).toBeGreaterThan(output.indexOf("meshcart is running"));
    expect(output.indexOf("INFO: drained")).toBeGreaterThan(output.indexOf("INFO: draining"));
    expect(output.indexOf("stopping Postgres")).toBeGreaterThan(output.indexOf("INFO: drained"));
    expect(output).not.toContain("did not stop cleanly");
  });

  it("shuts everything down with exit code 1 when a service dies, showing its last lines", async () => {
    const services = [await fakeService("fake-ok"), await fakeService("fake-crash", { FAKE_CRASH_AFTER_MS: "300" })];
    const { code, output } = await run(services);
    expect(code).toBe(1);
    expect(output).toContain("fake-crash exited unexpectedly (code 3, signal null). Its last lines:");
    expect(output).toMatch(/dev +│ +\{"level":"error".*"msg":"crashing on purpose"/);
    expect(output).toContain("stopping fake-ok");
    expect(output).not.toContain("stopping fake-crash");
    expect(output).toContain("stopping Postgres");
  });

  it("exits 1 with the reason when a service cannot start, stopping what was started", async () => {
    const services = [await fakeService("fake-first"), await fakeService("fake-bad", { FAKE_EXIT_BEFORE_READY: "4" })];
    const { code, output } = await run(services);
    expect(code).toBe(1);
    expect(output).toContain("cannot start: fake-bad exited before it was ready (code 4, signal null)");
    expect(output).toContain("stopping fake-first");
    expect(output).toContain("stopping Postgres");
    expect(output).not.toContain("meshcart is running");
  });
});
