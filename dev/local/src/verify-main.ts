import { withDatabase } from "@meshcart/stack/databases.js";
import { postgresCredentials } from "@meshcart/stack/postgres.js";
import { devPostgresPort, localServices } from "@meshcart/stack/services.js";
import { checkInvariants, formatReport, readSnapshot } from "@meshcart/stack/verify.js";

/*
 * `make verify`: reconciles the databases of a running (or stopped)
 * meshcart and exits 1 on any violation. By default it reads make dev's
 * Postgres; VERIFY_DATABASE_URL (any database on the server) points it at
 * another one with the same per-service database names.
 */
const server =
  process.env.VERIFY_DATABASE_URL || `postgres://${postgresCredentials.user}:${postgresCredentials.password}@127.0.0.1:${devPostgresPort}/postgres`;
const database = (name: string) => {
  const row = localServices.find((s) => s.name === name);
  if (!row?.database) throw new Error(`no local service ${name} with a database`);
  return withDatabase(server, row.database);
};

try {
  const report = checkInvariants(
    await readSnapshot({ order: database("order"), payment: database("payment"), inventory: database("inventory"), fulfillment: database("fulfillment") }),
  );
  process.stdout.write(formatReport(report));
  process.exitCode = report.violations.length === 0 ? 0 : 1;
} catch (error) {
  process.stderr.write(`make verify: cannot read the databases: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 2;
}
