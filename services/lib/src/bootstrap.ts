import { ConfigError, type Config, type databaseConfig } from "./config.js";
import { Database } from "./database.js";
import type { Logger } from "./logger.js";
import { migrate } from "./migrations.js";
import { sleep } from "./sleep.js";

/**
 * Opens the service's database, waiting for it to come up (in a cluster the
 * database may start after the service), then applies pending migrations.
 */
export async function openDatabase(
  service: string,
  config: Config<typeof databaseConfig>,
  migrationsDirectory: string,
  logger: Logger,
  signal?: AbortSignal,
): Promise<Database> {
  const db = new Database({
    url: config.DATABASE_URL,
    poolMax: config.DB_POOL_MAX,
    statementTimeoutMs: config.DB_STATEMENT_TIMEOUT_MS,
    applicationName: service,
    logger,
  });
  try {
    for (let delay = 250; !(await db.ping(2_000)); delay = Math.min(delay * 2, 5_000)) {
      if (signal?.aborted) throw new Error("stopped while waiting for the database");
      logger.warn({ retry_in_ms: delay }, "database not reachable yet");
      await sleep(delay);
    }
    await migrate(db, migrationsDirectory, logger);
    return db;
  } catch (error) {
    await db.close().catch(() => undefined);
    throw error;
  }
}

/**
 * Runs a service's start function; a configuration error is printed as the
 * plain list of problems (no stack trace) and exits with status 2.
 */
export function runMain(start: () => Promise<void>): void {
  start().catch((error: unknown) => {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`fatal: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  });
}
