import { fileURLToPath } from "node:url";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ClientError, Status, createChannel, createClient, type Channel } from "nice-grpc";
import { InventoryServiceDefinition, ReservationState, type InventoryServiceClient } from "@meshcart/contracts/meshcart/inventory/v1/inventory.js";
import { freePort } from "@meshcart/stack/net.js";
import { startService, type ServiceProcess } from "@meshcart/stack/processes.js";
import { parseExposition } from "@meshcart/testing/prometheus.js";
import { createTestDatabase, type TestDatabase } from "@meshcart/testing/database.js";

/**
 * Fault injection in the real inventory process: ReserveStock failing
 * before its side effect holds nothing; failing after commit holds the
 * stock once, and a retry with the same reservation id finds that hold
 * instead of holding the stock a second time.
 */

const ENTRY = fileURLToPath(new URL("../dist/main.js", import.meta.url));
const SKU = "MESH-MUG";

let testDb: TestDatabase;
let sql: pg.Pool;
let service: ServiceProcess;
let channel: Channel;
let client: InventoryServiceClient;
let adminPort: number;
let faultPort: number;

async function setFaults(rules: unknown): Promise<void> {
  const response = await fetch(`http://127.0.0.1:${faultPort}/faults`, { method: "PUT", body: JSON.stringify(rules) });
  expect(response.status).toBe(200);
}

async function clearFaults(): Promise<void> {
  expect((await fetch(`http://127.0.0.1:${faultPort}/faults`, { method: "DELETE" })).status).toBe(200);
}

async function outcome(call: Promise<unknown>): Promise<Status> {
  try {
    await call;
    return Status.OK;
  } catch (error) {
    if (error instanceof ClientError) return error.code;
    throw error;
  }
}

async function reserved(): Promise<number> {
  const { product } = await client.getProduct({ sku: SKU });
  return product!.stock!.reserved;
}

async function reservationRows(id: string): Promise<number> {
  const { rows } = await sql.query<{ n: number }>("SELECT count(*)::int AS n FROM reservations WHERE reservation_id = $1", [id]);
  return rows[0]!.n;
}

beforeAll(async () => {
  testDb = await createTestDatabase("inventory_faults");
  sql = new pg.Pool({ connectionString: testDb.url, max: 2 });
  // The database is dropped WITH (FORCE) at the end: a session it terminates must not be an uncaught error.
  sql.on("error", () => undefined);
  const grpcPort = await freePort();
  adminPort = await freePort();
  faultPort = await freePort();
  service = await startService({
    name: "inventory",
    entry: ENTRY,
    adminPort,
    readyTimeoutMs: 30_000,
    env: {
      GRPC_PORT: String(grpcPort),
      ADMIN_PORT: String(adminPort),
      DATABASE_URL: testDb.url,
      INVENTORY_SEED_CATALOGUE: "true",
      LOG_LEVEL: "warn",
      FAULT_CONTROL_PORT: String(faultPort),
    },
  });
  channel = createChannel(`127.0.0.1:${grpcPort}`);
  client = createClient(InventoryServiceDefinition, channel);
});

afterAll(async () => {
  channel?.close();
  await service?.stop();
  await sql?.end();
  await testDb?.drop();
});

describe("inventory fault injection", () => {
  it("a fault before the side effect holds no stock and writes no reservation", async () => {
    const held = await reserved();
    await setFaults({ ReserveStock: { rate: 1, code: "UNAVAILABLE" } });
    expect(await outcome(client.reserveStock({ reservationId: "ord_before.stock", items: [{ sku: SKU, quantity: 2 }] }))).toBe(Status.UNAVAILABLE);
    expect(await reservationRows("ord_before.stock")).toBe(0);
    expect(await reserved()).toBe(held);
    await clearFaults();
  });

  it("a fault after commit holds the stock once; a retry with the same id finds that hold", async () => {
    const held = await reserved();
    await setFaults({ ReserveStock: { rate: 1, code: "DEADLINE_EXCEEDED", mode: "after-commit" } });
    const request = { reservationId: "ord_after.stock", items: [{ sku: SKU, quantity: 3 }] };
    expect(await outcome(client.reserveStock(request))).toBe(Status.DEADLINE_EXCEEDED);
    expect(await reservationRows(request.reservationId)).toBe(1);
    expect(await reserved()).toBe(held + 3);

    await clearFaults();
    const { reservation } = await client.reserveStock(request);
    expect(reservation!.state).toBe(ReservationState.RESERVATION_STATE_HELD);
    expect(await reservationRows(request.reservationId)).toBe(1);
    expect(await reserved()).toBe(held + 3);

    const metrics = parseExposition(await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text());
    expect(metrics.sum("meshcart_faults_injected_total", { method: "ReserveStock", mode: "after-commit", code: "DEADLINE_EXCEEDED" })).toBe(1);
    await client.releaseReservation({ reservationId: request.reservationId });
  });

  it("a failing handler keeps its own error under an after-commit rule", async () => {
    await setFaults({ ReserveStock: { rate: 1, mode: "after-commit" } });
    // More than exists: refused by inventory itself, nothing committed.
    const code = await outcome(client.reserveStock({ reservationId: "ord_toomuch.stock", items: [{ sku: "MESH-STICKER-GOLD", quantity: 999 }] }));
    expect(code).toBe(Status.FAILED_PRECONDITION);
    await clearFaults();
  });
});
