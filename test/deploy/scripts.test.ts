import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readVersions, tags } from "../../scripts/deploy/image-tag.mjs";
import type { Manifest } from "./support/chart.js";
import { repoRoot } from "./support/paths.js";
import { STAND_INS, standInSandbox, type Call, type Result, type RunOptions, type StandInSandbox } from "./support/stand-ins.js";

/**
 * The deploy scripts against stand-in docker, kind, kubectl, helm, linkerd
 * and grpcurl (test/deploy/stand-ins): they record every call and answer
 * like the real tools from a pretend machine and cluster, so the order of
 * the steps, what a second run skips, what DRY_RUN=1 prints and the advice
 * for a missing tool can be checked without Docker or Kubernetes.
 */

const versions = readVersions();
// What the scripts may use from the machine besides the stand-ins.
const basics = [
  "bash", "sh", "env", "cat", "sed", "awk", "grep", "tr", "cut", "head", "tail", "sort", "mkdir", "rm", "mv", "cp",
  "mktemp", "dirname", "basename", "sha256sum", "base64", "uname", "df", "date", "wc", "sleep", "ls",
];

let sandbox: StandInSandbox;
let statePath: string;

beforeAll(async () => {
  sandbox = await standInSandbox("deploy-test", basics);
  statePath = sandbox.statePath;
});

afterAll(async () => {
  await sandbox?.remove();
  await fs.rm(path.join(repoRoot, ".data/deploy/images"), { recursive: true, force: true });
});

/** Runs a deploy script against the stand-ins and the current pretend state. */
function script(name: string, options: RunOptions = {}): Promise<Result> {
  return sandbox.script(name, { ...options, env: { SMOKE_REQUEST_ID: "smoke-test", ...options.env } });
}

async function setState(state: object): Promise<void> {
  await fs.writeFile(statePath, JSON.stringify(state));
}
async function getState(): Promise<Manifest> {
  return JSON.parse(await fs.readFile(statePath, "utf8"));
}

/** Splits a printed command line back into words (the quoting `quoted` in lib.sh produces). */
function words(line: string): string[] {
  const out: string[] = [];
  let current = "";
  let started = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === " " && started) {
      out.push(current);
      current = "";
      started = false;
    } else if (c === " ") {
      continue;
    } else if (c === "\\") {
      current += line[++i];
      started = true;
    } else if (c === "'") {
      const end = line.indexOf("'", i + 1);
      current += line.slice(i + 1, end);
      i = end;
      started = true;
    } else {
      current += c;
      started = true;
    }
  }
  if (started) out.push(current);
  return out;
}

/** Each traced command, as argv lists (a pipeline is two). */
function commands(lines: string[]): string[][] {
  return lines.flatMap((line) => line.split(" | ").map(words));
}

/** Whether the stand-ins saw these commands, in this order. */
function expectCalledInOrder(calls: Call[], expected: string[][]) {
  const seen = calls.map((c) => [c.tool, ...c.args]);
  let at = 0;
  for (const command of expected.filter((c) => (STAND_INS as readonly string[]).includes(c[0]!))) {
    while (at < seen.length && JSON.stringify(seen[at]) !== JSON.stringify(command)) at++;
    expect(at, `not called (in this order): ${command.join(" ")}`).toBeLessThan(seen.length);
    at++;
  }
}

const serviceTags = tags();
const services = Object.keys(serviceTags);

/** The first run on a machine with Docker and nothing else, as traced. */
const freshRunPattern: RegExp[] = [
  /^kind create cluster --name meshcart --config k8s\/kind-config\.yaml/,
  new RegExp(`^kubectl --context kind-meshcart apply --server-side -f https://github\\.com/kubernetes-sigs/gateway-api/releases/download/${versions.GATEWAY_API_VERSION}/standard-install\\.yaml$`),
  /^linkerd --context kind-meshcart check --pre$/,
  /^linkerd --context kind-meshcart install --crds \| kubectl --context kind-meshcart apply -f -$/,
  /^linkerd --context kind-meshcart install --set proxy\.tracing\.enabled=true --set proxy\.tracing\.collector\.endpoint=jaeger-collector\.meshcart\.svc\.cluster\.local:4317 --set proxy\.tracing\.collector\.meshIdentity\.serviceAccountName=jaeger --set proxy\.tracing\.collector\.meshIdentity\.namespace=meshcart \| kubectl --context kind-meshcart apply -f -$/,
  /^linkerd --context kind-meshcart check$/,
  /^kubectl --context kind-meshcart annotate namespace linkerd --overwrite meshcart\/mesh-config=[0-9a-f]{16}$/,
  /^linkerd --context kind-meshcart viz install -f k8s\/linkerd-viz-values\.yaml \| kubectl --context kind-meshcart apply -f -$/,
  /^linkerd --context kind-meshcart viz check$/,
  /^kubectl --context kind-meshcart annotate namespace linkerd-viz --overwrite meshcart\/mesh-config=[0-9a-f]{16}$/,
  ...services.flatMap((service) => {
    const ref = `meshcart/${service}:${serviceTags[service]}`.replaceAll(".", "\\.");
    const archive = `\\.data/deploy/images/${service}-${serviceTags[service]}\\.tar`;
    return [
      new RegExp(`^docker build --target ${service} --build-arg SERVICE=${service} --build-arg NODE_VERSION=${versions.NODE_VERSION!.replaceAll(".", "\\.")} --build-arg IMAGE_VERSION=${serviceTags[service]} --tag ${ref} \\.$`),
      /^mkdir -p \.data\/deploy\/images$/,
      new RegExp(`^docker save --platform linux/arm64 -o ${archive} ${ref}$`),
      new RegExp(`^kind load image-archive ${archive} --name meshcart$`),
      new RegExp(`^rm -f ${archive}$`),
    ];
  }),
  /^kubectl --context kind-meshcart create namespace meshcart$/,
  /^kubectl --context kind-meshcart annotate namespace meshcart --overwrite linkerd\.io\/inject=enabled$/,
  new RegExp(
    `^helm upgrade --install meshcart helm/meshcart --namespace meshcart --kube-context kind-meshcart ${services
      .map((s) => `--set ${s}\\.image\\.tag=${serviceTags[s]}`)
      .join(" ")} --wait --timeout 10m$`,
  ),
];

describe("make deploy against stand-in tools", () => {
  it("on a machine with only Docker: creates the cluster, meshes it, loads the images, installs the chart, in that order", async () => {
    await setState({});
    const result = await script("deploy.sh");
    expect(result.code, result.stderr).toBe(0);
    expect(result.trace.length, result.trace.join("\n")).toBe(freshRunPattern.length);
    result.trace.forEach((line, i) => expect(line).toMatch(freshRunPattern[i]!));
    expectCalledInOrder(result.calls, commands(result.trace));
    expect(result.stderr).toContain("make smoke");
    const state = await getState();
    expect(state.clusters.meshcart.release.revision).toBe(1);
    expect(state.clusters.meshcart.images.sort()).toEqual(services.map((s) => `docker.io/meshcart/${s}:${serviceTags[s]}`).sort());
  });

  it("a second run on that cluster skips everything and changes nothing", async () => {
    const before = await getState();
    const result = await script("deploy.sh");
    expect(result.code, result.stderr).toBe(0);
    expect(result.trace).toEqual([]);
    expect(result.calls.filter((c) => c.changed)).toEqual([]);
    expect(await getState()).toEqual(before);
    for (const kept of ["kind cluster meshcart", "Gateway API", "control plane", "viz", "namespace meshcart"]) {
      expect(result.stderr).toMatch(new RegExp(`==> [^\\n]*${kept}[^\\n]*\\n\\s+(exists|installed)[^\\n]*kept`));
    }
    expect(result.stderr).toContain("runs exactly this checkout: kept");
  });

  it("on an existing cluster whose images were lost: reloads them, keeps the release", async () => {
    const state = await getState();
    state.clusters.meshcart.images = [];
    await setState(state);
    const result = await script("deploy.sh");
    expect(result.code, result.stderr).toBe(0);
    expect(result.trace.filter((l) => l.startsWith("kind load image-archive"))).toHaveLength(services.length);
    expect(result.trace.some((l) => l.startsWith("docker build"))).toBe(false);
    expect(result.trace.some((l) => l.startsWith("helm") || l.startsWith("kind create") || l.startsWith("linkerd"))).toBe(false);
  });

  it("with another values file: upgrades the release only", async () => {
    const result = await script("deploy.sh", { env: { VALUES: path.join(repoRoot, "helm/meshcart/values-canary.yaml") } });
    expect(result.code, result.stderr).toBe(0);
    expect(result.trace).toHaveLength(1);
    expect(result.trace[0]).toMatch(/^helm upgrade --install meshcart helm\/meshcart .* -f \S+values-canary\.yaml --wait --timeout 10m$/);
    expect((await getState()).clusters.meshcart.release.revision).toBe(2);
  });

  it("with the same values file changed: upgrades the release, then keeps it", async () => {
    const values = path.join(sandbox.dir, "my-values.yaml");
    await fs.writeFile(values, "loadgen:\n  rps: 5\n");
    expect((await script("deploy.sh", { env: { VALUES: values } })).code).toBe(0);
    const revision = (await getState()).clusters.meshcart.release.revision;
    expect((await script("deploy.sh", { env: { VALUES: values } })).trace).toEqual([]);

    // Same arguments, other contents: what the cluster runs is no longer what this checkout installs.
    await fs.writeFile(values, "loadgen:\n  rps: 20\n");
    const changed = await script("deploy.sh", { env: { VALUES: values } });
    expect(changed.code, changed.stderr).toBe(0);
    expect(changed.trace).toHaveLength(1);
    expect(changed.trace[0]).toMatch(/^helm upgrade --install meshcart helm\/meshcart /);
    expect((await getState()).clusters.meshcart.release.revision).toBe(revision + 1);
  });

  it("with Linkerd installed under other settings: upgrades the control plane, keeps the rest", async () => {
    const state = await getState();
    state.clusters.meshcart.namespaces.linkerd["meshcart/mesh-config"] = "0000000000000000";
    await setState(state);
    const result = await script("mesh.sh");
    expect(result.code, result.stderr).toBe(0);
    expect(result.trace.map((l) => l.replace(/ --set \S+/g, ""))).toEqual([
      "linkerd --context kind-meshcart upgrade --crds | kubectl --context kind-meshcart apply -f -",
      "linkerd --context kind-meshcart upgrade | kubectl --context kind-meshcart apply -f -",
      "linkerd --context kind-meshcart check",
      expect.stringMatching(/^kubectl --context kind-meshcart annotate namespace linkerd --overwrite meshcart\/mesh-config=(?!0{16})[0-9a-f]{16}$/),
    ]);
  });

  it("with values that install no Jaeger: turns the proxies' tracing off instead of pointing it at a Jaeger that is not there", async () => {
    const traced = await script("mesh.sh");
    expect(traced.code, traced.stderr).toBe(0);
    expect(traced.trace.filter((l) => l.includes("proxy.tracing"))).toEqual([]);
    for (const file of ["values-minimal.yaml", "values-tracing-off.yaml"]) {
      const result = await script("mesh.sh", { env: { VALUES: path.join(repoRoot, "helm/meshcart", file) } });
      expect(result.code, result.stderr).toBe(0);
      const upgrade = result.trace.find((l) => /^linkerd .* upgrade (?!--crds)/.test(l));
      expect(upgrade, `${file}: ${result.trace.join("\n")}`).toMatch(/ upgrade --set proxy\.tracing\.enabled=false \|/);
      expect(upgrade).not.toContain("jaeger");
      expect(result.stderr).toContain("proxy tracing: off");
      // Back to the defaults: tracing to the chart's Jaeger again.
      const back = await script("mesh.sh");
      expect(back.trace.find((l) => /^linkerd .* upgrade (?!--crds)/.test(l))).toContain(
        "--set proxy.tracing.collector.endpoint=jaeger-collector.meshcart.svc.cluster.local:4317",
      );
    }
  });

  it("with an older Gateway API: applies the pinned one", async () => {
    const state = await getState();
    for (const crd of Object.values(state.clusters.meshcart.crds) as { bundleVersion?: string }[]) {
      if (crd.bundleVersion) crd.bundleVersion = "v1.1.0";
    }
    await setState(state);
    const result = await script("mesh.sh");
    expect(result.code, result.stderr).toBe(0);
    expect(result.trace).toEqual([
      `kubectl --context kind-meshcart apply --server-side -f https://github.com/kubernetes-sigs/gateway-api/releases/download/${versions.GATEWAY_API_VERSION}/standard-install.yaml`,
    ]);
    expect(result.stderr).toContain("installed: v1.1.0");
  });
});

describe("DRY_RUN=1", () => {
  const starts: [string, () => Promise<void>][] = [
    ["a machine with only Docker", () => setState({})],
    [
      "a cluster with the mesh but no images or release",
      async () => {
        await setState({});
        await script("cluster.sh");
        await script("mesh.sh");
      },
    ],
  ];

  it.each(starts)("prints exactly the commands a real run executes, and runs none of them (%s)", async (_, prepare) => {
    await prepare();
    const before = await fs.readFile(statePath, "utf8");
    const dry = await script("deploy.sh", { env: { DRY_RUN: "1" } });
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.calls.filter((c) => c.changed)).toEqual([]);
    expect(await fs.readFile(statePath, "utf8")).toBe(before);

    const real = await script("deploy.sh");
    expect(real.code, real.stderr).toBe(0);
    // stdout of a dry run is the commands and nothing else.
    expect(dry.stdout.trimEnd().split("\n")).toEqual(real.trace);
    expectCalledInOrder(real.calls, commands(real.trace));
  });

  it("prints the smoke test's calls too", async () => {
    const dry = await script("smoke.sh", { env: { DRY_RUN: "1" } });
    const real = await script("smoke.sh");
    expect(real.code, real.stderr).toBe(0);
    expect(real.stderr).toContain("smoke test passed: order ord_0a1b2c3d CONFIRMED");
    // Each run mints its own token (its iat is the current second), so the
    // two runs agree on everything but the token itself.
    const anyToken = (line: string) => line.replace(/Bearer(\\?) [\w-]+\.[\w-]+\.[\w-]+/, "Bearer$1 <token>");
    const dryLines = dry.stdout.trimEnd().split("\n");
    // The order id is only known once PlaceOrder has answered.
    expect(dryLines.slice(0, 2).map(anyToken)).toEqual(real.trace.slice(0, 2).map(anyToken));
    expect(words(dryLines[2]!)).toContain('{"order_id": "<order id from PlaceOrder>"}');
    expect(real.trace[0]).toBe("grpcurl -plaintext localhost:30050 list");
    expect(words(real.trace[1]!)).toEqual([
      "grpcurl", "-plaintext", "-H", expect.stringMatching(/^authorization: Bearer [\w-]+\.[\w-]+\.[\w-]+$/), "-d",
      '{"request_id": "smoke-test", "items": [{"sku": "MESH-MUG", "quantity": 1}], "payment_method": "pm_card_visa"}',
      "localhost:30050", "meshcart.storefront.v1.StorefrontService/PlaceOrder",
    ]);
  });
});

describe("a missing tool or daemon", () => {
  it.each([
    ["kind", `go install sigs.k8s.io/kind@v${versions.KIND_VERSION}`],
    ["linkerd", `LINKERD2_VERSION=${versions.LINKERD_VERSION} sh`],
    ["helm", "make tools"],
  ])("stops make deploy before it changes anything and gives make doctor's advice (%s)", async (tool, advice) => {
    await setState({});
    const result = await script("deploy.sh", { without: [tool] });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`error: ${tool} is not installed:`);
    expect(result.stderr).toContain(advice);
    expect(result.stderr).toContain("make doctor");
    expect(result.calls.filter((c) => c.changed)).toEqual([]);
    const doctor = await script("doctor.sh", { without: [tool] });
    expect(doctor.code).toBe(1);
    expect(doctor.stdout).toContain(`FAIL  ${tool}: not installed`);
    expect(doctor.stdout).toContain(advice);
  });

  it("says how to start Docker when its daemon is away", async () => {
    await setState({ docker: { daemon: false, images: [] } });
    const result = await script("deploy.sh");
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("the Docker daemon is not answering: start Docker Desktop");
    const doctor = await script("doctor.sh");
    expect(doctor.code).toBe(1);
    expect(doctor.stdout).toContain("FAIL  docker: the daemon is not answering");
  });

  it("make doctor passes with every tool at its pinned version", async () => {
    await setState({});
    const doctor = await script("doctor.sh");
    for (const tool of ["kind", "kubectl", "helm", "linkerd", "grpcurl"]) expect(doctor.stdout).toMatch(new RegExp(`^ok    ${tool} `, "m"));
    expect(doctor.stdout).toContain("image store: containerd");
  });
});

describe("make down", () => {
  it("deletes the cluster, then has nothing to delete", async () => {
    await setState({});
    await script("cluster.sh");
    const first = await script("down.sh");
    expect(first.trace).toEqual(["kind delete cluster --name meshcart"]);
    const second = await script("down.sh");
    expect(second.code).toBe(0);
    expect(second.trace).toEqual([]);
    expect(second.stderr).toContain("nothing to delete");
  });
});

describe("images without the containerd store", () => {
  it("saves without --platform (the classic store has one platform per tag)", async () => {
    await setState({ docker: { daemon: true, images: [], containerdStore: false } });
    await script("cluster.sh");
    const result = await script("images.sh");
    expect(result.code, result.stderr).toBe(0);
    const saves = result.trace.filter((l) => l.startsWith("docker save"));
    expect(saves).toHaveLength(services.length);
    for (const line of saves) expect(line).not.toContain("--platform");
  });
});

it("every deploy script passes shellcheck", async () => {
  const shellcheck = path.join(repoRoot, ".tools/bin/shellcheck");
  if (!existsSync(shellcheck)) throw new Error("shellcheck is missing: run `scripts/tools.sh shellcheck`");
  const scripts = (await fs.readdir(path.join(repoRoot, "scripts/deploy"))).filter((f) => f.endsWith(".sh")).map((f) => `scripts/deploy/${f}`);
  const result = await new Promise<{ code: number; out: string }>((resolve) =>
    execFile(shellcheck, ["-x", ...scripts, "test/deploy/stand-ins/stand-in.sh"], { cwd: repoRoot }, (error, stdout, stderr) =>
      resolve({ code: error ? 1 : 0, out: stdout + stderr }),
    ),
  );
  expect(result.out).toBe("");
  expect(result.code).toBe(0);
  expect(readFileSync(path.join(repoRoot, "Makefile"), "utf8")).toContain("scripts/deploy/*.sh");
});
