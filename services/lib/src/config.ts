import { z } from "zod";

/**
 * Configuration comes only from environment variables. Each service declares
 * its variables as a zod shape; `loadConfig` validates all of them at start
 * and reports every problem at once, so a misconfigured pod fails on its
 * first log line instead of on its first request.
 */
export type ConfigShape = Record<string, z.ZodType>;
export type Config<S extends ConfigShape> = z.infer<z.ZodObject<S>>;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

const SECRET_NAME = /SECRET|PASSWORD|TOKEN/;

export function loadConfig<S extends ConfigShape>(shape: S, env: Record<string, string | undefined> = process.env): Config<S> {
  const input: Record<string, string | undefined> = {};
  for (const key of Object.keys(shape)) {
    // An empty variable means "not set": Kubernetes and shells produce them
    // easily, and a default is more useful than a parse error.
    const value = env[key];
    input[key] = value === "" ? undefined : value;
  }
  const result = z.object(shape).safeParse(input);
  if (result.success) return result.data;
  throw new ConfigError(
    result.error.issues.map((issue) => {
      const key = String(issue.path[0] ?? "");
      const got = input[key];
      // A secret's value never reaches the logs, even a wrong one.
      const shown = SECRET_NAME.test(key) ? "[redacted]" : JSON.stringify(got);
      return `${key}: ${issue.message}${got === undefined ? " (not set)" : ` (got ${shown})`}`;
    }),
  );
}

/** An integer in [min, max], with a default when unset. */
export function integer(min: number, max: number, fallback?: number) {
  const base = z.coerce
    .number({ error: `must be an integer from ${min} to ${max}` })
    .int(`must be an integer from ${min} to ${max}`)
    .min(min, `must be an integer from ${min} to ${max}`)
    .max(max, `must be an integer from ${min} to ${max}`);
  return fallback === undefined ? base : base.default(fallback);
}

/** A number in [min, max], with a default when unset. */
export function decimal(min: number, max: number, fallback: number) {
  return z.coerce
    .number({ error: `must be a number from ${min} to ${max}` })
    .min(min, `must be a number from ${min} to ${max}`)
    .max(max, `must be a number from ${min} to ${max}`)
    .default(fallback);
}

export function port(fallback: number) {
  return integer(1, 65535, fallback);
}

export function boolean(fallback: boolean) {
  return z
    .enum(["true", "false", "1", "0"], { error: 'must be "true" or "false"' })
    .default(fallback ? "true" : "false")
    .transform((v) => v === "true" || v === "1");
}

export function text(fallback?: string) {
  const base = z.string().min(1, "must not be empty");
  return fallback === undefined ? base : base.default(fallback);
}

export function postgresUrl() {
  return z.string({ error: "must be set to a postgres:// URL" }).refine((v) => /^postgres(ql)?:\/\/.+/.test(v), "must be a postgres:// URL");
}

export const logLevels = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

/**
 * Variables every meshcart service reads. Each carries its documentation
 * (`describe`): the configuration table of docs/configuration.md is
 * generated from these shapes and a test keeps the two equal.
 */
export const serviceConfig = {
  GRPC_PORT: port(50051).describe("Port of the gRPC API."),
  ADMIN_PORT: port(9090).describe("Port of the admin HTTP server: /healthz, /readyz, /metrics."),
  LOG_LEVEL: z
    .enum(logLevels, { error: `must be one of ${logLevels.join(", ")}` })
    .default("info")
    .describe(`Log level: ${logLevels.join(", ")}.`),
  SERVICE_VERSION: text("dev").describe("Version reported in logs, traces and responses (served_by)."),
  DEPLOYMENT_ENVIRONMENT: text("local").describe("Environment name reported in logs and traces."),
  POD_NAME: text().optional().describe("This instance's name (the pod name in Kubernetes): payment's served_by, order's saga leases; host-based when unset."),
  POD_NAMESPACE: text().optional().describe("The Kubernetes namespace (downward API), reported in traces as k8s.namespace.name."),
  // At least 64 KiB: reflection answers (grpcurl describe) must fit.
  GRPC_MAX_MESSAGE_BYTES: integer(64 * 1024, 64 * 1024 * 1024, 1024 * 1024).describe(
    "Largest gRPC message accepted or sent, in bytes; larger ones are refused with RESOURCE_EXHAUSTED.",
  ),
  // Kubernetes and the mesh need a moment to stop routing to a terminating
  // pod; calls that still arrive meanwhile are served, not refused.
  SHUTDOWN_DRAIN_DELAY_MS: integer(0, 60_000, 0).describe("After SIGTERM, how long to keep serving while reporting not ready."),
  SHUTDOWN_TIMEOUT_MS: integer(100, 120_000, 10_000).describe("Upper bound for in-flight calls to finish after the drain delay; then they are cancelled."),
} satisfies ConfigShape;

/** Variables of a service that owns a database. */
export const databaseConfig = {
  DATABASE_URL: postgresUrl().describe("The service's own Postgres database (required)."),
  DB_POOL_MAX: integer(1, 100, 10).describe("Connections in the pool."),
  DB_STATEMENT_TIMEOUT_MS: integer(100, 600_000, 5_000).describe("Server-side bound for any one statement."),
  DB_HEALTH_INTERVAL_MS: integer(100, 60_000, 1_000).describe("How often the database is pinged; health and readiness follow the answer."),
} satisfies ConfigShape;
