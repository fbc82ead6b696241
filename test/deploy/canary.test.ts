import { execFile } from "node:child_process";
import { createHmac } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { repoRoot } from "./support/paths.js";
import { standInSandbox, type Call, type Result, type StandInSandbox } from "./support/stand-ins.js";

/**
 * The payment canary's commands (scripts/deploy/canary.sh: make canary,
 * promote, rollback), make token-cluster (scripts/deploy/token.sh) and the
 * canary walkthrough's e2e assertion (scripts/deploy/e2e-canary.sh), run
 * against the recording stand-ins of test/deploy/stand-ins as
 * scripts.test.ts runs the other deploy scripts: the exact helm commands, what
 * a second run skips, that DRY_RUN=1 prints what a real run executes, and
 * the refusals of bad arguments.
 */

// What the scripts may use from the machine besides the stand-ins.
const basics = ["bash", "env", "cat", "sed", "grep", "tr", "cut", "head", "base64", "basename", "dirname"];

let sandbox: StandInSandbox;
let statePath: string;

beforeAll(async () => {
  sandbox = await standInSandbox("canary-test", basics);
  statePath = sandbox.statePath;
});

afterAll(async () => {
  await sandbox?.remove();
});

/** Runs a deploy script against the stand-ins and the current pretend state. */
function script(name: string, args: string[] = [], env: Record<string, string> = {}): Promise<Result> {
  return sandbox.script(name, { args, env });
}

// ---------------------------------------------------------------- the pretend cluster

/** The release's user-supplied values as `make deploy` leaves them: the image tags. */
const deployedValues = { storefront: { image: { tag: "0123456789abcdef" } }, payment: { image: { tag: "fedcba9876543210" } } };

/** A cluster where make deploy has run, with these values on top of the deployed ones. */
async function deployed(values: object = {}, release: { name?: string; namespace?: string } = {}): Promise<void> {
  const namespace = release.namespace ?? "meshcart";
  await fs.writeFile(
    statePath,
    JSON.stringify({
      docker: { daemon: true, images: [], containerdStore: true },
      clusters: {
        meshcart: {
          crds: {},
          images: [],
          namespaces: { default: {}, [namespace]: { "linkerd.io/inject": "enabled" } },
          release: {
            name: release.name ?? "meshcart",
            namespace,
            manifest: "# stand-in manifest\n",
            revision: 1,
            values: merge(deployedValues, values),
          },
        },
      },
    }),
  );
}

function merge(a: object, b: object): object {
  const out: Record<string, unknown> = { ...a };
  for (const [key, value] of Object.entries(b)) {
    const prior = out[key];
    out[key] = value && typeof value === "object" && prior && typeof prior === "object" ? merge(prior, value) : value;
  }
  return out;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function release(): Promise<any> {
  return JSON.parse(await fs.readFile(statePath, "utf8")).clusters.meshcart.release;
}

const v2 = (enabled: boolean, weight?: number) => ({ payment: { v2: { enabled }, ...(weight === undefined ? {} : { canary: { weight } }) } });

/** The one helm command each step of the canary runs. */
function upgrade(enabled: boolean, weight: number, { name = "meshcart", namespace = "meshcart", context = "kind-meshcart" } = {}): string {
  return (
    `helm upgrade ${name} helm/meshcart --namespace ${namespace} --kube-context ${context} --reset-then-reuse-values ` +
    `--set payment.v2.enabled=${enabled} --set payment.canary.weight=${weight} --wait --timeout 5m`
  );
}

function changes(result: Result): Call[] {
  return result.calls.filter((c) => c.changed);
}

// ---------------------------------------------------------------- tests

describe("make canary WEIGHT=n", () => {
  it.each([
    [[], "WEIGHT is required"],
    [["101"], "not '101'"],
    [["-1"], "not '-1'"],
    [["ten"], "not 'ten'"],
    [["12.5"], "not '12.5'"],
    [["050"], "not '050'"],
    [["50 "], "not '50 '"],
  ])("refuses WEIGHT %j before it touches anything", async (args, message) => {
    await deployed();
    const result = await script("canary.sh", ["set", ...args]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(message);
    expect(result.stderr).toMatch(/0 to 100/);
    expect(result.calls).toEqual([]);
  });

  it("refuses an unknown action with the usage", async () => {
    for (const args of [[], ["weight", "10"]]) {
      const result = await script("canary.sh", args);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain("usage: make canary WEIGHT=<0..100> | make promote | make rollback");
    }
  });

  it("says to deploy first when there is no release", async () => {
    await fs.writeFile(statePath, JSON.stringify({ clusters: { meshcart: { namespaces: { default: {}, meshcart: {} } } } }));
    const result = await script("canary.sh", ["set", "10"]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("no deployed Helm release meshcart in namespace meshcart of kind-meshcart: run 'make deploy' first");
    expect(changes(result)).toEqual([]);
  });

  it("with v2 off: starts v2's pods with no calls, then gives it its share; keeps every other value", async () => {
    await deployed();
    const result = await script("canary.sh", ["set", "50"]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.trace).toEqual([upgrade(true, 0), upgrade(true, 50)]);
    expect(result.calls.filter((c) => c.tool === "helm" && c.args[0] === "upgrade").map((c) => ["helm", ...c.args].join(" "))).toEqual(result.trace);
    const now = await release();
    expect(now.values).toEqual(merge(deployedValues, { payment: { v2: { enabled: true }, canary: { weight: 50 } } }));
    expect(now.revision).toBe(3);
    // How to watch it.
    expect(result.stderr).toContain("Payment v2 gets 50% of payment's calls");
    expect(result.stderr).toContain("linkerd --context kind-meshcart viz stat-outbound deploy/order -n meshcart");
    expect(result.stderr).toContain("make promote");
    expect(result.stderr).toContain("make rollback");
  });

  it("a second run with the same weight changes nothing", async () => {
    const before = await fs.readFile(statePath, "utf8");
    const result = await script("canary.sh", ["set", "50"]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.trace).toEqual([]);
    expect(changes(result)).toEqual([]);
    expect(result.stderr).toContain("in place: kept");
    expect(await fs.readFile(statePath, "utf8")).toBe(before);
  });

  it("with v2 on: changes the weight in one step, down to 0 too", async () => {
    const to20 = await script("canary.sh", ["set", "20"]);
    expect(to20.trace).toEqual([upgrade(true, 20)]);
    const to0 = await script("canary.sh", ["set", "0"]);
    expect(to0.trace).toEqual([upgrade(true, 0)]);
    expect((await release()).values.payment).toMatchObject({ v2: { enabled: true }, canary: { weight: 0 } });
  });

  it("WEIGHT=0 with v2 off only starts v2, with no calls", async () => {
    await deployed();
    const result = await script("canary.sh", ["set", "0"]);
    expect(result.trace).toEqual([upgrade(true, 0)]);
  });

  it("takes 100 and single digits", async () => {
    await deployed(v2(true, 50));
    expect((await script("canary.sh", ["set", "100"])).trace).toEqual([upgrade(true, 100)]);
    expect((await script("canary.sh", ["set", "7"])).trace).toEqual([upgrade(true, 7)]);
  });

  it("aims at MESHCART_CLUSTER, MESHCART_NAMESPACE and MESHCART_RELEASE", async () => {
    await deployed({}, { name: "shop", namespace: "demo" });
    const env = { MESHCART_NAMESPACE: "demo", MESHCART_RELEASE: "shop" };
    const result = await script("canary.sh", ["set", "30"], env);
    expect(result.code, result.stderr).toBe(0);
    expect(result.trace).toEqual([upgrade(true, 0, { name: "shop", namespace: "demo" }), upgrade(true, 30, { name: "shop", namespace: "demo" })]);
    const elsewhere = await script("canary.sh", ["set", "30"], { ...env, MESHCART_CLUSTER: "other" });
    expect(elsewhere.code).toBe(1);
    expect(changes(elsewhere)).toEqual([]);
  });
});

describe("make promote", () => {
  it("sends every call to v2 and says that v1 stays for a rollback", async () => {
    await deployed(v2(true, 20));
    const result = await script("canary.sh", ["promote"]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.trace).toEqual([upgrade(true, 100)]);
    expect(result.stderr).toMatch(/v1 stays deployed with no calls: 'make rollback' moves every call back to it at once/);
    expect(result.stderr).toContain("viz stat-outbound deploy/order");
    const again = await script("canary.sh", ["promote"]);
    expect(again.trace).toEqual([]);
    expect(changes(again)).toEqual([]);
  });

  it("with v2 off: starts it first, then every call to it", async () => {
    await deployed();
    expect((await script("canary.sh", ["promote"])).trace).toEqual([upgrade(true, 0), upgrade(true, 100)]);
  });
});

describe("make rollback", () => {
  it("moves every call back to v1 first, then removes v2's pods; then has nothing to do", async () => {
    await deployed(v2(true, 100));
    const result = await script("canary.sh", ["rollback"]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.trace).toEqual([upgrade(true, 0), upgrade(false, 0)]);
    expect((await release()).values).toEqual(merge(deployedValues, { payment: { v2: { enabled: false }, canary: { weight: 0 } } }));
    const again = await script("canary.sh", ["rollback"]);
    expect(again.code).toBe(0);
    expect(again.trace).toEqual([]);
    expect(changes(again)).toEqual([]);
    expect(again.stderr).toContain("v2 is not deployed and gets no calls: kept");
  });

  it("with v2 on at weight 0: removes its pods in one step", async () => {
    await deployed(v2(true, 0));
    expect((await script("canary.sh", ["rollback"])).trace).toEqual([upgrade(false, 0)]);
  });

  it("with v2 off but a weight left over: resets the weight", async () => {
    await deployed(v2(false, 40));
    expect((await script("canary.sh", ["rollback"])).trace).toEqual([upgrade(false, 0)]);
  });

  it("on a release that never had v2: nothing to do", async () => {
    await deployed();
    const result = await script("canary.sh", ["rollback"]);
    expect(result.code).toBe(0);
    expect(result.trace).toEqual([]);
  });
});

describe("DRY_RUN=1", () => {
  const cases: [string, object, string[]][] = [
    ["canary from v2 off", {}, ["set", "50"]],
    ["canary from another weight", v2(true, 10), ["set", "25"]],
    ["canary already in place", v2(true, 25), ["set", "25"]],
    ["promote", v2(true, 50), ["promote"]],
    ["rollback from a canary", v2(true, 50), ["rollback"]],
    ["rollback with v2 off", {}, ["rollback"]],
  ];

  it.each(cases)("prints exactly the commands a real run executes, and runs none (%s)", async (_, values, args) => {
    await deployed(values);
    const before = await fs.readFile(statePath, "utf8");
    const dry = await script("canary.sh", args, { DRY_RUN: "1" });
    expect(dry.code, dry.stderr).toBe(0);
    expect(changes(dry)).toEqual([]);
    expect(dry.calls.some((c) => c.tool === "helm" && c.args[0] === "upgrade")).toBe(false);
    expect(await fs.readFile(statePath, "utf8")).toBe(before);

    const real = await script("canary.sh", args);
    expect(real.code, real.stderr).toBe(0);
    // stdout of a dry run is the commands and nothing else.
    expect(dry.stdout.split("\n").filter(Boolean)).toEqual(real.trace);
    expect(real.stdout).toBe("");
  });
});

describe("make token-cluster", () => {
  const secret = "stand-in-storefront-signing-key-of-48-characters!!";
  const built = existsSync(path.join(repoRoot, "services/storefront/dist/mint-token.js"));

  function claims(token: string): Record<string, unknown> {
    const [header, payload, signature] = token.split(".");
    // Signed with the release's key (the stand-in Secret's), not the demo key.
    const expected = createHmac("sha256", secret).update(`${header}.${payload}`).digest("base64url");
    expect(signature).toBe(expected);
    return JSON.parse(Buffer.from(payload!, "base64url").toString("utf8"));
  }

  it.runIf(built)("prints only a token for the shopper, signed with the Secret storefront-jwt's key", async () => {
    await deployed();
    const result = await script("token.sh", ["alice"]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+\n$/);
    const token = claims(result.stdout.trim());
    expect(token).toMatchObject({ sub: "alice", iss: "meshcart-demo", aud: "meshcart-storefront" });
    expect((token.exp as number) - (token.iat as number)).toBe(3600);
    expect(result.calls.map((c) => [c.tool, ...c.args])).toEqual([
      ["kubectl", "--context", "kind-meshcart", "--namespace", "meshcart", "get", "secret", "storefront-jwt", "-o", "jsonpath={.data.secret}"],
    ]);

    const longer = await script("token.sh", ["bob", "2h"]);
    const bob = claims(longer.stdout.trim());
    expect(bob.sub).toBe("bob");
    expect((bob.exp as number) - (bob.iat as number)).toBe(7200);
  });

  it("refuses a missing customer, and a cluster without the release", async () => {
    const missing = await script("token.sh", []);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("CUSTOMER is required: make -s token-cluster CUSTOMER=alice");
    expect(missing.stdout).toBe("");

    await fs.writeFile(statePath, JSON.stringify({ clusters: { meshcart: { namespaces: { default: {}, meshcart: {} } } } }));
    const noRelease = await script("token.sh", ["alice"]);
    expect(noRelease.code).toBe(1);
    expect(noRelease.stderr).toContain("no Secret storefront-jwt in namespace meshcart of kind-meshcart: run 'make deploy' first");
    expect(noRelease.stdout).toBe("");
  });

  it.runIf(built)("passes a bad TTL's refusal on", async () => {
    await deployed();
    const result = await script("token.sh", ["alice", "forever"]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('TTL "forever" is not a duration');
    expect(result.stdout).toBe("");
  });
});

describe("the Makefile", () => {
  async function dryMake(...args: string[]): Promise<string> {
    return new Promise((resolve, reject) =>
      execFile("make", ["--no-print-directory", "-n", ...args], { cwd: repoRoot }, (error, stdout) => (error ? reject(error) : resolve(stdout))),
    );
  }

  it("has canary, promote, rollback and token-cluster targets calling the scripts", async () => {
    expect(await dryMake("canary", "WEIGHT=35")).toContain('scripts/deploy/canary.sh set "35"');
    expect(await dryMake("promote")).toContain("scripts/deploy/canary.sh promote");
    expect(await dryMake("rollback")).toContain("scripts/deploy/canary.sh rollback");
    expect(await dryMake("token-cluster", "CUSTOMER=alice", "TTL=2h")).toContain('scripts/deploy/token.sh "alice" "2h"');
    const help = readFileSync(path.join(repoRoot, "Makefile"), "utf8");
    for (const target of ["canary", "promote", "rollback", "token-cluster"]) expect(help).toMatch(new RegExp(`^${target}:.*## `, "m"));
  });
});

// ---------------------------------------------------------------- the e2e assertion

describe("assert_canary (make e2e's check of the canary walkthrough)", () => {
  const lines = (counts: Record<string, number>) => Object.entries(counts).flatMap(([line, n]) => Array<string>(n).fill(line));
  /** The canary-split output: one v1 or v2 line per order, interleaved as a split comes. */
  const split = (v1: number, v2: number) => {
    const [a, b] = [lines({ v1 }), lines({ v2 })];
    const all: string[] = [];
    while (a.length || b.length) all.push(...a.splice(0, 1), ...b.splice(0, 2));
    return all.join("\n") + "\n";
  };
  const risky = (rows: string[]) => rows.join("\n") + "\n";
  const goodRisky = risky(["v2 REJECTED RISK_SCREEN", "v1 CONFIRMED", "v1 CONFIRMED", "v2 REJECTED RISK_SCREEN", "v1 CONFIRMED"]);

  /** Runs the assertion as make e2e does (bash -euo pipefail), on these outputs. */
  async function assertCanary(outputs: { split?: string; risky?: string }, env: Record<string, string> = {}) {
    const dir = await fs.mkdtemp(path.join(sandbox.dir, "e2e-out-"));
    if (outputs.split !== undefined) await fs.writeFile(path.join(dir, "canary-split.out"), outputs.split);
    if (outputs.risky !== undefined) await fs.writeFile(path.join(dir, "canary-risky.out"), outputs.risky);
    return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
      execFile(
        "bash",
        ["-euo", "pipefail", "-c", "source scripts/deploy/e2e-canary.sh; assert_canary; echo after"],
        { cwd: repoRoot, env: { PATH: process.env.PATH, E2E_OUT: dir, ...env } },
        (error, stdout, stderr) => resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      ),
    );
  }

  it("passes a 50/50-ish split and risky orders decided by each version's rule", async () => {
    const result = await assertCanary({ split: split(18, 22), risky: goodRisky });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe("after\n");
    expect(result.stderr).toContain("canary: v2 charged 22 of 40 orders (55%), v1 18");
    expect(result.stderr).toContain("canary: pm_card_risky: 2 rejected by v2's risk screen, 3 confirmed by v1");
  });

  it.each([
    [10, 30, true],
    [30, 10, true],
    [31, 9, false],
    [9, 31, false],
    [40, 0, false],
    [0, 40, false],
  ])("takes v2's share within 25 points of half, bounds included (v1 %i, v2 %i)", async (v1, v2count, passes) => {
    const result = await assertCanary({ split: split(v1, v2count), risky: goodRisky });
    expect(result.code === 0, result.stderr).toBe(passes);
    if (!passes) expect(result.stderr).toContain(`v2 charged ${v2count} of 40 orders`);
  });

  it("tolerates blank lines and CRLF, not lines that name no version", async () => {
    const crlf = split(20, 20).replaceAll("\n", "\r\n") + "\n\n";
    expect((await assertCanary({ split: crlf, risky: goodRisky.replaceAll("\n", "\r\n") })).code).toBe(0);
    const unknown = await assertCanary({ split: split(20, 20) + "unknown\n", risky: goodRisky });
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("canary-split: lines that name no payment version (v1 or v2): 'unknown'");
  });

  it("refuses too few orders to judge", async () => {
    const result = await assertCanary({ split: split(5, 5), risky: goodRisky });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("10 orders, too few to judge a split");
  });

  it.each([
    ["v2 CONFIRMED", "v2 must reject pm_card_risky"],
    ["v2 REJECTED CARD_DECLINED", "v2 must reject pm_card_risky"],
    ["v2 REJECTED", "v2 must reject pm_card_risky"],
    ["v1 REJECTED RISK_SCREEN", "v1 has no risk screen"],
    ["v1 CONFIRMED RISK_SCREEN", "v1 has no risk screen"],
    ["v2 REJECTED RISK_SCREEN extra", "v2 must reject pm_card_risky"],
    ["unknown FAILED", "no payment version"],
  ])("fails on a risky order %j", async (row, reason) => {
    const result = await assertCanary({ split: split(20, 20), risky: risky(["v2 REJECTED RISK_SCREEN", "v1 CONFIRMED", row]) });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`canary-risky: '${row}' (${reason}`);
    expect(result.stdout).toBe("");
  });

  it("needs risky orders on both versions", async () => {
    for (const rows of [["v1 CONFIRMED", "v1 CONFIRMED"], ["v2 REJECTED RISK_SCREEN"], []]) {
      const result = await assertCanary({ split: split(20, 20), risky: risky(rows) });
      expect(result.code, rows.join(",")).toBe(1);
      expect(result.stderr).toContain("both versions must take some risky orders");
    }
  });

  it("says which output is missing", async () => {
    const noSplit = await assertCanary({ risky: goodRisky });
    expect(noSplit.code).toBe(1);
    expect(noSplit.stderr).toMatch(/no \S+\/canary-split\.out: the walkthrough's canary-split block did not run/);
    const noRisky = await assertCanary({ split: split(20, 20) });
    expect(noRisky.code).toBe(1);
    expect(noRisky.stderr).toMatch(/no \S+\/canary-risky\.out: the walkthrough's canary-risky block did not run/);
    const noDir = await assertCanary({ split: split(20, 20), risky: goodRisky }, { E2E_OUT: "" });
    expect(noDir.code).toBe(1);
    expect(noDir.stderr).toContain("E2E_OUT must name the folder");
  });
});

// ---------------------------------------------------------------- the walkthrough

describe("docs/walkthroughs/canary.md", () => {
  const doc = readFileSync(path.join(repoRoot, "docs/walkthroughs/canary.md"), "utf8");

  it("has the walkthrough sections and marks the blocks make e2e asserts on", () => {
    const sections = [...doc.matchAll(/^## (.+)$/gm)].map((m) => m[1]);
    expect(sections).toEqual(["What you will see", "Run it", "Look at", "Why it works", "Roll back"]);
    for (const name of ["canary-split", "canary-risky"]) {
      expect(doc).toMatch(new RegExp(`^<!-- e2e: ${name} -->\\n\`\`\`sh\\n`, "m"));
    }
  });

  it("runs the canary at WEIGHT=50 before the marked blocks, and rolls back at the end", () => {
    const blocks = [...doc.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
    const at = (pattern: RegExp) => blocks.findIndex((b) => pattern.test(b));
    const split = doc.indexOf("<!-- e2e: canary-split -->");
    expect(doc.indexOf("make canary WEIGHT=50")).toBeLessThan(split);
    expect(at(/make canary WEIGHT=50/)).toBeLessThan(at(/pm_card_visa/));
    expect(at(/make rollback/)).toBe(blocks.length - 2);
    expect(blocks.some((b) => b.includes("make promote"))).toBe(true);
  });

  it("has only sh blocks that bash can parse, using no tool beyond the walkthroughs' set", async () => {
    const blocks = [...doc.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
    expect(blocks.length).toBeGreaterThan(4);
    for (const block of blocks) {
      const parsed = await new Promise<number>((resolve) => {
        const child = execFile("bash", ["-n"], (error) => resolve(error ? 1 : 0));
        child.stdin!.end(block);
      });
      expect(parsed, block).toBe(0);
      // Tokens from the cluster's own key, calls through the NodePort.
      expect(block).not.toMatch(/make -s token CUSTOMER|localhost:50050|\bjq\b|port-forward/);
    }
  });
});
