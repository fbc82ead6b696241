import fc from "fast-check";
import { Status, createChannel, createClient, type Channel } from "nice-grpc";
import { HealthDefinition } from "nice-grpc-server-health";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { callRaw, concat, encode, fuzzParameters, meshcartRpcs, unknownFieldPadding, type Rpc } from "@meshcart/testing/fuzz.js";
import { loadConfig, serviceConfig } from "../src/config.js";
import { startServiceRuntime, type ServiceRuntime } from "../src/service-runtime.js";
import { validate } from "../src/validation.js";
import { InventoryServiceDefinition, type InventoryServiceImplementation } from "@meshcart/contracts/meshcart/inventory/v1/inventory.js";
import { capturedLogger, type LogLine } from "./helpers.js";

/**
 * Requests the generated decoders cannot turn into a message. gRPC decodes
 * before any middleware runs and answers a decoder that throws with
 * INTERNAL; the kit must answer INVALID_ARGUMENT with the field at fault,
 * without running the handler, and keep serving. Regression test for the
 * int64-beyond-2^53 bug (Restock quantity 9007199254740993 was INTERNAL).
 */

const SERVING = 1;
const TOO_BIG = 2n ** 53n + 1n;

let runtime: ServiceRuntime;
let channel: Channel;
let lines: LogLine[];
const handled: string[] = [];

function fakeInventory(): InventoryServiceImplementation {
  const seen = (name: string) => handled.push(name);
  return {
    async listProducts() {
      seen("listProducts");
      return { products: [], nextPageToken: "" };
    },
    async getProduct(request) {
      seen("getProduct");
      return { product: { sku: request.sku, name: "" } };
    },
    async reserveStock(request) {
      seen("reserveStock");
      validate((v) => v.itemLines("items", request.items, { maxLines: 50, maxQuantity: 1000 }));
      return { reservation: { reservationId: request.reservationId } };
    },
    async getReservation() {
      seen("getReservation");
      return {};
    },
    async commitReservation() {
      seen("commitReservation");
      return {};
    },
    async releaseReservation() {
      seen("releaseReservation");
      return {};
    },
    async returnStock() {
      seen("returnStock");
      return {};
    },
    async restock(request) {
      seen("restock");
      validate((v) => v.integer("quantity", request.quantity, 1, 1_000_000));
      return {};
    },
  };
}

beforeAll(async () => {
  const captured = capturedLogger("inventory-fake");
  lines = captured.lines;
  const config = { ...loadConfig(serviceConfig, { GRPC_MAX_MESSAGE_BYTES: String(64 * 1024) }), GRPC_PORT: 0, ADMIN_PORT: 0 };
  runtime = await startServiceRuntime({
    name: "inventory-fake",
    config,
    logger: captured.logger,
    host: "127.0.0.1",
    services: [{ definition: InventoryServiceDefinition, implementation: fakeInventory() }],
  });
  channel = createChannel(`127.0.0.1:${runtime.grpcPort}`);
});

afterAll(async () => {
  channel?.close();
  await runtime?.shutdown("test over");
});

function rpc(method: string): Rpc {
  const found = meshcartRpcs().find((r) => r.service === InventoryServiceDefinition.fullName && r.method === method);
  if (!found) throw new Error(`no ${method}`);
  return found;
}

async function healthy(): Promise<void> {
  expect(await createClient(HealthDefinition, channel).check({ service: "" })).toEqual({ status: SERVING });
}

describe("requests the generated code cannot decode", () => {
  it("an int64 beyond 2^53 is INVALID_ARGUMENT naming the field, and no handler runs", async () => {
    const restock = rpc("Restock");
    const before = handled.length;
    const outcome = await callRaw(channel, restock, encode(restock.input, { restockId: "r-1", sku: "MESH-MUG", quantity: TOO_BIG }));
    expect(outcome.code).toBe(Status.INVALID_ARGUMENT);
    expect(outcome.violations).toEqual([{ field: "quantity", description: expect.stringContaining("9007199254740993 is out of range") }]);
    expect(outcome.details).toContain("quantity:");
    expect(handled.length).toBe(before);
    expect(lines.some((l) => l.msg === "call refused" && l.code === "INVALID_ARGUMENT")).toBe(true);
    await healthy();
  });

  it("names nested and repeated fields by their path, every one of them", async () => {
    const reserve = rpc("ReserveStock");
    const bytes = encode(reserve.input, {
      reservationId: "r-2",
      items: [
        { sku: "A", quantity: 1n },
        { sku: "B", quantity: 2n ** 63n - 1n },
        { sku: "C", quantity: -(2n ** 63n) },
      ],
      ttl: { seconds: TOO_BIG },
    });
    const outcome = await callRaw(channel, reserve, bytes);
    expect(outcome.code).toBe(Status.INVALID_ARGUMENT);
    expect(outcome.violations.map((v) => v.field).sort()).toEqual(["items[1].quantity", "items[2].quantity", "ttl.seconds"]);
  });

  it("the largest safe integers still reach the handler, which judges them", async () => {
    const restock = rpc("Restock");
    const before = handled.length;
    const outcome = await callRaw(channel, restock, encode(restock.input, { restockId: "r-3", sku: "MESH-MUG", quantity: 2n ** 53n - 1n }));
    expect(outcome.code).toBe(Status.INVALID_ARGUMENT);
    expect(outcome.violations).toEqual([{ field: "quantity", description: "must be a whole number from 1 to 1000000" }]);
    expect(handled.length).toBe(before + 1);
  });

  it("bytes that are no message are INVALID_ARGUMENT about the request as a whole", async () => {
    const outcome = await callRaw(channel, rpc("GetProduct"), Uint8Array.from([0x0a, 0xff, 0xff, 0xff, 0x0f]));
    expect(outcome.code).toBe(Status.INVALID_ARGUMENT);
    expect(outcome.violations).toEqual([
      { field: "", description: expect.stringMatching(/^is not a valid meshcart\.inventory\.v1\.GetProductRequest message/) },
    ]);
    expect(outcome.details).toMatch(/^request is not a valid/);
    await healthy();
  });

  it("unknown fields are skipped, and a message over the size limit is RESOURCE_EXHAUSTED", async () => {
    const getProduct = rpc("GetProduct");
    const fits = await callRaw(channel, getProduct, concat(encode(getProduct.input, { sku: "MESH-MUG" }), unknownFieldPadding(1_000)));
    expect(fits.code).toBe(Status.OK);
    const tooLarge = await callRaw(channel, getProduct, unknownFieldPadding(64 * 1024 + 1));
    expect(tooLarge.code).toBe(Status.RESOURCE_EXHAUSTED);
    await healthy();
  });

  it("random bytes on every method: never INTERNAL or UNKNOWN, always INVALID_ARGUMENT when the generated decoder refuses them", async () => {
    const methods = new Map(Object.values(InventoryServiceDefinition.methods).map((m) => [m.name, m]));
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...methods.keys()), fc.uint8Array({ maxLength: 64 }), async (name, bytes) => {
        const method = methods.get(name)!;
        let decodable = true;
        try {
          method.requestType.decode(bytes);
        } catch {
          decodable = false;
        }
        const outcome = await callRaw(channel, rpc(method.name), bytes);
        expect([Status.INTERNAL, Status.UNKNOWN]).not.toContain(outcome.code);
        if (!decodable) expect(outcome.code).toBe(Status.INVALID_ARGUMENT);
      }),
      fuzzParameters(150),
    );
    await healthy();
    expect(lines.filter((l) => l.level === "error" || l.level === "fatal")).toEqual([]);
  });
});
