import { execFile } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "@meshcart/stack/net.js";
import { startPostgres, type LocalPostgres } from "@meshcart/stack/postgres.js";
import { repoRoot } from "./support/paths.js";

const run = promisify(execFile);
const initScript = path.join(repoRoot, "helm/meshcart/files/postgres/init.sh");

/**
 * The chart's Postgres init script (what the official image runs on an empty
 * volume), run with psql against a fresh Postgres 18 as the image runs it:
 * one role and one database per service, and each role reaches its own
 * database only.
 */
describe("the chart's Postgres init script", () => {
  let dir: string;
  let postgres: LocalPostgres;
  let port: number;
  const services = ["inventory", "payment", "order"];
  const password = (service: string) => `${service}-secret-pw`;
  const psql = (user: string, pw: string, database: string, sql: string) =>
    run("psql", ["-v", "ON_ERROR_STOP=1", "-tA", "-U", user, "-d", database, "-c", sql], {
      env: { ...process.env, PGHOST: "127.0.0.1", PGPORT: String(port), PGPASSWORD: pw },
    });

  beforeAll(async () => {
    await run("psql", ["--version"]).catch(() => {
      throw new Error("psql is missing: install the PostgreSQL client (apt-get install postgresql-client, or brew install libpq)");
    });
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "meshcart-pg-init-"));
    await fs.chmod(dir, 0o755);
    port = await freePort();
    postgres = await startPostgres({ dataDir: path.join(dir, "data"), port, persistent: false });
    const superuser = new URL(postgres.url("postgres"));
    const env: Record<string, string> = {
      ...(process.env as Record<string, string>),
      PGHOST: "127.0.0.1",
      PGPORT: String(port),
      PGPASSWORD: decodeURIComponent(superuser.password),
      POSTGRES_USER: decodeURIComponent(superuser.username),
      MESHCART_DATABASE_SERVICES: services.join(" "),
    };
    for (const service of services) env[`${service.toUpperCase()}_DB_PASSWORD`] = password(service);
    const { stdout } = await run("bash", [initScript], { env });
    for (const service of services) expect(stdout).toContain(`database and role meshcart_${service} created`);
  }, 60_000);

  afterAll(async () => {
    await postgres?.stop();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  it.each(services)("lets meshcart_%s own and use its database", async (service) => {
    const role = `meshcart_${service}`;
    const { stdout } = await psql(role, password(service), role, "CREATE TABLE t (x int); INSERT INTO t VALUES (1); SELECT current_user, count(*) FROM t;");
    expect(stdout.trim().split("\n").at(-1)).toBe(`${role}|1`);
  });

  it.each(services)("keeps meshcart_%s out of every other database", async (service) => {
    const role = `meshcart_${service}`;
    const others = [...services.filter((s) => s !== service).map((s) => `meshcart_${s}`), "postgres", "template1"];
    for (const database of others) {
      await expect(psql(role, password(service), database, "SELECT 1")).rejects.toThrow(/permission denied for database/);
    }
  });

  it("refuses a wrong password", async () => {
    await expect(psql("meshcart_order", "not-the-password", "meshcart_order", "SELECT 1")).rejects.toThrow(/password authentication failed/);
  });
});
