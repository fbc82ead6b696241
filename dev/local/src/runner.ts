import { existsSync } from "node:fs";
import path from "node:path";
import { formatBanner } from "./banner.js";
import { tail } from "@meshcart/stack/lines.js";
import { ensureDatabase, withDatabase } from "@meshcart/stack/databases.js";
import { startNats } from "@meshcart/stack/nats.js";
import { startPostgres } from "@meshcart/stack/postgres.js";
import { createLinePrinter, type LabelColor } from "./pretty.js";
import { startService, type ServiceProcess } from "@meshcart/stack/processes.js";
import { serviceEnv, type LocalService } from "@meshcart/stack/services.js";
import { readWalkthrough } from "./walkthrough.js";

export interface DevOptions {
  repoRoot: string;
  services: readonly LocalService[];
  /** An embedded Postgres to start, or the URL of one that runs already. */
  postgres: { dataDir: string; port: number; persistent: boolean } | { external: string };
  /** The broker to start (nats-server with JetStream), or the URL of one that runs already; needed when a service talks to it. */
  nats?: { dataDir: string; port: number; monitorPort: number } | { external: string };
  /** Passed to every service as LOG_LEVEL. */
  logLevel: string;
  /** Shut down cleanly as soon as everything is ready (smoke runs). */
  exitAfterReady: boolean;
  /** Aborted on the first Ctrl-C or SIGTERM. */
  shutdown: AbortSignal;
  write: (text: string) => void;
  colorize: boolean;
  readyTimeoutMs?: number;
}

const palette: readonly LabelColor[] = ["cyan", "magenta", "yellow", "green"];
/** Longer than a service's own drain delay plus shutdown timeout by default. */
const serviceStopTimeoutMs = 15_000;
/** Postgres problems, and lines without a timestamp: initdb's report and the supervisor's notes. */
const noteworthyPostgresLine = /^\D|\b(WARNING|ERROR|FATAL|PANIC|DETAIL|HINT|STATEMENT): /;

/**
 * Runs Postgres and the services until `shutdown` aborts or a service dies,
 * then stops the services (last started first) and Postgres. Resolves to the
 * process exit code: 0 for a requested, clean stop.
 */
export async function runDev(options: DevOptions): Promise<number> {
  const { services, write, colorize, shutdown } = options;
  const width = Math.max("postgres".length, ...services.map((service) => service.name.length));
  const say = createLinePrinter({ label: "dev", width, colorize, color: "gray" });
  const note = (message: string) => write(say(message));
  const printPostgres = createLinePrinter({ label: "postgres", width, colorize, color: "blue" });
  const printNats = createLinePrinter({ label: "nats", width, colorize, color: "blue" });
  const verbose = options.logLevel === "debug" || options.logLevel === "trace";

  const started: ServiceProcess[] = [];
  let postgres: DevDatabase | undefined;
  let broker: DevBroker | undefined;
  let code: number;
  try {
    const settings = options.postgres;
    if ("external" in settings) {
      note(`using the Postgres of DATABASE_URL (${redact(settings.external)})`);
      postgres = externalDatabase(settings.external);
    } else {
      note(`starting Postgres on 127.0.0.1:${settings.port} (data in ${settings.dataDir})`);
      const local = await startPostgres({
        ...settings,
        log: (line) => {
          if (verbose || noteworthyPostgresLine.test(line)) write(printPostgres(line));
        },
      });
      postgres = {
        external: false,
        where: `127.0.0.1:${local.port}  data in ${path.relative(options.repoRoot, local.dataDir) || "."}`,
        url: (database) => local.url(database),
        ensureDatabase: (name) => local.ensureDatabase(name),
        stop: () => local.stop(),
      };
    }
    if (services.some((service) => service.nats) && !shutdown.aborted) {
      const settings = options.nats;
      if (!settings) throw new Error("a service needs the broker, and no NATS was given");
      if ("external" in settings) {
        note(`using the broker of NATS_URL (${settings.external})`);
        broker = { url: settings.external, where: settings.external, stop: async () => undefined, external: true };
      } else {
        note(`starting NATS on 127.0.0.1:${settings.port} (JetStream data in ${path.relative(options.repoRoot, settings.dataDir) || "."})`);
        const local = await startNats({
          ...settings,
          // Its warnings and errors; everything with debug or trace.
          log: (line) => {
            if (verbose || /\[(WRN|ERR|FTL)\]|exited unexpectedly/.test(line)) write(printNats(line));
          },
        });
        broker = {
          url: local.url,
          where: `127.0.0.1:${local.port}  monitoring http://localhost:${local.monitorPort}/jsz  data in ${path.relative(options.repoRoot, local.dataDir) || "."}`,
          stop: () => local.stop(),
          external: false,
        };
      }
    }
    for (const [index, service] of services.entries()) {
      if (shutdown.aborted) break;
      if (service.database) await postgres.ensureDatabase(service.database);
      note(`starting ${service.name}`);
      const print = createLinePrinter({ label: service.name, width, colorize, color: palette[index % palette.length] });
      started.push(
        await startService({
          name: service.name,
          entry: path.resolve(options.repoRoot, service.entry),
          env: serviceEnv(service, {
            ...(service.database ? { databaseUrl: postgres.url(service.database) } : {}),
            ...(broker ? { natsUrl: broker.url } : {}),
            logLevel: options.logLevel,
          }),
          adminPort: service.adminPort,
          onLine: (_name, line) => write(print(line)),
          keepLines: 200,
          signal: shutdown,
          ...(options.readyTimeoutMs === undefined ? {} : { readyTimeoutMs: options.readyTimeoutMs }),
        }),
      );
    }
    if (shutdown.aborted) {
      code = 0;
    } else {
      const readme = path.join(options.repoRoot, "README.md");
      const walkthrough = existsSync(readme) ? readWalkthrough(options.repoRoot) : undefined;
      write(formatBanner({ services, postgres, nats: broker, walkthrough }));
      code = options.exitAfterReady ? 0 : await superviseUntilDone(started, shutdown, note);
    }
  } catch (error) {
    // A Ctrl-C during start-up surfaces as an aborted start: a requested stop.
    code = shutdown.aborted ? 0 : 1;
    if (code === 1) note(`cannot start: ${error instanceof Error ? error.message : String(error)}`);
  }
  const clean = await stopAll(started, postgres, broker, note);
  return code === 0 && !clean ? 1 : code;
}

/** The broker, started here or external (NATS_URL). */
interface DevBroker {
  url: string;
  where: string;
  external: boolean;
  stop(): Promise<void>;
}

/** The databases' server, embedded or external. */
interface DevDatabase {
  where: string;
  /** A server make dev did not start (DATABASE_URL): it is left running. */
  external: boolean;
  url(database: string): string;
  ensureDatabase(name: string): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A Postgres the developer runs (DATABASE_URL): the per-service databases
 * are created on it, and it is left running at the end.
 */
function externalDatabase(url: string): DevDatabase {
  return {
    where: redact(url),
    external: true,
    url: (database) => withDatabase(url, database),
    ensureDatabase: (name) => ensureDatabase(url, name),
    stop: async () => undefined,
  };
}

function redact(url: string): string {
  const parsed = new URL(url);
  if (parsed.password) parsed.password = "***";
  return parsed.toString();
}

/** 0 once shutdown is requested; 1 when a service exits on its own first. */
async function superviseUntilDone(running: ServiceProcess[], shutdown: AbortSignal, note: (message: string) => void): Promise<number> {
  const requested = new Promise<"requested">((resolve) => {
    if (shutdown.aborted) resolve("requested");
    shutdown.addEventListener("abort", () => resolve("requested"), { once: true });
  });
  const died = running.map((service) => service.exited.then((status) => ({ service, status })));
  const outcome = await Promise.race([requested, ...died]);
  if (outcome === "requested") return 0;

  const { service, status } = outcome;
  running.splice(running.indexOf(service), 1);
  note(`${service.name} exited unexpectedly (code ${status.code}, signal ${status.signal}). Its last lines:`);
  note(tail(service.logs()));
  note("shutting everything down");
  return 1;
}

/** Stops services last-started first, then the broker and Postgres; false if anything did not stop cleanly. */
async function stopAll(
  started: readonly ServiceProcess[],
  postgres: DevDatabase | undefined,
  broker: DevBroker | undefined,
  note: (message: string) => void,
): Promise<boolean> {
  let clean = true;
  for (const service of [...started].reverse()) {
    note(`stopping ${service.name}`);
    const status = await service.stop("SIGTERM", serviceStopTimeoutMs);
    if (status.code !== 0) {
      clean = false;
      note(`${service.name} did not stop cleanly (code ${status.code}, signal ${status.signal})`);
    }
  }
  if (broker?.external) {
    note("leaving the broker of NATS_URL running");
  } else if (broker) {
    note("stopping NATS");
    try {
      await broker.stop();
    } catch (error) {
      clean = false;
      note(`NATS did not stop cleanly: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  if (postgres?.external) {
    note("leaving the Postgres of DATABASE_URL running");
  } else if (postgres) {
    note("stopping Postgres");
    try {
      await postgres.stop();
    } catch (error) {
      clean = false;
      note(`Postgres did not stop cleanly: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  note(clean ? "stopped" : "stopped, with errors");
  return clean;
}
