import { Counter, Gauge, type Registry } from "prom-client";
import { OverloadedError } from "./domain-errors.js";
import type { Logger } from "./logger.js";

/**
 * Admission control: at most `limit` pieces of work in progress, a short
 * first-come queue in front of them, and everything beyond refused at once
 * (OverloadedError, which the error boundary answers RESOURCE_EXHAUSTED).
 * Work is refused before it starts, so a refusal never has a side effect;
 * and the queue is bounded in length and in time, so a refusal comes in
 * milliseconds instead of after the caller's deadline, and the work that is
 * admitted keeps the latency it has without overload. The database pool
 * behind never becomes the queue: its waiters are bounded by the limit.
 *
 * The queue is adaptive LIFO (as in Facebook's "Fail at Scale"): first
 * come, first served while it drains, newest first once it stands (its
 * oldest waiter has waited half the queue timeout). Under sustained
 * overload a FIFO queue makes every admitted call pay the whole queue wait
 * on top of its work; newest first admits calls that just arrived and lets
 * the oldest run out their short wait and be refused, so the admitted
 * calls keep their latency and the refused ones still learn it quickly.
 *
 * The limit is fixed unless `adaptive` is given; then it moves between
 * `adaptive.minLimit` and `limit` by latency (a gradient limiter, as
 * Netflix's concurrency-limits): each kind of call (its method) has an
 * unloaded latency, learnt from the calls that ran alone, and every window
 * of admitted calls compares their latency with it. Slower on average than
 * `tolerance` times unloaded: the limit comes down in proportion, as the
 * calls in progress only queue for the CPU, the database or the services
 * behind; within it and the limit in full use: it goes up by one. A fixed
 * limit holds one number for every machine and every neighbour; this one
 * finds the knee where the admitted calls keep their latency, on a quick
 * laptop and on a busy CI runner alike.
 */
export interface AdaptiveSettings {
  /** The limit never goes below this. */
  minLimit: number;
  /** How many times their unloaded latency the admitted calls may take on average before the limit comes down. */
  tolerance: number;
}
export interface AdmissionSettings {
  /** Work in progress at most (the adaptive limit's ceiling, where it starts). */
  limit: number;
  /** Steer the limit by latency; a fixed limit when omitted. */
  adaptive?: AdaptiveSettings;
  /** Callers that may wait for a free place; beyond them, refused at once. */
  queue: number;
  /** Longest a caller waits in the queue before it is refused. */
  queueTimeoutMs: number;
}

/** A place in the admitted work; release it exactly once, when the work has ended. */
export interface Permit {
  release(): void;
}

interface Waiter {
  /** When it started waiting (Date.now()). */
  since: number;
  kind: string | undefined;
  admit: (permit: Permit) => void;
  refuse: (error: unknown) => void;
}

/** Weight of the newest hold time in the running average that the retry hint is based on. */
const EWMA_WEIGHT = 0.1;
/** Shedding is logged as one summary line per this period, not a line per refused call. */
const SHED_LOG_PERIOD_MS = 10_000;

/** Weight of a lone call's latency in its kind's unloaded latency. */
const UNLOADED_WEIGHT = 0.2;
/** An adaptive limit is reconsidered after this many admitted calls, and no sooner than this. */
const WINDOW_CALLS = 16;
const WINDOW_MIN_MS = 100;

export class Admission {
  private inFlight = 0;
  /** Permits granted so far: a call ran alone when none was granted during it. */
  private granted = 0;
  private current: number;
  /** Each kind's unloaded latency (ms), from the calls that ran alone. */
  private readonly unloaded = new Map<string, number>();
  private window = { calls: 0, ratioSum: 0, full: false, since: Date.now() };
  private readonly waiting: Waiter[] = [];
  /** Running average of how long a permit is held, in ms. */
  private holdMs = 0;
  private readonly shed?: Counter<"scope" | "reason">;
  private readonly logger?: Logger;
  private shedSinceLog = 0;
  private lastLog = 0;

  constructor(
    /** What is admitted, in metrics and messages: "checkouts", "calls". */
    readonly scope: string,
    readonly settings: AdmissionSettings,
    { registry, logger }: { registry?: Registry; logger?: Logger } = {},
  ) {
    if (!Number.isInteger(settings.limit) || settings.limit < 1) throw new Error(`admission limit must be a positive integer, not ${settings.limit}`);
    const adaptive = settings.adaptive;
    if (adaptive && (!Number.isInteger(adaptive.minLimit) || adaptive.minLimit < 1 || adaptive.minLimit > settings.limit || !(adaptive.tolerance > 1))) {
      throw new Error(`adaptive admission needs 1 ≤ minLimit ≤ limit and a tolerance above 1, not ${JSON.stringify(adaptive)}`);
    }
    this.current = settings.limit;
    this.logger = logger;
    if (registry) {
      this.shed = admissionMetrics(registry).shed;
      admissionMetrics(registry).track(this);
    }
  }

  get active(): number {
    return this.inFlight;
  }

  get queued(): number {
    return this.waiting.length;
  }

  /** Work in progress admitted at most, now. */
  get limit(): number {
    return this.current;
  }

  /**
   * A permit now, or after a short wait in the queue; OverloadedError when
   * the queue is full, the wait runs out, or `signal` aborts while waiting
   * (the caller gave up: nothing was started).
   */
  admit(signal?: AbortSignal, kind?: string): Promise<Permit> {
    if (this.inFlight < this.current && this.waiting.length === 0) return Promise.resolve(this.grant(kind));
    if (this.waiting.length >= this.settings.queue) return Promise.reject(this.refusal("queue_full"));
    return new Promise<Permit>((resolve, reject) => {
      const leave = () => {
        const at = this.waiting.indexOf(waiter);
        if (at >= 0) this.waiting.splice(at, 1);
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      };
      const waiter: Waiter = {
        since: Date.now(),
        kind,
        admit: (permit) => {
          leave();
          resolve(permit);
        },
        refuse: (error) => {
          leave();
          reject(error);
        },
      };
      const onAbort = () => waiter.refuse(this.refusal("cancelled"));
      const timer = setTimeout(() => waiter.refuse(this.refusal("queue_timeout")), this.settings.queueTimeoutMs);
      signal?.addEventListener("abort", onAbort, { once: true });
      this.waiting.push(waiter);
    });
  }

  /**
   * A permit whatever the load, for work that must not be refused (a saga
   * resumed after a crash): it counts against the limit, so new work waits
   * for it.
   */
  force(): Permit {
    return this.grant();
  }

  private grant(kind?: string): Permit {
    this.inFlight += 1;
    this.granted += 1;
    // Alone: nothing else in progress when it started, and nothing granted until it ends (checked at release).
    const grantedBefore = this.inFlight === 1 ? this.granted : undefined;
    if (this.inFlight >= this.current) this.window.full = true;
    const since = performance.now();
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.inFlight -= 1;
        const held = performance.now() - since;
        this.holdMs = this.holdMs === 0 ? held : this.holdMs + EWMA_WEIGHT * (held - this.holdMs);
        if (this.settings.adaptive && kind !== undefined) this.learn(kind, held, grantedBefore === this.granted);
        for (let waiter = this.next(); waiter && this.inFlight < this.current; waiter = this.next()) waiter.admit(this.grant(waiter.kind));
      },
    };
  }

  /**
   * One admitted call's latency: a lone call's teaches its kind's unloaded
   * latency; the others are compared with it, and each full window moves
   * the limit.
   */
  private learn(kind: string, heldMs: number, alone: boolean): void {
    const unloaded = this.unloaded.get(kind);
    if (alone) {
      this.unloaded.set(kind, unloaded === undefined ? heldMs : unloaded + UNLOADED_WEIGHT * (heldMs - unloaded));
      return;
    }
    if (unloaded === undefined || unloaded <= 0) return;
    const window = this.window;
    window.calls += 1;
    window.ratioSum += heldMs / unloaded;
    if (window.calls < WINDOW_CALLS || Date.now() - window.since < WINDOW_MIN_MS) return;
    const { minLimit, tolerance } = this.settings.adaptive!;
    const slowdown = window.ratioSum / window.calls;
    if (slowdown > tolerance) this.current = Math.max(minLimit, Math.floor(this.current * Math.max(0.5, tolerance / slowdown)));
    else if (window.full) this.current = Math.min(this.settings.limit, this.current + 1);
    this.window = { calls: 0, ratioSum: 0, full: this.inFlight >= this.current, since: Date.now() };
  }

  /** The waiter to admit: the oldest while the queue drains, the newest once it stands. */
  private next(): Waiter | undefined {
    const oldest = this.waiting[0];
    if (!oldest) return undefined;
    const standing = Date.now() - oldest.since >= this.settings.queueTimeoutMs / 2;
    return standing ? this.waiting.at(-1) : oldest;
  }

  /** How long a refused caller should wait before trying again: about the time in which the admitted work turns over once. */
  retryAfterMs(): number {
    return Math.round(Math.min(5_000, Math.max(100, this.holdMs * 2)));
  }

  private refusal(reason: "queue_full" | "queue_timeout" | "cancelled"): OverloadedError {
    this.shed?.inc({ scope: this.scope, reason });
    this.shedSinceLog += 1;
    const now = Date.now();
    if (this.logger && now - this.lastLog >= SHED_LOG_PERIOD_MS) {
      this.logger.warn(
        { scope: this.scope, shed: this.shedSinceLog, in_progress: this.inFlight, queued: this.waiting.length, limit: this.current },
        "overloaded: shedding load (RESOURCE_EXHAUSTED)",
      );
      this.lastLog = now;
      this.shedSinceLog = 0;
    }
    const retryAfterMs = this.retryAfterMs();
    return new OverloadedError(
      `the shop is busy: ${this.scope} are at capacity (${this.inFlight} in progress, ${this.waiting.length} waiting); ` +
        `nothing was done, try again in about ${formatDelay(retryAfterMs)}`,
      retryAfterMs,
    );
  }
}

function formatDelay(ms: number): string {
  return ms < 1_000 ? `${ms} ms` : `${(ms / 1_000).toFixed(1)} s`;
}

interface AdmissionFamily {
  shed: Counter<"scope" | "reason">;
  track(admission: Admission): void;
}

const families = new WeakMap<Registry, AdmissionFamily>();

/** The admission metrics of a registry, made once: several Admissions of a process share them by scope. */
function admissionMetrics(registry: Registry): AdmissionFamily {
  const known = families.get(registry);
  if (known) return known;
  const tracked = new Set<Admission>();
  const registers = [registry];
  const family: AdmissionFamily = {
    shed: new Counter({
      name: "meshcart_admission_shed_total",
      help: "Work refused by admission control (RESOURCE_EXHAUSTED), by scope and reason: queue_full, queue_timeout, cancelled (the caller gave up while queued).",
      labelNames: ["scope", "reason"],
      registers,
    }),
    track: (admission) => tracked.add(admission),
  };
  new Gauge({
    name: "meshcart_admission_in_progress",
    help: "Admitted work in progress, by scope.",
    labelNames: ["scope"],
    registers,
    collect() {
      for (const a of tracked) this.set({ scope: a.scope }, a.active);
    },
  });
  new Gauge({
    name: "meshcart_admission_queued",
    help: "Callers waiting for admission, by scope.",
    labelNames: ["scope"],
    registers,
    collect() {
      for (const a of tracked) this.set({ scope: a.scope }, a.queued);
    },
  });
  new Gauge({
    name: "meshcart_admission_limit",
    help: "Work in progress admitted at most, by scope (where adaptive, the limit now).",
    labelNames: ["scope"],
    registers,
    collect() {
      for (const a of tracked) this.set({ scope: a.scope }, a.limit);
    },
  });
  families.set(registry, family);
  return family;
}
