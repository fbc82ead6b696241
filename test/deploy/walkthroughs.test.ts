import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { blocks, script, walkthroughs } from "../../scripts/deploy/walkthroughs.mjs";
import { render, type K8sObject } from "./support/chart.js";
import { repoRoot, toolsBin } from "./support/paths.js";

/*
 * The walkthroughs are make e2e's script (scripts/deploy/e2e.sh runs their
 * sh blocks). What can be checked without a cluster is checked here: the
 * scripts parse and pass shellcheck, every output the assertions read is
 * produced by a marked block, and everything the commands name exists.
 */

const read = (rel: string) => readFileSync(path.join(repoRoot, rel), "utf8");
const allBlocks = () => walkthroughs.flatMap((file: string) => blocks(read(file)).map((b: { name?: string; code: string }) => ({ file, ...b })));

describe("the walkthroughs", () => {
  let objects: K8sObject[];
  beforeAll(async () => {
    objects = await render(["--set", "payment.v2.enabled=true"]);
  });

  it("are all listed in docs/walkthroughs/README.md, and each has something to run", () => {
    const index = read("docs/walkthroughs/README.md");
    for (const file of walkthroughs) {
      expect(existsSync(path.join(repoRoot, file)), file).toBe(true);
      expect(index, file).toContain(`(${path.basename(file)})`);
      expect(blocks(read(file)).length, file).toBeGreaterThan(0);
      for (const heading of ["## What you will see", "## Run it", "## Look at", "## Why it works"]) expect(read(file), file).toContain(heading);
    }
  });

  it("produce every output that make e2e's assertions read", () => {
    const named = new Set(
      allBlocks()
        .filter((b) => b.name)
        .map((b) => b.name),
    );
    const assertions = read("scripts/deploy/e2e.sh") + read("scripts/deploy/e2e-canary.sh");
    const read_ = [...assertions.matchAll(/\$E2E_OUT\/([a-z0-9-]+)\.out/g)].map((m) => m[1]);
    expect(read_.length).toBeGreaterThan(5);
    for (const name of read_) expect(named, `no block is marked <!-- e2e: ${name} -->`).toContain(name);
    const run = [...read("scripts/deploy/e2e.sh").matchAll(/^walkthrough ([a-z-]+)$/gm)].map((m) => `docs/walkthroughs/${m[1]}.md`);
    expect(run).toEqual(walkthroughs);
  });

  it("become bash scripts that shellcheck accepts", () => {
    const shellcheck = existsSync(path.join(toolsBin, "shellcheck")) ? path.join(toolsBin, "shellcheck") : "shellcheck";
    for (const file of walkthroughs) {
      const text = `#!/usr/bin/env bash\nset -euo pipefail\n${script(file)}`;
      execFileSync("bash", ["-n"], { input: text });
      // SC2016: the single-quoted sh -c programs expand in the inner shell on purpose.
      execFileSync(shellcheck, ["--shell=bash", "--exclude=SC2016", "-"], { input: text });
    }
  });

  it("name only objects the chart renders and make targets that exist", () => {
    const names = new Set(objects.map((o) => `${o.kind}/${o.metadata.name}`));
    const makefile = read("Makefile");
    for (const b of allBlocks()) {
      for (const m of b.code.matchAll(/\bdeploy\/([a-z0-9-]+)/g)) expect(names, `${b.file}: deploy/${m[1]}`).toContain(`Deployment/${m[1]}`);
      for (const m of b.code.matchAll(/\bsvc\/([a-z0-9-]+)/g)) expect(names, `${b.file}: svc/${m[1]}`).toContain(`Service/${m[1]}`);
      for (const m of b.code.matchAll(/\b([a-z0-9-]+):50051\b/g)) expect(names, `${b.file}: ${m[1]}:50051`).toContain(`Service/${m[1]}`);
      for (const m of b.code.matchAll(/\bmake -?s? ?([a-z-]+)/g)) expect(makefile, `${b.file}: make ${m[1]}`).toMatch(new RegExp(`^${m[1]}:`, "m"));
      for (const m of b.code.matchAll(/-c (grpcurl|curl) /g)) expect(["grpcurl", "curl"]).toContain(m[1]);
    }
  });

  it("set faults with rules the services accept", async () => {
    const { parseFaultRules } = (await import(path.join(repoRoot, "services/lib/dist/faults.js"))) as {
      parseFaultRules: (v: unknown) => { ok: boolean; problems?: string[] };
    };
    let count = 0;
    for (const b of allBlocks()) {
      for (const m of b.code.matchAll(/--data '(\{.*?\})' "http:\/\/\$ip:9150\/faults"/g)) {
        expect(parseFaultRules(JSON.parse(m[1]!)), `${b.file}: ${m[1]}`).toMatchObject({ ok: true });
        count += 1;
      }
    }
    expect(count).toBeGreaterThanOrEqual(2);
  });
});
