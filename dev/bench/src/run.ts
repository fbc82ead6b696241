import { rmSync } from "node:fs";
import fs from "node:fs/promises";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { freePort } from "@meshcart/stack/net.js";
import { startPostgres, type LocalPostgres } from "@meshcart/stack/postgres.js";
import { localServices } from "@meshcart/stack/services.js";
import { artefactSizes, nodeBinaryBytes } from "./artefacts.js";
import { chartResources } from "./chart-resources.js";
import { measureMemory, type MemoryMeasurement } from "./memory.js";
import { measureOverload, type OverloadMeasurement } from "./overload.js";
import { cpuSeconds, exitedChildrenCpuSeconds, postgresCpuSeconds } from "./cpu.js";
import { DatabaseCounters, POSTGRES_SETTINGS, type DatabaseActivity } from "./db-counts.js";
import { findPgbench, measureDurableTransaction, type DurableTransaction } from "./floor.js";
import { summariseProfile, type CpuProfile } from "./cpu-profile.js";
import { ECHO_PROTO } from "./echo.js";
import { startEchoServer, type EchoProcess } from "./echo-process.js";
import { restockCatalogue, shopperToken } from "./fixtures.js";
import { errorRate, runGhz, type GhzCall, type GhzLoad, type LoadResult } from "./ghz.js";
import { describeMachine } from "./machine.js";
import type { BenchOptions } from "./options.js";
import {
  REACTING_SERVICES,
  REACTION_POSTGRES,
  type IdleMeasurement,
  type Measurements,
  type ProfiledService,
  type ServiceMeasurement,
  type TracingMeasurement,
  type WorkloadMeasurement,
} from "./report.js";
import { handledRpcs, sagasSettled } from "./rpc-count.js";
import { RssPeaks, rssBytes } from "./rss.js";
import { defaultSaturationPlan, findSaturation } from "./saturation.js";
import { startStack, type Stack } from "./stack.js";
import { OtlpSink, tracingEnv, tracingModes, type TracingMode } from "./tracing.js";
import { SHOPPER, workloads, type Workload } from "./workloads.js";
import { sleep } from "@meshcart/lib";

/** The contracts' descriptor set, ghz's schema for meshcart's RPCs (@meshcart/contracts' `exports`). */
const DESCRIPTOR_SET = createRequire(import.meta.url).resolve("@meshcart/contracts/meshcart.binpb");

export interface RunSettings {
  repoRoot: string;
  ghz: string;
  toolsBin: string;
  /** Postgres with fsync and synchronous commit, as make dev runs it. */
  postgresDurable: boolean;
  /** The services' LOG_LEVEL: make dev's and the chart's default. */
  logLevel: string;
  command: string;
  log: (line: string) => void;
}

/** Calls of a warm-up run: enough for the JIT, the pools and the caches, and the RPC count. */
const WARM_UP_CALLS = { singleHop: 1_000, checkout: 300 };
const WARM_UP_CONCURRENCY = 8;
/** How long a stack sits before its idle RSS is read. */
const SETTLE_MS = 2_000;
/** Longer than the services' span batch delay (OTEL_BSP_SCHEDULE_DELAY, 1 s for make dev), so a run's spans have arrived. */
const SPAN_FLUSH_MS = 2_500;
/** How long the idle stacks are watched for statements they run on their own (recovery scans, expiry sweeps). */
const IDLE_SECONDS = { full: 30, quick: 10 };

/**
 * One benchmark run, start to end: Postgres, the baseline's echo server,
 * one stack of services per tracing mode (side by side, so that the modes
 * can be measured in interleaved rounds without restarts), then every
 * measurement, then the artefacts once the stacks are down.
 */
export async function runBench(options: BenchOptions, settings: RunSettings): Promise<Measurements> {
  const { repoRoot, ghz, log } = settings;
  const startedAt = new Date().toISOString();
  const machine = await describeMachine(ghz, settings.toolsBin);
  log(`machine: ${machine.cores} × ${machine.cpuModel}, ${(machine.memoryBytes / 2 ** 30).toFixed(1)} GiB, Node ${machine.node}, ghz ${machine.ghz}`);

  const scratch = await fs.mkdtemp(path.join(os.tmpdir(), "meshcart-bench-"));
  // Run as root, Postgres runs as the "postgres" user, who must enter it.
  await fs.chmod(scratch, 0o755);
  // A Ctrl-C exits at once; the supervisors' exit hooks kill the children.
  const removeScratch = () => rmSync(scratch, { recursive: true, force: true });
  process.once("exit", removeScratch);

  let postgres: LocalPostgres | undefined;
  let counters: DatabaseCounters | undefined;
  let echo: EchoProcess | undefined;
  const stacks = new Map<TracingMode["id"], Stack>();
  const sinks = new Map<TracingMode["id"], OtlpSink>();
  try {
    postgres = await startPostgres({
      dataDir: path.join(scratch, "postgres"),
      port: await freePort(),
      persistent: settings.postgresDurable,
      settings: POSTGRES_SETTINGS,
    });
    counters = await DatabaseCounters.open(postgres.url("postgres"));
    // The chart's limits, heap sizes and probe timeout: the memory and overload steps run the services under them.
    const chart = await chartResources(
      repoRoot,
      path.join(settings.toolsBin, "helm"),
      localServices.map((s) => s.name),
    );
    const pgbench = await findPgbench();
    echo = await startEchoServer(await freePort());
    log(`echo server ready in ${echo.startToReadyMs.toFixed(0)} ms`);

    for (const mode of tracingModes) {
      const sink = mode.ratio > 0 ? await OtlpSink.start() : undefined;
      if (sink) sinks.set(mode.id, sink);
      const stack = await startStack({
        label: mode.label,
        databasePrefix: `bench_${mode.id.replace("%", "pct")}`,
        postgres,
        repoRoot,
        env: { ...tracingEnv(mode, sink?.endpoint), ...(options.nodeOptions ? { NODE_OPTIONS: options.nodeOptions } : {}) },
        logLevel: settings.logLevel,
      });
      stacks.set(mode.id, stack);
      log(`${mode.label}: ${stack.services.map((s) => `${s.name} ready in ${s.startToReadyMs.toFixed(0)} ms`).join(", ")}`);
    }
    const tag = `bench-${Date.now().toString(36)}`;
    const skus = new Map<TracingMode["id"], string[]>();
    for (const [mode, stack] of stacks) skus.set(mode, await restockCatalogue(stack.address("inventory"), `${tag}-restock`));
    const token = await shopperToken(repoRoot, SHOPPER);

    await sleep(SETTLE_MS);
    const idle = new Map<number, number>();
    for (const pid of [echo.pid, ...[...stacks.values()].flatMap((s) => s.services.map((x) => x.process.pid))]) {
      idle.set(pid, (await rssBytes(pid)) ?? Number.NaN);
    }

    // What the services ask of Postgres with nothing to do: health checks, and anything else is a finding.
    const off = stacks.get("off")!;
    const offDatabases = [...off.databases.values()];
    // The databases of the services that act on a checkout's events afterwards: their Postgres CPU is reported apart.
    const reactingDatabases = new Set([...off.databases.entries()].filter(([service]) => REACTING_SERVICES.has(service)).map(([, database]) => database));
    // Reported by service: the stack's database names carry its prefix.
    const serviceOf = new Map([...off.databases.entries()].map(([service, database]) => [database, service]));
    const named = (activity: DatabaseActivity[]) => activity.map((a) => ({ ...a, database: serviceOf.get(a.database) ?? a.database }));
    const idleSeconds = options.quick ? IDLE_SECONDS.quick : IDLE_SECONDS.full;
    const idleBefore = await counters.snapshot();
    await sleep(idleSeconds * 1000);
    const idleActivity: IdleMeasurement = {
      seconds: idleSeconds,
      perDatabase: named(await counters.between(idleBefore, await counters.snapshot(), offDatabases)),
    };
    log(
      `idle for ${idleSeconds} s: ${idleActivity.perDatabase.map((d) => `${d.database} ${d.statements} statement(s) and ${d.healthChecks} health check(s)`).join(", ")}`,
    );

    let runs = 0;
    const callOf = (w: Workload, mode: TracingMode["id"]): GhzCall => {
      const stack = stacks.get(mode)!;
      return {
        target: w.target === "echo" ? `127.0.0.1:${echo!.port}` : stack.address(w.target),
        method: w.method,
        schema: w.target === "echo" ? { proto: ECHO_PROTO } : { protoset: DESCRIPTOR_SET },
        // A new tag for every ghz run: its request numbers start again at 0.
        data: w.data(`${tag}-${++runs}`, skus.get(mode)!),
        ...(w.authenticated ? { metadata: { authorization: `Bearer ${token}` } } : {}),
      };
    };
    const load = (w: Workload, mode: TracingMode["id"], shape: GhzLoad): Promise<LoadResult> => runGhz(ghz, callOf(w, mode), shape);

    // --- throughput and latency of every workload, tracing off --------------
    const offPids = off.services.map((s) => s.process.pid);
    const loadPeaks = new Map<number, number>();
    const keepPeaks = (peaks: Map<number, number>, into: Map<number, number>) => {
      for (const [pid, rss] of peaks) into.set(pid, Math.max(rss, into.get(pid) ?? 0));
    };
    const measured: WorkloadMeasurement[] = [];
    let floor: DurableTransaction | undefined;
    let floorSkipped: string | undefined;
    for (const w of workloads) {
      const pids = w.target === "echo" ? [echo.pid] : offPids;
      const peaks = new RssPeaks(pids);
      peaks.start();
      const processes: [string, number][] = w.target === "echo" ? [["echo", echo.pid]] : off.services.map((x) => [x.name, x.process.pid]);
      const cpu = () => cpuNow(processes, w.target === "echo" ? undefined : { dataDir: postgres!.dataDir, reacting: reactingDatabases });
      const counting = w.countsDatabases ? { counters, databases: offDatabases, named } : undefined;
      measured.push(await measureWorkload(w, options, (shape) => load(w, "off", shape), w.target === "echo" ? undefined : off, cpu, log, counting));
      keepPeaks(await peaks.stop(), loadPeaks);
      if (w.target === "echo") {
        // The floor's other half, next to the hop it is measured with.
        if (pgbench) {
          floor = await measureDurableTransaction(postgres, pgbench, options.stepSeconds * 2);
          log(
            `durable floor: one durable INSERT costs Postgres ${floor.postgresCpuMsPerTransaction.toFixed(3)} ms of CPU ` +
              `(${floor.transactions} transactions by ${floor.clients} pgbench clients, ${floor.tps.toFixed(0)}/s)`,
          );
        } else {
          floorSkipped = "no pgbench found (the embedded Postgres ships none here; install Debian's postgresql-client)";
          log(`durable floor not measured: ${floorSkipped}`);
        }
      }
    }
    const echoMeasured = measured[0]!;

    // --- tracing: off, 10 %, 100 % in interleaved rounds ----------------------
    const tracing = new Map<string, TracingMeasurement>();
    const loadByMode = new Map<TracingMode["id"], Map<number, number>>();
    for (let round = 0; round < options.tracingRounds; round++) {
      // ABC then CBA: a drift of the machine over the run weighs on every mode alike.
      const order = round % 2 === 0 ? tracingModes : [...tracingModes].reverse();
      for (const mode of order) {
        const stack = stacks.get(mode.id)!;
        const peaks = new RssPeaks(stack.services.map((s) => s.process.pid));
        peaks.start();
        for (const w of workloads.filter((x) => x.endToEnd)) {
          const reference = measured.find((m) => m.workload.id === w.id)!.saturation.best;
          const key = `${w.id}|${mode.id}`;
          const entry = tracing.get(key) ?? { workload: w, mode, throughput: [], latency: [], exportBytesPerCall: undefined };
          tracing.set(key, entry);
          const sink = sinks.get(mode.id);
          const bytesBefore = sink?.bytes ?? 0;
          // The sagas one run leaves behind would weigh on the next, in this stack or another.
          const orderAdmin = stack.services.filter((x) => x.name === "order").map((x) => x.adminPort);
          await sagasSettled(orderAdmin);
          const throughput = await load(w, mode.id, { concurrency: reference.concurrency, seconds: options.stepSeconds * 2 });
          await sagasSettled(orderAdmin);
          const latency = await load(w, mode.id, {
            concurrency: reference.concurrency,
            seconds: options.latencySeconds,
            rps: reference.okRps * options.latencyFraction,
          });
          await sagasSettled(orderAdmin);
          entry.throughput.push(throughput);
          entry.latency.push(latency);
          if (sink) {
            await sleep(SPAN_FLUSH_MS);
            const perCall = (sink.bytes - bytesBefore) / (throughput.ok + latency.ok);
            entry.exportBytesPerCall = (entry.exportBytesPerCall ?? 0) + perCall / options.tracingRounds;
          }
          log(
            `round ${round + 1}, ${mode.label}, ${w.label}: ${throughput.okRps.toFixed(0)} calls/s at concurrency ${reference.concurrency}; ` +
              `p50 ${latency.p50Ms.toFixed(1)} ms, p99 ${latency.p99Ms.toFixed(1)} ms at ${latency.okRps.toFixed(0)}/s`,
          );
        }
        const byMode = loadByMode.get(mode.id) ?? new Map<number, number>();
        keepPeaks(await peaks.stop(), byMode);
        loadByMode.set(mode.id, byMode);
      }
    }
    keepPeaks(loadByMode.get("off") ?? new Map(), loadPeaks);

    // The baseline once more: if it moved, so did everything measured between.
    const baselineAgain = await load(echoMeasured.workload, "off", { concurrency: echoMeasured.saturation.best.concurrency, seconds: options.stepSeconds });
    log(`baseline again: ${baselineAgain.okRps.toFixed(0)} calls/s (at the start: ${echoMeasured.saturation.best.okRps.toFixed(0)})`);

    // --- overload: open loop at multiples of PlaceOrder's saturation ----------
    let overload: OverloadMeasurement | undefined;
    const placeOrder = measured.find((m) => m.workload.id === "place-order");
    if (options.overloadSeconds > 0 && placeOrder) {
      const w = placeOrder.workload;
      await sagasSettled(off.services.filter((x) => x.name === "order").map((x) => x.adminPort));
      overload = await measureOverload(
        {
          ghz,
          call: (phaseTag) => ({ ...callOf(w, "off"), data: w.data(phaseTag, skus.get("off")!) }),
          requestIdPrefix: `${SHOPPER}:`,
          orderDatabaseUrl: postgres.url(off.databases.get("order")!),
          adminPorts: off.services.map((x) => x.adminPort),
          searched: { rps: placeOrder.saturation.best.okRps, concurrency: placeOrder.saturation.best.concurrency },
          seconds: options.overloadSeconds,
          readinessTimeoutMs: chart.get("storefront")!.readinessTimeoutMs,
          recoveryIntervalMs: await orderRecoveryIntervalMs(repoRoot),
          serviceLogs: () => new Map(off.services.map((x) => [x.name, x.process.logs()])),
          log,
        },
        `${tag}-overload`,
      );
    }

    const services: ServiceMeasurement[] = localServices.map((row) => {
      const mine = [...stacks.values()].map((stack) => stack.services.find((s) => s.name === row.name)!);
      const offService = off.services.find((s) => s.name === row.name)!;
      return {
        name: row.name,
        idleRssBytes: idle.get(offService.process.pid) ?? Number.NaN,
        loadRssBytes: loadPeaks.get(offService.process.pid) ?? Number.NaN,
        loadRssByMode: Object.fromEntries(
          [...stacks.entries()].map(([mode, stack]) => {
            const pid = stack.services.find((s) => s.name === row.name)!.process.pid;
            return [mode, (mode === "off" ? loadPeaks : loadByMode.get(mode))?.get(pid) ?? Number.NaN];
          }),
        ),
        startToReadyMs: mine.map((s) => s.startToReadyMs),
      };
    });
    const echoProcess = {
      idleRssBytes: idle.get(echo.pid) ?? Number.NaN,
      loadRssBytes: loadPeaks.get(echo.pid) ?? Number.NaN,
      startToReadyMs: [echo.startToReadyMs],
    };

    await stopAll(stacks, echo, new Map(), undefined);
    stacks.clear();
    echo = undefined;

    // --- memory: every service under its chart limit, at saturation and 3× ----
    let memory: MemoryMeasurement | undefined;
    if (options.memorySeconds > 0 && placeOrder) {
      const w = placeOrder.workload;
      // Tracing as the chart runs it: every span exported (the SDK and its buffers are part of the footprint).
      const sink = await OtlpSink.start();
      try {
        memory = await measureMemory(
          {
            repoRoot,
            ghz,
            postgres,
            logLevel: settings.logLevel,
            chart,
            env: tracingEnv(
              tracingModes.find((m) => m.id === "100%")!,
              sink.endpoint,
            ),
            seconds: options.memorySeconds,
            saturation: { concurrency: placeOrder.saturation.best.concurrency, okRps: placeOrder.saturation.best.okRps },
            call: async (stack, runTag) => ({
              target: stack.address("storefront"),
              method: w.method,
              schema: { protoset: DESCRIPTOR_SET },
              data: w.data(runTag, await restockCatalogue(stack.address("inventory"), `${runTag}-restock`)),
              metadata: { authorization: `Bearer ${token}` },
            }),
            log,
          },
          `${tag}-memory`,
        );
      } finally {
        await sink.stop();
      }
      if (!memory.measured) log(`memory step not measured: ${memory.reason}`);
    }
    // Profiled on their own, once every other stack is down: profiling slows
    // a process, so its figures stay out of everything measured above.
    const checkout = measured.find((m) => m.workload.id === "create-order");
    const profiles =
      options.profile && checkout
        ? await profileWorkload(checkout, {
            repoRoot,
            ghz,
            postgres,
            scratch,
            tag,
            logLevel: settings.logLevel,
            seconds: options.latencySeconds,
            nodeOptions: options.nodeOptions,
            log,
          })
        : undefined;
    await stopAll(stacks, undefined, sinks, postgres);
    sinks.clear();
    postgres = undefined;

    // After the load: assembling runs npm and tsc, which would have competed with it.
    let artefactsSkipped: string | undefined;
    if (options.artefacts) {
      const sizes = await artefactSizes(
        repoRoot,
        localServices.map((s) => s.name),
        log,
      );
      for (const service of services) service.artefact = sizes.get(service.name);
    } else {
      artefactsSkipped = options.quick ? "quick run (BENCH_QUICK=1)" : "BENCH_ARTEFACTS=0";
    }

    return {
      startedAt,
      finishedAt: new Date().toISOString(),
      command: settings.command,
      machine: { ...machine, loadAverageEnd: os.loadavg()[0]! },
      settings: {
        stepSeconds: options.stepSeconds,
        latencySeconds: options.latencySeconds,
        latencyFraction: options.latencyFraction,
        levels: options.levels,
        tracingRounds: options.tracingRounds,
        postgresDurable: settings.postgresDurable,
        logLevel: settings.logLevel,
      },
      workloads: measured,
      ...(floor ? { floor } : {}),
      ...(floorSkipped ? { floorSkipped } : {}),
      idle: idleActivity,
      baselineAgain,
      tracing: [...tracing.values()],
      echoProcess,
      services,
      nodeBinaryBytes: await nodeBinaryBytes(),
      ...(profiles ? { profiles } : {}),
      ...(overload ? { overload } : {}),
      ...(memory ? { memory } : {}),
      ...(artefactsSkipped ? { artefactsSkipped } : {}),
    };
  } finally {
    await counters?.close();
    await stopAll(stacks, echo, sinks, postgres);
    process.off("exit", removeScratch);
    removeScratch();
  }
}

/**
 * One workload: a warm-up that also counts the RPCs it caused, the search
 * for saturation, then latency in an open loop at a fixed fraction of it.
 */
async function measureWorkload(
  w: Workload,
  options: BenchOptions,
  load: (shape: GhzLoad) => Promise<LoadResult>,
  stack: Stack | undefined,
  cpu: () => Promise<Map<string, number>>,
  log: (line: string) => void,
  counting?: { counters: DatabaseCounters; databases: readonly string[]; named: (activity: DatabaseActivity[]) => DatabaseActivity[] },
): Promise<WorkloadMeasurement> {
  const adminPorts = stack?.services.map((s) => s.adminPort) ?? [];
  const orderAdmin = stack?.services.filter((s) => s.name === "order").map((s) => s.adminPort) ?? [];
  // Every measurement starts from a quiet stack: no saga left over from the one before.
  const settle = () => (orderAdmin.length > 0 ? sagasSettled(orderAdmin) : Promise.resolve(0));
  const before = stack ? await handledRpcs(adminPorts) : 0;
  await settle();
  const countedFrom = await counting?.counters.snapshot();
  const warm = await load({ concurrency: WARM_UP_CONCURRENCY, seconds: 0, requests: w.rpcsPerCall > 1 ? WARM_UP_CALLS.checkout : WARM_UP_CALLS.singleHop });
  if (errorRate(warm) > 0.01) throw new Error(`${w.label}: the warm-up failed: ${JSON.stringify(warm.errors)}`);
  // Every saga of the warm-up has ended (CreateOrder answers once it is final): what it asked of Postgres is all in.
  await settle();
  let database: WorkloadMeasurement["database"];
  if (counting && countedFrom) {
    const perDatabase = await counting.counters.between(countedFrom, await counting.counters.snapshot(), counting.databases);
    database = { calls: warm.ok, perDatabase: counting.named(perDatabase).map((d) => perCallActivity(d, warm.ok)) };
    log(
      `${w.label}: per call ${database.perDatabase.map((d) => `${d.database} ${d.statements.toFixed(2)} statements, ${d.commits.toFixed(2)} commits`).join("; ")}`,
    );
  }
  const rpcsPerCallMeasured = stack ? ((await handledRpcs(adminPorts)) - before) / warm.calls : undefined;

  // CPU per call of each step: the saturating step's is what bounds it.
  const cpuByStep = new Map<LoadResult, Record<string, number> | undefined>();
  const saturation = await findSaturation(defaultSaturationPlan(options.levels), async (concurrency) => {
    await settle();
    const cpuBefore = await cpu();
    const step = await load({ concurrency, seconds: options.stepSeconds });
    cpuByStep.set(step, perCall(cpuBefore, await cpu(), step.calls));
    log(
      `${w.label}: concurrency ${concurrency}: ${step.okRps.toFixed(0)} calls/s, p50 ${step.p50Ms.toFixed(2)} ms, p99 ${step.p99Ms.toFixed(2)} ms${errorRate(step) > 0 ? `, errors ${JSON.stringify(step.errors)}` : ""}`,
    );
    return step;
  });
  const best = saturation.best;
  const loadAverage = os.loadavg()[0]!;
  await settle();
  const latency = await load({ concurrency: best.concurrency, seconds: options.latencySeconds, rps: best.okRps * options.latencyFraction });
  await settle();
  const cpuMsPerCall = cpuByStep.get(best);
  log(
    `${w.label}: saturation ${best.okRps.toFixed(0)} calls/s at concurrency ${best.concurrency} (${saturation.stoppedBecause}); ` +
      `at ${latency.okRps.toFixed(0)}/s p50 ${latency.p50Ms.toFixed(2)} ms, p95 ${latency.p95Ms.toFixed(2)} ms, p99 ${latency.p99Ms.toFixed(2)} ms` +
      (rpcsPerCallMeasured === undefined ? "" : `; ${rpcsPerCallMeasured.toFixed(2)} RPCs per call`) +
      (cpuMsPerCall
        ? `; CPU ms per call: ${Object.entries(cpuMsPerCall)
            .map(([name, v]) => `${name} ${v.toFixed(2)}`)
            .join(", ")}`
        : ""),
  );
  return {
    workload: w,
    saturation,
    latency,
    ...(rpcsPerCallMeasured === undefined ? {} : { rpcsPerCallMeasured }),
    ...(cpuMsPerCall ? { cpuMsPerCall } : {}),
    ...(database ? { database } : {}),
    loadAverage,
  };
}

/** One database's counts divided by the calls that caused them. */
function perCallActivity(activity: DatabaseActivity, calls: number): DatabaseActivity {
  const per = (n: number) => (calls > 0 ? n / calls : Number.NaN);
  return {
    database: activity.database,
    statements: per(activity.statements),
    healthChecks: per(activity.healthChecks),
    commits: per(activity.commits),
    byStatement: activity.byStatement.map((s) => ({ query: s.query, calls: per(s.calls) })),
  };
}

/**
 * CPU seconds used so far by each named process, by Postgres (every backend
 * included) when given, and by the load tool (this process's exited
 * children: each ghz run is one). Empty where /proc is not there.
 */
async function cpuNow(
  processes: readonly [string, number][],
  postgres: { dataDir: string; reacting: ReadonlySet<string> } | undefined,
): Promise<Map<string, number>> {
  const now = new Map<string, number>();
  const put = (name: string, seconds: number | undefined) => {
    if (seconds !== undefined) now.set(name, seconds);
  };
  for (const [name, pid] of processes) put(name, await cpuSeconds(pid));
  if (postgres) {
    const seconds = await postgresCpuSeconds(postgres.dataDir, postgres.reacting);
    put("postgres", seconds && seconds.total - seconds.apart);
    if (postgres.reacting.size > 0) put(REACTION_POSTGRES, seconds?.apart);
  }
  put("ghz", await exitedChildrenCpuSeconds());
  return now;
}

/** Milliseconds of CPU per call between two snapshots; undefined when nothing could be read. */
function perCall(before: Map<string, number>, after: Map<string, number>, calls: number): Record<string, number> | undefined {
  if (calls <= 0 || after.size === 0) return undefined;
  const out: Record<string, number> = {};
  for (const [name, seconds] of after) {
    const start = before.get(name);
    if (start !== undefined) out[name] = ((seconds - start) * 1000) / calls;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

interface ProfileContext {
  repoRoot: string;
  ghz: string;
  postgres: LocalPostgres;
  scratch: string;
  tag: string;
  logLevel: string;
  seconds: number;
  nodeOptions: string | undefined;
  log: (line: string) => void;
}

/**
 * Where the services' CPU goes under one workload: a stack of its own with
 * `node --cpu-prof` (tracing off), loaded at the workload's saturating
 * concurrency, then stopped, which is when each process writes its profile.
 */
async function profileWorkload(measured: WorkloadMeasurement, context: ProfileContext): Promise<ProfiledService[]> {
  const w = measured.workload;
  const dir = path.join(context.scratch, "profiles");
  await fs.mkdir(dir, { recursive: true });
  const stack = await startStack({
    label: "profiled",
    databasePrefix: "bench_profiled",
    postgres: context.postgres,
    repoRoot: context.repoRoot,
    env: { ...tracingEnv(tracingModes[0]!, undefined), NODE_OPTIONS: `${context.nodeOptions ?? ""} --cpu-prof --cpu-prof-dir=${dir}`.trim() },
    logLevel: context.logLevel,
  });
  const names = new Map(stack.services.map((s) => [s.process.pid, s.name]));
  try {
    const skus = await restockCatalogue(stack.address("inventory"), `${context.tag}-profiled-restock`);
    const result = await runGhz(
      context.ghz,
      {
        target: stack.address(w.target),
        method: w.method,
        schema: { protoset: DESCRIPTOR_SET },
        data: w.data(`${context.tag}-profiled`, skus),
      },
      { concurrency: measured.saturation.best.concurrency, seconds: context.seconds },
    );
    context.log(`profiled: ${w.label} at concurrency ${measured.saturation.best.concurrency}, ${result.okRps.toFixed(0)} calls/s under node --cpu-prof`);
  } finally {
    await stack.stop();
  }
  const profiles: ProfiledService[] = [];
  for (const file of await fs.readdir(dir)) {
    // CPU.<date>.<time>.<pid>.<thread>.<sequence>.cpuprofile
    const name = names.get(Number(/^CPU\.\d+\.\d+\.(\d+)\./.exec(file)?.[1]));
    if (!name) continue;
    const profile = JSON.parse(await fs.readFile(path.join(dir, file), "utf8")) as CpuProfile;
    profiles.push({ service: name, workload: w.label, ...summariseProfile(profile, 6) });
  }
  if (profiles.length === 0) context.log("profiled: no service wrote a CPU profile");
  const order = localServices.map((s) => s.name);
  return profiles.sort((a, b) => order.indexOf(a.service) - order.indexOf(b.service));
}

async function stopAll(
  stacks: Map<string, Stack>,
  echo: EchoProcess | undefined,
  sinks: Map<string, OtlpSink>,
  postgres: LocalPostgres | undefined,
): Promise<void> {
  for (const stack of stacks.values()) await stack.stop();
  await echo?.stop();
  for (const sink of sinks.values()) await sink.stop();
  await postgres?.stop();
}

/**
 * order's ORDER_RECOVERY_INTERVAL_MS as its configuration defines it (the
 * bench's stacks do not set it), read from the compiled schema as
 * scripts/config-table.mjs does.
 */
async function orderRecoveryIntervalMs(repoRoot: string): Promise<number> {
  const module = (await import(pathToFileURL(path.join(repoRoot, "services/order/dist/config.js")).href)) as {
    orderConfig: Record<string, { safeParse(value: unknown): { success: boolean; data?: unknown } }>;
  };
  const parsed = module.orderConfig.ORDER_RECOVERY_INTERVAL_MS?.safeParse(undefined);
  if (!parsed?.success || typeof parsed.data !== "number") throw new Error("order's config has no default ORDER_RECOVERY_INTERVAL_MS");
  return parsed.data;
}
