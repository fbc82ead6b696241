import readline from "node:readline";
import type { Readable } from "node:stream";

/** Calls `onLine` for every line the stream produces, without its newline. */
export function forEachLine(stream: Readable | null, onLine: (line: string) => void): void {
  if (stream === null) return;
  readline.createInterface({ input: stream, crlfDelay: Infinity }).on("line", onLine);
}

/** The last `count` entries of `lines`, indented for an error message. */
export function tail(lines: readonly string[], count = 20): string {
  const shown = lines.slice(-count);
  return shown.length === 0 ? "  (no output)" : shown.map((line) => `  ${line}`).join("\n");
}
