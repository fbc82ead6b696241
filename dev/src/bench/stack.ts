import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { startNats, type LocalNats } from "../nats.js";
import { freePort } from "../net.js";
import type { LocalPostgres } from "../postgres.js";
import { startService, type ServiceProcess } from "../processes.js";
import { localPorts, localServices, serviceEnv, type LocalService } from "../services.js";

export interface StackService {
  name: string;
  process: ServiceProcess;
  grpcPort: number;
  adminPort: number;
  /** Process spawn until GET /readyz answers 200 (polled every 50 ms). */
  startToReadyMs: number;
}

export interface Stack {
  /** e.g. "tracing off". */
  label: string;
  services: StackService[];
  /** The database of each service that has one (service name → database name). */
  databases: ReadonlyMap<string, string>;
  address(name: string): string;
  stop(): Promise<void>;
}

export interface StackOptions {
  label: string;
  /** Prefix of the stack's database names; their old contents are dropped first. */
  databasePrefix: string;
  postgres: LocalPostgres;
  repoRoot: string;
  /** On top of what make dev gives each service: the stack's tracing settings. */
  env: Record<string, string>;
  logLevel: string;
  /** On top of `env`, per service (e.g. the chart's NODE_OPTIONS). */
  serviceEnv?: Record<string, Record<string, string>>;
  /** The cgroup.procs file each service starts in, if any (the memory step). */
  cgroupProcs?: Record<string, string>;
}

/**
 * make dev's services (the same rows, entry points and variables), each on
 * ports that are free now rather than make dev's fixed ones, with a broker
 * of the stack's own, so that the bench runs beside make dev or a test run,
 * and several stacks side by side. Services start one after the other, as
 * make dev starts them, so that one start-up's time is not another's.
 */
export async function startStack(options: StackOptions): Promise<Stack> {
  const ports = new Map<string, { grpc: number; admin: number }>();
  for (const service of localServices) ports.set(service.name, { grpc: await freePort(), admin: await freePort() });
  const started: StackService[] = [];
  const databases = new Map<string, string>();
  let broker: { nats: LocalNats; dir: string } | undefined;
  const stop = async () => {
    for (const service of [...started].reverse()) await service.process.stop("SIGTERM", 15_000);
    if (broker) {
      await broker.nats.stop();
      await fs.rm(broker.dir, { recursive: true, force: true });
    }
  };
  try {
    if (localServices.some((service) => service.nats)) {
      const dir = await fs.mkdtemp(path.join(os.tmpdir(), "meshcart-bench-nats-"));
      broker = { nats: await startNats({ dataDir: dir, port: await freePort(), monitorPort: await freePort() }), dir };
    }
    for (const service of localServices) {
      const own = ports.get(service.name)!;
      let databaseUrl: string | undefined;
      if (service.database) {
        const name = `${options.databasePrefix}_${service.name}`;
        await options.postgres.dropDatabase(name);
        await options.postgres.ensureDatabase(name);
        databaseUrl = options.postgres.url(name);
        databases.set(service.name, name);
      }
      // No fault-control endpoint: its fixed offset from the admin port could collide, and the bench injects no faults.
      const row: LocalService = { ...service, grpcPort: own.grpc, adminPort: own.admin, faults: false };
      const env = renumber(serviceEnv(row, { ...(databaseUrl ? { databaseUrl } : {}), ...(broker ? { natsUrl: broker.nats.url } : {}), logLevel: options.logLevel }), ports);
      const began = performance.now();
      const process = await startService({
        name: `${service.name} (${options.label})`,
        entry: path.resolve(options.repoRoot, service.entry),
        env: { ...env, ...options.env, ...options.serviceEnv?.[service.name] },
        adminPort: own.admin,
        keepLines: 200,
        ...(options.cgroupProcs?.[service.name] ? { cgroupProcs: options.cgroupProcs[service.name] } : {}),
      });
      started.push({ name: service.name, process, grpcPort: own.grpc, adminPort: own.admin, startToReadyMs: performance.now() - began });
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    label: options.label,
    services: started,
    databases,
    address(name) {
      const service = started.find((s) => s.name === name);
      if (!service) throw new Error(`no service ${name} in the ${options.label} stack`);
      return `127.0.0.1:${service.grpcPort}`;
    },
    stop,
  };
}

/** Points the make dev addresses (localhost:<fixed port>) of a row's variables at this stack's ports. */
export function renumber(env: Record<string, string>, ports: ReadonlyMap<string, { grpc: number }>): Record<string, string> {
  const byFixedPort = new Map<number, number>();
  for (const [name, fixed] of Object.entries(localPorts)) {
    const own = ports.get(name);
    if (own) byFixedPort.set(fixed.grpc, own.grpc);
  }
  return Object.fromEntries(
    Object.entries(env).map(([key, value]) => [
      key,
      value.replace(/\blocalhost:(\d+)\b/g, (whole, port: string) => {
        const own = byFixedPort.get(Number(port));
        return own === undefined ? whole : `127.0.0.1:${own}`;
      }),
    ]),
  );
}
