import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer, type Server, type Socket } from "node:net";
import { ClientError, Metadata, ServerError, Status, createChannel, createClient } from "nice-grpc";
import { HealthDefinition } from "nice-grpc-server-health";
import { HealthCheckResponse_ServingStatus } from "nice-grpc-server-health/lib/proto/grpc/health/v1/health.js";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "@meshcart/testing/database.js";
import { openDatabase } from "../src/bootstrap.js";
import { loadConfig, serviceConfig } from "../src/config.js";
import { Database, execute, isTransientDatabaseError, isUniqueViolation, statement } from "../src/database.js";
import type { Logger } from "../src/logger.js";
import { migrate, readMigrations } from "../src/migrations.js";
import { startServiceRuntime } from "../src/service-runtime.js";
import { InventoryServiceDefinition, type InventoryServiceImplementation } from "@meshcart/contracts/meshcart/inventory/v1/inventory.js";
import { sleep } from "../src/sleep.js";
import { TcpRelay, capturedLogger, deferred, eventually, freePort, state, type LogLine } from "./helpers.js";

let testDb: TestDatabase;
let logger: Logger;
let lines: LogLine[];
const opened: Database[] = [];
const directories: string[] = [];

function open(url = testDb.url, options: { poolMax?: number; statementTimeoutMs?: number } = {}): Database {
  const db = new Database({
    url,
    poolMax: options.poolMax ?? 4,
    statementTimeoutMs: options.statementTimeoutMs ?? 10_000,
    applicationName: "lib-test",
    logger,
  });
  opened.push(db);
  return db;
}

async function migrationsDirectory(files: Record<string, string>): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), "meshcart-migrations-"));
  directories.push(directory);
  for (const [name, sql] of Object.entries(files)) await writeFile(join(directory, name), sql);
  return directory;
}

function target(url: string): { host: string; port: number } {
  const parsed = new URL(url);
  return { host: parsed.hostname, port: Number(parsed.port) };
}

function withPort(url: string, port: number): string {
  const parsed = new URL(url);
  parsed.host = `127.0.0.1:${port}`;
  return parsed.toString();
}

async function thrownBy(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(Error);
    return error as Error & { code?: string };
  }
  throw new Error("expected a rejection");
}

/** Resolves for everyone once `parties` callers have arrived. */
function barrier(parties: number): () => Promise<void> {
  const all = deferred();
  let arrived = 0;
  return () => {
    if (++arrived === parties) all.resolve();
    return all.promise;
  };
}

beforeAll(async () => {
  testDb = await createTestDatabase("lib_database");
});

afterAll(async () => {
  await testDb?.drop();
});

beforeEach(() => {
  ({ logger, lines } = capturedLogger("lib-test"));
});

afterEach(async () => {
  await Promise.all(opened.splice(0).map((db) => db.close().catch(() => undefined)));
  await Promise.all(directories.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

describe("migrate", () => {
  // Each test migrates a database of its own: migrations are per database.
  let db: Database;
  let scratch: TestDatabase;
  beforeEach(async () => {
    scratch = await createTestDatabase("lib_migrate");
    db = open(scratch.url);
  });
  afterEach(async () => {
    await db.close().catch(() => undefined);
    await scratch.drop();
  });

  const files = {
    // Each file depends on the one before: a wrong order fails.
    "001_create_things.sql": "CREATE TABLE things (id int PRIMARY KEY);",
    "002_add_label.sql": "ALTER TABLE things ADD COLUMN label text NOT NULL DEFAULT '';",
    "010_seed.sql": "INSERT INTO things (id, label) VALUES (1, 'one');",
  };

  it("applies the files in order, each once, and records them", async () => {
    const directory = await migrationsDirectory(files);
    expect(await migrate(db, directory, logger)).toEqual(["001_create_things.sql", "002_add_label.sql", "010_seed.sql"]);
    const { rows } = await db.query<{ version: string; name: string; checksum: string }>(
      "SELECT version, name, checksum FROM schema_migrations ORDER BY applied_at, version",
    );
    const read = await readMigrations(directory);
    expect(rows).toEqual(read.map(({ version, name, checksum }) => ({ version, name, checksum })));
    expect(rows.map((r) => r.version)).toEqual(["001", "002", "010"]);
    expect((await db.query("SELECT id, label FROM things")).rows).toEqual([{ id: 1, label: "one" }]);
    expect(lines.filter((l) => l.msg === "applied migration").map((l) => l.migration)).toEqual(Object.keys(files));
  });

  it("orders versions by number, not as text, once they outgrow three digits", async () => {
    const directory = await migrationsDirectory({
      "999_create.sql": "CREATE TABLE big (id int);",
      "1000_use.sql": "INSERT INTO big VALUES (1000);",
    });
    expect(await migrate(db, directory, logger)).toEqual(["999_create.sql", "1000_use.sql"]);
  });

  it("is idempotent: a second run applies nothing and changes nothing", async () => {
    const directory = await migrationsDirectory(files);
    await migrate(db, directory, logger);
    const before = (await db.query("SELECT version, applied_at FROM schema_migrations ORDER BY version")).rows;
    expect(await migrate(db, directory, logger)).toEqual([]);
    expect(await migrate(open(scratch.url), directory, logger)).toEqual([]);
    expect((await db.query("SELECT version, applied_at FROM schema_migrations ORDER BY version")).rows).toEqual(before);
    expect((await db.query("SELECT count(*)::int AS n FROM things")).rows).toEqual([{ n: 1 }]);

    // A new file is applied on the next run, alone.
    await writeFile(join(directory, "011_more.sql"), "INSERT INTO things (id) VALUES (2);");
    expect(await migrate(db, directory, logger)).toEqual(["011_more.sql"]);
  });

  it("applies each migration once when 4 migrators start together", async () => {
    const directory = await migrationsDirectory({
      "001_create.sql": "CREATE TABLE runs (id serial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp());",
      "002_slow.sql": "SELECT pg_sleep(0.1); INSERT INTO runs DEFAULT VALUES;",
      "003_again.sql": "INSERT INTO runs DEFAULT VALUES;",
    });
    const migrators = Array.from({ length: 4 }, () => open(scratch.url, { poolMax: 1 }));
    const results = await Promise.all(migrators.map((m) => migrate(m, directory, logger)));
    expect(results.flat().sort()).toEqual(["001_create.sql", "002_slow.sql", "003_again.sql"]);
    expect((await db.query("SELECT count(*)::int AS n FROM runs")).rows).toEqual([{ n: 2 }]);
    expect((await db.query("SELECT count(*)::int AS n FROM schema_migrations")).rows).toEqual([{ n: 3 }]);
    // The lock is released: another run gets it at once.
    expect(await migrate(db, directory, logger)).toEqual([]);
  });

  it("refuses an applied migration whose file was edited, and applies nothing after it", async () => {
    const directory = await migrationsDirectory(files);
    await migrate(db, directory, logger);
    await writeFile(join(directory, "002_add_label.sql"), "ALTER TABLE things ADD COLUMN label text;");
    await writeFile(join(directory, "020_later.sql"), "CREATE TABLE later (id int);");
    const error = await thrownBy(migrate(db, directory, logger));
    expect(error.message).toBe("migration 002_add_label.sql changed after it was applied (as 002_add_label.sql)");
    expect((await db.query("SELECT to_regclass('later') AS t")).rows).toEqual([{ t: null }]);
    // The lock was released despite the error.
    await writeFile(join(directory, "002_add_label.sql"), files["002_add_label.sql"]);
    expect(await migrate(db, directory, logger)).toEqual(["020_later.sql"]);
  });

  it("rolls a failing migration back whole and keeps the ones before it", async () => {
    const directory = await migrationsDirectory({
      "001_ok.sql": "CREATE TABLE ok (id int);",
      "002_broken.sql": "CREATE TABLE half (id int); INSERT INTO nowhere VALUES (1);",
    });
    const error = await thrownBy(migrate(db, directory, logger));
    expect(error.message).toMatch(/^migration 002_broken\.sql failed: relation "nowhere" does not exist/);
    expect((await db.query("SELECT version FROM schema_migrations")).rows).toEqual([{ version: "001" }]);
    expect((await db.query("SELECT to_regclass('half') AS t")).rows).toEqual([{ t: null }]);

    await writeFile(join(directory, "002_broken.sql"), "CREATE TABLE half (id int);");
    expect(await migrate(db, directory, logger)).toEqual(["002_broken.sql"]);
  });

  it("refuses badly named migration files", async () => {
    const directory = await migrationsDirectory({ "1_too_short.sql": "SELECT 1;" });
    await expect(migrate(db, directory, logger)).rejects.toThrow("migration file 1_too_short.sql must be named NNN_description.sql");
    const other = await migrationsDirectory({ "001_Capital.sql": "SELECT 1;", "README.md": "not a migration" });
    await expect(readMigrations(other)).rejects.toThrow("001_Capital.sql");
  });
});

describe("Database", () => {
  let db: Database;
  beforeEach(async () => {
    db = open();
    await db.query("DROP TABLE IF EXISTS counter, items");
    await db.query("CREATE TABLE counter (id int PRIMARY KEY, value int NOT NULL)");
    await db.query("INSERT INTO counter VALUES (1, 0), (2, 0)");
    await db.query("CREATE TABLE items (id int PRIMARY KEY)");
  });

  const counter = async () => (await db.query<{ value: number }>("SELECT value FROM counter WHERE id = 1")).rows[0]?.value;

  it("applies the session settings: statement timeout and application name", async () => {
    const quick = open(testDb.url, { statementTimeoutMs: 150 });
    expect((await quick.query("SHOW statement_timeout")).rows).toEqual([{ statement_timeout: "150ms" }]);
    expect((await quick.query("SHOW application_name")).rows).toEqual([{ application_name: "lib-test" }]);
    const error = await thrownBy(quick.query("SELECT pg_sleep(5)"));
    expect(error.code).toBe("57014");
  });

  it("retries a serialization failure between two SERIALIZABLE transactions", async () => {
    const bothRead = barrier(2);
    const attempts: string[] = [];
    const increment = (who: string) =>
      db.transaction(
        async (client) => {
          attempts.push(who);
          const { rows } = await client.query<{ value: number }>("SELECT value FROM counter WHERE id = 1");
          // First attempts: both read the same value before either writes.
          if (attempts.filter((a) => a === who).length === 1) await bothRead();
          await client.query("UPDATE counter SET value = $1 WHERE id = 1", [rows[0]!.value + 1]);
          return rows[0]!.value;
        },
        { isolation: "serializable" },
      );
    const seen = await Promise.all([increment("a"), increment("b")]);
    // One of them ran twice and saw the other's commit the second time.
    expect(attempts).toHaveLength(3);
    expect(seen.sort()).toEqual([0, 1]);
    expect(await counter()).toBe(2);
  });

  it("gives up after the last attempt with the serialization failure", async () => {
    const bothRead = barrier(2);
    const increment = () =>
      db.transaction(
        async (client) => {
          const { rows } = await client.query<{ value: number }>("SELECT value FROM counter WHERE id = 1");
          await bothRead();
          await client.query("UPDATE counter SET value = $1 WHERE id = 1", [rows[0]!.value + 1]);
        },
        { isolation: "serializable", attempts: 1 },
      );
    const outcomes = await Promise.allSettled([increment(), increment()]);
    const failures = outcomes.filter((o): o is PromiseRejectedResult => o.status === "rejected");
    expect(failures).toHaveLength(1);
    expect((failures[0]!.reason as { code?: string }).code).toBe("40001");
    expect(await counter()).toBe(1);
  });

  it("retries a deadlock", async () => {
    const bothLocked = barrier(2);
    let attempts = 0;
    const lockBoth = (first: number, second: number) =>
      db.transaction(async (client) => {
        const attempt = ++attempts;
        await client.query("SET LOCAL deadlock_timeout = '20ms'");
        await client.query("UPDATE counter SET value = value + 1 WHERE id = $1", [first]);
        if (attempt <= 2) await bothLocked();
        await client.query("UPDATE counter SET value = value + 1 WHERE id = $1", [second]);
      });
    await Promise.all([lockBoth(1, 2), lockBoth(2, 1)]);
    expect(attempts).toBe(3);
    const { rows } = await db.query("SELECT id, value FROM counter ORDER BY id");
    expect(rows).toEqual([
      { id: 1, value: 2 },
      { id: 2, value: 2 },
    ]);
  });

  it("rolls back on error, rethrows the error as is, and returns the connection to the pool", async () => {
    const single = open(testDb.url, { poolMax: 1 });
    const failure = new Error("changed my mind");
    for (let i = 0; i < 3; i++) {
      const error = await thrownBy(
        single.transaction(async (client) => {
          await client.query("INSERT INTO items VALUES ($1)", [i]);
          await client.query("UPDATE counter SET value = 99");
          throw failure;
        }),
      );
      expect(error).toBe(failure);
    }
    expect((await single.query("SELECT count(*)::int AS n FROM items")).rows).toEqual([{ n: 0 }]);
    expect(await counter()).toBe(0);
    // With one connection, this would wait forever had a failed transaction kept it.
    expect(await single.transaction(async (client) => (await client.query("SELECT 7 AS n")).rows[0])).toEqual({ n: 7 });
    expect(single.pool.totalCount).toBe(1);
    expect(single.pool.idleCount).toBe(1);
  });

  it("does not retry errors that would fail again", async () => {
    await db.query("INSERT INTO items VALUES (1)");
    let attempts = 0;
    const error = await thrownBy(
      db.transaction(
        async (client) => {
          attempts++;
          await client.query("INSERT INTO items VALUES (1)");
        },
        { isolation: "serializable" },
      ),
    );
    expect(attempts).toBe(1);
    expect(isUniqueViolation(error)).toBe(true);
    expect(isTransientDatabaseError(error)).toBe(false);
  });

  it("commits and returns the result of the work", async () => {
    const result = await db.transaction(async (client) => {
      await client.query("INSERT INTO items VALUES (5)");
      return "done";
    });
    expect(result).toBe("done");
    expect((await db.query("SELECT id FROM items")).rows).toEqual([{ id: 5 }]);
  });

  it("reads bigint columns as numbers, and refuses one beyond the safe integer range", async () => {
    expect((await db.query("SELECT 42::int8 AS n, -9007199254740991::int8 AS low")).rows).toEqual([{ n: 42, low: -9007199254740991 }]);
    await expect(db.query("SELECT 9007199254740993::int8 AS n")).rejects.toThrow("bigint 9007199254740993 exceeds the safe integer range");
    // The connection that read it is still good.
    expect((await db.query("SELECT 1::int8 AS n")).rows).toEqual([{ n: 1 }]);
  });

  it("pings: true when the database answers", async () => {
    expect(await db.ping()).toBe(true);
  });
});

describe("prepared statements", () => {
  it("run by name, prepared once per connection, with the name where pg_stat_statements keeps it", async () => {
    const twice = statement("lib-test.twice", "  SELECT $1::int * 2 AS n ");
    expect(twice).toEqual({ name: "lib-test.twice", text: "SELECT /* lib-test.twice */ $1::int * 2 AS n" });
    const db = open(testDb.url, { poolMax: 1 });
    expect((await db.query<{ n: number }>(twice, [21])).rows).toEqual([{ n: 42 }]);
    expect((await db.query<{ n: number }>(twice, [4])).rows).toEqual([{ n: 8 }]);
    // The server holds it prepared under its name (one connection: the pool's only one).
    const { rows } = await db.query<{ name: string }>("SELECT name FROM pg_prepared_statements");
    expect(rows.map((r) => r.name)).toContain("lib-test.twice");
    // The same on a transaction's client.
    expect(await db.transaction(async (tx) => (await execute<{ n: number }>(tx, twice, [5])).rows[0]!.n)).toBe(10);
  });

  it("a name is one statement's: defined twice, or malformed, it is refused at once", () => {
    statement("lib-test.once", "SELECT 1");
    expect(() => statement("lib-test.once", "SELECT 2")).toThrow(/defined twice/);
    expect(() => statement("Bad Name", "SELECT 1")).toThrow(/lower-case/);
    expect(() => statement("lib-test.no-keyword", "(SELECT 1)")).toThrow(/must start with a keyword/);
  });
});

describe("an unreachable database", () => {
  it("ping is false when nothing listens", async () => {
    const db = open(withPort(testDb.url, await freePort()));
    expect(await db.ping()).toBe(false);
  });

  it("ping is false within its timeout when the server never answers", async () => {
    const sockets = new Set<Socket>();
    const silent: Server = createServer((socket) => sockets.add(socket));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    try {
      const port = (silent.address() as { port: number }).port;
      const db = open(withPort(testDb.url, port));
      const ping = db.ping(100);
      // Settles on its own timeout, before the pool's connection timeout.
      expect(await Promise.race([ping, new Promise((resolve) => setTimeout(() => resolve("late"), 900))])).toBe(false);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  it("isTransientDatabaseError recognises connection refused, lost connections and restarts, and nothing else", async () => {
    const refused = await thrownBy(open(withPort(testDb.url, await freePort())).query("SELECT 1"));
    expect(refused.code).toBe("ECONNREFUSED");
    expect(isTransientDatabaseError(refused)).toBe(true);

    // A session ended by the server (as on a restart or failover).
    const db = open();
    const client = await db.pool.connect();
    client.on("error", () => undefined);
    try {
      const pid = (await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]!.pid;
      await db.query("SELECT pg_terminate_backend($1)", [pid]);
      const terminated = await thrownBy(client.query("SELECT 1"));
      expect(isTransientDatabaseError(terminated)).toBe(true);
    } finally {
      client.release(true);
    }

    const syntax = await thrownBy(db.query("SELEC 1"));
    expect(syntax.code).toBe("42601");
    expect(isTransientDatabaseError(syntax)).toBe(false);
    expect(isTransientDatabaseError(Object.assign(new Error("x"), { code: "40001" }))).toBe(true);
    expect(isTransientDatabaseError(new Error("something else"))).toBe(false);
    expect(isTransientDatabaseError({ code: "ECONNREFUSED", message: "not an Error" })).toBe(false);
    expect(isTransientDatabaseError(undefined)).toBe(false);
  });

  // Found by the chaos harness (make chaos): Postgres stopping under load
  // took the inventory service down with an unhandled 'error' event.
  it("a connection that dies under a transaction fails it as transient, and the process and the pool go on", async () => {
    const db = open();
    const work = db.transaction(async (client) => {
      const pid = (await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]!.pid;
      const ended = new Promise((resolve) => client.once("end", resolve));
      // Between two statements: no query is waiting when the session is ended.
      await db.query("SELECT pg_terminate_backend($1)", [pid]);
      await ended;
      return client.query("SELECT 1");
    });
    expect(isTransientDatabaseError(await thrownBy(work))).toBe(true);
    // The dead connection was dropped, not handed out again.
    expect((await db.transaction((client) => client.query<{ one: number }>("SELECT 1 AS one"))).rows).toEqual([{ one: 1 }]);
    expect(db.pool.totalCount).toBe(1);
  });
});

describe("a service with a database", () => {
  const unimplemented = async (): Promise<never> => {
    throw new ServerError(Status.UNIMPLEMENTED, "not in this fake");
  };
  function inventoryOver(db: Database): InventoryServiceImplementation {
    return {
      async getProduct(request) {
        const { rows } = await db.query<{ sku: string }>("SELECT $1::text AS sku", [request.sku]);
        return { product: { sku: rows[0]!.sku } };
      },
      listProducts: unimplemented,
      reserveStock: unimplemented,
      getReservation: unimplemented,
      commitReservation: unimplemented,
      releaseReservation: unimplemented,
      returnStock: unimplemented,
      restock: unimplemented,
    };
  }

  it("is ready only while the database is reachable, and answers UNAVAILABLE while it is away", async () => {
    const relay = await TcpRelay.start(target(testDb.url));
    const db = open(withPort(testDb.url, relay.port), { poolMax: 2 });
    const runtime = await startServiceRuntime({
      name: "inventory-db-fake",
      config: { ...loadConfig(serviceConfig, {}), GRPC_PORT: 0, ADMIN_PORT: 0 },
      logger,
      host: "127.0.0.1",
      database: db,
      databaseHealthIntervalMs: 100,
      services: [{ definition: InventoryServiceDefinition, implementation: inventoryOver(db) }],
    });
    const channel = createChannel(`127.0.0.1:${runtime.grpcPort}`);
    const health = createClient(HealthDefinition, channel);
    const inventory = createClient(InventoryServiceDefinition, channel);
    const readyz = async () => (await fetch(`http://127.0.0.1:${runtime.adminPort}/readyz`)).status;
    const statuses = async () => [(await health.check({ service: "" })).status, (await health.check({ service: InventoryServiceDefinition.fullName })).status];
    try {
      expect(await readyz()).toBe(200);
      expect(await statuses()).toEqual([HealthCheckResponse_ServingStatus.SERVING, HealthCheckResponse_ServingStatus.SERVING]);
      expect(await inventory.getProduct({ sku: "A" })).toMatchObject({ product: { sku: "A" } });

      await relay.pause();
      await eventually(async () => ((await readyz()) === 503 ? true : undefined), 10_000, "not ready");
      expect(runtime.isReady()).toBe(false);
      expect(await statuses()).toEqual([HealthCheckResponse_ServingStatus.NOT_SERVING, HealthCheckResponse_ServingStatus.NOT_SERVING]);
      // The error boundary turns the connection error into a retryable status.
      let error: unknown;
      try {
        await inventory.getProduct({ sku: "A" }, { metadata: Metadata({ "x-request-id": "req-db-away" }) });
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ClientError);
      expect((error as ClientError).code).toBe(Status.UNAVAILABLE);
      expect((error as ClientError).details).toBe("database unavailable, try again");
      expect(lines.find((l) => l.msg === "database unavailable" && l.correlation_id === "req-db-away")?.level).toBe("warn");
      expect(lines.some((l) => l.msg === "database unreachable: not serving")).toBe(true);

      await relay.resume();
      await eventually(async () => ((await readyz()) === 200 ? true : undefined), 10_000, "ready again");
      expect(await statuses()).toEqual([HealthCheckResponse_ServingStatus.SERVING, HealthCheckResponse_ServingStatus.SERVING]);
      expect(await inventory.getProduct({ sku: "B" })).toMatchObject({ product: { sku: "B" } });
      expect(lines.some((l) => l.msg === "database reachable: serving")).toBe(true);
    } finally {
      channel.close();
      await runtime.shutdown("test over");
      await relay.pause();
    }
    // Shutdown closed the pool.
    expect(db.pool.ended).toBe(true);
  });

  it("stays ready while every pool connection is busy, and sheds with RESOURCE_EXHAUSTED, not UNAVAILABLE", async () => {
    const db = open(testDb.url, { poolMax: 1 });
    const runtime = await startServiceRuntime({
      name: "inventory-db-fake",
      config: { ...loadConfig(serviceConfig, {}), GRPC_PORT: 0, ADMIN_PORT: 0 },
      logger,
      host: "127.0.0.1",
      database: db,
      databaseHealthIntervalMs: 100,
      services: [{ definition: InventoryServiceDefinition, implementation: inventoryOver(db) }],
    });
    const channel = createChannel(`127.0.0.1:${runtime.grpcPort}`);
    const health = createClient(HealthDefinition, channel);
    const inventory = createClient(InventoryServiceDefinition, channel);
    const release = deferred();
    const holding = db.transaction(async (client) => {
      await client.query("SELECT 1");
      await release.promise;
    });
    try {
      await eventually(() => (db.pool.idleCount === 0 && db.pool.totalCount === 1 ? true : undefined), 10_000, "the pool's only connection in use");
      // Several health refreshes while the pool is exhausted.
      await sleep(500);
      expect((await fetch(`http://127.0.0.1:${runtime.adminPort}/readyz`)).status).toBe(200);
      expect(runtime.isReady()).toBe(true);
      expect(await health.check({ service: InventoryServiceDefinition.fullName })).toEqual({ status: HealthCheckResponse_ServingStatus.SERVING });
      const metrics = await (await fetch(`http://127.0.0.1:${runtime.adminPort}/metrics`)).text();
      expect(metrics).toMatch(/^meshcart_db_up(\{[^}]*\})? 1$/m);
      expect(lines.some((l) => l.msg === "database unreachable: not serving")).toBe(false);

      // A call that queues for the pool longer than it waits is overload: shed, not a database outage.
      let error: unknown;
      try {
        await inventory.getProduct({ sku: "A" });
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ClientError);
      expect((error as ClientError).code).toBe(Status.RESOURCE_EXHAUSTED);
      expect((error as ClientError).details).toMatch(/^the shop is busy: every database connection of this service is in use/);
      expect(lines.some((l) => l.msg === "database unavailable")).toBe(false);
    } finally {
      release.resolve();
      await holding;
      channel.close();
      await runtime.shutdown("test over");
    }
  });

  it("survives Postgres ending its sessions (pg_terminate_backend, as DROP DATABASE ... WITH (FORCE) does)", async () => {
    const db = new Database({ url: testDb.url, poolMax: 2, statementTimeoutMs: 10_000, applicationName: "lib-terminated", logger });
    opened.push(db);
    const runtime = await startServiceRuntime({
      name: "inventory-db-fake",
      config: { ...loadConfig(serviceConfig, {}), GRPC_PORT: 0, ADMIN_PORT: 0 },
      logger,
      host: "127.0.0.1",
      database: db,
      databaseHealthIntervalMs: 100,
      services: [{ definition: InventoryServiceDefinition, implementation: inventoryOver(db) }],
    });
    const channel = createChannel(`127.0.0.1:${runtime.grpcPort}`);
    const inventory = createClient(InventoryServiceDefinition, channel);
    const admin = open();
    const sessions = async () =>
      (await admin.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE 'lib-terminated%'")).rows[0]!.n;
    try {
      // The pool's connections idle and the health session open: every kind of session this service has.
      await Promise.all([inventory.getProduct({ sku: "A" }), inventory.getProduct({ sku: "B" })]);
      await eventually(async () => ((await sessions()) === 3 ? true : undefined), 10_000, "two pool sessions and the health session");
      await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'lib-terminated%'");
      // An 'error' event without a listener would have ended this process (and the test) by now.
      await eventually(async () => ((await sessions()) >= 1 ? true : undefined), 10_000, "a new health session");
      await eventually(() => (runtime.isReady() ? true : undefined), 10_000, "ready");
      expect(await inventory.getProduct({ sku: "C" })).toMatchObject({ product: { sku: "C" } });
    } finally {
      channel.close();
      await runtime.shutdown("test over");
    }
  });

  it("starts not ready when the database is away at start", async () => {
    const db = open(withPort(testDb.url, await freePort()));
    const runtime = await startServiceRuntime({
      name: "inventory-db-fake",
      config: { ...loadConfig(serviceConfig, {}), GRPC_PORT: 0, ADMIN_PORT: 0 },
      logger,
      host: "127.0.0.1",
      database: db,
      databaseHealthIntervalMs: 100,
      services: [{ definition: InventoryServiceDefinition, implementation: inventoryOver(db) }],
    });
    try {
      expect(runtime.isReady()).toBe(false);
      expect((await fetch(`http://127.0.0.1:${runtime.adminPort}/readyz`)).status).toBe(503);
    } finally {
      await runtime.shutdown("test over");
    }
  });
});

describe("openDatabase", () => {
  const config = (url: string) => ({ DATABASE_URL: url, DB_POOL_MAX: 2, DB_STATEMENT_TIMEOUT_MS: 5_000, DB_HEALTH_INTERVAL_MS: 1_000 });

  it("waits for a database that comes up later, then migrates it", async () => {
    const scratch = await createTestDatabase("lib_open");
    try {
      const directory = await migrationsDirectory({ "001_init.sql": "CREATE TABLE opened (id int);" });
      const port = await freePort();
      const opening = openDatabase("lib-test", config(withPort(scratch.url, port)), directory, logger);
      await eventually(() => lines.find((l) => l.msg === "database not reachable yet"), 10_000, "a retry");
      expect(await state(opening)).toBe("pending");

      const relay = await TcpRelay.start(target(scratch.url), port);
      try {
        const db = await opening;
        opened.push(db);
        expect(await db.ping()).toBe(true);
        expect((await db.query("SELECT version FROM schema_migrations")).rows).toEqual([{ version: "001" }]);
        expect((await db.query("SELECT current_setting('application_name') AS name")).rows).toEqual([{ name: "lib-test" }]);
        await db.close();
      } finally {
        await relay.pause();
      }
    } finally {
      await scratch.drop();
    }
  });

  it("gives up waiting when its signal aborts", async () => {
    const directory = await migrationsDirectory({});
    const controller = new AbortController();
    controller.abort();
    await expect(openDatabase("lib-test", config(withPort(testDb.url, await freePort())), directory, logger, controller.signal)).rejects.toThrow(
      "stopped while waiting for the database",
    );
  });
});
