import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createChannel, createClientFactory, type Channel, type Client } from "nice-grpc";
import { errorDetailsClientMiddleware } from "nice-grpc-error-details";
import { FulfillmentServiceDefinition } from "@meshcart/contracts/meshcart/fulfillment/v1/fulfillment.js";
import { InventoryServiceDefinition } from "@meshcart/contracts/meshcart/inventory/v1/inventory.js";
import { OrderServiceDefinition } from "@meshcart/contracts/meshcart/order/v1/order.js";
import { PaymentServiceDefinition } from "@meshcart/contracts/meshcart/payment/v1/payment.js";
import { StorefrontServiceDefinition } from "@meshcart/contracts/meshcart/storefront/v1/storefront.js";
import { startNats, type LocalNats } from "./nats.js";
import { freePort } from "./net.js";
import { repoRoot } from "./paths.js";
import { startService, type ExitStatus, type ServiceProcess } from "./processes.js";
import { localPorts, localServices, serviceEnv, type LocalService } from "./services.js";

/**
 * The one fixture that starts meshcart for the tests, chaos, the bench and
 * the load generator's tests: the rows of make dev's table (dev/stack/src/services.ts:
 * entry points, databases, broker, fault control, how the services find each
 * other, their variables), but on free loopback ports, so that it runs beside
 * make dev and beside other stacks. Each harness adds only what is its own:
 * its variables (poll intervals, crash points, admission limits) and its
 * helpers.
 */

export type ServiceName = keyof typeof localPorts;

/** A service's database, made by whoever owns the Postgres. */
export interface StackDatabase {
  url: string;
  /** Called by close(); none when the owner cleans up itself. */
  drop?(): Promise<void>;
}

export interface StackOptions {
  /** Where the compiled entry points are; this checkout by default. */
  repoRoot?: string;
  /** Which services; every row of make dev's table by default. */
  services?: readonly ServiceName[];
  /**
   * Makes the database of a service that has one (in the test Postgres, the
   * bench's, chaos's own); `localName` is make dev's name for it.
   */
  database(service: ServiceName, localName: string): Promise<StackDatabase>;
  /**
   * A broker of the stack's own (nats-server, free ports, a throwaway
   * store), given to the services that talk to one; started when one of
   * them runs, unless false. `log` gets its output.
   */
  broker?: false | { log?: (line: string) => void };
  /** Added to every service's environment. */
  common?: Record<string, string>;
  /** Added to one service's environment, on top of `common`. */
  env?: Partial<Record<ServiceName, Record<string, string>>>;
  /** LOG_LEVEL; default info. */
  logLevel?: string;
  /** make dev's local OTLP collector settings (dev/stack/src/services.ts); off by default. */
  telemetry?: boolean;
  /** A fault-control endpoint for the services that take faults; default true. */
  faults?: boolean;
  /** SHUTDOWN_TIMEOUT_MS of 3 s rather than the services' 10 s, so a stop never waits long; default true. */
  quickShutdown?: boolean;
  /** Bound of one (re)start; default 30 000 ms. */
  readyTimeoutMs?: number;
  /** Bound of a graceful stop before SIGKILL; default 10 000 ms. */
  stopTimeoutMs?: number;
  /** How the process is named in messages; the service's name by default. */
  processName?: (service: ServiceName) => string;
  /** Every output line of every process. */
  onLine?: (service: ServiceName, line: string) => void;
  /** How many lines each process keeps for logs(); all by default. */
  keepLines?: number;
  /** The cgroup.procs file a service's processes start in (the bench's memory step). */
  cgroupProcs?: Partial<Record<ServiceName, string>>;
}

const definitions = {
  inventory: InventoryServiceDefinition,
  payment: PaymentServiceDefinition,
  order: OrderServiceDefinition,
  fulfillment: FulfillmentServiceDefinition,
  storefront: StorefrontServiceDefinition,
} as const;

export type ServiceClient<N extends ServiceName> = Client<(typeof definitions)[N]>;

/** Clients that read the error details (BadRequest, PreconditionFailure) a refusal carries. */
const clients = createClientFactory().use(errorDetailsClientMiddleware);

interface Member {
  row: LocalService;
  /** Kept across restarts: the others (and the tests' clients) find it again. */
  grpcPort: number;
  database?: StackDatabase;
  process?: ServiceProcess;
  adminPort?: number;
  faultPort?: number;
  channel?: Channel;
  /** Every process this service ran (replicas too), for the logs. */
  history: ServiceProcess[];
}

export class Stack {
  private readonly members = new Map<ServiceName, Member>();
  private readonly replicas: ServiceProcess[] = [];
  private broker: { nats: LocalNats; dir: string } | undefined;
  private closing: Promise<void> | undefined;

  private constructor(private readonly options: StackOptions) {}

  /** Databases, broker and ports, with no service started yet (see start, startAll). */
  static async create(options: StackOptions): Promise<Stack> {
    const stack = new Stack(options);
    const wanted = options.services ?? localServices.map((row) => row.name as ServiceName);
    try {
      for (const row of localServices) {
        const name = row.name as ServiceName;
        if (!wanted.includes(name)) continue;
        const member: Member = { row, grpcPort: await freePort(), history: [] };
        stack.members.set(name, member);
        if (row.database) member.database = await options.database(name, row.database);
      }
      if (options.broker !== false && [...stack.members.values()].some((m) => m.row.nats)) {
        const dir = await fs.mkdtemp(path.join(os.tmpdir(), "meshcart-stack-nats-"));
        try {
          const log = options.broker?.log;
          const nats = await startNats({ dataDir: dir, port: await freePort(), monitorPort: await freePort(), ...(log ? { log } : {}) });
          stack.broker = { nats, dir };
        } catch (error) {
          await fs.rm(dir, { recursive: true, force: true });
          throw error;
        }
      }
    } catch (error) {
      await stack.close();
      throw error;
    }
    return stack;
  }

  /** create, then startAll. */
  static async start(options: StackOptions): Promise<Stack> {
    const stack = await Stack.create(options);
    try {
      await stack.startAll();
    } catch (error) {
      await stack.close();
      throw error;
    }
    return stack;
  }

  /** The services of this stack, in make dev's start order. */
  get services(): ServiceName[] {
    return [...this.members.keys()];
  }

  /**
   * Starts every service that is down but those `except`, a service after
   * the ones it calls, those that call none of each other together. (The
   * bench starts one at a time with start(), so that one start-up's time is
   * not another's.)
   */
  async startAll(options: { except?: readonly ServiceName[] } = {}): Promise<void> {
    const down = this.services.filter((name) => !this.isRunning(name) && !options.except?.includes(name));
    for (const wave of startWaves(down)) await Promise.all(wave.map((name) => this.start(name)));
  }

  /**
   * Starts a service that is down on its gRPC port. `env` is added for this
   * start only (a crash point, another configuration), on top of the stack's.
   * With `mayExitBeforeReady` (a crash point armed), a process that kills
   * itself before it was ready is returned, exited (see crashed).
   */
  async start(name: ServiceName, env: Record<string, string> = {}, options: { mayExitBeforeReady?: boolean } = {}): Promise<ServiceProcess> {
    const member = this.member(name);
    if (member.process) throw new Error(`${name} is running already`);
    const { process, adminPort, faultPort } = await this.spawn(name, member.grpcPort, env, options.mayExitBeforeReady ?? false);
    Object.assign(member, { process, adminPort, faultPort });
    this.dropChannel(member);
    return process;
  }

  /** Another process of a service on a port of its own, over the same database (a second replica); stopped by close(). */
  async startReplica(name: ServiceName, env: Record<string, string> = {}): Promise<{ process: ServiceProcess; address: string }> {
    const grpcPort = await freePort();
    const { process } = await this.spawn(name, grpcPort, env, false);
    this.replicas.push(process);
    return { process, address: `127.0.0.1:${grpcPort}` };
  }

  /** Stops a service gracefully (SIGTERM, SIGKILL after the stop bound). */
  async stop(name: ServiceName): Promise<ExitStatus | undefined> {
    const member = this.member(name);
    const status = await member.process?.stop("SIGTERM", this.stopTimeoutMs);
    this.forget(member);
    return status;
  }

  /** kill -9: no shutdown hook runs, nothing is handed over. */
  async kill9(name: ServiceName): Promise<ExitStatus> {
    const member = this.member(name);
    const process = this.process(name);
    await process.kill9();
    this.forget(member);
    return process.exited;
  }

  /** Waits for a service that ends itself (a crash point) and forgets it. */
  async crashed(name: ServiceName): Promise<ExitStatus> {
    const status = await this.process(name).exited;
    this.forget(this.member(name));
    return status;
  }

  isRunning(name: ServiceName): boolean {
    return this.members.get(name)?.process !== undefined;
  }

  /** The running process of a service (its pid, logs, exit); throws while it is down. */
  process(name: ServiceName): ServiceProcess {
    const process = this.member(name).process;
    if (!process) throw new Error(`${name} is not running`);
    return process;
  }

  /** host:port of a service's gRPC API (the same across restarts). */
  address(name: ServiceName): string {
    return `127.0.0.1:${this.member(name).grpcPort}`;
  }

  /** The running service's admin port (probes, /metrics). */
  adminPort(name: ServiceName): number {
    this.process(name);
    return this.member(name).adminPort!;
  }

  /** The running service's admin endpoint as a base URL. */
  adminUrl(name: ServiceName): string {
    return `http://127.0.0.1:${this.adminPort(name)}`;
  }

  /** The Prometheus text the running service serves on /metrics. */
  async metrics(name: ServiceName): Promise<string> {
    const response = await fetch(`${this.adminUrl(name)}/metrics`);
    if (!response.ok) throw new Error(`GET /metrics of ${name} answered ${response.status}`);
    return response.text();
  }

  /** The running service's fault-control endpoint (PUT rules, DELETE clears them). */
  faultsUrl(name: ServiceName): string {
    this.process(name);
    const port = this.member(name).faultPort;
    if (port === undefined) throw new Error(`${name} has no fault-control endpoint`);
    return `http://127.0.0.1:${port}/faults`;
  }

  /** Replaces a service's fault rules (`{}` clears them), as `make faults` does. */
  async faults(name: ServiceName, rules: Record<string, unknown>): Promise<void> {
    const response = await fetch(this.faultsUrl(name), { method: "PUT", body: JSON.stringify(rules) });
    if (response.status !== 200) throw new Error(`${name} refused the fault rules: ${response.status} ${await response.text()}`);
  }

  /** The service's database URL; throws for a service without one. */
  databaseUrl(name: ServiceName): string {
    const database = this.member(name).database;
    if (!database) throw new Error(`${name} has no database in this stack`);
    return database.url;
  }

  /** The stack's broker (an outage is pause() and resume()). */
  get nats(): LocalNats {
    if (!this.broker) throw new Error("this stack runs no broker");
    return this.broker.nats;
  }

  /** A channel to the service, renewed after a restart (an old one may sit in reconnect backoff). */
  channel(name: ServiceName): Channel {
    const member = this.member(name);
    member.channel ??= createChannel(this.address(name));
    return member.channel;
  }

  /** A typed client of the service on channel(name), reading error details. */
  client<N extends ServiceName>(name: N): ServiceClient<N> {
    return clients.create(definitions[name], this.channel(name)) as ServiceClient<N>;
  }

  /** Every log line of every process the service ran, replicas included. */
  logs(name: ServiceName): string[] {
    return this.member(name).history.flatMap((process) => process.logs());
  }

  /** Stops every process (last started first), then the broker; drops the databases; idempotent. */
  close(): Promise<void> {
    this.closing ??= this.teardown();
    return this.closing;
  }

  private async teardown(): Promise<void> {
    for (const process of this.replicas.reverse()) await process.stop("SIGTERM", this.stopTimeoutMs).catch(() => undefined);
    for (const member of [...this.members.values()].reverse()) {
      await member.process?.stop("SIGTERM", this.stopTimeoutMs).catch(() => undefined);
      this.forget(member);
    }
    for (const member of this.members.values()) await member.database?.drop?.().catch(() => undefined);
    if (this.broker) {
      await this.broker.nats.stop().catch(() => undefined);
      await fs.rm(this.broker.dir, { recursive: true, force: true });
      this.broker = undefined;
    }
  }

  private get stopTimeoutMs(): number {
    return this.options.stopTimeoutMs ?? 10_000;
  }

  private member(name: ServiceName): Member {
    const member = this.members.get(name);
    if (!member) throw new Error(`no ${name} in this stack`);
    return member;
  }

  private forget(member: Member): void {
    member.process = undefined;
    member.adminPort = undefined;
    member.faultPort = undefined;
    this.dropChannel(member);
  }

  private dropChannel(member: Member): void {
    member.channel?.close();
    member.channel = undefined;
  }

  private async spawn(name: ServiceName, grpcPort: number, env: Record<string, string>, mayExitBeforeReady: boolean) {
    const member = this.member(name);
    const options = this.options;
    const adminPort = await freePort();
    const faultPort = member.row.faults && options.faults !== false ? await freePort() : undefined;
    // make dev's fault-control port is derived from its fixed admin port; here it is a free one of its own.
    const row: LocalService = {
      ...member.row,
      grpcPort,
      adminPort,
      faults: false,
      env: wire(member.row.env, (target) => (this.members.has(target) ? this.address(target) : undefined)),
    };
    const base = serviceEnv(row, {
      ...(member.database ? { databaseUrl: member.database.url } : {}),
      ...(this.broker ? { natsUrl: this.broker.nats.url } : {}),
      logLevel: options.logLevel ?? "info",
      telemetry: options.telemetry ?? false,
    });
    const process = await startService({
      name: options.processName?.(name) ?? name,
      entry: path.resolve(options.repoRoot ?? repoRoot, member.row.entry),
      adminPort,
      readyTimeoutMs: options.readyTimeoutMs ?? 30_000,
      mayExitBeforeReady,
      env: {
        ...base,
        ...(options.quickShutdown === false ? {} : { SHUTDOWN_TIMEOUT_MS: "3000" }),
        ...(faultPort === undefined ? {} : { FAULT_CONTROL_PORT: String(faultPort) }),
        ...options.common,
        ...options.env?.[name],
        ...env,
      },
      ...(options.keepLines === undefined ? {} : { keepLines: options.keepLines }),
      ...(options.onLine ? { onLine: (_: string, line: string) => options.onLine!(name, line) } : {}),
      ...(options.cgroupProcs?.[name] ? { cgroupProcs: options.cgroupProcs[name] } : {}),
    });
    member.history.push(process);
    return { process, adminPort, faultPort };
  }
}

/**
 * make dev's rows name each other by their fixed ports (localhost:50053);
 * in a stack they point at `addressOf` the service, and a variable naming a
 * service the stack does not run is left out (the harness gives its own, a
 * stub's).
 */
export function wire(env: Readonly<Record<string, string>>, addressOf: (service: ServiceName) => string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) {
    const target = calledService(value);
    if (target === undefined) out[key] = value;
    else {
      const address = addressOf(target);
      if (address !== undefined) out[key] = address;
    }
  }
  return out;
}

/** The service a make dev variable's value names by its fixed address, if any. */
function calledService(value: string): ServiceName | undefined {
  const port = Number(/^localhost:(\d+)$/.exec(value)?.[1]);
  return (Object.keys(localPorts) as ServiceName[]).find((name) => localPorts[name].grpc === port);
}

/**
 * `services` in waves, each after the services its row calls (by make dev's
 * addresses in its variables); the services of a wave call none of each
 * other and start together.
 */
export function startWaves(services: readonly ServiceName[]): ServiceName[][] {
  const callees = (name: ServiceName) =>
    Object.values(localServices.find((row) => row.name === name)?.env ?? {})
      .map(calledService)
      .filter((callee): callee is ServiceName => callee !== undefined && callee !== name && services.includes(callee));
  const waves: ServiceName[][] = [];
  const placed = new Set<ServiceName>();
  while (placed.size < services.length) {
    const wave = services.filter((name) => !placed.has(name) && callees(name).every((callee) => placed.has(callee)));
    if (wave.length === 0) throw new Error(`these services call each other in a circle: ${services.filter((name) => !placed.has(name)).join(", ")}`);
    for (const name of wave) placed.add(name);
    waves.push(wave);
  }
  return waves;
}
