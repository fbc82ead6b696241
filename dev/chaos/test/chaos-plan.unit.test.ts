import { describe, expect, it } from "vitest";
import { parseChaosOptions } from "../src/options.js";
import { VICTIMS, planKills, type KillPlanOptions } from "../src/plan.js";
import { seededRandom } from "../src/random.js";

/** The chaos harness's pure parts: the seeded plan and the options of make chaos. */

const options: KillPlanOptions = { services: VICTIMS, count: 8, fromMs: 6_000, toMs: 45_000, minDownMs: 200, maxDownMs: 2_000 };

describe("the seeded generator", () => {
  it("gives the same numbers for the same seed, others for another", () => {
    const draw = (seed: number) => Array.from({ length: 5 }, seededRandom(seed).next);
    expect(draw(42)).toEqual(draw(42));
    expect(draw(42)).not.toEqual(draw(43));
    for (const value of draw(7)) expect(value >= 0 && value < 1).toBe(true);
  });

  it("refuses a seed it cannot reproduce", () => {
    for (const bad of [-1, 1.5, 2 ** 32, Number.NaN]) expect(() => seededRandom(bad)).toThrow(/seed must be an integer/);
  });
});

describe("the kill plan", () => {
  it("is the same for the same seed: a run can be repeated", () => {
    expect(planKills(seededRandom(1234), options)).toEqual(planKills(seededRandom(1234), options));
    expect(planKills(seededRandom(1234), options)).not.toEqual(planKills(seededRandom(4321), options));
  });

  it("kills every service once per round, spread over the window, in order, with bounded downtimes", () => {
    for (const seed of [1, 2, 3, 99, 2 ** 31]) {
      const plan = planKills(seededRandom(seed), options);
      expect(plan.map((k) => k.index)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
      expect(new Set(plan.slice(0, VICTIMS.length).map((k) => k.service))).toEqual(new Set(VICTIMS));
      // The next round, cut short by the count: no service twice in it.
      expect(new Set(plan.slice(VICTIMS.length).map((k) => k.service)).size).toBe(plan.length - VICTIMS.length);
      const slot = (options.toMs - options.fromMs) / options.count;
      plan.forEach((kill, i) => {
        expect(kill.atMs).toBeGreaterThanOrEqual(Math.floor(options.fromMs + slot * i));
        expect(kill.atMs).toBeLessThanOrEqual(Math.ceil(options.fromMs + slot * (i + 1)));
        expect(kill.downMs).toBeGreaterThanOrEqual(options.minDownMs);
        expect(kill.downMs).toBeLessThanOrEqual(options.maxDownMs);
      });
    }
  });

  it("takes only the services named, and nothing for no kills", () => {
    const plan = planKills(seededRandom(5), { ...options, services: ["order"], count: 3 });
    expect(plan.map((k) => k.service)).toEqual(["order", "order", "order"]);
    expect(planKills(seededRandom(5), { ...options, count: 0 })).toEqual([]);
    expect(() => planKills(seededRandom(5), { ...options, fromMs: 10, toMs: 10 })).toThrow(/window/);
    expect(() => planKills(seededRandom(5), { ...options, services: [] })).toThrow(/no service/);
  });
});

describe("make chaos's options", () => {
  it("has bounded defaults: a run of a few minutes", () => {
    const parsed = parseChaosOptions({}, {});
    expect(parsed).toEqual({
      ok: true,
      command: {
        seed: undefined,
        durationMs: 60_000,
        kills: 8,
        services: [...VICTIMS],
        rps: 10,
        outageMs: 5_000,
        outageMode: "fast",
        brokerOutageMs: 5_000,
        outDir: undefined,
      },
    });
  });

  it("reads CHAOS_* variables, flags win, and make's empty values mean unset", () => {
    const parsed = parseChaosOptions(
      { seed: "7", duration: "", kills: "4" },
      {
        CHAOS_SEED: "9",
        CHAOS_DURATION: "2m",
        CHAOS_KILLS: "12",
        CHAOS_SERVICES: "order, payment",
        CHAOS_OUTAGE: "0",
        CHAOS_OUTAGE_MODE: "immediate",
        CHAOS_BROKER_OUTAGE: "0",
      },
    );
    expect(parsed).toMatchObject({
      ok: true,
      command: { seed: 7, durationMs: 120_000, kills: 4, services: ["order", "payment"], outageMs: 0, outageMode: "immediate", brokerOutageMs: 0 },
    });
  });

  it("names every wrong option at once", () => {
    const parsed = parseChaosOptions({ seed: "x", duration: "soon", kills: "-1", services: "order,db", rps: "0", "outage-mode": "slow" }, {});
    expect(parsed.ok).toBe(false);
    const problems = parsed.ok ? [] : parsed.problems;
    expect(problems).toHaveLength(6);
    expect(problems.join("\n")).toMatch(/--seed \(CHAOS_SEED\): "x"/);
    expect(problems.join("\n")).toMatch(/--services \(CHAOS_SERVICES\)/);
  });

  it("reads durations as loadgen does, and keeps them in bounds", () => {
    expect(parseChaosOptions({ duration: "1m30s", outage: "1500ms" }, {})).toMatchObject({ ok: true, command: { durationMs: 90_000, outageMs: 1_500 } });
    expect(parseChaosOptions({ duration: "5h" }, {})).toEqual({ ok: false, problems: [expect.stringMatching(/--duration \(CHAOS_DURATION\): 5h is outside/)] });
  });
});
