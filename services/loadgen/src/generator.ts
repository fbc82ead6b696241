import { SpanAttributes, SpanStatusCode, inSpan, type Logger, sleep } from "@meshcart/lib";
import type { LoadgenMetrics } from "./metrics.js";
import { SCENARIOS, type Mix, type Scenario } from "./options.js";
import { runScenario, type Placed } from "./scenarios.js";
import { Catalogue, Restocker, type InventoryClient, type RestockPolicy, type StorefrontClient } from "./shop.js";
import { LatencyHistogram, Stats, byOutcome, isOk, reportRows, summarize, totals, type Progress, type Report, type Summary } from "./stats.js";
import { shopperIds, type ShopperTokens } from "./tokens.js";

export interface GeneratorOptions {
  /** The storefront's address, for the report. */
  target: string;
  rps: number;
  /** Undefined: until stopped (or `requests`). */
  durationMs?: number;
  /** Stop after this many requests are due. */
  requests?: number;
  concurrency: number;
  shoppers: number;
  mix: Mix;
  scarceSkus: string[];
  runId: string;
  /** How often the catalogue is read again (and stock checked). */
  catalogueIntervalMs: number;
  /** Restocking as an operator; undefined: off. */
  restock?: RestockPolicy;
  /** Undefined: no periodic summary. */
  summaryIntervalMs?: number;
  maxErrorRate?: number;
  /** How long a finished or stopped run waits for requests in flight before cancelling them. */
  drainMs: number;
  /** Give up when the catalogue cannot be read for this long at start; undefined: keep trying. */
  startTimeoutMs?: number;
}

export interface GeneratorDeps {
  storefront: StorefrontClient;
  /** Needed when restocking. */
  inventory?: InventoryClient;
  tokens: ShopperTokens;
  metrics: LoadgenMetrics;
  logger: Logger;
  random?: () => number;
  onSummary?: (summary: Summary, message: string) => void;
}

/** The storefront could not be reached at start. */
export class TargetUnreachable extends Error {
  override name = "TargetUnreachable";
}

const READS = new Set<Scenario>(["get_order", "details", "track"]);
const LATE_MS = 100;
const RECENT_ORDERS = 1_000;

/**
 * Open-loop load: request n is due at start + n / rps and is sent then,
 * whether or not earlier ones have answered, so a slow system shows as
 * latency (measured from the scheduled time) instead of quietly lowering
 * the rate. When `concurrency` requests are in flight, a due request is
 * not sent and counts as `dropped`. Every request is one scenario of the
 * mix, for one of the shoppers, in its own span (`loadgen.<scenario>`).
 */
export class LoadGenerator {
  private readonly stats = new Stats();
  private readonly all = new LatencyHistogram();
  private readonly catalogue: Catalogue;
  private readonly restocker?: Restocker;
  private readonly random: () => number;
  private readonly shoppers: string[];
  private readonly weights: { scenario: Scenario; upTo: number }[];
  private readonly recent: Placed[] = [];
  private readonly pending = new Set<Promise<void>>();
  /** Cancels requests still in flight when draining takes too long. */
  private readonly cancel = new AbortController();
  private inFlight = 0;
  private due = 0;
  private late = 0;
  private startedAt = 0;
  private running = false;

  constructor(
    private readonly options: GeneratorOptions,
    private readonly deps: GeneratorDeps,
  ) {
    this.random = deps.random ?? Math.random;
    this.shoppers = shopperIds(options.shoppers);
    this.catalogue = new Catalogue(deps.storefront, options.scarceSkus);
    if (options.restock) {
      if (!deps.inventory) throw new Error("restocking needs an inventory client");
      this.restocker = new Restocker(deps.inventory, this.catalogue, options.restock, options.runId, deps.metrics, deps.logger);
    }
    const total = SCENARIOS.reduce((sum, s) => sum + options.mix[s], 0);
    let upTo = 0;
    this.weights = SCENARIOS.filter((s) => options.mix[s] > 0).map((scenario) => {
      upTo += options.mix[scenario] / total;
      return { scenario, upTo };
    });
    deps.metrics.targetRps.set(options.rps);
  }

  /** Sending on schedule (the deployable's readiness). */
  get generating(): boolean {
    return this.running;
  }

  progress(): Progress {
    const t = totals(this.stats.rows());
    return {
      elapsedMs: this.startedAt === 0 ? 0 : performance.now() - this.startedAt,
      durationMs: this.options.durationMs,
      due: this.due,
      inFlight: this.inFlight,
      targetRps: this.options.rps,
      recentRps: 0,
      ok: t.ok,
      errors: t.errors,
      dropped: t.dropped,
      p95Ms: this.all.percentile(0.95),
    };
  }

  /**
   * Runs until the duration or request count is reached or `signal`
   * aborts, then waits for the requests in flight (at most `drainMs`) and
   * returns the report.
   */
  async run(signal: AbortSignal): Promise<Report> {
    const { logger } = this.deps;
    await this.loadCatalogue(signal);
    const shop = new AbortController();
    const shopLoop = this.keepShopping(shop.signal);
    this.startedAt = performance.now();
    this.running = true;
    let windowStart = this.startedAt;
    const summaries =
      this.options.summaryIntervalMs === undefined
        ? undefined
        : setInterval(() => {
            const now = performance.now();
            const { summary, message } = summarize(this.stats.takeWindow(), now - windowStart, this.options.rps, this.inFlight);
            windowStart = now;
            this.deps.onSummary?.(summary, message);
          }, this.options.summaryIntervalMs);
    logger.info(
      {
        target: this.options.target,
        rps: this.options.rps,
        duration_ms: this.options.durationMs,
        concurrency: this.options.concurrency,
        run: this.options.runId,
      },
      "load started",
    );
    let ended: string;
    try {
      ended = await this.schedule(signal);
    } finally {
      this.running = false;
      if (summaries) clearInterval(summaries);
    }
    const sendingMs = performance.now() - this.startedAt;
    await this.drain();
    shop.abort();
    await shopLoop;
    return this.report(ended, sendingMs, performance.now() - this.startedAt);
  }

  private async loadCatalogue(signal: AbortSignal): Promise<void> {
    const begun = Date.now();
    for (let attempt = 1; ; attempt++) {
      try {
        await this.catalogue.refresh(AbortSignal.any([signal, AbortSignal.timeout(5_000)]), `lg.${this.options.runId}.catalogue`);
        if (this.catalogue.loaded) return;
        throw new Error("the catalogue is empty");
      } catch (error) {
        if (signal.aborted) throw new TargetUnreachable("stopped before the catalogue could be read");
        const reason = error instanceof Error ? error.message : String(error);
        if (this.options.startTimeoutMs !== undefined && Date.now() - begun >= this.options.startTimeoutMs) {
          throw new TargetUnreachable(`the storefront at ${this.options.target} does not answer ListProducts: ${reason}`);
        }
        if (attempt === 1 || attempt % 30 === 0) this.deps.logger.warn({ target: this.options.target, err: error }, "cannot read the catalogue yet; retrying");
        await sleep(1_000, signal);
      }
    }
  }

  /** Reads the catalogue again every interval and restocks what ran low, until `signal`. */
  private async keepShopping(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await sleep(this.options.catalogueIntervalMs, signal);
      if (signal.aborted) return;
      try {
        await this.catalogue.refresh(signal, `lg.${this.options.runId}.catalogue`);
      } catch (error) {
        if (!signal.aborted) this.deps.logger.warn({ err: error }, "could not read the catalogue; keeping the last one");
        continue;
      }
      await this.restocker?.check(signal);
    }
  }

  private async schedule(signal: AbortSignal): Promise<string> {
    const interval = 1000 / this.options.rps;
    const byDuration = this.options.durationMs === undefined ? Infinity : Math.floor((this.options.durationMs / 1000) * this.options.rps);
    const planned = Math.min(byDuration, this.options.requests ?? Infinity);
    const ending = planned === byDuration && byDuration !== Infinity ? "duration" : "requests";
    const start = this.startedAt;
    while (this.due < planned) {
      if (signal.aborted) return "stopped";
      const now = performance.now();
      const reached = Math.min(planned, Math.floor((now - start) / interval) + 1);
      while (this.due < reached) {
        const scheduled = start + this.due * interval;
        this.launch(this.due, scheduled, now);
        this.due += 1;
      }
      if (this.due >= planned) break;
      const wait = start + this.due * interval - performance.now();
      await sleep(Math.max(1, wait), signal);
    }
    return signal.aborted ? "stopped" : ending;
  }

  private pickScenario(): Scenario {
    const roll = this.random();
    return (this.weights.find((w) => roll < w.upTo) ?? this.weights.at(-1)!).scenario;
  }

  private launch(sequence: number, scheduled: number, now: number): void {
    let scenario = this.pickScenario();
    if (now - scheduled > LATE_MS) {
      this.late += 1;
      this.deps.metrics.late.inc();
    }
    if (this.inFlight >= this.options.concurrency) {
      this.record(scenario, "dropped", undefined);
      return;
    }
    // A read needs an order placed earlier in the run; until there is one, it browses.
    let target: Placed | undefined;
    if (READS.has(scenario)) {
      target = this.recent.length > 0 ? this.recent[Math.floor(this.random() * this.recent.length)] : undefined;
      if (!target) scenario = "browse";
    }
    const shopper = target?.shopper ?? this.shoppers[Math.floor(this.random() * this.shoppers.length)]!;
    const correlationId = `lg.${this.options.runId}.${sequence}`;
    this.inFlight += 1;
    this.deps.metrics.inFlight.inc();
    const work = this.execute(scenario, shopper, correlationId, target, scheduled).finally(() => {
      this.inFlight -= 1;
      this.deps.metrics.inFlight.dec();
      this.pending.delete(work);
    });
    this.pending.add(work);
  }

  private async execute(scenario: Scenario, shopper: string, correlationId: string, target: Placed | undefined, scheduled: number): Promise<void> {
    const context = {
      storefront: this.deps.storefront,
      tokens: this.deps.tokens,
      catalogue: this.catalogue,
      random: this.random,
      signal: this.cancel.signal,
    };
    const result = await inSpan(
      `loadgen.${scenario}`,
      {
        attributes: {
          "meshcart.loadgen.scenario": scenario,
          "meshcart.loadgen.shopper": shopper,
          [SpanAttributes.correlationId]: correlationId,
          ...(target ? { [SpanAttributes.orderId]: target.orderId } : {}),
        },
      },
      async (span) => {
        const result = await runScenario(scenario, context, shopper, correlationId, target);
        span.setAttribute("meshcart.loadgen.outcome", result.outcome);
        if (result.placed) span.setAttribute(SpanAttributes.orderId, result.placed.orderId);
        if (!isOk(result.outcome)) span.setStatus({ code: SpanStatusCode.ERROR, message: result.outcome });
        return result;
      },
    );
    if (result.placed) {
      if (this.recent.length < RECENT_ORDERS) this.recent.push(result.placed);
      else this.recent[Math.floor(this.random() * RECENT_ORDERS)] = result.placed;
    }
    this.record(scenario, result.outcome, performance.now() - scheduled);
  }

  private record(scenario: Scenario, outcome: string, latencyMs: number | undefined): void {
    this.stats.record(scenario, outcome, latencyMs);
    this.deps.metrics.requests.inc({ scenario, outcome });
    if (latencyMs !== undefined) {
      this.all.record(latencyMs);
      this.deps.metrics.duration.observe({ scenario, outcome }, latencyMs / 1000);
    }
  }

  private async drain(): Promise<void> {
    if (this.pending.size === 0) return;
    const timer = setTimeout(() => {
      this.deps.logger.warn({ in_flight: this.inFlight, drain_ms: this.options.drainMs }, "requests still in flight: cancelling them");
      this.cancel.abort();
    }, this.options.drainMs);
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
    clearTimeout(timer);
  }

  private report(ended: string, sendingMs: number, elapsedMs: number): Report {
    const rows = this.stats.rows();
    const t = totals(rows);
    const maxErrorRate = this.options.maxErrorRate;
    return {
      runId: this.options.runId,
      target: this.options.target,
      targetRps: this.options.rps,
      durationMs: this.options.durationMs,
      elapsedMs: Math.round(elapsedMs),
      // Over the sending period; n sends on schedule take n / rps seconds.
      achievedRps: t.due === 0 ? 0 : ((t.due - t.dropped) / Math.max(sendingMs, (t.due / this.options.rps) * 1000)) * 1000,
      late: this.late,
      ...t,
      rows: reportRows(rows),
      outcomes: byOutcome(rows),
      restocks: { ...(this.restocker?.counts ?? { ok: 0, failed: 0, units: 0 }) },
      ...(maxErrorRate === undefined ? {} : { maxErrorRate }),
      passed: maxErrorRate === undefined || t.errorRate <= maxErrorRate,
      ended,
    };
  }
}

/** A small seeded generator (mulberry32), for a repeatable mix. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
