import { pino, type Logger, type LevelWithSilent } from "pino";
import { currentRequest } from "./request-context.js";

export type { Logger } from "pino";

export interface LoggerOptions {
  service: string;
  version: string;
  level: LevelWithSilent;
  /** Where lines go; standard output when omitted. Tests pass a stream. */
  destination?: NodeJS.WritableStream;
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
      // Every line written while a request is served carries its
      // correlation id, without each call site having to pass it.
      mixin() {
        const request = currentRequest();
        return request ? { correlation_id: request.correlationId, grpc_method: request.method } : {};
      },
      redact: {
        paths: ["authorization", "*.authorization", "password", "*.password", "databaseUrl", "*.databaseUrl"],
        censor: "[redacted]",
      },
  } satisfies pino.LoggerOptions;
  // Synchronous writes, so the last lines before an exit are never lost or
  // reordered: pino's default destination is asynchronous, and its exit
  // flush can write queued lines ahead of a write still in flight.
  return pino(settings, options.destination ?? pino.destination({ dest: 1, sync: true }));
}
