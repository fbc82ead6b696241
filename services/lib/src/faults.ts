import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { hostname } from "node:os";
import type { AddressInfo } from "node:net";
import { ServerError, Status, type CallContext, type ServerMiddleware, type ServerMiddlewareCall } from "nice-grpc";
import { Counter, Gauge, type Registry } from "prom-client";
import { z } from "zod";
import { ConfigError, integer } from "./config.js";
import type { Logger } from "./logger.js";
import { sleep } from "./sleep.js";
import type { BackgroundTask } from "./background-task.js";
import { spanEvent } from "./tracing.js";

/**
 * Fault injection, per gRPC method of a service: a share of calls fails with
 * a chosen status, and calls can be slowed down (fixed latency plus
 * jitter). Rules come from `FAULTS` at start and are changed at runtime,
 * without a restart, through the fault-control HTTP endpoint
 * (`FAULT_CONTROL_PORT`), which serves ONE process: the replica that
 * receives the request. To set every replica, send the request to each.
 *
 * Modes:
 * - `before` (default): the fault fires before the handler runs, so nothing
 *   was done and a retry is always safe.
 * - `after-commit`: the handler runs (and commits its work), then the
 *   caller gets the fault instead of the answer: the call's effect exists
 *   although the caller saw a failure. A retry is safe only because the
 *   call carries an idempotency key; that is what this mode shows.
 *
 * Every decision is visible: `meshcart_faults_injected_total` and
 * `meshcart_fault_delays_total` on /metrics, and a span event
 * (`fault.injected`, `fault.delayed`) on the call's server span.
 */

export const FAULT_MODES = ["before", "after-commit"] as const;
export type FaultMode = (typeof FAULT_MODES)[number];

/** Status names a fault can answer with (every gRPC status but OK). */
export const FAULT_CODES = Object.keys(Status).filter((name) => Number.isNaN(Number(name)) && name !== "OK") as [
  keyof typeof Status,
  ...(keyof typeof Status)[],
];
export type FaultCode = (typeof FAULT_CODES)[number];

export interface FaultRule {
  /** Share of calls that fail, 0 to 1. */
  rate: number;
  /** The status a failing call gets. */
  code: FaultCode;
  /** Added to every call of the method, before anything else. */
  latencyMs: number;
  /** Up to this much more, uniformly at random. */
  jitterMs: number;
  mode: FaultMode;
}

/** Method name (as in the .proto, e.g. `Charge`; `*` for every other method) → rule. */
export type FaultRules = Record<string, FaultRule>;

const MAX_LATENCY_MS = 60_000;

function milliseconds() {
  const message = `must be an integer from 0 to ${MAX_LATENCY_MS} (milliseconds)`;
  return z.number({ error: message }).int(message).min(0, message).max(MAX_LATENCY_MS, message).default(0);
}

const ruleObject = z
  .strictObject({
    rate: z.number({ error: "must be a number from 0 to 1" }).min(0, "must be a number from 0 to 1").max(1, "must be a number from 0 to 1").default(0),
    code: z.enum(FAULT_CODES, { error: `must be a gRPC status name: ${FAULT_CODES.join(", ")}` }).default("UNAVAILABLE"),
    latencyMs: milliseconds(),
    jitterMs: milliseconds(),
    mode: z.enum(FAULT_MODES, { error: 'must be "before" or "after-commit"' }).default("before"),
  })
  .refine((rule) => rule.rate > 0 || rule.latencyMs > 0 || rule.jitterMs > 0, {
    message: "does nothing: give a rate above 0 and/or latencyMs or jitterMs",
  });

/** A bare number is a rate: `{"Charge": 0.2}` is `{"Charge": {"rate": 0.2}}`. */
const ruleSchema = z.preprocess((value) => (typeof value === "number" ? { rate: value } : value), ruleObject);

const METHOD_KEY = /^(\*|[A-Z][A-Za-z0-9]*)$/;

const rulesSchema = z.record(z.string(), ruleSchema);

export type ParsedFaults = { ok: true; rules: FaultRules } | { ok: false; problems: string[] };

/** Checks rules given as a value (the body of a PUT, the parsed FAULTS). */
export function parseFaultRules(input: unknown): ParsedFaults {
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    return { ok: false, problems: ['must be a JSON object of method → rule, e.g. {"Charge":{"rate":0.2,"code":"UNAVAILABLE"}}'] };
  }
  const badKeys = Object.keys(input)
    .filter((key) => !METHOD_KEY.test(key))
    .map((key) => `${key}: must be a method name as in the .proto (e.g. "Charge") or "*"`);
  const result = rulesSchema.safeParse(input);
  if (result.success && badKeys.length === 0) return { ok: true, rules: result.data as FaultRules };
  return {
    ok: false,
    problems: [
      ...badKeys,
      ...(result.error?.issues ?? []).map((issue) => {
        const where = issue.path.map(String).join(".");
        return where ? `${where}: ${issue.message}` : issue.message;
      }),
    ],
  };
}

/** Checks rules given as JSON text. */
export function parseFaultsJson(text: string): ParsedFaults {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return {
      ok: false,
      problems: [`is not JSON (${error instanceof Error ? error.message : String(error)}); e.g. {"Charge":{"rate":0.2,"code":"UNAVAILABLE"}}`],
    };
  }
  return parseFaultRules(value);
}

/**
 * The variables of a service that takes faults (payment, inventory). Both
 * are optional: without them no fault fires and no control port listens.
 */
export const faultConfig = {
  FAULTS: z
    .string()
    .transform((text, context) => {
      const parsed = parseFaultsJson(text);
      if (parsed.ok) return parsed.rules;
      for (const problem of parsed.problems) context.addIssue({ code: "custom", message: problem });
      return z.NEVER;
    })
    .optional()
    .describe(
      'Faults injected from the start, per gRPC method, as JSON: {"Charge":{"rate":0.2,"code":"UNAVAILABLE","latencyMs":0,"jitterMs":0,"mode":"before"}} (mode before: fails before any side effect; after-commit: the work is committed, then the call fails). Changed at runtime through FAULT_CONTROL_PORT.',
    ),
  FAULT_CONTROL_PORT: integer(1, 65535)
    .optional()
    .describe(
      "Port of the fault-control HTTP endpoint (GET, PUT, DELETE /faults) of this one replica; unset: no endpoint. Keep it apart from the admin port so the mesh can authorize it separately.",
    ),
};

// ------------------------------------------------------------------ the rules

interface MethodRef {
  service: string;
  name: string;
}

/** What a fault-taking service declares: its gRPC services (never health or reflection). */
export interface FaultInjectorOptions {
  /** The service's name, for logs and the control endpoint's answers. */
  service: string;
  /** nice-grpc service definitions whose methods may be faulted. */
  definitions: readonly { fullName: string; methods: Record<string, { name: string }> }[];
  logger: Logger;
  /** The process's registry: the fault counters go there. */
  registry?: Registry;
  /** This replica's name in answers (POD_NAME); the host name when unset. */
  instance?: string;
  /** For tests: a source of numbers in [0, 1). */
  random?: () => number;
}

export interface FaultState {
  service: string;
  instance: string;
  /** The methods a rule may name. */
  methods: string[];
  faults: FaultRules;
}

/** The current rules of one process, and the decisions they lead to. */
export class FaultInjector {
  readonly service: string;
  readonly instance: string;
  private rules: FaultRules = {};
  private readonly byPath = new Map<string, MethodRef>();
  private readonly methodNames: string[];
  private readonly random: () => number;
  private readonly logger: Logger;
  private readonly injected?: Counter<"method" | "mode" | "code">;
  private readonly delays?: Counter<"method">;
  private readonly delaySeconds?: Counter<"method">;

  constructor(options: FaultInjectorOptions) {
    this.service = options.service;
    this.instance = options.instance ?? hostname();
    this.logger = options.logger;
    this.random = options.random ?? Math.random;
    for (const definition of options.definitions) {
      for (const method of Object.values(definition.methods)) {
        this.byPath.set(`/${definition.fullName}/${method.name}`, { service: definition.fullName, name: method.name });
      }
    }
    this.methodNames = [...new Set([...this.byPath.values()].map((m) => m.name))].sort();
    const registry = options.registry;
    if (registry) {
      const registers = [registry];
      this.injected = new Counter({
        name: "meshcart_faults_injected_total",
        help: "Calls failed on purpose by fault injection, by method, mode (before, after-commit) and status code.",
        labelNames: ["method", "mode", "code"],
        registers,
      });
      this.delays = new Counter({
        name: "meshcart_fault_delays_total",
        help: "Calls slowed down on purpose by fault injection, by method.",
        labelNames: ["method"],
        registers,
      });
      this.delaySeconds = new Counter({
        name: "meshcart_fault_delay_seconds_total",
        help: "Time added on purpose by fault injection, by method.",
        labelNames: ["method"],
        registers,
      });
      const rules = () => this.rules;
      new Gauge({
        name: "meshcart_fault_rate",
        help: "Share of calls the current fault rules fail, by method, mode and code (absent: no rule).",
        labelNames: ["method", "mode", "code"],
        registers,
        collect() {
          this.reset();
          for (const [method, rule] of Object.entries(rules())) this.set({ method, mode: rule.mode, code: rule.code }, rule.rate);
        },
      });
    }
  }

  /** The methods a rule may name, sorted. */
  get methods(): string[] {
    return [...this.methodNames];
  }

  state(): FaultState {
    return { service: this.service, instance: this.instance, methods: this.methods, faults: this.current() };
  }

  current(): FaultRules {
    return structuredClone(this.rules);
  }

  /** Problems with rules naming methods this service does not have. */
  unknownMethods(rules: FaultRules): string[] {
    return Object.keys(rules)
      .filter((method) => method !== "*" && !this.methodNames.includes(method))
      .map((method) => `${method}: ${this.service} has no such method; it has ${this.methodNames.join(", ")} (or "*" for all)`);
  }

  /** Replaces every rule. Throws ConfigError (with every problem) when one names an unknown method. */
  replace(rules: FaultRules, by = "api"): void {
    const problems = this.unknownMethods(rules);
    if (problems.length > 0) throw new ConfigError(problems);
    this.rules = structuredClone(rules);
    this.announce(by);
  }

  /** Sets one method's rule, keeping the others. */
  set(method: string, rule: FaultRule, by = "api"): void {
    this.replace({ ...this.rules, [method]: rule }, by);
  }

  /** Removes one method's rule (or all of them). */
  clear(method?: string, by = "api"): void {
    if (method === undefined) this.rules = {};
    else delete this.rules[method];
    this.announce(by);
  }

  private announce(by: string): void {
    const active = Object.keys(this.rules).length > 0;
    this.logger[active ? "warn" : "info"]({ faults: this.rules, by }, active ? `fault injection on: ${describeRules(this.rules)}` : "fault injection off");
  }

  /** The rule for a call's method path; undefined for methods that are not the service's (health, reflection). */
  ruleFor(path: string): { method: string; rule: FaultRule } | undefined {
    const method = this.byPath.get(path);
    if (!method) return undefined;
    const rule = this.rules[method.name] ?? this.rules["*"];
    return rule ? { method: method.name, rule } : undefined;
  }

  /** How long to hold a call; 0 when the rule adds no latency. */
  delayFor(rule: FaultRule): number {
    return rule.latencyMs + (rule.jitterMs > 0 ? Math.round(this.random() * rule.jitterMs) : 0);
  }

  /** Whether this call fails. */
  fires(rule: FaultRule): boolean {
    return rule.rate >= 1 || (rule.rate > 0 && this.random() < rule.rate);
  }

  /** Counts and traces a delay. */
  recordDelay(method: string, ms: number): void {
    this.delays?.inc({ method });
    this.delaySeconds?.inc({ method }, ms / 1000);
    spanEvent("fault.delayed", { "meshcart.fault.method": method, "meshcart.fault.delay_ms": ms });
  }

  /** Counts, traces and logs an injected failure, and returns the error to throw. */
  failure(method: string, rule: FaultRule): ServerError {
    this.injected?.inc({ method, mode: rule.mode, code: rule.code });
    spanEvent("fault.injected", {
      "meshcart.fault.method": method,
      "meshcart.fault.mode": rule.mode,
      "meshcart.fault.code": rule.code,
      "meshcart.fault.rate": rule.rate,
    });
    this.logger.debug({ method, mode: rule.mode, code: rule.code }, "fault injected");
    const when = rule.mode === "after-commit" ? "after its work was committed" : "before doing anything";
    return new ServerError(Status[rule.code], `injected fault: ${this.service} failed ${method} ${when} (fault injection, mode ${rule.mode})`);
  }
}

function describeRules(rules: FaultRules): string {
  return Object.entries(rules)
    .map(([method, rule]) => {
      const parts = [];
      if (rule.rate > 0) parts.push(`${Math.round(rule.rate * 1000) / 10}% ${rule.code} ${rule.mode}`);
      if (rule.latencyMs > 0 || rule.jitterMs > 0) parts.push(`+${rule.latencyMs}ms${rule.jitterMs > 0 ? `..${rule.latencyMs + rule.jitterMs}ms` : ""}`);
      return `${method} ${parts.join(", ")}`;
    })
    .join("; ");
}

// ------------------------------------------------------------- the middleware

/**
 * The middleware a fault-taking service gives startServiceRuntime (its
 * `middleware`, innermost, so that a fault is counted, logged and traced like
 * any refusal). It applies the rules to every call of the service's own
 * methods: the latency first, then a `before` fault instead of the handler,
 * or an `after-commit` fault instead of the handler's answer (a handler that
 * fails by itself keeps its own error).
 */
export function faultMiddleware(injector: FaultInjector): ServerMiddleware {
  return async function* injectFaults<Request, Response>(call: ServerMiddlewareCall<Request, Response>, context: CallContext) {
    const found = injector.ruleFor(call.method.path);
    if (!found) return yield* call.next(call.request, context);
    const { method, rule } = found;
    const wait = injector.delayFor(rule);
    if (wait > 0) {
      injector.recordDelay(method, wait);
      await sleep(wait, context.signal);
      // A caller that gave up during the delay gets no handler run.
      context.signal.throwIfAborted();
    }
    if (!injector.fires(rule)) return yield* call.next(call.request, context);
    if (rule.mode === "before") throw injector.failure(method, rule);
    // after-commit: the work is done and committed; only the answer is lost.
    yield* call.next(call.request, context);
    throw injector.failure(method, rule);
  };
}

// ------------------------------------------------------ the control endpoint

const MAX_BODY_BYTES = 64 * 1024;

export interface FaultControl {
  readonly port: number;
  close(): Promise<void>;
  /** Closes the endpoint when the service stops (a task for startServiceRuntime's `background`). */
  readonly task: BackgroundTask;
}

/**
 * The fault-control endpoint, on its own port:
 *
 *   GET    /faults           the rules of this replica (and the methods it has)
 *   PUT    /faults           replace every rule: {"Charge":{"rate":0.5}}
 *   DELETE /faults           remove every rule
 *   PUT    /faults/<Method>  set one method's rule: {"rate":0.5,"code":"INTERNAL"}
 *   DELETE /faults/<Method>  remove one method's rule
 *
 * Answers are JSON: the replica's state, or {"error", "problems"} with 400.
 */
export async function startFaultControl(injector: FaultInjector, options: { port: number; host?: string; logger: Logger }): Promise<FaultControl> {
  const server = createServer((request, response) => {
    handle(injector, request, response).catch((error: unknown) => {
      options.logger.error({ err: error }, "fault control request failed");
      if (!response.headersSent) reply(response, 500, { error: "internal error" });
    });
  });
  server.listen(options.port, options.host ?? "0.0.0.0");
  try {
    await once(server, "listening");
  } catch (error) {
    throw new Error(`fault control port ${options.port}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
  const port = (server.address() as AddressInfo).port;
  options.logger.info({ fault_control_port: port }, "fault control endpoint listening (this replica only)");
  let closed: Promise<void> | undefined;
  const close = () => (closed ??= closeServer(server));
  return {
    port,
    close,
    task: {
      name: "fault-control",
      async run(signal) {
        await new Promise((resolve) => (signal.aborted ? resolve(undefined) : signal.addEventListener("abort", resolve, { once: true })));
        await close();
      },
    },
  };
}

async function handle(injector: FaultInjector, request: IncomingMessage, response: ServerResponse): Promise<void> {
  const path = (request.url ?? "/").split("?")[0]!.replace(/\/+$/, "");
  const match = /^\/faults(?:\/([^/]+))?$/.exec(path);
  if (!match) {
    reply(response, 404, { error: "not found: use /faults or /faults/<Method>" });
    return;
  }
  const method = match[1] === undefined ? undefined : decodeURIComponent(match[1]);
  const by = `http ${request.socket.remoteAddress ?? "?"}`;
  switch (request.method) {
    case "GET":
    case "HEAD": {
      if (method !== undefined) {
        const rule = injector.current()[method];
        reply(response, rule ? 200 : 404, rule ? { method, rule } : { error: `no fault rule for ${method}` });
        return;
      }
      reply(response, 200, injector.state());
      return;
    }
    case "PUT":
    case "POST": {
      const body = await readBody(request);
      if (body === undefined) {
        reply(response, 413, { error: `body larger than ${MAX_BODY_BYTES} bytes` });
        return;
      }
      const parsed = parseFaultsJson(method === undefined ? body : `{${JSON.stringify(method)}:${body || "null"}}`);
      const problems = parsed.ok ? injector.unknownMethods(parsed.rules) : parsed.problems;
      if (!parsed.ok || problems.length > 0) {
        reply(response, 400, { error: "invalid fault rules; nothing changed", problems });
        return;
      }
      if (method === undefined) injector.replace(parsed.rules, by);
      else injector.set(method, parsed.rules[method]!, by);
      reply(response, 200, injector.state());
      return;
    }
    case "DELETE": {
      injector.clear(method, by);
      reply(response, 200, injector.state());
      return;
    }
    default:
      response.writeHead(405, { allow: "GET, PUT, DELETE" }).end();
  }
}

function readBody(request: IncomingMessage): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    request.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) tooLarge = true;
      else chunks.push(chunk);
    });
    request.on("end", () => resolve(tooLarge ? undefined : Buffer.concat(chunks).toString("utf8").trim()));
    request.on("error", reject);
  });
}

function reply(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
  response.end(`${JSON.stringify(body, null, 2)}\n`);
}

function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

// ------------------------------------------------------------------ wiring

/**
 * What a fault-taking service's main.ts does: the injector with the rules of
 * FAULTS (an unknown method stops the start with a ConfigError), and the
 * control endpoint when FAULT_CONTROL_PORT is set. Give startServiceRuntime
 * `faultMiddleware(injector)` in its `middleware` and `tasks` in its
 * `background`.
 */
export async function startFaults(options: {
  service: string;
  config: { FAULTS?: FaultRules; FAULT_CONTROL_PORT?: number; POD_NAME?: string };
  definitions: FaultInjectorOptions["definitions"];
  logger: Logger;
  registry: Registry;
  host?: string;
}): Promise<{ injector: FaultInjector; control?: FaultControl; tasks: BackgroundTask[] }> {
  const injector = new FaultInjector({
    service: options.service,
    definitions: options.definitions,
    logger: options.logger,
    registry: options.registry,
    instance: options.config.POD_NAME,
  });
  const initial = options.config.FAULTS ?? {};
  const problems = injector.unknownMethods(initial);
  if (problems.length > 0) throw new ConfigError(problems.map((p) => `FAULTS: ${p}`));
  if (Object.keys(initial).length > 0) injector.replace(initial, "FAULTS");
  const port = options.config.FAULT_CONTROL_PORT;
  if (port === undefined) return { injector, tasks: [] };
  const control = await startFaultControl(injector, { port, host: options.host, logger: options.logger });
  return { injector, control, tasks: [control.task] };
}
