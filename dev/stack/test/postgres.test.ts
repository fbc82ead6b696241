import { spawn } from "node:child_process";
import fs from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import pg from "pg";
import { afterEach, describe, expect, it } from "vitest";
import { freePort } from "../src/net.js";
import { startPostgres, type LocalPostgres } from "../src/postgres.js";
import { eventually, isAlive, tempDir } from "@meshcart/testing/helpers.js";

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function scratch(label: string): Promise<string> {
  const dir = await tempDir(label);
  cleanups.push(dir.remove);
  return dir.path;
}

async function start(dataDir: string, port?: number, persistent = true): Promise<LocalPostgres> {
  const postgres = await startPostgres({ dataDir, port: port ?? (await freePort()), persistent });
  cleanups.push(() => postgres.stop());
  return postgres;
}

async function query(url: string, sql: string): Promise<Record<string, unknown>[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}

async function postmasterPid(dataDir: string): Promise<number> {
  const text = await fs.readFile(path.join(dataDir, "postmaster.pid"), "utf8");
  return Number(text.split("\n", 1)[0]);
}

describe("startPostgres", () => {
  it("initialises a new data directory, creates databases idempotently and keeps data across restarts", async () => {
    const dataDir = path.join(await scratch("persist"), "nested", "postgres");
    const port = await freePort();
    const first = await start(dataDir, port);
    expect(first.port).toBe(port);
    expect(first.url("shop")).toBe(`postgres://postgres:postgres@127.0.0.1:${port}/shop`);

    await first.ensureDatabase("shop");
    await first.ensureDatabase("shop");
    await Promise.all([first.ensureDatabase("raced"), first.ensureDatabase("raced")]);
    await query(first.url("shop"), "CREATE TABLE kept (value text); INSERT INTO kept VALUES ('still here')");
    await first.stop();
    await first.stop();
    await expect(fs.access(path.join(dataDir, "PG_VERSION"))).resolves.toBeUndefined();

    const lines: string[] = [];
    const second = await startPostgres({ dataDir, port, persistent: true, log: (line) => lines.push(line) });
    cleanups.push(() => second.stop());
    expect(lines.some((line) => line.includes("creating subdirectories"))).toBe(false);
    expect(await query(second.url("shop"), "SELECT value FROM kept")).toEqual([{ value: "still here" }]);

    await second.dropDatabase("shop");
    await second.dropDatabase("shop");
    const names = await query(second.url("postgres"), "SELECT datname FROM pg_database");
    expect(names.map((row) => row.datname)).not.toContain("shop");
    expect(names.map((row) => row.datname)).toContain("raced");
  });

  it("drops a database that still has sessions", async () => {
    const postgres = await start(path.join(await scratch("drop"), "data"));
    await postgres.ensureDatabase("busy");
    const client = new pg.Client({ connectionString: postgres.url("busy") });
    client.on("error", () => undefined);
    await client.connect();
    await postgres.dropDatabase("busy");
    await expect(client.query("SELECT 1")).rejects.toThrow();
    await client.end().catch(() => undefined);
  });

  it("deletes the data directory on stop when not persistent", async () => {
    const dataDir = path.join(await scratch("throwaway"), "data");
    const postgres = await start(dataDir, undefined, false);
    await postgres.ensureDatabase("scratch");
    await postgres.stop();
    await expect(fs.access(dataDir)).rejects.toThrow();
  });

  it("pauses (clients see an outage) and resumes on the same port with the data intact", async () => {
    const postgres = await start(path.join(await scratch("pause"), "data"));
    await postgres.ensureDatabase("app");
    await query(postgres.url("app"), "CREATE TABLE t (n int); INSERT INTO t VALUES (1)");

    await postgres.pause();
    await expect(query(postgres.url("app"), "SELECT 1")).rejects.toThrow(/ECONNREFUSED/);
    await expect(postgres.pause()).rejects.toThrow(/paused/);

    await postgres.resume();
    expect(await query(postgres.url("app"), "SELECT n FROM t")).toEqual([{ n: 1 }]);
    await expect(postgres.resume()).rejects.toThrow(/running/);
  });

  it("recovers from an immediate (crash-like) pause and ends the sessions it had", async () => {
    const postgres = await start(path.join(await scratch("crash"), "data"));
    await postgres.ensureDatabase("app");
    const client = new pg.Client({ connectionString: postgres.url("app") });
    const errors: Error[] = [];
    client.on("error", (error) => errors.push(error));
    await client.connect();
    await client.query("CREATE TABLE t (n int); INSERT INTO t VALUES (7)");

    await postgres.pause({ immediate: true });
    await eventually(() => errors.length > 0);
    await client.end().catch(() => undefined);

    await postgres.resume();
    expect(await query(postgres.url("app"), "SELECT n FROM t")).toEqual([{ n: 7 }]);
  });

  it("fails clearly when the port is taken", async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    cleanups.push(() => new Promise((resolve) => blocker.close(resolve)));
    const address = blocker.address();
    if (address === null || typeof address === "string") throw new Error("no port");

    const dataDir = path.join(await scratch("port"), "data");
    await expect(startPostgres({ dataDir, port: address.port, persistent: true })).rejects.toThrow(`127.0.0.1:${address.port} is already in use`);
  });

  it("refuses a second server on a data directory that is in use", async () => {
    const dataDir = path.join(await scratch("twice"), "data");
    await start(dataDir);
    const pid = await postmasterPid(dataDir);
    await expect(startPostgres({ dataDir, port: await freePort(), persistent: true })).rejects.toThrow(
      `Postgres is already running on ${dataDir} (pid ${pid})`,
    );
  });

  it("starts after a crash that left postmaster.pid behind", async () => {
    const dataDir = path.join(await scratch("killed"), "data");
    const port = await freePort();
    const crashed = await start(dataDir, port);
    await crashed.ensureDatabase("app");
    await query(crashed.url("app"), "CREATE TABLE t (n int); INSERT INTO t VALUES (42)");
    const pid = await postmasterPid(dataDir);
    process.kill(pid, "SIGKILL");
    await eventually(() => !isAlive(pid));
    await expect(fs.access(path.join(dataDir, "postmaster.pid"))).resolves.toBeUndefined();

    const lines: string[] = [];
    const restarted = await startPostgres({ dataDir, port, persistent: true, log: (line) => lines.push(line) });
    cleanups.push(() => restarted.stop());
    expect(lines.some((line) => line.includes("removed the stale postmaster.pid"))).toBe(true);
    expect(await query(restarted.url("app"), "SELECT n FROM t")).toEqual([{ n: 42 }]);
  });

  it("starts when a stale postmaster.pid names a pid now used by an unrelated process", async () => {
    const dataDir = path.join(await scratch("reused"), "data");
    const port = await freePort();
    const first = await start(dataDir, port);
    const pidFile = path.join(dataDir, "postmaster.pid");
    const contents = await fs.readFile(pidFile, "utf8");
    await first.stop();

    const unrelated = spawn("sleep", ["30"], { stdio: "ignore" });
    cleanups.push(async () => unrelated.kill("SIGKILL"));
    if (unrelated.pid === undefined) throw new Error("sleep did not start");
    await fs.writeFile(pidFile, contents.replace(/^\d+/, String(unrelated.pid)));

    const second = await start(dataDir, port);
    expect(await query(second.url("postgres"), "SELECT 1 AS one")).toEqual([{ one: 1 }]);
  });

  it("refuses a directory that is neither empty nor a cluster", async () => {
    const dataDir = path.join(await scratch("junk"), "data");
    await fs.mkdir(dataDir);
    await fs.writeFile(path.join(dataDir, "notes.txt"), "mine");
    await expect(startPostgres({ dataDir, port: await freePort(), persistent: false })).rejects.toThrow(/neither empty nor a Postgres data directory/);
    await expect(fs.readFile(path.join(dataDir, "notes.txt"), "utf8")).resolves.toBe("mine");
  });

  it.runIf(process.getuid?.() === 0)("as root, explains a parent directory the postgres user cannot enter", async () => {
    const closed = await scratch("closed");
    await fs.chmod(closed, 0o700);
    await expect(startPostgres({ dataDir: path.join(closed, "data"), port: await freePort(), persistent: false })).rejects.toThrow(
      `cannot enter ${closed} (mode 700`,
    );
    expect((await fs.stat(closed)).mode & 0o777).toBe(0o700);
  });
});
