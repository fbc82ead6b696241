import { createServer, type Server, type Socket } from "node:net";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createChannel, createClient, type Channel } from "nice-grpc";
import { createTestDatabase, type TestDatabase } from "../../../dev/src/testing/database.js";
import { parseExposition } from "../../../dev/src/testing/prometheus.js";
import { startService, type ServiceProcess } from "../../../dev/src/processes.js";
import { freePort } from "../../../dev/src/net.js";
import { InventoryServiceDefinition, type InventoryServiceClient } from "../../lib/src/gen/meshcart/inventory/v1/inventory.js";

/**
 * A missing or broken trace collector must never slow or break request
 * handling: the real inventory process (its compiled entry, as the image
 * runs it) exports to a closed port, and to a collector that accepts
 * connections but never answers. Calls are answered as usual, the exporter's
 * failures are counted on /metrics, and the log is told once, not per batch.
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
  await new Promise<void>((resolve) => (blackhole ? blackhole.server.close(() => resolve()) : resolve()));
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

/** Sequential calls; the slowest and the median duration in ms. */
async function callRepeatedly(client: InventoryServiceClient): Promise<{ slowest: number; median: number }> {
  const durations: number[] = [];
  for (let i = 0; i < CALLS; i++) {
    const started = performance.now();
    const { product } = await client.getProduct({ sku: "MESH-MUG" });
    durations.push(performance.now() - started);
    expect(product?.sku).toBe("MESH-MUG");
  }
  durations.sort((a, b) => a - b);
  return { slowest: durations.at(-1)!, median: durations[Math.floor(durations.length / 2)]! };
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

describe.each([
  // Refused at once: many small batches fail in a row.
  ["a closed port", () => `http://127.0.0.1:${closedPort}`, "8"],
  // Each export waits for its timeout: one big batch at a time.
  ["a collector that never answers", () => `http://127.0.0.1:${blackhole.port}`, "512"],
])("with the collector at %s", (_, endpoint, batchSize) => {
  let running: Running | undefined;

  afterAll(async () => {
    await stop(running).catch(() => undefined);
  });

  it("answers every call at its usual speed, counts the failed exports and complains once", async () => {
    running = await startInventory({
      OTEL_EXPORTER_OTLP_ENDPOINT: endpoint(),
      OTEL_EXPORTER_OTLP_PROTOCOL: "grpc",
      OTEL_BSP_MAX_EXPORT_BATCH_SIZE: batchSize,
    });
    const { slowest, median } = await callRepeatedly(running.client);
    // Generous bounds for a busy 2-core machine; an export in the call path
    // would cost at least its 500 ms timeout.
    expect(median).toBeLessThan(50);
    expect(slowest).toBeLessThan(400);

    const counters = await waitFor(async () => {
      const now = await exportCounters(running!.adminPort);
      return now.failed >= CALLS ? now : undefined;
    });
    expect(counters.exported).toBe(0);

    const logs = await stop(running);
    running = undefined;
    // Said once, however many batches failed; about the process, not a call.
    const complaints = logs.filter((line) => line.includes("trace collector") || line.includes("trace export"));
    expect(complaints).toHaveLength(1);
    const complaint = JSON.parse(complaints[0]!) as Record<string, unknown>;
    expect(complaint).toMatchObject({ level: "info", service: "inventory" });
    expect(complaint.msg).toContain("no trace collector answers at");
    expect(complaint).not.toHaveProperty("trace_id");
    expect(complaint).not.toHaveProperty("correlation_id");
  });
});

async function waitFor<T>(check: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
