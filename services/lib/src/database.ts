import pg from "pg";
import type { Logger } from "./logger.js";
import { sleep } from "./sleep.js";

export type Sql = pg.PoolClient | pg.Pool;

/**
 * A named prepared statement: Postgres parses and plans it once per
 * connection, then only binds and runs it (pg keeps the names per
 * connection). The name also follows the statement's first keyword as a
 * comment, so that pg_stat_statements (which keeps no leading or trailing
 * comment) and the log of a slow query say which one it is.
 */
export interface Statement {
  readonly name: string;
  readonly text: string;
}

const statementNames = new Set<string>();

/** Defines a prepared statement; a name is one statement's for the life of the process. */
export function statement(name: string, text: string): Statement {
  if (!/^[a-z][a-z0-9_.-]*$/.test(name)) throw new Error(`statement name ${JSON.stringify(name)} must be lower-case words joined by . _ or -`);
  if (statementNames.has(name)) throw new Error(`statement ${name} is defined twice`);
  statementNames.add(name);
  const trimmed = text.trim();
  const keyword = /^[A-Za-z]+/.exec(trimmed)?.[0];
  if (!keyword) throw new Error(`statement ${name} must start with a keyword`);
  return Object.freeze({ name, text: `${keyword} /* ${name} */${trimmed.slice(keyword.length)}` });
}

/** Runs a statement (prepared when it is a Statement) on a pool or on a transaction's client. */
export function execute<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: Sql, query: string | Statement, values?: unknown[]): Promise<pg.QueryResult<R>> {
  return typeof query === "string" ? sql.query<R>(query, values) : sql.query<R>({ name: query.name, text: query.text, values });
}

/**
 * The services' type parsing: bigint columns (money, stock counters) arrive
 * as JS numbers. Every such value is bounded far below 2^53 by validation
 * and CHECK constraints; one that is not is a corrupted row, refused loudly
 * rather than rounded. Given to each pool and client that wants it, never
 * set on pg's global parsers.
 */
export const SAFE_INTEGER_TYPES: pg.CustomTypesConfig = safeIntegerTypes();

function safeIntegerTypes(): pg.TypeOverrides {
  const types = new pg.TypeOverrides();
  types.setTypeParser(pg.types.builtins.INT8, (text: string) => {
    const value = Number(text);
    if (!Number.isSafeInteger(value)) throw new Error(`bigint ${text} exceeds the safe integer range`);
    return value;
  });
  return types;
}

export type Isolation = "read committed" | "repeatable read" | "serializable";

export interface DatabaseOptions {
  url: string;
  poolMax: number;
  statementTimeoutMs: number;
  applicationName: string;
  logger: Logger;
}

/** Postgres error codes after which the same transaction may succeed if run again. */
const RETRYABLE_TRANSACTION_CODES = new Set(["40001", "40P01"]);

/**
 * Errors that say the database is unreachable or restarting, not that the
 * request is wrong: they become UNAVAILABLE so a caller may retry.
 */
const TRANSIENT_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "57P01",
  "57P02",
  "57P03",
  "53300",
  "57014",
  "08000",
  "08001",
  "08003",
  "08004",
  "08006",
]);
const TRANSIENT_MESSAGES = ["Connection terminated", "Client has encountered a connection error", "Connection closed"];

/**
 * pg-pool's answer when every connection of the pool stayed in use for its
 * connectionTimeoutMillis while the caller queued for one (pg-pool 3.x,
 * `connect`): the database is fine, this process has too much work in
 * flight. (A new connection that the database does not answer in time is
 * "Connection terminated due to connection timeout": an outage.)
 */
const POOL_EXHAUSTED_MESSAGE = "timeout exceeded when trying to connect";

/** Every connection of the pool was busy for longer than the pool waits: overload, not an outage. */
export function isPoolExhausted(error: unknown): boolean {
  return error instanceof Error && error.message === POOL_EXHAUSTED_MESSAGE;
}

/**
 * Errors after which the same statement may succeed later: the database is
 * away or restarting, a transaction collided, or the pool was exhausted
 * (which callers that must finish their work, like a saga recording its
 * progress, wait out; at the edge it is RESOURCE_EXHAUSTED, see
 * isPoolExhausted).
 */
export function isTransientDatabaseError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (isPoolExhausted(error)) return true;
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string" && (TRANSIENT_CODES.has(code) || RETRYABLE_TRANSACTION_CODES.has(code))) return true;
  return TRANSIENT_MESSAGES.some((m) => error.message.includes(m));
}

export function isUniqueViolation(error: unknown): boolean {
  return error instanceof Error && (error as { code?: unknown }).code === "23505";
}

/** How long the pool lets a caller queue for a connection; then isPoolExhausted. */
export const POOL_WAIT_MS = 1_000;

/** The health check's own session, apart from the pool. */
interface HealthSession {
  client: pg.Client;
  connected: Promise<unknown>;
}

export class Database {
  readonly pool: pg.Pool;
  /** The pool's size limit. */
  readonly maxConnections: number;
  private readonly logger: Logger;
  private readonly options: DatabaseOptions;
  private health: HealthSession | undefined;
  private closed = false;

  constructor(options: DatabaseOptions) {
    this.options = options;
    this.logger = options.logger;
    this.maxConnections = options.poolMax;
    this.pool = new pg.Pool({
      connectionString: options.url,
      types: SAFE_INTEGER_TYPES,
      max: options.poolMax,
      // Fail fast while the database is away (UNAVAILABLE) or every
      // connection is busy (RESOURCE_EXHAUSTED): in about a second instead
      // of queueing until the caller's deadline. Admission control in front
      // keeps the queue short, so this is the exception.
      connectionTimeoutMillis: POOL_WAIT_MS,
      idleTimeoutMillis: 30_000,
      statement_timeout: options.statementTimeoutMs,
      application_name: options.applicationName,
    });
    // An idle client losing its connection (database restart) must not
    // crash the process; the pool replaces it on next use.
    this.pool.on("error", (error) => this.logger.warn({ err: error }, "idle database connection lost"));
  }

  /** One statement in its own transaction; a Statement runs prepared. */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(query: string | Statement, values?: unknown[]): Promise<pg.QueryResult<R>> {
    return execute<R>(this.pool, query, values);
  }

  /**
   * Runs `work` in one transaction. Serialization failures and deadlocks,
   * which Postgres reports when concurrent transactions collide, are retried
   * with a short jittered backoff: `work` must therefore be free of side
   * effects outside the database.
   */
  async transaction<T>(work: (client: pg.PoolClient) => Promise<T>, options: { isolation?: Isolation; attempts?: number } = {}): Promise<T> {
    const isolation = options.isolation ?? "read committed";
    const attempts = options.attempts ?? 8;
    for (let attempt = 1; ; attempt++) {
      const client = await this.pool.connect();
      let broken = false;
      // The pool stops listening for a client's errors while it is checked
      // out. A connection that dies under the transaction (Postgres
      // restarting or crashing) then emits 'error' with nobody listening,
      // which kills the process; the failing query rejects anyway.
      const onConnectionError = () => {
        broken = true;
      };
      client.on("error", onConnectionError);
      try {
        await client.query(`BEGIN ISOLATION LEVEL ${isolation.toUpperCase()}`);
        const result = await work(client);
        await client.query("COMMIT");
        return result;
      } catch (error) {
        try {
          await client.query("ROLLBACK");
        } catch {
          broken = true;
        }
        const code = (error as { code?: unknown }).code;
        if (typeof code === "string" && RETRYABLE_TRANSACTION_CODES.has(code) && attempt < attempts) {
          await sleep(Math.random() * 10 * attempt);
          continue;
        }
        throw error;
      } finally {
        // A client whose connection broke mid-transaction is destroyed, not
        // returned to the pool.
        client.off("error", onConnectionError);
        client.release(broken);
      }
    }
  }

  /**
   * True when a trivial query answers within `timeoutMs`, on a connection
   * of its own: a pool whose every connection is busy (overload) must not
   * read as a database that is away, or readiness would take the service
   * out of its load balancer exactly when it is busiest. The session is
   * opened on first use and again after any failure.
   */
  async ping(timeoutMs = 1_000): Promise<boolean> {
    if (this.closed) return false;
    const session = (this.health ??= this.openHealthSession());
    let timer: NodeJS.Timeout | undefined;
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("database ping timed out")), timeoutMs);
      });
      await Promise.race([session.connected.then(() => session.client.query("SELECT 1")), timeout]);
      return true;
    } catch {
      this.discardHealthSession(session);
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  private openHealthSession(): HealthSession {
    const client = new pg.Client({
      connectionString: this.options.url,
      application_name: `${this.options.applicationName}-health`,
      connectionTimeoutMillis: POOL_WAIT_MS,
    });
    const session: HealthSession = { client, connected: client.connect() };
    // The session ends under the service (a database restart, or
    // pg_terminate_backend and DROP DATABASE ... WITH (FORCE), error 57P01):
    // an 'error' event without a listener would crash the process. The next
    // ping opens a new one.
    client.on("error", (error) => {
      this.logger.debug({ err: error }, "database health session lost");
      this.discardHealthSession(session);
    });
    session.connected.catch(() => undefined);
    return session;
  }

  private discardHealthSession(session: HealthSession): void {
    if (this.health === session) this.health = undefined;
    // A hung session (the database stopped answering) is cut, not waited for.
    session.client.end().catch(() => undefined);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.health) this.discardHealthSession(this.health);
    await this.pool.end();
  }
}
