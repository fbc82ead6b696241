import { describe, expect, it } from "vitest";
import { createLinePrinter } from "../src/pretty.js";

describe("createLinePrinter", () => {
  const print = createLinePrinter({ label: "inventory", width: 10, colorize: false });

  it("pretty-prints pino JSON lines behind the service label", () => {
    const line = JSON.stringify({
      level: "info",
      time: "2026-01-02T03:04:05.678Z",
      service: "inventory",
      version: "dev",
      msg: "listening",
      grpc_port: 50053,
    });
    const output = print(line);
    expect(output).toMatch(/^inventory {2}│ \[\d\d:\d\d:\d\d\.678\] INFO: listening\n/);
    expect(output).toContain("inventory  │     grpc_port: 50053\n");
    expect(output).not.toContain('"service"');
    expect(output.endsWith("\n")).toBe(true);
  });

  it("shows the trace id of a line written inside a call on its message line", () => {
    const line = JSON.stringify({
      level: "info",
      time: "2026-01-02T03:04:05.678Z",
      service: "order",
      version: "dev",
      msg: "saga step done",
      correlation_id: "req-1",
      trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
      span_id: "00f067aa0ba902b7",
    });
    const output = print(line);
    expect(output).toMatch(/INFO: saga step done {2}\[trace 4bf92f3577b34da6a3ce929d0e0e4736\]\n/);
    expect(output).toContain('correlation_id: "req-1"');
    expect(output).not.toContain("span_id");
  });

  it("passes other lines through unchanged", () => {
    expect(print("node:internal/modules/cjs/loader:1228")).toBe("inventory  │ node:internal/modules/cjs/loader:1228\n");
    expect(print("{not json")).toBe("inventory  │ {not json\n");
  });
});
