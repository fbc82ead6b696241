import path from "node:path";
import { repoRoot } from "@meshcart/stack/paths.js";
import { runDev } from "./runner.js";
import { devNatsPorts, devPostgresPort, localServices } from "@meshcart/stack/services.js";

/*
 * `make dev`: Postgres, NATS and every service of the local table, in the
 * foreground. The first Ctrl-C, SIGTERM or SIGHUP (a closed terminal; the
 * detached children never see it) stops everything in order; a second one
 * exits at once, and the supervisors' exit hooks kill what is left.
 */

const shutdown = new AbortController();

// A closed terminal or pipe must not turn an orderly shutdown into a crash.
process.stdout.on("error", () => undefined);

function onSignal(signal: NodeJS.Signals): void {
  if (!shutdown.signal.aborted) {
    process.stdout.write(`\n${signal}: stopping; press Ctrl-C again to force\n`);
    shutdown.abort(signal);
    return;
  }
  process.stdout.write(`\n${signal} again: forcing exit\n`);
  process.exit(130);
}
process.on("SIGINT", onSignal);
process.on("SIGTERM", onSignal);
process.on("SIGHUP", onSignal);

const code = await runDev({
  repoRoot,
  services: localServices,
  postgres: process.env.DATABASE_URL
    ? { external: process.env.DATABASE_URL }
    : { dataDir: path.join(repoRoot, ".data", "postgres"), port: devPostgresPort, persistent: true },
  nats: process.env.NATS_URL
    ? { external: process.env.NATS_URL }
    : { dataDir: path.join(repoRoot, ".data", "nats"), port: devNatsPorts.client, monitorPort: devNatsPorts.monitor },
  logLevel: process.env.LOG_LEVEL || "info",
  exitAfterReady: process.env.DEV_EXIT_AFTER_READY === "1",
  shutdown: shutdown.signal,
  write: (text) => process.stdout.write(text),
  colorize: process.stdout.hasColors?.() ?? false,
});

process.exitCode = code;
// Everything is stopped; a handle some library left open must not keep the
// terminal waiting.
setTimeout(() => process.exit(code), 2_000).unref();
