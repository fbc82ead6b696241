import { pino, type Logger, type LevelWithSilent } from "pino";
import { currentRequest } from "./request-context.js";
import { activeTraceIds } from "./tracing.js";

export type { Logger } from "pino";

const SECRET_KEYS = [
  "authorization",
  "password",
  "token",
  "accessToken",
  "access_token",
  "idToken",
  "secret",
  "databaseUrl",
  "DATABASE_URL",
  "paymentMethod",
  "payment_method",
  "card",
  "cardNumber",
];
/**
 * Each key at the top level and two levels down (`err.token`,
 * `request.paymentMethod`, `err.request.paymentMethod`): an error that
 * carries the request it failed on is the usual way one gets deeper.
 */
export const REDACTED_PATHS = SECRET_KEYS.flatMap((key) => [key, `*.${key}`, `*.*.${key}`]);

export interface LoggerOptions {
  service: string;
  version: string;
  level: LevelWithSilent;
  /** Where lines go; standard output when omitted. Tests pass a stream. */
  destination?: NodeJS.WritableStream;
  /**
   * Add the request's correlation id and the active trace and span to each
   * line (default). Off for lines about the process itself.
   */
  context?: boolean;
}

/**
 * JSON lines on standard output: the format every log pipeline reads.
 * `make dev` pretty-prints them for humans; the services never do.
 */
export function createLogger(options: LoggerOptions): Logger {
  const settings = {
    level: options.level,
    base: { service: options.service, version: options.version },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    // Every line written while a request is served (or a saga step
    // runs) carries its correlation id and the trace and span it belongs
    // to, without each call site having to pass them.
    mixin() {
      if (options.context === false) return {};
      const request = currentRequest();
      return {
        ...(request ? { correlation_id: request.correlationId } : {}),
        ...(request?.method ? { grpc_method: request.method } : {}),
        ...activeTraceIds(),
      };
    },
    // Secrets, tokens and payment details never reach a log line, even
    // when a whole object is logged by mistake.
    redact: { paths: REDACTED_PATHS, censor: "[redacted]" },
  } satisfies pino.LoggerOptions;
  // Synchronous writes, so the last lines before an exit are never lost or
  // reordered: pino's default destination is asynchronous, and its exit
  // flush can write queued lines ahead of a write still in flight.
  return pino(settings, options.destination ?? pino.destination({ dest: 1, sync: true }));
}
