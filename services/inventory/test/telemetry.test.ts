import { createServer, type Server, type Socket } from "node:net";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createChannel, createClient, type Channel } from "nice-grpc";
import { createTestDatabase, type TestDatabase } from "@meshcart/testing/database.js";
import { parseExposition } from "@meshcart/testing/prometheus.js";
import { startService, type ServiceProcess } from "@meshcart/stack/processes.js";
import { freePort } from "@meshcart/stack/net.js";
import { InventoryServiceDefinition, type InventoryServiceClient } from "@meshcart/contracts/meshcart/inventory/v1/inventory.js";
import { sleep } from "@meshcart/lib";

/**
 * A missing or broken trace collector must never slow or break request
 * handling: the real inventory process (its compiled entry, as the image
 * runs it) exports to a closed port, and to a collector that accepts
 * connections but never answers. Calls are answered (also while an export
 * hangs), the exporter's failures are counted on /metrics, and the log is
 * told once, not per batch.
 */

const ENTRY = fileURLToPath(new URL("../dist/main.js", import.meta.url));
const CALLS = 150;

let testDb: TestDatabase;
let blackhole: { server: Server; sockets: Set<Socket>; port: number };
let closedPort = 0;

beforeAll(async () => {
  testDb = await createTestDatabase("inventory_telemetry");
  closedPort = await freePort();
  // Accepts TCP connections and never says a word: the worst collector.
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  blackhole = { server, sockets, port: (server.address() as { port: number }).port };
});

afterAll(async () => {
  for (const socket of blackhole?.sockets ?? []) socket.destroy();
  await new Promise<void>((resolve) => (blackhole?.server.listening ? blackhole.server.close(() => resolve()) : resolve()));
  await testDb?.drop();
});

interface Running {
  service: ServiceProcess;
  client: InventoryServiceClient;
  channel: Channel;
  adminPort: number;
}

async function startInventory(env: Record<string, string>): Promise<Running> {
  const grpcPort = await freePort();
  const adminPort = await freePort();
  const service = await startService({
    name: "inventory",
    entry: ENTRY,
    adminPort,
    env: {
      GRPC_PORT: String(grpcPort),
      ADMIN_PORT: String(adminPort),
      DATABASE_URL: testDb.url,
      INVENTORY_SEED_CATALOGUE: "true",
      LOG_LEVEL: "info",
      OTEL_BSP_SCHEDULE_DELAY: "20",
      OTEL_EXPORTER_OTLP_TIMEOUT: "500",
      OTEL_BSP_EXPORT_TIMEOUT: "500",
      ...env,
    },
    readyTimeoutMs: 30_000,
  });
  const channel = createChannel(`127.0.0.1:${grpcPort}`);
  return { service, channel, client: createClient(InventoryServiceDefinition, channel), adminPort };
}

/** Sequential calls, each answered with the product asked for. */
async function callRepeatedly(client: InventoryServiceClient): Promise<void> {
  for (let i = 0; i < CALLS; i++) {
    const { product } = await client.getProduct({ sku: "MESH-MUG" });
    expect(product?.sku).toBe("MESH-MUG");
  }
}

async function exportCounters(adminPort: number) {
  const exposition = parseExposition(await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text());
  return {
    failed: exposition.sum("meshcart_trace_spans_exported_total", { result: "failure" }),
    exported: exposition.sum("meshcart_trace_spans_exported_total", { result: "success" }),
  };
}

async function stop(running: Running | undefined): Promise<string[]> {
  running?.channel.close();
  const status = await running?.service.stop();
  expect(status).toEqual({ code: 0, signal: null });
  return running?.service.logs() ?? [];
}

/** The exporter's complaint: said once, however many batches failed; about the process, not a call. */
function expectOneComplaint(logs: string[]): void {
  const complaints = logs.filter((line) => line.includes("trace collector") || line.includes("trace export"));
  expect(complaints).toHaveLength(1);
  const complaint = JSON.parse(complaints[0]!) as Record<string, unknown>;
  expect(complaint).toMatchObject({ level: "info", service: "inventory" });
  expect(complaint.msg).toContain("no trace collector answers at");
  expect(complaint).not.toHaveProperty("trace_id");
  expect(complaint).not.toHaveProperty("correlation_id");
}

describe("with the collector at a closed port", () => {
  let running: Running | undefined;
  afterAll(async () => {
    await stop(running).catch(() => undefined);
  });

  it("answers every call, counts the failed exports and complains once", async () => {
    // Refused at once: many small batches fail in a row.
    running = await startInventory({
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${closedPort}`,
      OTEL_EXPORTER_OTLP_PROTOCOL: "grpc",
      OTEL_BSP_MAX_EXPORT_BATCH_SIZE: "8",
    });
    await callRepeatedly(running.client);
    const counters = await waitFor(async () => {
      const now = await exportCounters(running!.adminPort);
      return now.failed >= CALLS ? now : undefined;
    });
    expect(counters.exported).toBe(0);
    const logs = await stop(running);
    running = undefined;
    expectOneComplaint(logs);
  });
});

describe("with the collector at a collector that never answers", () => {
  let running: Running | undefined;
  afterAll(async () => {
    await stop(running).catch(() => undefined);
  });

  it("answers every call while an export hangs, then counts the failed export and complains once", async () => {
    // Not timed: the export waits for its (long) timeout, so if the call
    // path waited for exports no call could be answered while one is
    // pending. All of them are, and only then is the collector let go.
    running = await startInventory({
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${blackhole.port}`,
      OTEL_EXPORTER_OTLP_PROTOCOL: "grpc",
      OTEL_BSP_MAX_EXPORT_BATCH_SIZE: "8",
      OTEL_EXPORTER_OTLP_TIMEOUT: "600000",
      OTEL_BSP_EXPORT_TIMEOUT: "600000",
    });
    await callRepeatedly(running.client);
    // The first batch went out while the calls were answered, and hangs:
    // the collector holds its connection, nothing failed or succeeded yet.
    await waitFor(async () => (blackhole.sockets.size > 0 ? true : undefined));
    expect(await exportCounters(running.adminPort)).toEqual({ failed: 0, exported: 0 });

    // The collector goes away: the pending export fails, and so do the next.
    const closed = new Promise<void>((resolve) => blackhole.server.close(() => resolve()));
    for (const socket of blackhole.sockets) socket.destroy();
    await closed;
    const counters = await waitFor(async () => {
      const now = await exportCounters(running!.adminPort);
      return now.failed > 0 ? now : undefined;
    });
    expect(counters.exported).toBe(0);
    const logs = await stop(running);
    running = undefined;
    expectOneComplaint(logs);
  });
});

async function waitFor<T>(check: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error("timed out");
    await sleep(100);
  }
}
