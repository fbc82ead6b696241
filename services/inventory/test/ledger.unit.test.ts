import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  LedgerError,
  available,
  commit,
  decide,
  ledgerViolations,
  moveFor,
  release,
  reserve,
  restock,
  returnSold,
  type Decision,
  type ReservationAction,
  type ReservationState,
  type StockCounters,
} from "../src/ledger.js";

/** A consistent ledger: 100 units to start, 30 restocked, 20 sold, 25 held. */
const base: StockCounters = Object.freeze({ initial: 100, restocked: 30, onHand: 110, reserved: 25, sold: 20 });

const moves = { reserve, commit, release, returnSold, restock } as const;
type MoveName = keyof typeof moves;
const moveNames = Object.keys(moves) as MoveName[];

function refusal(fn: () => unknown): LedgerError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(LedgerError);
    return error as LedgerError;
  }
  throw new Error("expected a LedgerError, but the move was allowed");
}

describe("available", () => {
  it("is on_hand minus reserved", () => {
    expect(available(base)).toBe(85);
    expect(available({ initial: 5, restocked: 0, onHand: 5, reserved: 5, sold: 0 })).toBe(0);
  });
});

describe("moves", () => {
  it("reserve adds to reserved only", () => {
    expect(reserve(base, 10)).toEqual({ initial: 100, restocked: 30, onHand: 110, reserved: 35, sold: 20 });
  });

  it("reserve may take exactly what is available, and no more", () => {
    expect(reserve(base, 85)).toEqual({ ...base, reserved: 110 });
    expect(refusal(() => reserve(base, 86)).message).toMatch(/only 85 available, 86 asked/);
    const empty = { initial: 3, restocked: 0, onHand: 3, reserved: 3, sold: 0 };
    refusal(() => reserve(empty, 1));
  });

  it("commit moves units out of on_hand and reserved into sold", () => {
    expect(commit(base, 10)).toEqual({ initial: 100, restocked: 30, onHand: 100, reserved: 15, sold: 30 });
    expect(commit(base, 25)).toEqual({ initial: 100, restocked: 30, onHand: 85, reserved: 0, sold: 45 });
  });

  it("commit of more than is reserved is refused", () => {
    refusal(() => commit(base, 26));
  });

  it("release frees reserved units only", () => {
    expect(release(base, 10)).toEqual({ initial: 100, restocked: 30, onHand: 110, reserved: 15, sold: 20 });
    expect(release(base, 25)).toEqual({ ...base, reserved: 0 });
    refusal(() => release(base, 26));
  });

  it("return puts sold units back on hand", () => {
    expect(returnSold(base, 5)).toEqual({ initial: 100, restocked: 30, onHand: 115, reserved: 25, sold: 15 });
    expect(returnSold(base, 20)).toEqual({ ...base, onHand: 130, sold: 0 });
    refusal(() => returnSold(base, 21));
  });

  it("restock adds to on_hand and restocked", () => {
    expect(restock(base, 7)).toEqual({ initial: 100, restocked: 37, onHand: 117, reserved: 25, sold: 20 });
  });

  it.each(moveNames)("%s refuses quantities that are not positive whole numbers", (name) => {
    for (const q of [0, -1, -100, 1.5, 0.1, Number.NaN, Number.POSITIVE_INFINITY, Number.MAX_SAFE_INTEGER + 1]) {
      expect(refusal(() => moves[name](base, q)).message).toMatch(/not a positive whole number/);
    }
  });

  it.each(moveNames)("%s never changes the counters it is given", (name) => {
    const before = { ...base };
    moves[name](before, 1);
    expect(before).toEqual(base);
  });

  it.each(moveNames)("%s refuses to start from a broken ledger", (name) => {
    const broken = { ...base, onHand: base.onHand + 1 }; // does not balance
    refusal(() => moves[name](broken, 1));
  });

  it("moveFor maps each target state to its move", () => {
    expect(moveFor("HELD")).toBe(reserve);
    expect(moveFor("COMMITTED")).toBe(commit);
    expect(moveFor("RELEASED")).toBe(release);
    expect(moveFor("EXPIRED")).toBe(release);
    expect(moveFor("RETURNED")).toBe(returnSold);
  });
});

describe("ledgerViolations", () => {
  it("is empty for a consistent ledger", () => {
    expect(ledgerViolations(base)).toEqual([]);
    expect(ledgerViolations({ initial: 0, restocked: 0, onHand: 0, reserved: 0, sold: 0 })).toEqual([]);
  });

  it.each(["initial", "restocked", "onHand", "reserved", "sold"] as const)("catches a negative %s", (field) => {
    const stock = { ...base, [field]: -1 };
    expect(ledgerViolations(stock)).toContain(`${field} is -1`);
  });

  it.each(["initial", "restocked", "onHand", "reserved", "sold"] as const)("catches a %s that is not a safe whole number", (field) => {
    for (const bad of [1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53]) {
      expect(ledgerViolations({ ...base, [field]: bad })).toContain(`${field} is ${bad}`);
    }
  });

  it("catches a ledger that does not balance", () => {
    const problems = ledgerViolations({ ...base, sold: 21 });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/initial \+ restocked \(130\) != on_hand \+ sold \(131\)/);
    expect(ledgerViolations({ ...base, restocked: 29 })).toHaveLength(1);
  });

  it("catches more reserved than on hand", () => {
    const stock = { initial: 10, restocked: 0, onHand: 10, reserved: 11, sold: 0 };
    expect(ledgerViolations(stock)).toEqual(["reserved (11) > on_hand (10)"]);
    expect(ledgerViolations({ ...stock, reserved: 10 })).toEqual([]);
  });

  it("reports every broken invariant at once", () => {
    const stock = { initial: 10, restocked: 0, onHand: 5, reserved: 6, sold: -2 };
    expect(ledgerViolations(stock)).toHaveLength(3);
  });
});

describe("decide", () => {
  const states: ReservationState[] = ["HELD", "COMMITTED", "RELEASED", "EXPIRED", "RETURNED"];
  const actions: ReservationAction[] = ["commit", "release", "return"];

  /** The full table: [state, action, holdExpired] → expected kind (and target state). */
  const expected: Record<
    ReservationAction,
    Record<ReservationState, [Decision["kind"] | `apply:${ReservationState}`, Decision["kind"] | `apply:${ReservationState}`]>
  > = {
    //            [not expired,          expired]
    commit: {
      HELD: ["apply:COMMITTED", "expire"],
      COMMITTED: ["replay", "replay"],
      RELEASED: ["refuse", "refuse"],
      EXPIRED: ["refuse", "refuse"],
      RETURNED: ["refuse", "refuse"],
    },
    release: {
      // Releasing after the deadline but before the sweeper ran frees the units as a release.
      HELD: ["apply:RELEASED", "apply:RELEASED"],
      COMMITTED: ["refuse", "refuse"],
      RELEASED: ["replay", "replay"],
      EXPIRED: ["replay", "replay"],
      RETURNED: ["refuse", "refuse"],
    },
    return: {
      HELD: ["refuse", "refuse"],
      COMMITTED: ["apply:RETURNED", "apply:RETURNED"],
      RELEASED: ["refuse", "refuse"],
      EXPIRED: ["refuse", "refuse"],
      RETURNED: ["replay", "replay"],
    },
  };

  const cases = states.flatMap((state) => actions.flatMap((action) => [false, true].map((expired) => ({ state, action, expired }))));

  it("covers all 30 combinations", () => {
    expect(cases).toHaveLength(30);
  });

  it.each(cases)("$action on $state (expired: $expired)", ({ state, action, expired }) => {
    const want = expected[action][state][expired ? 1 : 0];
    const decision = decide(state, action, expired);
    if (want.startsWith("apply:")) {
      expect(decision).toEqual({ kind: "apply", to: want.slice("apply:".length) });
    } else if (want === "refuse") {
      expect(decision.kind).toBe("refuse");
      expect((decision as { reason: string }).reason).toMatch(state.toLowerCase());
    } else {
      expect(decision).toEqual({ kind: want });
    }
  });

  it("tells a caller releasing a committed reservation to return it instead", () => {
    expect(decide("COMMITTED", "release", false)).toEqual({
      kind: "refuse",
      reason: "reservation is committed: return its stock instead",
    });
  });
});

describe("ledger properties", () => {
  type Hold = { quantity: number; state: "HELD" | "COMMITTED" | "RELEASED" | "RETURNED" };
  type Step = { op: "reserve"; quantity: number } | { op: "commit" | "release" | "return"; pick: number } | { op: "restock"; quantity: number };

  const step: fc.Arbitrary<Step> = fc.oneof(
    fc.record({ op: fc.constant("reserve" as const), quantity: fc.integer({ min: 1, max: 40 }) }),
    fc.record({ op: fc.constantFrom("commit" as const, "release" as const, "return" as const), pick: fc.nat() }),
    fc.record({ op: fc.constant("restock" as const), quantity: fc.integer({ min: 1, max: 30 }) }),
  );

  it("random sequences of moves keep every invariant and the books agree with the holds", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 50 }), fc.array(step, { maxLength: 60 }), (initial, steps) => {
        let stock: StockCounters = { initial, restocked: 0, onHand: initial, reserved: 0, sold: 0 };
        const holds: Hold[] = [];
        for (const s of steps) {
          switch (s.op) {
            case "reserve": {
              if (s.quantity > available(stock)) {
                expect(() => reserve(stock, s.quantity)).toThrow(LedgerError);
              } else {
                stock = reserve(stock, s.quantity);
                holds.push({ quantity: s.quantity, state: "HELD" });
              }
              break;
            }
            case "restock":
              stock = restock(stock, s.quantity);
              break;
            default: {
              const from = s.op === "return" ? "COMMITTED" : "HELD";
              const candidates = holds.filter((h) => h.state === from);
              const hold = candidates[s.pick % Math.max(candidates.length, 1)];
              if (!hold) break;
              const to = s.op === "commit" ? "COMMITTED" : s.op === "release" ? "RELEASED" : "RETURNED";
              const decision = decide(hold.state, s.op, false);
              expect(decision).toEqual({ kind: "apply", to });
              stock = moveFor(to)(stock, hold.quantity);
              hold.state = to;
            }
          }
          expect(ledgerViolations(stock)).toEqual([]);
          expect(stock.reserved).toBeGreaterThanOrEqual(0);
          expect(stock.reserved).toBeLessThanOrEqual(stock.onHand);
          expect(stock.initial + stock.restocked).toBe(stock.onHand + stock.sold);
        }
        // The counters are exactly what the holds say they should be.
        const sum = (state: Hold["state"]) => holds.filter((h) => h.state === state).reduce((n, h) => n + h.quantity, 0);
        expect(stock.reserved).toBe(sum("HELD"));
        expect(stock.sold).toBe(sum("COMMITTED"));
        expect(stock.onHand).toBe(initial + stock.restocked - sum("COMMITTED"));
      }),
      { numRuns: 300 },
    );
  });

  const consistentStock: fc.Arbitrary<StockCounters> = fc
    .record({
      initial: fc.nat({ max: 1000 }),
      restocked: fc.nat({ max: 1000 }),
      soldShare: fc.double({ min: 0, max: 1, noNaN: true }),
      reservedShare: fc.double({ min: 0, max: 1, noNaN: true }),
    })
    .map(({ initial, restocked, soldShare, reservedShare }) => {
      const sold = Math.floor((initial + restocked) * soldShare);
      const onHand = initial + restocked - sold;
      return { initial, restocked, onHand, reserved: Math.floor(onHand * reservedShare), sold };
    });

  it("any move on a consistent ledger either is refused or leaves a consistent ledger", () => {
    fc.assert(
      fc.property(consistentStock, fc.constantFrom(...moveNames), fc.integer({ min: -5, max: 2500 }), (stock, name, q) => {
        expect(ledgerViolations(stock)).toEqual([]);
        let next: StockCounters;
        try {
          next = moves[name](stock, q);
        } catch (error) {
          expect(error).toBeInstanceOf(LedgerError);
          // A refusal is only ever for a reason: a bad quantity or not enough units.
          const limit = { reserve: available(stock), commit: stock.reserved, release: stock.reserved, returnSold: stock.sold, restock: Infinity }[name];
          expect(q <= 0 || q > limit).toBe(true);
          return;
        }
        expect(q).toBeGreaterThan(0);
        expect(ledgerViolations(next)).toEqual([]);
      }),
      { numRuns: 500 },
    );
  });
});
