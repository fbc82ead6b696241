import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import type { Database } from "./database.js";
import type { Logger } from "./logger.js";

const MIGRATION_FILE = /^(\d{3,})_[a-z0-9_]+\.sql$/;
// One lock for all of a database's migrators: replicas and versions (payment
// v1 and v2 share a database) that start together apply each file once.
const LOCK_KEY = "meshcart:migrations";

export interface Migration {
  version: string;
  name: string;
  sql: string;
  checksum: string;
}

export async function readMigrations(directory: string): Promise<Migration[]> {
  const files = (await readdir(directory)).filter((f) => f.endsWith(".sql")).sort(byVersion);
  return Promise.all(
    files.map(async (name) => {
      const match = MIGRATION_FILE.exec(name);
      if (!match?.[1]) throw new Error(`migration file ${name} must be named NNN_description.sql`);
      const sql = await readFile(join(directory, name), "utf8");
      return { version: match[1], name, sql, checksum: createHash("sha256").update(sql).digest("hex") };
    }),
  );
}

/** By version number, so that 1000_x.sql follows 999_y.sql (a text sort puts it first); then by name. */
function byVersion(a: string, b: string): number {
  const version = (name: string) => BigInt(/^\d+/.exec(name)?.[0] ?? "0");
  const [va, vb] = [version(a), version(b)];
  return va < vb ? -1 : va > vb ? 1 : a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Applies the migrations not yet applied, each in its own transaction, under
 * a session advisory lock. An applied migration whose file changed since is
 * an error: migrations are append-only.
 */
export async function migrate(db: Database, directory: string, logger: Logger): Promise<string[]> {
  const migrations = await readMigrations(directory);
  const client = await db.pool.connect();
  try {
    await client.query("SELECT pg_advisory_lock(hashtext($1))", [LOCK_KEY]);
    try {
      await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
        version text PRIMARY KEY,
        name text NOT NULL,
        checksum text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`);
      const { rows } = await client.query<{ version: string; checksum: string; name: string }>("SELECT version, checksum, name FROM schema_migrations");
      const applied = new Map(rows.map((r) => [r.version, r]));
      const newlyApplied: string[] = [];
      for (const migration of migrations) {
        const previous = applied.get(migration.version);
        if (previous) {
          if (previous.checksum !== migration.checksum) {
            throw new Error(`migration ${migration.name} changed after it was applied (as ${previous.name})`);
          }
          continue;
        }
        await client.query("BEGIN");
        try {
          await client.query(migration.sql);
          await client.query("INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)", [
            migration.version,
            migration.name,
            migration.checksum,
          ]);
          await client.query("COMMIT");
        } catch (error) {
          await client.query("ROLLBACK");
          throw new Error(`migration ${migration.name} failed: ${(error as Error).message}`, { cause: error });
        }
        logger.info({ migration: migration.name }, "applied migration");
        newlyApplied.push(migration.name);
      }
      return newlyApplied;
    } finally {
      await client.query("SELECT pg_advisory_unlock(hashtext($1))", [LOCK_KEY]);
    }
  } finally {
    client.release();
  }
}
