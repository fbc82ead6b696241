import { describe, expect, it } from "vitest";
import { databaseOfTitle, parseProcStat } from "../src/cpu.js";
import { packageOf, summariseProfile, type CpuProfile } from "../src/cpu-profile.js";
import { parseGhzReport, percentile, type LoadResult } from "../src/ghz.js";
import { benchmarkChart } from "../src/chart.js";
import { resultsMarkdown, spliceResults, statementName, BEGIN, END } from "../src/markdown.js";
import { benchOptions, parseSeconds } from "../src/options.js";
import { buildReport, TARGETS, type Measurements } from "../src/report.js";
import { findSaturation, defaultSaturationPlan } from "../src/saturation.js";
import { tracingModes } from "../src/tracing.js";
import { CREATE_ORDER_RPCS, workload } from "../src/workloads.js";
import { keyValues } from "../src/cgroup.js";
import { quantityBytes } from "../src/chart-resources.js";
import { overloadMarkdown, overloadTargets } from "../src/overload-report.js";
import type { OverloadMeasurement } from "../src/overload.js";
import type { MemoryMeasurement } from "../src/memory.js";

/**
 * The benchmark's arithmetic, on figures made up here: make bench itself
 * needs ghz and minutes of load, so its parts that turn measurements into
 * verdicts are checked on their own.
 */

function result(okRps: number, overrides: Partial<LoadResult> = {}): LoadResult {
  return {
    concurrency: 8,
    seconds: 3,
    calls: okRps * 3,
    ok: okRps * 3,
    errors: {},
    okRps,
    p50Ms: 2,
    p95Ms: 4,
    p99Ms: 6,
    meanMs: 2.5,
    errorTimes: {},
    ...overrides,
  };
}

function measurements(): Measurements {
  const saturation = (rps: number) => ({ best: result(rps), steps: [result(rps / 2), result(rps)], stoppedBecause: "plateau" as const });
  const mode = (id: "off" | "10%" | "100%") => tracingModes.find((m) => m.id === id)!;
  const service = (name: string, loadRssBytes: number, start: number) => ({
    name,
    idleRssBytes: 80e6,
    loadRssBytes,
    loadRssByMode: { off: loadRssBytes, "10%": loadRssBytes, "100%": loadRssBytes + 5e6 },
    startToReadyMs: [start, start + 10, start + 20],
  });
  return {
    startedAt: "2026-12-04T15:00:00.000Z",
    finishedAt: "2026-12-04T15:10:00.000Z",
    command: "make bench",
    machine: {
      cores: 2,
      cpuModel: "test cpu",
      memoryBytes: 24 * 2 ** 30,
      os: "Linux",
      node: "24.21.0",
      ghz: "0.121.0",
      loadAverageStart: 0.5,
      loadAverageEnd: 1,
    },
    settings: { stepSeconds: 3, latencySeconds: 9, latencyFraction: 0.5, levels: [1, 2, 4, 8], tracingRounds: 2, postgresDurable: true, logLevel: "info" },
    workloads: [
      { workload: workload("echo"), saturation: saturation(10_000), latency: result(5_000, { p50Ms: 1, p99Ms: 3 }), cpuMsPerCall: { echo: 0.08, ghz: 0.1 } },
      {
        workload: workload("create-order"),
        saturation: saturation(1_200),
        latency: result(600, { p50Ms: 10, p99Ms: 60 }),
        rpcsPerCallMeasured: 4,
        cpuMsPerCall: { order: 0.5, inventory: 0.3, payment: 0.2, postgres: 0.6, ghz: 0.06, fulfillment: 0.4, "postgres (reaction)": 0.2 },
        database: {
          calls: 300,
          perDatabase: [
            {
              database: "inventory",
              statements: 2,
              healthChecks: 0.01,
              commits: 2,
              byStatement: [
                { query: "WITH /* inventory.reserve */ request AS (...)", calls: 1 },
                { query: "WITH /* inventory.transition */ rules AS (...)", calls: 1 },
              ],
            },
            {
              database: "payment",
              statements: 1,
              healthChecks: 0.01,
              commits: 1,
              byStatement: [{ query: "WITH /* payment.charge */ charged AS (...)", calls: 1 }],
            },
            {
              database: "order",
              statements: 2.5,
              healthChecks: 0.01,
              commits: 2,
              byStatement: [{ query: "SELECT sequence, type FROM order_events WHERE order_id = $1", calls: 0.5 }],
            },
            {
              database: "fulfillment",
              statements: 9,
              healthChecks: 0.01,
              commits: 3,
              byStatement: [{ query: "WITH /* fulfillment.advance */ due AS (...)", calls: 2 }],
            },
          ],
        },
      },
    ],
    floor: {
      pgbench: "/usr/bin/pgbench (pgbench 15)",
      clients: 32,
      seconds: 6,
      transactions: 60_000,
      tps: 10_000,
      postgresCpuMsPerTransaction: 0.05,
      loadAverage: 0.4,
    },
    idle: {
      seconds: 30,
      perDatabase: [
        { database: "inventory", statements: 0, healthChecks: 30, commits: 0, byStatement: [] },
        {
          database: "order",
          statements: 3,
          healthChecks: 30,
          commits: 0,
          byStatement: [{ query: "WITH /* order.claim-abandoned */ claimed AS (...)", calls: 3 }],
        },
      ],
    },
    baselineAgain: result(9_000),
    tracing: [
      { workload: workload("create-order"), mode: mode("off"), throughput: [result(1_000), result(1_100)], latency: [result(500), result(500)] },
      {
        workload: workload("create-order"),
        mode: mode("10%"),
        throughput: [result(950), result(1_000)],
        latency: [result(500), result(500)],
        exportBytesPerCall: 300,
      },
      {
        workload: workload("create-order"),
        mode: mode("100%"),
        throughput: [result(700), result(800)],
        latency: [result(500), result(500)],
        exportBytesPerCall: 3_000,
      },
    ],
    echoProcess: { idleRssBytes: 50e6, loadRssBytes: 60e6, startToReadyMs: [100] },
    services: [service("order", 110e6, 500), service("payment", 130e6, 990)],
    nodeBinaryBytes: 120e6,
    profiles: [
      {
        service: "order",
        workload: "order CreateOrder (checkout saga)",
        totalMs: 1_000,
        idleShare: 0.25,
        garbageCollectionShare: 0.03,
        functions: [{ name: "encode (services/lib/x.js:1)", selfMs: 100, share: 0.1 }],
        packages: [{ name: "pg", selfMs: 120, share: 0.12 }],
      },
    ],
  };
}

describe("bench options", () => {
  it("reads BENCH_* with defaults, quick mode writing away from docs/", () => {
    const full = benchOptions({}, "/repo");
    expect(full).toMatchObject({ stepSeconds: 3, latencySeconds: 9, tracingRounds: 2, artefacts: true, profile: true, outDir: "/repo/docs", quick: false });
    const quick = benchOptions({ BENCH_QUICK: "1", BENCH_NODE_OPTIONS: " --max-semi-space-size=4 " }, "/repo");
    expect(quick).toMatchObject({
      stepSeconds: 1,
      tracingRounds: 1,
      artefacts: false,
      profile: false,
      outDir: "/repo/.data/bench",
      nodeOptions: "--max-semi-space-size=4",
    });
    expect(benchOptions({ BENCH_QUICK: "1", BENCH_PROFILE: "1", BENCH_DURATION: "500ms" }, "/repo")).toMatchObject({ profile: true, stepSeconds: 0.5 });
  });

  it("refuses durations and counts it cannot use, naming the variable", () => {
    expect(parseSeconds("2m", "BENCH_DURATION")).toBe(120);
    expect(() => parseSeconds("fast", "BENCH_DURATION")).toThrow(/BENCH_DURATION must be a duration/);
    expect(() => parseSeconds("100ms", "BENCH_DURATION")).toThrow(/from 0.5 s to 10 min/);
    expect(() => benchOptions({ BENCH_ROUNDS: "0" }, "/repo")).toThrow(/BENCH_ROUNDS must be a whole number from 1 to 20/);
  });
});

describe("saturation search", () => {
  it("stops once more concurrency buys no more throughput, keeping the best level", async () => {
    const rates: Record<number, number> = { 1: 100, 2: 190, 4: 300, 8: 310, 16: 305, 32: 290 };
    const tried: number[] = [];
    const saturation = await findSaturation(defaultSaturationPlan([1, 2, 4, 8, 16, 32, 64]), async (c) => {
      tried.push(c);
      return result(rates[c]!, { concurrency: c });
    });
    expect(tried).toEqual([1, 2, 4, 8, 16]);
    expect(saturation).toMatchObject({ stoppedBecause: "plateau", best: { concurrency: 8, okRps: 310 } });
  });

  it("stops at a level whose calls fail, and fails when the first one does", async () => {
    const failing = (c: number) =>
      result(100 * c, { concurrency: c, ok: c >= 4 ? 10 : 300 * c, calls: 300 * c, errors: c >= 4 ? { Unavailable: 300 * c - 10 } : {} });
    await expect(findSaturation(defaultSaturationPlan([1, 2, 4]), async (c) => failing(c))).resolves.toMatchObject({
      stoppedBecause: "errors",
      best: { concurrency: 2 },
    });
    await expect(findSaturation(defaultSaturationPlan([4]), async (c) => failing(c))).rejects.toThrow(/of calls failed at concurrency 4/);
  });
});

describe("ghz's report", () => {
  it("becomes successful calls per second and nearest-rank percentiles of the successful calls", () => {
    const details = [
      ...Array.from({ length: 98 }, (_, i) => ({ status: "OK", latency: (i + 1) * 1e6 })),
      { status: "Unavailable", latency: 1e9 },
      { status: "Unavailable", latency: 1e9 },
    ];
    const parsed = parseGhzReport(JSON.stringify({ count: 100, total: 2e9, statusCodeDistribution: { OK: 98, Unavailable: 2 }, details }), {
      concurrency: 4,
      seconds: 2,
    });
    expect(parsed).toMatchObject({ calls: 100, ok: 98, okRps: 49, errors: { Unavailable: 2 }, p50Ms: 49, p99Ms: 98 });
    expect(parsed.errorTimes).toEqual({ Unavailable: { count: 2, p50Ms: 1000, p99Ms: 1000, maxMs: 1000, message: "" } });
    expect(percentile([], 50)).toBeNaN();
    expect(() => parseGhzReport("panic: no", { concurrency: 1, seconds: 1 })).toThrow(/did not print a JSON report/);
  });
});

describe("the report", () => {
  const report = buildReport(measurements(), "--insecure");

  it("relates every figure to the baseline of the same run", () => {
    const checkout = report.workloads.find((w) => w.id === "create-order")!;
    expect(checkout.hopBoundRps).toBe(10_000 / CREATE_ORDER_RPCS);
    expect(checkout.ofHopBound).toBeCloseTo(1_200 / 2_500);
    expect(checkout.throughputVsBaseline).toBeCloseTo(0.12);
    expect(checkout.latency.p99OverP50).toBe(6);
    expect(report.baseline.drift).toBeCloseTo(-0.1);
    // CPU per call: 1.66 ms on 2 cores is at most ~1 205 calls/s.
    // Fulfillment and its database's share of Postgres act on the checkout's events afterwards: in the total, not in the checkout's CPU.
    expect(checkout.cpu!.totalMsPerCall).toBeCloseTo(2.26);
    expect(checkout.cpu!.checkoutMsPerCall).toBeCloseTo(1.66);
    expect(checkout.cpu!.boundRps).toBeCloseTo(2_000 / 2.26);
    // The floor: 5 durable commits at 0.05 ms of Postgres CPU and 5 hops at the echo's 0.18 ms.
    expect(report.floor!.floorMs).toBeCloseTo(5 * 0.05 + 5 * 0.18);
    expect(checkout.cpu!.ofFloor).toBeCloseTo(1.66 / 1.15);
    expect(report.workloads.find((w) => w.id === "echo")!.cpu!.ofFloor).toBeUndefined();
    // Fulfillment acts on the published events after the checkout ended: counted apart.
    expect(checkout.database).toMatchObject({ statements: 5.5, commits: 5, reaction: { statements: 9, commits: 3 } });
    expect(report.idle!.perDatabase.find((d) => d.database === "order")!.statementsPerSecond).toBeCloseTo(0.1);
    const tracing10 = report.tracing.find((t) => t.mode === "10%")!;
    expect(tracing10.throughputRps).toBe(975);
    expect(tracing10.throughputVsOff).toBeCloseTo(975 / 1_050);
  });

  it("checks each target and says PASS or MISS", () => {
    const verdict = (id: string) => report.targets.find((t) => t.id === id)?.pass;
    expect(verdict("checkout-floor:create-order")).toBe(1.66 / 1.15 <= TARGETS.checkoutOfFloor);
    expect(verdict("statements-per-checkout")).toBe(true);
    expect(verdict("commits-per-checkout")).toBe(true);
    expect(verdict("idle-statements")).toBe(true);
    expect(report.targets.find((t) => t.id === "create-order-hop-bound")).toBeUndefined();
    expect(verdict("p99-over-p50:create-order")).toBe(false);
    expect(verdict("rss:order")).toBe(true);
    expect(verdict("rss:payment")).toBe(false);
    expect(verdict("start-to-ready:payment")).toBe(false);
    expect(verdict("start-to-ready:order")).toBe(true);
    expect(verdict("tracing-10:create-order")).toBe(true);
  });

  it("renders the machine, the targets, the CPU table and the profiles as markdown", () => {
    const text = resultsMarkdown(report, "benchmarks.svg");
    expect(text).toContain("**2 × test cpu**");
    expect(text).toContain(
      "| CPU per checkout ≤ 10 × the durable floor (5 durable commits + 5 raw hops, measured in this run; stretch 5×) | order CreateOrder (checkout saga) | 1.4× | 10× | PASS |",
    );
    expect(text).toContain(
      "| SQL statements per checkout ≤ 15 (the checkout's databases, BEGIN and COMMIT included; fulfillment's reaction apart) | order CreateOrder (checkout saga) | 5.50 | 15.00 | PASS |",
    );
    expect(text).toContain("#### The durable floor");
    expect(text).toContain("| inventory | 2.00 | 2.00 | `inventory.reserve` 1.00; `inventory.transition` 1.00 |");
    expect(text).toContain(
      "| **the checkout** | **5.50** | **5.00** | |\n| fulfillment, acting on its events afterwards | 9.00 | 3.00 | `fulfillment.advance` 2.00 |",
    );
    expect(text).toMatch(/order 0\.10 statements\/s beyond 1\.0 health checks\/s \(`order\.claim-abandoned` × 3\)/);
    expect(benchmarkChart(report)).toContain("CPU per checkout, as a multiple of its durable floor");
    expect(text).toContain("#### Where the CPU goes");
    expect(text).toMatch(/\| order CreateOrder \(checkout saga\) \|[^\n]*\| 2\.26 \| 885 \| 136 % \|/);
    expect(text).toContain("| order | 75 % | 3.0 % | pg 12 % | encode (services/lib/x.js:1) 10 % |");
  });

  it("replaces only the generated block of the document", () => {
    const document = `# Benchmarks\n\nProse before.\n\n${BEGIN}\nold\n${END}\n\nProse after.\n`;
    expect(spliceResults(document, "new")).toBe(`# Benchmarks\n\nProse before.\n\n${BEGIN}\nnew\n${END}\n\nProse after.\n`);
    expect(() => spliceResults("# no block", "new")).toThrow(/no .* block to replace/);
  });
});

describe("statement names", () => {
  it("are the comment after the first keyword, else the first words", () => {
    expect(statementName("WITH /* order.append */ appended AS (INSERT ...)")).toBe("`order.append`");
    expect(statementName("SELECT sequence, type FROM order_events WHERE order_id = $1")).toBe("`SELECT sequence, type FROM order_events WHERE or…`");
    expect(statementName("COMMIT")).toBe("`COMMIT`");
  });
});

describe("CPU accounting", () => {
  it("reads a process's CPU time from /proc/<pid>/stat, whatever its name holds", () => {
    const fields = ["S", "41", ...Array.from({ length: 9 }, () => "0"), "250", "50", "30", "20"];
    expect(parseProcStat(`1234 (node (worker) x) ${fields.join(" ")}`)).toEqual({ ppid: 41, cpuSeconds: 3, childrenCpuSeconds: 0.5 });
    expect(parseProcStat("garbage")).toBeUndefined();
  });

  it("sums a V8 profile's self time by function and by package, idle apart", () => {
    const profile: CpuProfile = {
      nodes: [
        { id: 1, callFrame: { functionName: "(root)", url: "", lineNumber: -1 } },
        { id: 2, callFrame: { functionName: "(idle)", url: "", lineNumber: -1 } },
        { id: 3, callFrame: { functionName: "query", url: "file:///app/node_modules/pg/lib/client.js", lineNumber: 9 } },
        { id: 4, callFrame: { functionName: "create", url: "file:///app/services/order/dist/orders.js", lineNumber: 0 } },
      ],
      startTime: 0,
      endTime: 4_000,
      samples: [2, 3, 3, 4],
      timeDeltas: [0, 1_000, 1_000, 1_000, 1_000],
    };
    const summary = summariseProfile(profile);
    expect(summary.totalMs).toBe(4);
    expect(summary.idleShare).toBe(0.25);
    expect(summary.packages.map((p) => [p.name, p.selfMs])).toEqual([
      ["pg", 2],
      ["meshcart services/order", 1],
    ]);
    expect(summary.functions[0]).toMatchObject({ name: "query (pg/lib/client.js:10)", share: 0.5 });
    expect(packageOf("file:///a/node_modules/@grpc/grpc-js/build/src/x.js")).toBe("@grpc/grpc-js");
    expect(packageOf("node:internal/streams")).toBe("node:internal/streams");
  });
});

describe("the overload and memory steps", () => {
  const phase = (multiple: number, okRps: number, p99Ms: number, errorTimes: LoadResult["errorTimes"] = {}) => ({
    multiple,
    offeredRps: 100 * multiple,
    result: result(okRps, { p99Ms, errorTimes }),
    readiness: { probes: 40, notReady: 0, timedOut: 0, slowestMs: 12 },
    placed: okRps * 3,
    placedNotOk: 0,
    nonFinalAtEnd: 0,
  });
  const shed = (p99Ms: number) => ({ ResourceExhausted: { count: 500, p50Ms: 2, p99Ms, maxMs: p99Ms, message: "the shop is busy" } });
  const overload: OverloadMeasurement = {
    workload: "storefront PlaceOrder (end to end)",
    saturationRps: 100,
    saturationConcurrency: 8,
    searchedRps: 110,
    seconds: 15,
    phases: [phase(0.5, 50, 40), phase(1, 95, 80, shed(5)), phase(2, 85, 110, shed(20)), phase(3, 65, 130, shed(300)), phase(0.5, 50, 45)],
    readinessTimeoutMs: 1000,
    recoveryIntervalMs: 2000,
    peakFinalAfterMs: 120,
    nonFinalAtEnd: 0,
    nonFinalAfterWait: 0,
  };
  const memory: MemoryMeasurement = {
    measured: true,
    cgroup: "v1",
    seconds: 15,
    phases: [],
    services: [
      {
        service: "order",
        requestBytes: 92 * 2 ** 20,
        limitBytes: 256 * 2 ** 20,
        nodeOptions: "--max-old-space-size=128",
        idleBytes: 55 * 2 ** 20,
        steadyBytes: 80 * 2 ** 20,
        saturationPeakBytes: 90 * 2 ** 20,
        overloadPeakBytes: 100 * 2 ** 20,
        kernelPeakBytes: 100 * 2 ** 20,
        limitHits: 0,
        oomKills: 0,
      },
      {
        service: "storefront",
        requestBytes: 92 * 2 ** 20,
        limitBytes: 128 * 2 ** 20,
        nodeOptions: "--max-old-space-size=64",
        idleBytes: 60 * 2 ** 20,
        steadyBytes: 95 * 2 ** 20,
        saturationPeakBytes: 100 * 2 ** 20,
        overloadPeakBytes: 126 * 2 ** 20,
        kernelPeakBytes: 128 * 2 ** 20,
        limitHits: 40,
        oomKills: 1,
        exited: "SIGKILL",
      },
    ],
  };

  it("holds goodput to saturation, admitted latency to the p99 before the load, and shedding to milliseconds", () => {
    const verdict = (id: string) => overloadTargets(overload, undefined).find((t) => t.id === id);
    expect(verdict("goodput:2x")).toMatchObject({ measured: 0.85, pass: true });
    expect(verdict("goodput:3x")).toMatchObject({ measured: 0.65, pass: false });
    expect(verdict("admitted-p99:2x")).toMatchObject({ measured: 110 / 40, pass: true });
    expect(verdict("admitted-p99:3x")?.pass).toBe(false);
    expect(verdict("shed-fast")).toMatchObject({ measured: 300, pass: false });
    expect(verdict("no-outage-answers")?.pass).toBe(true);
    expect(verdict("ready-under-load")?.pass).toBe(true);
    expect(verdict("recovered")?.pass).toBe(true);
    expect(verdict("final-after-peak")?.pass).toBe(true);
    const outage = {
      ...overload,
      phases: [
        ...overload.phases.slice(0, 4),
        phase(0.5, 50, 45, { Unavailable: { count: 1, p50Ms: 3000, p99Ms: 3000, maxMs: 3000, message: "order is unavailable" } }),
      ],
    };
    expect(overloadTargets(outage, undefined).find((t) => t.id === "no-outage-answers")).toMatchObject({ measured: 1, pass: false });
  });

  it("holds each service to no OOM kill, headroom under its limit and a request that covers its steady use", () => {
    const verdict = (id: string) => overloadTargets(undefined, memory).find((t) => t.id === id)?.pass;
    expect([verdict("oom:order"), verdict("memory-headroom:order"), verdict("memory-request:order")]).toEqual([true, true, true]);
    expect([verdict("oom:storefront"), verdict("memory-headroom:storefront"), verdict("memory-request:storefront")]).toEqual([false, false, false]);
    expect(overloadTargets(undefined, { measured: false, reason: "not root" })).toEqual([]);
  });

  it("renders both steps, or says why memory could not be measured", () => {
    const text = overloadMarkdown(overload, memory).join("\n");
    expect(text).toContain("#### Overload");
    expect(text).toMatch(/\| 3× \| 300 \| 65 \| 65 % \|/);
    expect(text).toContain("ResourceExhausted 500 (2.00 / 300)");
    expect(text).toContain("| storefront | 92 | 128 | `--max-old-space-size=64` |");
    expect(text).toContain("(ended: SIGKILL)");
    expect(overloadMarkdown(undefined, { measured: false, reason: "making cgroups needs root" }).join("\n")).toContain(
      "Not measurable on this machine: making cgroups needs root.",
    );
  });

  it("reads the kernel's key-value files and the chart's quantities", () => {
    expect(keyValues("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")).toEqual(
      new Map([
        ["oom_kill_disable", 0],
        ["under_oom", 0],
        ["oom_kill", 2],
      ]),
    );
    expect(quantityBytes("92Mi")).toBe(92 * 2 ** 20);
    expect(quantityBytes("1Gi")).toBe(2 ** 30);
    expect(quantityBytes(1000)).toBe(1000);
    expect(() => quantityBytes("lots")).toThrow(/not a memory quantity/);
  });
});

describe("Postgres CPU by database", () => {
  it("reads the database from a backend's process title, and nothing from other processes", () => {
    expect(databaseOfTitle("postgres: postgres bench_off_fulfillment 127.0.0.1(45190) COMMIT")).toBe("bench_off_fulfillment");
    expect(databaseOfTitle("postgres: meshcart order [local] idle")).toBe("order");
    expect(databaseOfTitle("postgres: checkpointer ")).toBeUndefined();
    expect(databaseOfTitle("postgres: walwriter")).toBeUndefined();
  });
});
