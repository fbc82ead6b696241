import { fileURLToPath } from "node:url";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createChannel, createClientFactory, Status, type Channel } from "nice-grpc";
import { BadRequest, PreconditionFailure, RichClientError, errorDetailsClientMiddleware } from "nice-grpc-error-details";
import { HealthDefinition } from "nice-grpc-server-health";
import { createTestDatabase, type TestDatabase } from "@meshcart/testing/database.js";
import { startService, type ServiceProcess } from "@meshcart/stack/processes.js";
import { freePort } from "@meshcart/stack/net.js";
import {
  InventoryServiceDefinition,
  ReservationState,
  type InventoryServiceClient,
  type ReserveStockRequest,
} from "@meshcart/contracts/meshcart/inventory/v1/inventory.js";
import { demoCatalogue } from "../src/catalogue.js";
import { sleep } from "@meshcart/lib";

const ENTRY = fileURLToPath(new URL("../dist/main.js", import.meta.url));
const DEFAULT_TTL_SECONDS = 120;
/** grpc.health.v1 HealthCheckResponse.ServingStatus.SERVING */
const HEALTH_SERVING = 1;

let testDb: TestDatabase;
let sql: pg.Pool;
let service: ServiceProcess | undefined;
let channel: Channel;
let client: InventoryServiceClient;

beforeAll(async () => {
  testDb = await createTestDatabase("inventory_grpc");
  sql = new pg.Pool({ connectionString: testDb.url, max: 2 });
  // The database is dropped WITH (FORCE) at the end: a session it terminates must not be an uncaught error.
  sql.on("error", () => undefined);
  const grpcPort = await freePort();
  const adminPort = await freePort();
  service = await startService({
    name: "inventory",
    entry: ENTRY,
    adminPort,
    env: {
      GRPC_PORT: String(grpcPort),
      ADMIN_PORT: String(adminPort),
      DATABASE_URL: testDb.url,
      INVENTORY_SEED_CATALOGUE: "true",
      LOG_LEVEL: "warn",
      // Longer than the whole file: the sweeper must wake for the holds it makes, at their deadline.
      EXPIRY_SWEEP_INTERVAL_MS: "600000",
      // Room for the concurrent calls below without queueing for a connection.
      DB_POOL_MAX: "20",
      RESERVATION_TTL_SECONDS: String(DEFAULT_TTL_SECONDS),
    },
    readyTimeoutMs: 30_000,
  });
  channel = createChannel(`127.0.0.1:${grpcPort}`);
  client = createClientFactory().use(errorDetailsClientMiddleware).create(InventoryServiceDefinition, channel);
});

afterAll(async () => {
  channel?.close();
  const status = await service?.stop();
  await sql?.end();
  await testDb?.drop();
  // A clean SIGTERM shutdown exits 0.
  if (status) expect(status).toEqual({ code: 0, signal: null });
});

// ---------------------------------------------------------------- helpers

let serial = 0;
function newId(prefix = "res"): string {
  serial += 1;
  return `${prefix}-${serial}-${Math.random().toString(36).slice(2, 8)}`;
}

interface Refusal {
  code: Status;
  fields: string[];
  preconditions: { type: string; subject: string }[];
}

/** The status and error details of a call that must fail. */
async function refusal(call: Promise<unknown>): Promise<Refusal> {
  let error: unknown;
  try {
    await call;
  } catch (e) {
    error = e;
  }
  if (error === undefined) throw new Error("expected the call to fail, but it succeeded");
  const code = (error as { code?: unknown }).code;
  if (typeof code !== "number") throw error;
  const extra = error instanceof RichClientError ? error.extra : [];
  return {
    code: code as Status,
    fields: extra.filter((d): d is BadRequest => d.$type === BadRequest.$type).flatMap((d) => d.fieldViolations.map((v) => v.field)),
    preconditions: extra
      .filter((d): d is PreconditionFailure => d.$type === PreconditionFailure.$type)
      .flatMap((d) => d.violations.map((v) => ({ type: v.type, subject: v.subject }))),
  };
}

async function stock(sku: string) {
  const { product } = await client.getProduct({ sku });
  return product!.stock!;
}

async function countRows(): Promise<{ reservations: number; lines: number; restocks: number }> {
  const { rows } = await sql.query<{ reservations: number; lines: number; restocks: number }>(`
    SELECT (SELECT count(*)::int FROM reservations) AS reservations,
           (SELECT count(*)::int FROM reservation_lines) AS lines,
           (SELECT count(*)::int FROM restocks) AS restocks`);
  return rows[0]!;
}

/** Every product's stock, to show that a refused call changed nothing. */
async function allStock(): Promise<Record<string, unknown>> {
  const { products } = await client.listProducts({ pageSize: 100, pageToken: "" });
  return Object.fromEntries(products.map((p) => [p.sku, p.stock]));
}

/** Runs a call that must be refused and shows that it wrote nothing at all. */
async function refusedWithoutEffect(call: () => Promise<unknown>): Promise<Refusal> {
  const rowsBefore = await countRows();
  const stockBefore = await allStock();
  const result = await refusal(call());
  expect(await countRows()).toEqual(rowsBefore);
  expect(await allStock()).toEqual(stockBefore);
  return result;
}

function reserveRequest(items: { sku: string; quantity: number }[], extra: Partial<ReserveStockRequest> = {}): ReserveStockRequest {
  return { reservationId: newId(), items, ttl: undefined, minTotalMinorUnits: 0, maxTotalMinorUnits: 0, ...extra };
}

// ---------------------------------------------------------------- health and catalogue

describe("health", () => {
  it("reports SERVING overall and for the inventory service", async () => {
    const health = createClientFactory().create(HealthDefinition, channel);
    expect((await health.check({ service: "" })).status).toBe(HEALTH_SERVING);
    expect((await health.check({ service: "meshcart.inventory.v1.InventoryService" })).status).toBe(HEALTH_SERVING);
  });
});

describe("catalogue", () => {
  it("lists the seeded catalogue in SKU order across pages", async () => {
    const skus: string[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const page = await client.listProducts({ pageSize: 3, pageToken });
      expect(page.products.length).toBeLessThanOrEqual(3);
      skus.push(...page.products.map((p) => p.sku));
      pageToken = page.nextPageToken;
      pages += 1;
      expect(pages).toBeLessThanOrEqual(10);
    } while (pageToken);
    expect(skus).toHaveLength(demoCatalogue.length);
    expect(new Set(skus)).toEqual(new Set(demoCatalogue.map((p) => p.sku)));
    const { rows } = await sql.query<{ sku: string }>("SELECT sku FROM products ORDER BY sku");
    expect(skus).toEqual(rows.map((r) => r.sku));
    expect(pages).toBe(Math.ceil(demoCatalogue.length / 3));
  });

  it("page_size 0 means 20", async () => {
    const page = await client.listProducts({ pageSize: 0, pageToken: "" });
    expect(page.products).toHaveLength(Math.min(20, demoCatalogue.length));
    expect(page.nextPageToken).toBe("");
  });

  it("refuses a page token it did not issue and a page size out of range", async () => {
    for (const pageToken of ["garbage!", Buffer.from(JSON.stringify({ nope: 1 })).toString("base64url")]) {
      expect(await refusal(client.listProducts({ pageSize: 2, pageToken }))).toEqual({
        code: Status.INVALID_ARGUMENT,
        fields: ["page_token"],
        preconditions: [],
      });
    }
    expect(await refusal(client.listProducts({ pageSize: 101, pageToken: "" }))).toMatchObject({
      code: Status.INVALID_ARGUMENT,
      fields: ["page_size"],
    });
    expect(await refusal(client.listProducts({ pageSize: -1, pageToken: "" }))).toMatchObject({
      code: Status.INVALID_ARGUMENT,
      fields: ["page_size"],
    });
  });

  it("gets a product with its price and stock", async () => {
    const seeded = demoCatalogue.find((p) => p.sku === "MESH-SOCKS")!;
    const { product } = await client.getProduct({ sku: "MESH-SOCKS" });
    expect(product).toMatchObject({
      sku: "MESH-SOCKS",
      name: seeded.name,
      unitPrice: { currencyCode: "USD", minorUnits: seeded.unitPriceMinor },
    });
    const s = product!.stock!;
    expect(s.available).toBe(s.onHand - s.reserved);
    expect(s.initial + s.restocked).toBe(s.onHand + s.sold);
  });

  it("GetProduct: NOT_FOUND for an unknown SKU, INVALID_ARGUMENT for a malformed one", async () => {
    expect((await refusal(client.getProduct({ sku: "NO-SUCH-SKU" }))).code).toBe(Status.NOT_FOUND);
    expect(await refusal(client.getProduct({ sku: "not a sku!" }))).toMatchObject({ code: Status.INVALID_ARGUMENT, fields: ["sku"] });
    expect(await refusal(client.getProduct({ sku: "" }))).toMatchObject({ code: Status.INVALID_ARGUMENT, fields: ["sku"] });
    expect(await refusal(client.getProduct({ sku: "X".repeat(65) }))).toMatchObject({ code: Status.INVALID_ARGUMENT, fields: ["sku"] });
  });
});

// ---------------------------------------------------------------- ReserveStock

describe("ReserveStock", () => {
  it("holds the stock and prices every line from the catalogue", async () => {
    const before = { tshirt: await stock("MESH-TSHIRT"), mug: await stock("MESH-MUG") };
    const price = (sku: string) => demoCatalogue.find((p) => p.sku === sku)!.unitPriceMinor;
    const [tshirt, mug] = [price("MESH-TSHIRT"), price("MESH-MUG")];
    const request = reserveRequest([
      { sku: "MESH-TSHIRT", quantity: 2 },
      { sku: "MESH-MUG", quantity: 3 },
    ]);
    const { reservation } = await client.reserveStock(request);
    expect(reservation).toMatchObject({
      reservationId: request.reservationId,
      state: ReservationState.RESERVATION_STATE_HELD,
      lines: [
        { sku: "MESH-TSHIRT", quantity: 2, unitPrice: { currencyCode: "USD", minorUnits: tshirt }, lineTotal: { currencyCode: "USD", minorUnits: 2 * tshirt } },
        { sku: "MESH-MUG", quantity: 3, unitPrice: { currencyCode: "USD", minorUnits: mug }, lineTotal: { currencyCode: "USD", minorUnits: 3 * mug } },
      ],
      total: { currencyCode: "USD", minorUnits: 2 * tshirt + 3 * mug },
    });
    expect(reservation!.expiresAt!.getTime() - reservation!.createdAt!.getTime()).toBe(DEFAULT_TTL_SECONDS * 1000);
    expect(await stock("MESH-TSHIRT")).toMatchObject({ reserved: before.tshirt.reserved + 2, available: before.tshirt.available - 2 });
    expect(await stock("MESH-MUG")).toMatchObject({ reserved: before.mug.reserved + 3, available: before.mug.available - 3 });
    expect((await client.getReservation({ reservationId: request.reservationId })).reservation).toEqual(reservation);
  });

  it("honours a TTL the caller names", async () => {
    const { reservation } = await client.reserveStock(reserveRequest([{ sku: "MESH-TSHIRT", quantity: 1 }], { ttl: { seconds: 45, nanos: 0 } }));
    expect(reservation!.expiresAt!.getTime() - reservation!.createdAt!.getTime()).toBe(45_000);
  });

  it("a replay returns the first reservation and holds nothing more", async () => {
    const request = reserveRequest([{ sku: "MESH-CAP", quantity: 4 }]);
    const first = await client.reserveStock(request);
    const after = await stock("MESH-CAP");
    const again = await client.reserveStock(request);
    expect(again).toEqual(first);
    expect(await stock("MESH-CAP")).toEqual(after);
  });

  it("ALREADY_EXISTS for a used id with other items, and nothing changes", async () => {
    const request = reserveRequest([{ sku: "MESH-CAP", quantity: 1 }]);
    const { reservation } = await client.reserveStock(request);
    const result = await refusedWithoutEffect(() => client.reserveStock({ ...request, items: [{ sku: "MESH-CAP", quantity: 2 }] }));
    expect(result.code).toBe(Status.ALREADY_EXISTS);
    expect((await client.getReservation({ reservationId: request.reservationId })).reservation).toEqual(reservation);
  });

  it("NOT_FOUND for an unknown SKU, and nothing is written", async () => {
    const request = reserveRequest([
      { sku: "MESH-TSHIRT", quantity: 1 },
      { sku: "NO-SUCH-SKU", quantity: 1 },
    ]);
    expect((await refusedWithoutEffect(() => client.reserveStock(request))).code).toBe(Status.NOT_FOUND);
    expect((await refusal(client.getReservation({ reservationId: request.reservationId }))).code).toBe(Status.NOT_FOUND);
  });

  it("FAILED_PRECONDITION with a STOCK violation per short SKU, and nothing is held", async () => {
    const gold = await stock("MESH-STICKER-GOLD");
    const hoodie = await stock("MESH-HOODIE");
    const request = reserveRequest([
      { sku: "MESH-STICKER-GOLD", quantity: gold.available + 1 },
      { sku: "MESH-SOCKS", quantity: 1 },
      { sku: "MESH-HOODIE", quantity: Math.min(1000, hoodie.available + 1) },
    ]);
    expect(hoodie.available).toBeLessThan(1000);
    const result = await refusedWithoutEffect(() => client.reserveStock(request));
    expect(result.code).toBe(Status.FAILED_PRECONDITION);
    expect(result.preconditions).toEqual([
      { type: "STOCK", subject: "MESH-STICKER-GOLD" },
      { type: "STOCK", subject: "MESH-HOODIE" },
    ]);
    expect((await refusal(client.getReservation({ reservationId: request.reservationId }))).code).toBe(Status.NOT_FOUND);
  });

  it("FAILED_PRECONDITION (type TOTAL) when the total is outside the caller's bounds, and nothing is held", async () => {
    const price = (await client.getProduct({ sku: "MESH-MUG" })).product!.unitPrice!.minorUnits;
    for (const bounds of [{ minTotalMinorUnits: 3 * price + 1 }, { maxTotalMinorUnits: 3 * price - 1 }]) {
      const request = reserveRequest([{ sku: "MESH-MUG", quantity: 3 }], bounds);
      const result = await refusedWithoutEffect(() => client.reserveStock(request));
      expect(result.code).toBe(Status.FAILED_PRECONDITION);
      expect(result.preconditions).toEqual([{ type: "TOTAL", subject: String(3 * price) }]);
      expect((await refusal(client.getReservation({ reservationId: request.reservationId }))).code).toBe(Status.NOT_FOUND);
    }
    // The bounds themselves are accepted.
    const { reservation } = await client.reserveStock(
      reserveRequest([{ sku: "MESH-MUG", quantity: 3 }], { minTotalMinorUnits: 3 * price, maxTotalMinorUnits: 3 * price }),
    );
    expect(reservation!.total!.minorUnits).toBe(3 * price);
    await client.releaseReservation({ reservationId: reservation!.reservationId });
  });

  it("the scarce sticker: exactly its stock can be reserved, not one more", async () => {
    const gold = await stock("MESH-STICKER-GOLD");
    expect(gold.available).toBeGreaterThan(0);
    const results = await Promise.allSettled(
      Array.from({ length: gold.available + 5 }, () => client.reserveStock(reserveRequest([{ sku: "MESH-STICKER-GOLD", quantity: 1 }]))),
    );
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(gold.available);
    for (const r of results.filter((r) => r.status === "rejected")) {
      expect((r as PromiseRejectedResult).reason).toMatchObject({ code: Status.FAILED_PRECONDITION });
    }
    expect(await stock("MESH-STICKER-GOLD")).toMatchObject({ available: 0, reserved: gold.reserved + gold.available });
  });

  const ok = [{ sku: "MESH-TSHIRT", quantity: 1 }];
  const invalid: { name: string; request: () => ReserveStockRequest; fields: string[] }[] = [
    { name: "no items", request: () => reserveRequest([]), fields: ["items"] },
    { name: "quantity 0", request: () => reserveRequest([{ sku: "MESH-TSHIRT", quantity: 0 }]), fields: ["items[0].quantity"] },
    { name: "negative quantity", request: () => reserveRequest([{ sku: "MESH-TSHIRT", quantity: -3 }]), fields: ["items[0].quantity"] },
    { name: "quantity 1001", request: () => reserveRequest([{ sku: "MESH-TSHIRT", quantity: 1001 }]), fields: ["items[0].quantity"] },
    {
      name: "a bad quantity on a later line",
      request: () => reserveRequest([...ok, { sku: "MESH-MUG", quantity: 0 }]),
      fields: ["items[1].quantity"],
    },
    {
      name: "a duplicate SKU",
      request: () => reserveRequest([...ok, { sku: "MESH-MUG", quantity: 1 }, { sku: "MESH-TSHIRT", quantity: 2 }]),
      fields: ["items[2].sku"],
    },
    { name: "a malformed SKU", request: () => reserveRequest([{ sku: "bad sku", quantity: 1 }]), fields: ["items[0].sku"] },
    { name: "an empty SKU", request: () => reserveRequest([{ sku: "", quantity: 1 }]), fields: ["items[0].sku"] },
    {
      name: "51 lines",
      request: () => reserveRequest(Array.from({ length: 51 }, (_, i) => ({ sku: `SKU-${i}`, quantity: 1 }))),
      fields: ["items"],
    },
    { name: "no reservation id", request: () => reserveRequest(ok, { reservationId: "" }), fields: ["reservation_id"] },
    { name: "a 129-character id", request: () => reserveRequest(ok, { reservationId: "r".repeat(129) }), fields: ["reservation_id"] },
    { name: "an id with a space", request: () => reserveRequest(ok, { reservationId: "order 42" }), fields: ["reservation_id"] },
    { name: "an id with a slash", request: () => reserveRequest(ok, { reservationId: "order/42" }), fields: ["reservation_id"] },
    { name: "a TTL of 0", request: () => reserveRequest(ok, { ttl: { seconds: 0, nanos: 0 } }), fields: ["ttl"] },
    { name: "a TTL under 1 s", request: () => reserveRequest(ok, { ttl: { seconds: 0, nanos: 999_000_000 } }), fields: ["ttl"] },
    { name: "a negative TTL", request: () => reserveRequest(ok, { ttl: { seconds: -5, nanos: 0 } }), fields: ["ttl"] },
    { name: "a TTL over 1 h", request: () => reserveRequest(ok, { ttl: { seconds: 3600, nanos: 1_000_000 } }), fields: ["ttl"] },
    // A Duration's nanos carry the sign of its seconds and stay under a second: these held stock once.
    { name: "negative TTL nanos", request: () => reserveRequest(ok, { ttl: { seconds: 10, nanos: -1 } }), fields: ["ttl.nanos"] },
    { name: "TTL nanos of a second or more", request: () => reserveRequest(ok, { ttl: { seconds: 10, nanos: 1_000_000_000 } }), fields: ["ttl.nanos"] },
    { name: "TTL nanos far out of range", request: () => reserveRequest(ok, { ttl: { seconds: 0, nanos: 2_000_000_000 } }), fields: ["ttl.nanos"] },
    { name: "a negative smallest total", request: () => reserveRequest(ok, { minTotalMinorUnits: -1 }), fields: ["min_total_minor_units"] },
    { name: "a negative largest total", request: () => reserveRequest(ok, { maxTotalMinorUnits: -1 }), fields: ["max_total_minor_units"] },
    {
      name: "a largest total under the smallest",
      request: () => reserveRequest(ok, { minTotalMinorUnits: 500, maxTotalMinorUnits: 499 }),
      fields: ["max_total_minor_units"],
    },
    {
      name: "several problems at once",
      request: () =>
        reserveRequest(
          [
            { sku: "MESH-TSHIRT", quantity: 0 },
            { sku: "x y", quantity: 5000 },
          ],
          { reservationId: "" },
        ),
      fields: ["reservation_id", "items[0].quantity", "items[1].sku", "items[1].quantity"],
    },
  ];

  it.each(invalid)("INVALID_ARGUMENT for $name, naming the field, and nothing is written", async ({ request, fields }) => {
    const r = request();
    const result = await refusedWithoutEffect(() => client.reserveStock(r));
    expect(result.code).toBe(Status.INVALID_ARGUMENT);
    expect(result.fields.sort()).toEqual([...fields].sort());
  });

  it("accepts the limits themselves: quantity 1000, TTL 1 s and 1 h, a 128-character id", async () => {
    await client.restock({ restockId: newId("rst"), sku: "MESH-NOTEBOOK", quantity: 1000 });
    const big = await client.reserveStock(reserveRequest([{ sku: "MESH-NOTEBOOK", quantity: 1000 }], { reservationId: "r".repeat(127) + "z" }));
    expect(big.reservation!.lines[0]!.quantity).toBe(1000);
    await client.releaseReservation({ reservationId: big.reservation!.reservationId });
    for (const ttl of [
      { seconds: 1, nanos: 0 },
      { seconds: 3600, nanos: 0 },
    ]) {
      const { reservation } = await client.reserveStock(reserveRequest([{ sku: "MESH-NOTEBOOK", quantity: 1 }], { ttl }));
      await client.releaseReservation({ reservationId: reservation!.reservationId });
    }
  });
});

// ---------------------------------------------------------------- the life of a reservation

describe("commit, release, return", () => {
  it("commit sells, return restores, and replays of each change nothing", async () => {
    const before = await stock("MESH-SOCKS");
    const { reservation } = await client.reserveStock(reserveRequest([{ sku: "MESH-SOCKS", quantity: 5 }]));
    const reservationId = reservation!.reservationId;

    const committed = await client.commitReservation({ reservationId });
    expect(committed.reservation!.state).toBe(ReservationState.RESERVATION_STATE_COMMITTED);
    const sold = { ...before, onHand: before.onHand - 5, sold: before.sold + 5, available: before.available - 5 };
    expect(await stock("MESH-SOCKS")).toEqual(sold);
    expect(await client.commitReservation({ reservationId })).toEqual(committed);
    expect(await stock("MESH-SOCKS")).toEqual(sold);

    expect(await refusedWithoutEffect(() => client.releaseReservation({ reservationId }))).toMatchObject({
      code: Status.FAILED_PRECONDITION,
    });

    const returned = await client.returnStock({ reservationId });
    expect(returned.reservation!.state).toBe(ReservationState.RESERVATION_STATE_RETURNED);
    expect(await stock("MESH-SOCKS")).toEqual(before);
    expect(await client.returnStock({ reservationId })).toEqual(returned);
    expect(await stock("MESH-SOCKS")).toEqual(before);

    expect((await refusedWithoutEffect(() => client.commitReservation({ reservationId }))).code).toBe(Status.FAILED_PRECONDITION);
  });

  it("release frees, a replay changes nothing, and a released reservation can no longer be committed or returned", async () => {
    const before = await stock("MESH-SOCKS");
    const { reservation } = await client.reserveStock(reserveRequest([{ sku: "MESH-SOCKS", quantity: 7 }]));
    const reservationId = reservation!.reservationId;
    const released = await client.releaseReservation({ reservationId });
    expect(released.reservation!.state).toBe(ReservationState.RESERVATION_STATE_RELEASED);
    expect(await stock("MESH-SOCKS")).toEqual(before);
    expect(await client.releaseReservation({ reservationId })).toEqual(released);
    expect(await stock("MESH-SOCKS")).toEqual(before);

    const commit = await refusedWithoutEffect(() => client.commitReservation({ reservationId }));
    expect(commit.code).toBe(Status.FAILED_PRECONDITION);
    expect(commit.preconditions).toEqual([{ type: "RESERVATION_STATE", subject: reservationId }]);
    expect((await refusedWithoutEffect(() => client.returnStock({ reservationId }))).code).toBe(Status.FAILED_PRECONDITION);
  });

  it("ReturnStock of a held reservation is FAILED_PRECONDITION", async () => {
    const { reservation } = await client.reserveStock(reserveRequest([{ sku: "MESH-SOCKS", quantity: 1 }]));
    expect((await refusedWithoutEffect(() => client.returnStock({ reservationId: reservation!.reservationId }))).code).toBe(Status.FAILED_PRECONDITION);
  });

  it("NOT_FOUND for an unknown reservation on every call", async () => {
    const reservationId = newId("missing");
    for (const call of [client.getReservation, client.commitReservation, client.releaseReservation, client.returnStock]) {
      expect((await refusedWithoutEffect(() => call({ reservationId }))).code).toBe(Status.NOT_FOUND);
    }
  });

  it("INVALID_ARGUMENT reservation_id for a missing, overlong or malformed id on every call", async () => {
    for (const reservationId of ["", "x".repeat(129), "a b", "é"]) {
      for (const call of [client.getReservation, client.commitReservation, client.releaseReservation, client.returnStock]) {
        expect(await refusedWithoutEffect(() => call({ reservationId }))).toEqual({
          code: Status.INVALID_ARGUMENT,
          fields: ["reservation_id"],
          preconditions: [],
        });
      }
    }
  });
});

// ---------------------------------------------------------------- Restock

describe("Restock", () => {
  it("adds units once; a replay returns the product and adds nothing", async () => {
    const before = await stock("MESH-BOTTLE");
    const request = { restockId: newId("rst"), sku: "MESH-BOTTLE", quantity: 25 };
    const first = await client.restock(request);
    const after = { ...before, onHand: before.onHand + 25, restocked: before.restocked + 25, available: before.available + 25 };
    expect(first.product!.stock).toEqual(after);
    expect(await client.restock(request)).toEqual(first);
    expect(await stock("MESH-BOTTLE")).toEqual(after);
  });

  it("ALREADY_EXISTS for a used restock id with another SKU or quantity, and nothing changes", async () => {
    const request = { restockId: newId("rst"), sku: "MESH-BOTTLE", quantity: 3 };
    await client.restock(request);
    expect((await refusedWithoutEffect(() => client.restock({ ...request, quantity: 4 }))).code).toBe(Status.ALREADY_EXISTS);
    expect((await refusedWithoutEffect(() => client.restock({ ...request, sku: "MESH-MUG" }))).code).toBe(Status.ALREADY_EXISTS);
  });

  it("NOT_FOUND for an unknown SKU, and nothing is written", async () => {
    expect((await refusedWithoutEffect(() => client.restock({ restockId: newId("rst"), sku: "NO-SUCH-SKU", quantity: 1 }))).code).toBe(Status.NOT_FOUND);
  });

  it.each([
    { name: "quantity 0", request: { quantity: 0 }, fields: ["quantity"] },
    { name: "a negative quantity", request: { quantity: -1 }, fields: ["quantity"] },
    { name: "quantity over 1,000,000", request: { quantity: 1_000_001 }, fields: ["quantity"] },
    { name: "no restock id", request: { restockId: "" }, fields: ["restock_id"] },
    { name: "an overlong restock id", request: { restockId: "r".repeat(129) }, fields: ["restock_id"] },
    { name: "a malformed SKU", request: { sku: "MESH MUG" }, fields: ["sku"] },
    { name: "everything wrong", request: { restockId: "a b", sku: "", quantity: 0 }, fields: ["restock_id", "sku", "quantity"] },
  ])("INVALID_ARGUMENT for $name, and nothing is written", async ({ request, fields }) => {
    const result = await refusedWithoutEffect(() => client.restock({ restockId: newId("rst"), sku: "MESH-BOTTLE", quantity: 1, ...request }));
    expect(result.code).toBe(Status.INVALID_ARGUMENT);
    expect(result.fields.sort()).toEqual([...fields].sort());
  });
});

// ---------------------------------------------------------------- expiry

describe("expiry", () => {
  it("the service releases a hold whose TTL ran out, and it can no longer be committed", async () => {
    const before = await stock("MESH-HOODIE");
    const { reservation } = await client.reserveStock(reserveRequest([{ sku: "MESH-HOODIE", quantity: 3 }], { ttl: { seconds: 1, nanos: 0 } }));
    const reservationId = reservation!.reservationId;
    expect(await stock("MESH-HOODIE")).toMatchObject({ reserved: before.reserved + 3 });

    // The sweeper wakes at the hold's deadline (its longest sleep is 10 min); the bound is only there to fail rather than hang.
    const deadline = Date.now() + 20_000;
    let state = reservation!.state;
    while (state !== ReservationState.RESERVATION_STATE_EXPIRED) {
      expect(state).toBe(ReservationState.RESERVATION_STATE_HELD);
      if (Date.now() > deadline) throw new Error("the reservation was never expired by the service");
      await sleep(100);
      state = (await client.getReservation({ reservationId })).reservation!.state;
    }
    expect(await stock("MESH-HOODIE")).toEqual(before);

    const commit = await refusedWithoutEffect(() => client.commitReservation({ reservationId }));
    expect(commit.code).toBe(Status.FAILED_PRECONDITION);
    // Releasing an expired reservation returns it unchanged.
    const released = await client.releaseReservation({ reservationId });
    expect(released.reservation!.state).toBe(ReservationState.RESERVATION_STATE_EXPIRED);
    expect(await stock("MESH-HOODIE")).toEqual(before);
  });
});
