import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { ClientError, Metadata, ServerError, Status, createChannel, createClient, createClientFactory, type Channel, type Client } from "nice-grpc";
import { RichClientError, errorDetailsClientMiddleware, type BadRequest, type PreconditionFailure } from "nice-grpc-error-details";
import { HealthDefinition } from "nice-grpc-server-health";
import { HealthCheckResponse_ServingStatus } from "nice-grpc-server-health/lib/proto/grpc/health/v1/health.js";
import { ServerReflectionService } from "nice-grpc-server-reflection";
import { ServerReflectionRequest, type ServerReflectionResponse } from "nice-grpc-server-reflection/lib/proto/grpc/reflection/v1/reflection_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig, serviceConfig } from "../src/config.js";
import type { Logger } from "../src/logger.js";
import { ConflictError, NotFoundError, RefusedError, StillRunningError, UnavailableError } from "../src/domain-errors.js";
import { decodePageToken } from "../src/pagination.js";
import type { BackgroundTask } from "../src/background-task.js";
import { startServiceRuntime, type ServiceRuntime } from "../src/service-runtime.js";
import { validate } from "../src/validation.js";
import { InventoryServiceDefinition, type InventoryServiceImplementation } from "@meshcart/contracts/meshcart/inventory/v1/inventory.js";
import { capturedLogger, deferred, eventually, state, type Deferred, type LogLine } from "./helpers.js";
import { sleep } from "../src/sleep.js";

const { SERVING, NOT_SERVING } = HealthCheckResponse_ServingStatus;
const SERVICE = InventoryServiceDefinition.fullName;
/** Installed by `make tools` / `scripts/tools.sh grpcurl` (make test runs it). */
const GRPCURL = fileURLToPath(new URL("../../../.tools/bin/grpcurl", import.meta.url));
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const run = promisify(execFile);

interface SlowGate {
  entered: Deferred<void>;
  release: Deferred<void>;
}

/**
 * A fake inventory: enough behaviour to exercise each path of the runtime's
 * middleware, nothing of the real service.
 */
function fakeInventory(logger: Logger, slow: () => SlowGate): InventoryServiceImplementation {
  const unimplemented = async (): Promise<never> => {
    throw new ServerError(Status.UNIMPLEMENTED, "not in this fake");
  };
  return {
    // Returns, after logging from inside the handler across an await.
    async getProduct(request) {
      if (request.sku === "boom") throw new Error("the database password is hunter2");
      if (request.sku === "missing") throw new ServerError(Status.NOT_FOUND, "product missing not found");
      await sleep(Math.floor(Math.random() * 5));
      logger.info({ sku: request.sku }, "looking up product");
      return { product: { sku: request.sku, name: `Product ${request.sku}` } };
    },
    // Validates like a real handler: every violation at once.
    async reserveStock(request) {
      validate((v) => {
        v.id("reservation_id", request.reservationId);
        v.itemLines("items", request.items, { maxLines: 50, maxQuantity: 1000 });
      });
      return { reservation: { reservationId: request.reservationId } };
    },
    // Page tokens; a page size of 99 asks for a response larger than the message limit.
    async listProducts(request) {
      decodePageToken(request.pageToken, (v): v is { sku: string } => typeof (v as { sku?: unknown })?.sku === "string");
      if (request.pageSize === 99) return { products: [{ sku: "BIG", description: "x".repeat(80_000) }] };
      return { products: [{ sku: "A", name: "a" }], nextPageToken: "" };
    },
    // Slow: waits for the test to let it finish.
    async getReservation(request) {
      const gate = slow();
      gate.entered.resolve();
      await gate.release.promise;
      return { reservation: { reservationId: request.reservationId } };
    },
    // The database went away.
    async restock() {
      throw Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" });
    },
    // Domain errors, chosen by the reservation id.
    async returnStock(request) {
      switch (request.reservationId) {
        case "not-found":
          throw new NotFoundError("reservation", "r-404");
        case "refused":
          throw new RefusedError("reservation r-1 is committed", [{ type: "STATE", subject: "r-1", description: "committed reservations cannot be released" }]);
        case "conflict":
          throw new ConflictError("restock r-1 was used for another SKU");
        case "unavailable":
          throw new UnavailableError("payment service away");
        case "still-running":
          throw new StillRunningError("payment still pending");
        default:
          return {};
      }
    },
    commitReservation: unimplemented,
    releaseReservation: unimplemented,
  };
}

interface Harness {
  runtime: ServiceRuntime;
  lines: LogLine[];
  logger: Logger;
  channel: Channel;
  inventory: Client<InventoryServiceDefinition>;
  health: Client<HealthDefinition>;
  slow: SlowGate;
  admin(path: string, init?: RequestInit): Promise<Response>;
  close(): Promise<void>;
}

async function startHarness(env: Record<string, string> = {}, background: BackgroundTask[] = []): Promise<Harness> {
  const { logger, lines } = capturedLogger("inventory-fake");
  // Port 0 (any free port) is not a valid configured port, so it is set
  // after validation.
  const config = { ...loadConfig(serviceConfig, env), GRPC_PORT: 0, ADMIN_PORT: 0 };
  const harness = {
    lines,
    logger,
    slow: { entered: deferred(), release: deferred() },
  } as Harness;
  harness.runtime = await startServiceRuntime({
    name: "inventory-fake",
    config,
    logger,
    host: "127.0.0.1",
    background,
    services: [{ definition: InventoryServiceDefinition, implementation: fakeInventory(logger, () => harness.slow) }],
  });
  harness.channel = createChannel(`127.0.0.1:${harness.runtime.grpcPort}`);
  harness.inventory = createClientFactory().use(errorDetailsClientMiddleware).create(InventoryServiceDefinition, harness.channel);
  harness.health = createClient(HealthDefinition, harness.channel);
  harness.admin = (path, init) => fetch(`http://127.0.0.1:${harness.runtime.adminPort}${path}`, init);
  harness.close = async () => {
    harness.channel.close();
    harness.slow.release.resolve();
    await harness.runtime.shutdown("test over");
  };
  return harness;
}

async function rejection(promise: Promise<unknown>): Promise<ClientError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(ClientError);
    return error as ClientError;
  }
  throw new Error("expected the call to fail, but it succeeded");
}

/** Minimal Prometheus text-format (0.0.4) parser: fails on any line it cannot read. */
function parsePrometheus(body: string): { types: Map<string, string>; samples: Map<string, number[]> } {
  const types = new Map<string, string>();
  const samples = new Map<string, number[]>();
  const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (\S+)( -?\d+)?$/;
  for (const line of body.split("\n")) {
    if (line === "") continue;
    if (line.startsWith("# HELP ")) continue;
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type) {
      types.set(type[1]!, type[2]!);
      continue;
    }
    const match = sample.exec(line);
    if (!match) throw new Error(`not Prometheus text: ${JSON.stringify(line)}`);
    const value = Number(match[3]!.replace(/^\+Inf$/, "Infinity").replace(/^-Inf$/, "-Infinity"));
    if (Number.isNaN(value) && match[3] !== "NaN") throw new Error(`bad sample value: ${JSON.stringify(line)}`);
    const name = match[1]!;
    const family = [...types.keys()].find((t) => name === t || name.startsWith(`${t}_`));
    if (!family) throw new Error(`sample before its # TYPE line: ${JSON.stringify(line)}`);
    samples.set(name, [...(samples.get(name) ?? []), value]);
  }
  return { types, samples };
}

/** Asks the reflection service, as a client library would. */
async function reflect(channel: Channel, requests: ServerReflectionRequest[]): Promise<ServerReflectionResponse[]> {
  const client = createClient(ServerReflectionService, channel);
  const responses: ServerReflectionResponse[] = [];
  async function* send() {
    yield* requests;
  }
  for await (const response of client.serverReflectionInfo(send())) responses.push(response);
  return responses;
}

describe("service runtime over gRPC", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h?.close();
  });

  it("reports SERVING over grpc.health.v1, overall and for each service", async () => {
    expect(h.runtime.isReady()).toBe(true);
    expect(await h.health.check({ service: "" })).toEqual({ status: SERVING });
    expect(await h.health.check({ service: SERVICE })).toEqual({ status: SERVING });
    const unknown = await rejection(h.health.check({ service: "meshcart.nope.v1.Nope" }));
    expect(unknown.code).toBe(Status.NOT_FOUND);
  });

  it("answers the probes and the scrape on the admin port", async () => {
    const healthz = await h.admin("/healthz");
    expect(healthz.status).toBe(200);
    expect(await healthz.text()).toBe("ok\n");
    const readyz = await h.admin("/readyz?verbose=1");
    expect(readyz.status).toBe(200);
    expect(readyz.headers.get("cache-control")).toBe("no-store");
    expect((await h.admin("/nothing-here")).status).toBe(404);
    const post = await h.admin("/readyz", { method: "POST" });
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET, HEAD");
  });

  it("serves Prometheus text with the process metrics on /metrics", async () => {
    const response = await h.admin("/metrics");
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    const { types, samples } = parsePrometheus(await response.text());
    expect(types.get("process_cpu_user_seconds_total")).toBe("counter");
    expect(types.get("process_resident_memory_bytes")).toBe("gauge");
    expect(types.get("nodejs_eventloop_lag_seconds")).toBe("gauge");
    expect(samples.get("process_cpu_user_seconds_total")?.[0]).toBeGreaterThan(0);
    expect(samples.get("process_resident_memory_bytes")?.[0]).toBeGreaterThan(0);
    expect(samples.get("process_start_time_seconds")?.[0]).toBeGreaterThan(1_600_000_000);
    expect(samples.get("nodejs_heap_size_used_bytes")?.[0]).toBeGreaterThan(0);
    // The same registry the runtime exposes to the service for its own metrics.
    expect(await h.runtime.registry.getSingleMetricAsString("process_resident_memory_bytes")).toContain("process_resident_memory_bytes");
  });

  it("describes its services over reflection to a client library", async () => {
    const listing = new ServerReflectionRequest();
    listing.setListServices("*");
    const health = new ServerReflectionRequest();
    health.setFileContainingSymbol(HealthDefinition.fullName);
    const inventory = new ServerReflectionRequest();
    inventory.setFileContainingSymbol(`${SERVICE}.GetProduct`);
    const [list, healthFile, inventoryFile] = await reflect(h.channel, [listing, health, inventory]);

    const names = list!
      .getListServicesResponse()!
      .getServiceList()
      .map((s) => s.getName());
    expect(names.sort()).toEqual([HealthDefinition.fullName, SERVICE].sort());

    const filesOf = (response: ServerReflectionResponse | undefined) => {
      expect(response?.getErrorResponse()).toBeUndefined();
      return response!
        .getFileDescriptorResponse()!
        .getFileDescriptorProtoList_asU8()
        .map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes));
    };
    const healthFiles = filesOf(healthFile);
    const healthProto = healthFiles.find((f) => f.name === "grpc/health/v1/health.proto");
    expect(healthProto?.service.map((s) => s.name)).toEqual(["Health"]);
    expect(healthProto?.service[0]?.method.map((m) => m.name).sort()).toEqual(["Check", "Watch"]);

    const inventoryFiles = filesOf(inventoryFile);
    const inventoryProto = inventoryFiles.find((f) => f.name === "meshcart/inventory/v1/inventory.proto");
    expect(inventoryProto?.package).toBe("meshcart.inventory.v1");
    expect(inventoryProto?.service[0]?.method.map((m) => m.name)).toEqual(Object.values(InventoryServiceDefinition.methods).map((m) => m.name));
  });

  it("lists and describes its services to grpcurl (or a reflection client when grpcurl is not installed)", async () => {
    const target = `127.0.0.1:${h.runtime.grpcPort}`;
    if (!existsSync(GRPCURL)) {
      const listing = new ServerReflectionRequest();
      listing.setListServices("*");
      const [list] = await reflect(h.channel, [listing]);
      const names = list!
        .getListServicesResponse()!
        .getServiceList()
        .map((s) => s.getName());
      expect(names).toContain(SERVICE);
      expect(names).toContain(HealthDefinition.fullName);
      return;
    }
    const grpcurl = (...args: string[]) => run(GRPCURL, ["-plaintext", ...args], { timeout: 15_000 });
    const { stdout: list } = await grpcurl(target, "list");
    expect(list.trim().split("\n").sort()).toEqual([HealthDefinition.fullName, SERVICE].sort());

    const { stdout: description } = await grpcurl(target, "describe", SERVICE);
    expect(description).toContain("rpc GetProduct ( .meshcart.inventory.v1.GetProductRequest )");
    // Source info is kept in the descriptor: the contracts' docs show.
    expect(description).toContain("owns the product catalogue");

    const { stdout: healthDescription } = await grpcurl(target, "describe", HealthDefinition.fullName);
    expect(healthDescription).toContain("rpc Watch");

    // The descriptors served match what the server speaks: grpcurl can call it.
    const { stdout: answer } = await grpcurl("-rpc-header", "x-request-id: grpcurl-1", "-d", '{"sku": "MESH-MUG"}', target, `${SERVICE}/GetProduct`);
    expect(JSON.parse(answer)).toEqual({ product: { sku: "MESH-MUG", name: "Product MESH-MUG" } });
  });

  it("refuses bad input with INVALID_ARGUMENT and field violations the client can read", async () => {
    const error = await rejection(
      h.inventory.reserveStock({
        reservationId: "",
        items: [
          { sku: "MESH-MUG", quantity: 1 },
          { sku: "MESH-MUG", quantity: 0 },
        ],
      }),
    );
    expect(error).toBeInstanceOf(RichClientError);
    expect(error.code).toBe(Status.INVALID_ARGUMENT);
    const details = (error as RichClientError).extra;
    const badRequest = details.find((d): d is BadRequest => d.$type === "google.rpc.BadRequest");
    expect(badRequest?.fieldViolations.map((v) => [v.field, v.description])).toEqual([
      ["reservation_id", "is required"],
      ["items[1].quantity", "must be a whole number from 1 to 1000"],
      ["items[1].sku", "duplicate SKU MESH-MUG"],
    ]);
    expect(error.details).toBe("reservation_id: is required; items[1].quantity: must be a whole number from 1 to 1000; items[1].sku: duplicate SKU MESH-MUG");

    const forged = await rejection(h.inventory.listProducts({ pageToken: "forged!" }));
    expect(forged.code).toBe(Status.INVALID_ARGUMENT);
    expect(
      (forged as RichClientError).extra
        .filter((d): d is BadRequest => d.$type === "google.rpc.BadRequest")
        .flatMap((d) => d.fieldViolations.map((v) => v.field)),
    ).toEqual(["page_token"]);
  });

  it("passes statuses thrown on purpose through unchanged", async () => {
    const error = await rejection(h.inventory.getProduct({ sku: "missing" }));
    expect(error.code).toBe(Status.NOT_FOUND);
    expect(error.details).toBe("product missing not found");
    const unimplemented = await rejection(h.inventory.commitReservation({ reservationId: "r" }));
    expect(unimplemented.code).toBe(Status.UNIMPLEMENTED);
  });

  it("answers an unexpected error as INTERNAL without its message, and logs it with the correlation id", async () => {
    const error = await rejection(h.inventory.getProduct({ sku: "boom" }, { metadata: Metadata({ "x-request-id": "req-boom" }) }));
    expect(error.code).toBe(Status.INTERNAL);
    expect(error.details).toBe("internal error");
    expect(error.message).not.toContain("hunter2");
    const logged = h.lines.find((l) => l.msg === "unexpected error" && l.correlation_id === "req-boom");
    expect(logged?.level).toBe("error");
    expect((logged?.err as { message?: string; stack?: string }).message).toBe("the database password is hunter2");
    expect((logged?.err as { stack?: string }).stack).toContain("runtime.test.ts");
    expect(logged?.grpc_method).toBe(`/${SERVICE}/GetProduct`);
  });

  it("maps domain errors to their statuses", async () => {
    const refusal = async (reservationId: string) => rejection(h.inventory.returnStock({ reservationId }));
    expect(await refusal("not-found")).toMatchObject({ code: Status.NOT_FOUND, details: "reservation r-404 not found" });
    const refused = await refusal("refused");
    expect(refused).toMatchObject({ code: Status.FAILED_PRECONDITION, details: "reservation r-1 is committed" });
    const failure = (refused as RichClientError).extra.find((d): d is PreconditionFailure => d.$type === "google.rpc.PreconditionFailure");
    expect(failure?.violations.map((v) => [v.type, v.subject, v.description])).toEqual([["STATE", "r-1", "committed reservations cannot be released"]]);
    expect(await refusal("conflict")).toMatchObject({ code: Status.ALREADY_EXISTS, details: "restock r-1 was used for another SKU" });
    expect(await refusal("unavailable")).toMatchObject({ code: Status.UNAVAILABLE, details: "payment service away" });
    expect(await refusal("still-running")).toMatchObject({ code: Status.DEADLINE_EXCEEDED, details: "payment still pending" });
    expect(await h.inventory.returnStock({ reservationId: "fine" })).toBeDefined();
  });

  it("answers a database that is away as UNAVAILABLE", async () => {
    const error = await rejection(h.inventory.restock({ restockId: "r1", sku: "A", quantity: 1 }));
    expect(error.code).toBe(Status.UNAVAILABLE);
    expect(error.details).toBe("database unavailable, try again");
  });

  describe("correlation id", () => {
    it("echoes a given x-request-id in the response headers", async () => {
      let header: Metadata | undefined;
      await h.inventory.getProduct({ sku: "A" }, { metadata: Metadata({ "x-request-id": "order-42:checkout" }), onHeader: (m) => (header = m) });
      expect(header?.get("x-request-id")).toBe("order-42:checkout");
    });

    it("generates a UUID when none is given or the given one is not sane", async () => {
      const seen: string[] = [];
      for (const metadata of [Metadata(), Metadata({ "x-request-id": "has spaces" }), Metadata({ "x-request-id": "x".repeat(129) })]) {
        let header: Metadata | undefined;
        await h.inventory.getProduct({ sku: "A" }, { metadata, onHeader: (m) => (header = m) });
        const id = header?.get("x-request-id");
        expect(id).toMatch(UUID);
        seen.push(id as string);
      }
      expect(new Set(seen).size).toBe(3);
    });

    it("is returned with errors too", async () => {
      let header: Metadata | undefined;
      let trailer: Metadata | undefined;
      const error = await rejection(
        h.inventory.getProduct(
          { sku: "missing" },
          { metadata: Metadata({ "x-request-id": "req-err" }), onHeader: (m) => (header = m), onTrailer: (m) => (trailer = m) },
        ),
      );
      expect(error.code).toBe(Status.NOT_FOUND);
      // A call that fails before answering gets a trailers-only response: the header travels there.
      expect(header?.get("x-request-id") ?? trailer?.get("x-request-id")).toBe("req-err");
      const refused = h.lines.find((l) => l.msg === "call refused" && l.correlation_id === "req-err");
      expect(refused).toMatchObject({ code: "NOT_FOUND", level: "info", grpc_method: `/${SERVICE}/GetProduct` });
    });

    it("is carried by every log line written inside a handler, even with concurrent calls", async () => {
      const ids = Array.from({ length: 20 }, (_, i) => i);
      await Promise.all(ids.map((i) => h.inventory.getProduct({ sku: `SKU-${i}` }, { metadata: Metadata({ "x-request-id": `req-${i}` }) })));
      for (const i of ids) {
        const lines = h.lines.filter((l) => l.msg === "looking up product" && l.sku === `SKU-${i}`);
        expect(lines).toHaveLength(1);
        expect(lines[0]).toMatchObject({
          correlation_id: `req-${i}`,
          grpc_method: `/${SERVICE}/GetProduct`,
          service: "inventory-fake",
        });
      }
      // The generated id is the one logged.
      let header: Metadata | undefined;
      await h.inventory.getProduct({ sku: "GENERATED" }, { onHeader: (m) => (header = m) });
      const line = h.lines.find((l) => l.msg === "looking up product" && l.sku === "GENERATED");
      expect(line?.correlation_id).toBe(header?.get("x-request-id"));
      // Lines written outside any call carry none.
      h.logger.info("outside any call");
      const outside = h.lines.find((l) => l.msg === "outside any call");
      expect(outside).toBeDefined();
      expect(outside).not.toHaveProperty("correlation_id");
    });
  });
});

describe("service runtime message size limit", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ GRPC_MAX_MESSAGE_BYTES: String(64 * 1024) });
  });
  afterAll(async () => {
    await h?.close();
  });

  it("refuses a message larger than GRPC_MAX_MESSAGE_BYTES with RESOURCE_EXHAUSTED and keeps serving", async () => {
    const tooLarge = await rejection(h.inventory.getProduct({ sku: "x".repeat(70_000) }));
    expect(tooLarge.code).toBe(Status.RESOURCE_EXHAUSTED);
    // The handler never saw it.
    expect(h.lines.some((l) => l.msg === "looking up product")).toBe(false);
    // A response over the limit is not sent either.
    const tooLargeAnswer = await rejection(h.inventory.listProducts({ pageSize: 99 }));
    expect(tooLargeAnswer.code).toBe(Status.RESOURCE_EXHAUSTED);
    // Messages under the limit pass; the server and the connection still work.
    expect(await h.inventory.getProduct({ sku: "y".repeat(1_500) })).toMatchObject({ product: { sku: "y".repeat(1_500) } });
    expect(await h.health.check({ service: "" })).toEqual({ status: SERVING });
  });
});

describe("service runtime shutdown", () => {
  it("lets an in-flight call finish, ends server streams at once, and stops well before its timeout", async () => {
    const h = await startHarness({ SHUTDOWN_DRAIN_DELAY_MS: "0", SHUTDOWN_TIMEOUT_MS: "8000" });
    try {
      // A health Watch stream: open until the server ends it.
      const watched: HealthCheckResponse_ServingStatus[] = [];
      const firstStatus = deferred();
      const watch = (async () => {
        for await (const response of h.health.watch({ service: "" })) {
          watched.push(response.status);
          firstStatus.resolve();
        }
      })();
      await firstStatus.promise;
      expect(watched).toEqual([SERVING]);

      // A slow unary call, in its handler when shutdown begins.
      const slowCall = h.inventory.getReservation({ reservationId: "r-slow" });
      await h.slow.entered.promise;

      const stopped = h.runtime.shutdown("test");
      expect(h.runtime.shutdown("again")).toBe(stopped);
      expect(h.runtime.isReady()).toBe(false);
      // Streams are ended one tick later, once watchers were told NOT_SERVING.
      await new Promise((resolve) => setImmediate(resolve));
      expect(h.runtime.stopping.aborted).toBe(true);

      // The stream ends cleanly (status OK) as soon as shutdown begins.
      await watch;
      expect(watched).toEqual([SERVING, NOT_SERVING]);

      // The slow call keeps the shutdown waiting...
      await sleep(200);
      expect(await state(slowCall)).toBe("pending");
      expect(await state(stopped)).toBe("pending");

      // ...and completes successfully once its handler returns.
      h.slow.release.resolve();
      expect(await slowCall).toMatchObject({ reservation: { reservationId: "r-slow" } });
      await stopped;
      const stoppedLine = h.lines.find((l) => l.msg === "stopped");
      expect(stoppedLine?.outcome).toBe("drained");
      expect(h.lines.some((l) => l.msg === "in-flight calls did not finish in time: cancelling them")).toBe(false);

      // Afterwards nothing listens any more.
      const after = await rejection(h.inventory.getProduct({ sku: "A" }, { signal: AbortSignal.timeout(5_000) }));
      expect(after.code).toBe(Status.UNAVAILABLE);
      await expect(h.admin("/healthz")).rejects.toThrow();
    } finally {
      await h.close();
    }
  }, 20_000);

  it("stops background tasks only after in-flight calls drained, and logs a task that fails", async () => {
    let taskSignal: AbortSignal | undefined;
    const taskEnded = deferred();
    const worker: BackgroundTask = {
      name: "expirer",
      async run(signal) {
        taskSignal = signal;
        await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
        taskEnded.resolve();
      },
    };
    const failing: BackgroundTask = {
      name: "broken",
      run: async () => {
        throw new Error("task blew up");
      },
    };
    const h = await startHarness({}, [worker, failing]);
    try {
      expect(taskSignal?.aborted).toBe(false);
      const failed = await eventually(() => h.lines.find((l) => l.msg === "background task failed"), 5_000, "the task failure");
      expect(failed).toMatchObject({ task: "broken", level: "error", err: { message: "task blew up" } });
      expect(h.runtime.isReady()).toBe(true);

      const slowCall = h.inventory.getReservation({ reservationId: "r-slow" });
      await h.slow.entered.promise;
      const stopped = h.runtime.shutdown("test");
      await sleep(100);
      // The in-flight call may depend on background work: it keeps running.
      expect(h.runtime.stopping.aborted).toBe(true);
      expect(taskSignal?.aborted).toBe(false);

      h.slow.release.resolve();
      await slowCall;
      await stopped;
      expect(taskSignal?.aborted).toBe(true);
      expect(await state(taskEnded.promise)).toBe("fulfilled");
    } finally {
      await h.close();
    }
  }, 20_000);

  it("cancels calls that outlast SHUTDOWN_TIMEOUT_MS", async () => {
    const h = await startHarness({ SHUTDOWN_TIMEOUT_MS: "300" });
    try {
      const slowCall = rejection(h.inventory.getReservation({ reservationId: "r-stuck" }));
      await h.slow.entered.promise;
      await h.runtime.shutdown("test");
      // The connection is cut under the call: grpc-js reports a reset stream.
      expect([Status.CANCELLED, Status.UNAVAILABLE]).toContain((await slowCall).code);
      expect(h.lines.find((l) => l.msg === "stopped")?.outcome).toBe("forced");
    } finally {
      await h.close();
    }
  }, 20_000);

  it("keeps serving, while reporting not ready, during SHUTDOWN_DRAIN_DELAY_MS", async () => {
    const drainDelayMs = 2_500;
    const h = await startHarness({ SHUTDOWN_DRAIN_DELAY_MS: String(drainDelayMs) });
    try {
      expect((await h.admin("/readyz")).status).toBe(200);
      const stopped = h.runtime.shutdown("test");

      // Probes and health say "go away"...
      const readyz = await h.admin("/readyz");
      expect(readyz.status).toBe(503);
      expect(await readyz.text()).toBe("not ready\n");
      expect((await h.admin("/healthz")).status).toBe(200);
      expect(await h.health.check({ service: "" })).toEqual({ status: NOT_SERVING });
      expect(await h.health.check({ service: SERVICE })).toEqual({ status: NOT_SERVING });

      // ...but a call that still arrives is served.
      let header: Metadata | undefined;
      const answer = await h.inventory.getProduct({ sku: "LATE" }, { metadata: Metadata({ "x-request-id": "req-late" }), onHeader: (m) => (header = m) });
      expect(answer).toMatchObject({ product: { sku: "LATE" } });
      expect(header?.get("x-request-id")).toBe("req-late");
      expect(await state(stopped)).toBe("pending");

      await stopped;
      const stoppedLine = h.lines.find((l) => l.msg === "stopped");
      expect(stoppedLine?.outcome).toBe("drained");
      // The delay was waited out (timers never fire early by more than a tick).
      expect(stoppedLine?.duration_ms).toBeGreaterThanOrEqual(drainDelayMs - 5);
    } finally {
      await h.close();
    }
  }, 20_000);
});
