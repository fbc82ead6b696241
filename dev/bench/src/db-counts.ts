import pg from "pg";

/**
 * What the services ask of Postgres, counted by Postgres itself:
 * statements from pg_stat_statements (every round trip a client makes,
 * BEGIN and COMMIT included), durable commits from the write-ahead log
 * (pg_walinspect: a transaction that wrote is a COMMIT record, and its other
 * records name the database it wrote in). The bench's Postgres loads
 * pg_stat_statements at start (POSTGRES_SETTINGS); read-only transactions
 * write no commit record, so they are statements but no durable commits.
 */

/** Server settings the counters need; the bench starts its Postgres with them. */
export const POSTGRES_SETTINGS: Readonly<Record<string, string>> = {
  shared_preload_libraries: "pg_stat_statements",
  // Statements the clients send; what runs inside a function is not a round trip.
  "pg_stat_statements.track": "top",
  "pg_stat_statements.max": "10000",
};

/** The services' health check (`SELECT 1`, as pg_stat_statements normalises it): counted apart. */
export const HEALTH_CHECK_QUERY = "SELECT $1";

export interface StatementCount {
  query: string;
  calls: number;
}

/** One database's activity between two snapshots. */
export interface DatabaseActivity {
  database: string;
  /** Statements other than the health check. */
  statements: number;
  healthChecks: number;
  /** Transactions that wrote and committed (COMMIT records in the WAL). */
  commits: number;
  /** Every statement with its calls, most called first. */
  byStatement: StatementCount[];
}

export interface CountersSnapshot {
  calls: Map<string, { database: string; query: string; calls: number }>;
  lsn: string;
}

export class DatabaseCounters {
  private constructor(private readonly admin: pg.Client) {}

  /** Connects to the cluster's maintenance database (a superuser's URL) and installs the two extensions there. */
  static async open(adminUrl: string): Promise<DatabaseCounters> {
    const admin = new pg.Client({ connectionString: adminUrl, application_name: "bench-counters" });
    admin.on("error", () => undefined);
    await admin.connect();
    try {
      await admin.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
      await admin.query("CREATE EXTENSION IF NOT EXISTS pg_walinspect");
    } catch (error) {
      await admin.end().catch(() => undefined);
      throw new Error(`cannot count statements (is pg_stat_statements in shared_preload_libraries?): ${(error as Error).message}`, { cause: error });
    }
    return new DatabaseCounters(admin);
  }

  async snapshot(): Promise<CountersSnapshot> {
    const { rows } = await this.admin.query<{ key: string; database: string; query: string; calls: string }>(
      `SELECT s.dbid || ':' || s.userid || ':' || s.queryid || ':' || s.toplevel AS key, d.datname AS database, s.query, s.calls
       FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid`,
    );
    const { rows: lsn } = await this.admin.query<{ lsn: string }>("SELECT pg_current_wal_lsn()::text AS lsn");
    return { calls: new Map(rows.map((r) => [r.key, { database: r.database, query: r.query, calls: Number(r.calls) }])), lsn: lsn[0]!.lsn };
  }

  /** Statements and durable commits of `databases` between two snapshots. */
  async between(before: CountersSnapshot, after: CountersSnapshot, databases: readonly string[]): Promise<DatabaseActivity[]> {
    const commits = await this.commitsByDatabase(before.lsn, after.lsn);
    return databases.map((database) => {
      const byQuery = new Map<string, number>();
      for (const [key, entry] of after.calls) {
        if (entry.database !== database) continue;
        const calls = entry.calls - (before.calls.get(key)?.calls ?? 0);
        if (calls > 0) byQuery.set(entry.query, (byQuery.get(entry.query) ?? 0) + calls);
      }
      const byStatement = [...byQuery.entries()].map(([query, calls]) => ({ query, calls })).sort((a, b) => b.calls - a.calls);
      const healthChecks = byQuery.get(HEALTH_CHECK_QUERY) ?? 0;
      return {
        database,
        statements: byStatement.reduce((sum, s) => sum + s.calls, 0) - healthChecks,
        healthChecks,
        commits: commits.get(database) ?? 0,
        byStatement: byStatement.filter((s) => s.query !== HEALTH_CHECK_QUERY),
      };
    });
  }

  async close(): Promise<void> {
    await this.admin.end().catch(() => undefined);
  }

  /**
   * COMMIT records between two WAL positions, by the database their
   * transaction wrote in (from the relation paths spc/db/rel of its other
   * records).
   */
  private async commitsByDatabase(from: string, to: string): Promise<Map<string, number>> {
    const { rows } = await this.admin.query<{ database: string; commits: string }>(
      `WITH records AS (SELECT xid::text AS xid, resource_manager, record_type, block_ref FROM pg_get_wal_records_info($1::pg_lsn, $2::pg_lsn)),
            committed AS (SELECT DISTINCT xid FROM records WHERE resource_manager = 'Transaction' AND record_type LIKE 'COMMIT%'),
            written AS (
              SELECT DISTINCT xid, (regexp_match(block_ref, 'rel \\d+/(\\d+)/'))[1]::oid AS dboid
              FROM records WHERE block_ref IS NOT NULL AND xid <> '0'
            )
       SELECT d.datname AS database, count(DISTINCT c.xid) AS commits
       FROM committed c JOIN written w USING (xid) JOIN pg_database d ON d.oid = w.dboid
       GROUP BY d.datname`,
      [from, to],
    );
    return new Map(rows.map((r) => [r.database, Number(r.commits)]));
  }
}
