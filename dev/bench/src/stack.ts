import { performance } from "node:perf_hooks";
import type { LocalPostgres } from "@meshcart/stack/postgres.js";
import type { ServiceProcess } from "@meshcart/stack/processes.js";
import { Stack as Fixture, type ServiceName } from "@meshcart/stack/stack.js";

export interface StackService {
  name: string;
  process: ServiceProcess;
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
 * make dev's services as the stack fixture runs them (the same rows, entry
 * points and variables on free ports, a broker of the stack's own), so that
 * the bench runs beside make dev or a test run, and several stacks side by
 * side. Services start one after the other, as make dev starts them, so
 * that one start-up's time is not another's.
 */
export async function startStack(options: StackOptions): Promise<Stack> {
  const databases = new Map<string, string>();
  const stack = await Fixture.create({
    repoRoot: options.repoRoot,
    database: async (service) => {
      const name = `${options.databasePrefix}_${service}`;
      await options.postgres.dropDatabase(name);
      await options.postgres.ensureDatabase(name);
      databases.set(service, name);
      return { url: options.postgres.url(name) };
    },
    logLevel: options.logLevel,
    // make dev's environment as it is, its collector settings (which `env` overrides) and shutdown bound included.
    telemetry: true,
    quickShutdown: false,
    // The bench injects no faults.
    faults: false,
    common: options.env,
    ...(options.serviceEnv ? { env: options.serviceEnv as Partial<Record<ServiceName, Record<string, string>>> } : {}),
    ...(options.cgroupProcs ? { cgroupProcs: options.cgroupProcs as Partial<Record<ServiceName, string>> } : {}),
    readyTimeoutMs: 20_000,
    stopTimeoutMs: 15_000,
    keepLines: 200,
    processName: (service) => `${service} (${options.label})`,
  });
  const started: StackService[] = [];
  try {
    for (const name of stack.services) {
      const began = performance.now();
      const process = await stack.start(name);
      started.push({ name, process, adminPort: stack.adminPort(name), startToReadyMs: performance.now() - began });
    }
  } catch (error) {
    await stack.close();
    throw error;
  }
  return {
    label: options.label,
    services: started,
    databases,
    address: (name) => stack.address(name as ServiceName),
    stop: () => stack.close(),
  };
}
