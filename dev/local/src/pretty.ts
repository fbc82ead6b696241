import { styleText } from "node:util";
import { prettyFactory } from "pino-pretty";

export interface PrinterOptions {
  /** Shown before every output line. */
  label: string;
  /** Pads labels to a common width, so the columns line up. */
  width: number;
  colorize: boolean;
  color?: LabelColor;
}

export type LabelColor = "cyan" | "magenta" | "yellow" | "green" | "blue" | "gray";

/**
 * Turns one line of a service's output into text for humans: pino JSON is
 * pretty-printed, anything else (a crash before the logger exists, Node's
 * own warnings) is passed through untouched. Every resulting line carries
 * the label, so interleaved services stay readable.
 */
export function createLinePrinter(options: PrinterOptions): (line: string) => string {
  const pretty = prettyFactory({
    colorize: options.colorize,
    translateTime: "SYS:HH:MM:ss.l",
    // The label already names the service, and the version is always "dev"
    // here; the trace id moves onto the message line, where it is easy to
    // copy into Jaeger's search (the span id is left to the JSON).
    ignore: "pid,hostname,service,version,trace_id,span_id",
    messageFormat: (log, messageKey) => {
      const message = String(log[messageKey] ?? "");
      return typeof log.trace_id === "string" ? `${message}  [trace ${log.trace_id}]` : message;
    },
  });
  const padded = `${options.label.padEnd(options.width)} │ `;
  const prefix = options.colorize ? styleText(options.color ?? "cyan", padded, { validateStream: false }) : padded;
  return (line) => {
    const record = parseRecord(line);
    const text = record === undefined ? line : pretty(record).replace(/\n$/, "");
    return `${text
      .split("\n")
      .map((part) => prefix + part)
      .join("\n")}\n`;
  };
}

function parseRecord(line: string): object | undefined {
  if (!line.startsWith("{")) return undefined;
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === "object" && value !== null ? value : undefined;
  } catch {
    return undefined;
  }
}
