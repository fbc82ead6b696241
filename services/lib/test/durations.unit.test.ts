import { describe, expect, it } from "vitest";
import { formatDuration, parseDuration } from "../src/durations.js";

describe("durations", () => {
  it("read units, combinations and bare seconds", () => {
    expect(["500ms", "30s", "2m", "1m30s", "1h30m", "2d", "90", "1.5", "0", " 5M "].map(parseDuration)).toEqual([
      500, 30_000, 120_000, 90_000, 5_400_000, 172_800_000, 90_000, 1_500, 0, 300_000,
    ]);
  });

  it("refuse anything else", () => {
    for (const text of ["", "soon", "5x", "m5", "1h 30m", "-1s", "1s2"]) expect(parseDuration(text), text).toBeUndefined();
  });

  it("print for people", () => {
    expect([850, 12_345, 303_000].map(formatDuration)).toEqual(["850ms", "12.3s", "5m3s"]);
  });
});
