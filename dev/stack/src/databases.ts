import pg from "pg";

/** The same server and credentials as `url`, pointed at another database. */
export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${encodeURIComponent(database)}`;
  return parsed.toString();
}

/** Creates the database unless it exists; safe to race with another caller. */
export async function ensureDatabase(adminUrl: string, name: string): Promise<void> {
  await withClient(adminUrl, async (client) => {
    const existing = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [name]);
    if (existing.rowCount !== 0) return;
    try {
      await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`);
    } catch (error) {
      // Another process created it between the check and the CREATE.
      if (!isRaceLoss(error)) throw error;
    }
  });
}

/** Creates a database that must not exist yet. */
export async function createDatabase(adminUrl: string, name: string): Promise<void> {
  await withClient(adminUrl, (client) => client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`));
}

/**
 * Drops the database if it exists. FORCE ends sessions still connected to
 * it, because a test or a stopped service may leave a pool behind.
 */
export async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  await withClient(adminUrl, (client) => client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(name)} WITH (FORCE)`));
}

async function withClient<T>(url: string, use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  // Without a listener, a server shutdown while connected would surface as
  // an uncaught 'error' event and kill the process; the query rejects anyway.
  client.on("error", () => undefined);
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

function isRaceLoss(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  // duplicate_database, or unique_violation when both inserts into
  // pg_database collide before either sees the other.
  return code === "42P04" || code === "23505";
}
