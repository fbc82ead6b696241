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
  "bash",
  "sh",
  "env",
  "cat",
  "sed",
  "awk",
  "grep",
  "tr",
  "cut",
  "head",
  "tail",
  "sort",
  "mkdir",
  "rm",
  "mv",
  "cp",
  "mktemp",
  "dirname",
  "basename",
  "sha256sum",
  "base64",
  "uname",
  "date",
  "wc",
  "sleep",
  "ls",
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
/** One tag for every image: they are all built from the same context. */
const tag = serviceTags[services[0]!]!;
const refs = services.map((s) => `meshcart/${s}:${tag}`);
const archive = `.data/deploy/images/meshcart-${tag}.tar`;
const escaped = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** The first run on a machine with Docker and nothing else, as traced. */
const freshRunPattern: RegExp[] = [
  /^kind create cluster --name meshcart --config k8s\/kind-config\.yaml/,
  new RegExp(
    `^kubectl --context kind-meshcart apply --server-side -f https://github\\.com/kubernetes-sigs/gateway-api/releases/download/${versions.GATEWAY_API_VERSION}/standard-install\\.yaml$`,
  ),
  /^linkerd --context kind-meshcart check --pre$/,
  /^linkerd --context kind-meshcart install --crds \| kubectl --context kind-meshcart apply -f -$/,
  /^linkerd --context kind-meshcart install --set proxy\.tracing\.enabled=true --set proxy\.tracing\.collector\.endpoint=jaeger-collector\.meshcart\.svc\.cluster\.local:4317 --set proxy\.tracing\.collector\.meshIdentity\.serviceAccountName=jaeger --set proxy\.tracing\.collector\.meshIdentity\.namespace=meshcart \| kubectl --context kind-meshcart apply -f -$/,
  /^linkerd --context kind-meshcart check$/,
  /^kubectl --context kind-meshcart annotate namespace linkerd --overwrite meshcart\/mesh-config=[0-9a-f]{16}$/,
  /^linkerd --context kind-meshcart viz install -f k8s\/linkerd-viz-values\.yaml --set grafana\.url=grafana\.meshcart\.svc\.cluster\.local:3000 --set jaegerUrl=jaeger-query\.meshcart\.svc\.cluster\.local:16686 \| kubectl --context kind-meshcart apply -f -$/,
  /^linkerd --context kind-meshcart viz check$/,
  /^kubectl --context kind-meshcart annotate namespace linkerd-viz --overwrite meshcart\/mesh-config=[0-9a-f]{16}$/,
  ...services.map(
    (service) =>
      new RegExp(
        `^docker buildx build --load --target ${service} --build-arg NODE_VERSION=${escaped(versions.NODE_VERSION!)} --build-arg IMAGE_VERSION=${tag} --tag ${escaped(`meshcart/${service}:${tag}`)} \\.$`,
      ),
  ),
  /^mkdir -p \.data\/deploy\/images$/,
  new RegExp(`^docker save --platform linux/arm64 -o ${escaped(archive)} ${refs.map(escaped).join(" ")}$`),
  new RegExp(`^kind load image-archive ${escaped(archive)} --name meshcart$`),
  new RegExp(`^rm -f ${escaped(archive)}$`),
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

  it("with a helm built by a plain `go install` (it assumes Kubernetes v1.20): still renders against the cluster and keeps the release", async () => {
    const state = await getState();
    const before = { ...state, helmBuild: "go-install" };
    await setState(before);
    const result = await script("deploy.sh");
    expect(result.code, result.stderr).toBe(0);
    expect(result.trace).toEqual([]);
    expect(result.stderr).toContain("runs exactly this checkout: kept");
    expect(await getState()).toEqual(before);
    // make deploy's own render (make mesh's `--show-only` question comes first).
    const render = result.calls.find((c) => c.tool === "helm" && c.args.includes("template") && !c.args.includes("--show-only"));
    expect(render?.args).toEqual(expect.arrayContaining(["--validate", "--dry-run=server", "--skip-tests"]));
    delete (before as { helmBuild?: string }).helmBuild;
    await setState(before);
  });

  it("on a cluster older than the chart's kubeVersion: stops with helm's own message and upgrades nothing", async () => {
    const state = await getState();
    state.clusters.meshcart.kubeVersion = "v1.30.2";
    await setState(state);
    const result = await script("deploy.sh");
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("helm cannot render the chart against kind-meshcart:");
    expect(result.stderr).toContain("Error: chart requires kubeVersion: >=1.31.0-0 which is incompatible with Kubernetes v1.30.2");
    expect(result.calls.filter((c) => c.tool === "helm" && c.args.includes("upgrade"))).toEqual([]);
    expect(result.calls.filter((c) => c.changed)).toEqual([]);
    delete state.clusters.meshcart.kubeVersion;
    await setState(state);
  });

  it("on an existing cluster whose images were lost: reloads them, keeps the release", async () => {
    const state = await getState();
    state.clusters.meshcart.images = [];
    await setState(state);
    const result = await script("deploy.sh");
    expect(result.code, result.stderr).toBe(0);
    // One archive holds them all.
    expect(result.trace.filter((l) => l.startsWith("kind load image-archive"))).toHaveLength(1);
    expect(result.trace.some((l) => l.startsWith("docker buildx build"))).toBe(false);
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

  it("links viz's dashboard to the chart's Grafana and Jaeger only when the values install them", async () => {
    const vizInstall = (trace: string[]) => trace.find((l) => l.includes(" viz install "));
    const linked = await script("mesh.sh");
    expect(linked.code, linked.stderr).toBe(0);
    expect(linked.stderr).toContain("installed with these settings: kept");
    const minimal = await script("mesh.sh", { env: { VALUES: path.join(repoRoot, "helm/meshcart/values-minimal.yaml") } });
    expect(minimal.code, minimal.stderr).toBe(0);
    const install = vizInstall(minimal.trace);
    expect(install, minimal.trace.join("\n")).toMatch(/ viz install -f k8s\/linkerd-viz-values\.yaml \|/);
    expect(minimal.stderr).toContain("the dashboard's links: none");
    const back = await script("mesh.sh");
    expect(vizInstall(back.trace)).toContain(
      "--set grafana.url=grafana.meshcart.svc.cluster.local:3000 --set jaegerUrl=jaeger-query.meshcart.svc.cluster.local:16686",
    );
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
    expect(real.stderr).toContain("smoke test passed: order ord_0a1b2c3d CONFIRMED through storefront's proxy, its shipment PENDING");
    // After the order, its details: the shipment fulfillment made from the event.
    expect(real.trace.at(-1)).toMatch(/\/GetOrderDetails$/);
    // Each run mints its own token (its iat is the current second), so the
    // two runs agree on everything but the token itself.
    const anyToken = (line: string) => line.replace(/Bearer(\\?) [\w-]+\.[\w-]+\.[\w-]+/, "Bearer$1 <token>");
    const dryLines = dry.stdout.trimEnd().split("\n");
    // The order id is only known once PlaceOrder has answered.
    expect(dryLines.slice(0, 2).map(anyToken)).toEqual(real.trace.slice(0, 2).map(anyToken));
    expect(words(dryLines[2]!)).toContain('{"order_id": "<order id from PlaceOrder>"}');
    expect(real.trace[0]).toBe("grpcurl -plaintext localhost:30050 list");
    expect(words(real.trace[1]!)).toEqual([
      "grpcurl",
      "-plaintext",
      "-H",
      expect.stringMatching(/^authorization: Bearer [\w-]+\.[\w-]+\.[\w-]+$/),
      "-d",
      '{"request_id": "smoke-test", "items": [{"sku": "MESH-MUG", "quantity": 1}], "payment_method": "pm_card_visa"}',
      "localhost:30050",
      "meshcart.storefront.v1.StorefrontService/PlaceOrder",
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
    expect(doctor.code, doctor.stdout).toBe(0);
    for (const tool of ["kind", "kubectl", "helm", "linkerd", "grpcurl"]) expect(doctor.stdout).toMatch(new RegExp(`^ok    ${tool} `, "m"));
    expect(doctor.stdout).toContain("image store: containerd");
    expect(doctor.stdout).toMatch(/^ok {4}docker buildx 0\.29\.1/m);
  });

  /**
   * What breaks `make images` although Docker runs (issue 13, defect 5): the
   * Dockerfile needs BuildKit (FROM --platform=$BUILDPLATFORM, RUN --mount),
   * which Linux installs without the buildx plugin lack; loading into kind
   * with the containerd image store needs `docker save --platform`, Docker
   * 28 (API 1.48). make doctor names both with the fix; make images stops
   * before it builds anything.
   */
  it.each([
    ["without the buildx plugin", { buildx: false }, /FAIL {2}docker buildx: not installed.*\n {6}fix: install Docker's buildx plugin: .*docker-buildx/],
    [
      "Docker 27 with the containerd image store",
      { version: "27.5.1", apiVersion: "1.47" },
      /FAIL {2}Docker Engine API 1\.47 with the containerd image store: .*Docker 28 \(API 1\.48\).*\n {6}fix: update Docker to 28 or newer/,
    ],
  ])("make doctor fails %s, with the fix, and make images stops before building", async (_, docker, expected) => {
    await setState({ docker: { daemon: true, images: [], containerdStore: true, ...docker } });
    const doctor = await script("doctor.sh");
    expect(doctor.code).toBe(1);
    expect(doctor.stdout).toMatch(expected);
    await script("cluster.sh");
    const images = await script("images.sh");
    expect(images.code).toBe(1);
    expect(images.stderr).toContain("make doctor");
    expect(images.calls.filter((c) => c.changed)).toEqual([]);
  });

  it("Docker 27 without the containerd image store builds: docker save needs no --platform there", async () => {
    await setState({ docker: { daemon: true, images: [], containerdStore: false, version: "27.5.1", apiVersion: "1.47" } });
    expect((await script("doctor.sh")).code).toBe(0);
  });

  it("make doctor measures the disk where Docker keeps its data, and fails below what a deploy needs", async () => {
    const dockerRoot = path.join(sandbox.dir, "docker-data");
    await fs.mkdir(dockerRoot, { recursive: true });
    await setState({ docker: { daemon: true, images: [], rootDir: dockerRoot }, diskFree: { [dockerRoot]: 7, default: 200 } });
    const low = await script("doctor.sh");
    expect(low.code).toBe(1);
    expect(low.stdout).toContain(`FAIL  free disk: 7 GiB on ${dockerRoot}, 10 GiB needed`);
    expect(low.stdout).toContain("make down");
    await setState({ docker: { daemon: true, images: [], rootDir: dockerRoot }, diskFree: { [dockerRoot]: 30, default: 1 } });
    const enough = await script("doctor.sh");
    expect(enough.stdout).toContain(`ok    free disk: 30 GiB (${dockerRoot})`);
  });
});

describe("make down", () => {
  it("deletes the cluster and the meshcart images, names what Docker still keeps, then has nothing to delete", async () => {
    await setState({ docker: { daemon: true, containerdStore: true, images: ["node:24.21.0-trixie-slim", "meshcart/order:0123456789abcdef"] } });
    await script("cluster.sh");
    await script("images.sh");
    const first = await script("down.sh");
    expect(first.code, first.stderr).toBe(0);
    expect(first.trace).toEqual(["kind delete cluster --name meshcart", `docker image rm ${refs.join(" ")}`]);
    expect((await getState()).docker.images).toEqual(["node:24.21.0-trixie-slim"]);
    expect(first.stderr).toContain("docker builder prune --filter type=exec.cachemount");
    expect(first.stderr).toContain("docker image rm $(docker image ls -q kindest/node)");
    const second = await script("down.sh");
    expect(second.code).toBe(0);
    expect(second.trace).toEqual([]);
    expect(second.stderr).toContain("nothing to delete");
    expect(second.stderr).toContain("none: nothing to remove");
  });
});

/** A pod as `kubectl get pods -o json` lists it, with Linkerd's proxy as a native sidecar. */
function pod(name: string, status: object, app = name.split("-")[0]!): object {
  return {
    metadata: { name, namespace: "meshcart" },
    spec: { initContainers: [{ name: "linkerd-proxy", restartPolicy: "Always" }], containers: [{ name: app }] },
    status: {
      phase: "Running",
      conditions: [
        { type: "PodScheduled", status: "True" },
        { type: "Ready", status: "False" },
      ],
      initContainerStatuses: [{ name: "linkerd-proxy", ready: true, started: true, state: { running: {} } }],
      ...status,
    },
  };
}
const event = (podName: string, type: string, reason: string, message: string, at: string) => ({
  involvedObject: { kind: "Pod", name: podName },
  type,
  reason,
  message,
  lastTimestamp: at,
  count: 1,
});

/** A release whose pods are stuck in the usual ways: each with what kubectl shows for it. */
const stuck = {
  pods: [
    pod("order-6f7d9c-x2x4z", {
      containerStatuses: [
        {
          name: "order",
          ready: false,
          restartCount: 4,
          state: { waiting: { reason: "CrashLoopBackOff" } },
          lastState: { terminated: { exitCode: 1, reason: "Error" } },
        },
      ],
    }),
    pod("storefront-7b8c-k9m2p", {
      containerStatuses: [
        {
          name: "storefront",
          image: "meshcart/storefront:0123456789abcdef",
          ready: false,
          state: { waiting: { reason: "ImagePullBackOff", message: 'Back-off pulling image "meshcart/storefront:0123456789abcdef"' } },
        },
      ],
    }),
    pod("payment-v1-5d4-q8w7e", { containerStatuses: [{ name: "payment", ready: false, started: true, state: { running: {} } }] }),
    pod("inventory-55f-r4t5y", {
      conditions: [
        { type: "PodScheduled", status: "True" },
        { type: "Ready", status: "True" },
      ],
      containerStatuses: [{ name: "inventory", ready: true, started: true, state: { running: {} } }],
    }),
    {
      metadata: { name: "postgres-0", namespace: "meshcart" },
      spec: { containers: [{ name: "postgres" }] },
      status: {
        phase: "Pending",
        conditions: [{ type: "PodScheduled", status: "False", reason: "Unschedulable", message: "0/1 nodes are available: 1 Insufficient memory." }],
      },
    },
  ],
  events: [
    event("order-6f7d9c-x2x4z", "Warning", "BackOff", "Back-off restarting failed container order in pod order-6f7d9c-x2x4z", "2026-01-01T10:02:00Z"),
    event("order-6f7d9c-x2x4z", "Normal", "Started", "Started container order", "2026-01-01T10:01:00Z"),
    event("payment-v1-5d4-q8w7e", "Warning", "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503", "2026-01-01T10:02:00Z"),
  ],
  logs: {
    "meshcart/order-6f7d9c-x2x4z/order/previous": '{"level":50,"msg":"invalid configuration: DATABASE_URL is required"}',
  },
};

describe("while helm waits for the pods", () => {
  async function meshedClusterWith(cluster: object, helmWait: object) {
    await setState({});
    await script("cluster.sh");
    await script("mesh.sh");
    await script("images.sh");
    const state = await getState();
    Object.assign(state.clusters.meshcart, {
      pods: { meshcart: cluster === stuck ? stuck.pods : [] },
      events: { meshcart: cluster === stuck ? stuck.events : [] },
      logs: cluster === stuck ? stuck.logs : {},
    });
    await setState({ ...state, helmWait });
  }

  it("reports, refreshed, which pods are not ready and why", async () => {
    await meshedClusterWith(stuck, { seconds: 4 });
    const result = await script("deploy.sh", { env: { PROGRESS_SECONDS: "1" } });
    expect(result.code, result.stderr).toBe(0);
    const lines = result.stderr.split("\n");
    const reports = lines.filter((l) => /^ {4}\[\dm\ds\] 1 of 5 pods ready; waiting for:$/.test(l));
    // The same state is reported once, not every second.
    expect(reports, result.stderr).toHaveLength(1);
    const reasons = Object.fromEntries(lines.filter((l) => /^ {6}\S+ {2,}/.test(l)).map((l) => l.trim().split(/ {2,}/) as [string, string]));
    expect(reasons).toEqual({
      "order-6f7d9c-x2x4z": "crash loop: order exited 1 (Error), 4 restarts: Back-off restarting failed container order in pod order-6f7d9c-x2x4z",
      "storefront-7b8c-k9m2p": 'image meshcart/storefront:0123456789abcdef: ImagePullBackOff (Back-off pulling image "meshcart/storefront:0123456789abcdef")',
      "payment-v1-5d4-q8w7e": "payment running, readiness probe not passing yet: Readiness probe failed: HTTP probe failed with statuscode: 503",
      "postgres-0": "not scheduled: 0/1 nodes are available: 1 Insufficient memory.",
    });
    // Reports come before helm's end and stop with it.
    expect(result.stderr.lastIndexOf("pods ready")).toBeLessThan(result.stderr.indexOf("meshcart is deployed"));
  });

  it("when the wait fails: the events and the last logs of each pod that is not ready", async () => {
    await meshedClusterWith(stuck, { seconds: 1, error: "Error: UPGRADE FAILED: context deadline exceeded" });
    const result = await script("deploy.sh", { env: { PROGRESS_SECONDS: "5" } });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("Error: UPGRADE FAILED: context deadline exceeded");
    expect(result.stderr).toContain("==> why pods of namespace meshcart are not ready");
    expect(result.stderr).toContain("==> pod order-6f7d9c-x2x4z: events");
    expect(result.stderr).toMatch(/ {4}Normal\tStarted\tStarted container order\n {4}Warning\tBackOff\tBack-off restarting/);
    expect(result.stderr).toContain("==> pod order-6f7d9c-x2x4z: last log lines of order (the run before its last restart)");
    expect(result.stderr).toContain('    {"level":50,"msg":"invalid configuration: DATABASE_URL is required"}');
    expect(result.stderr).toContain("==> pod payment-v1-5d4-q8w7e: last log lines of payment");
    expect(result.stderr).toContain("==> pod postgres-0: events");
    expect(result.stderr).not.toContain("pod inventory-55f-r4t5y");
    expect(result.stderr).not.toContain("meshcart is deployed");
    // Reading only: nothing changes once helm has given up.
    const helmAt = result.calls.findIndex((c) => c.tool === "helm" && c.args[0] === "upgrade");
    expect(result.calls.slice(helmAt + 1).filter((c) => c.changed)).toEqual([]);
  });

  it("says nothing while the release is quick", async () => {
    await meshedClusterWith({}, { seconds: 0 });
    const result = await script("deploy.sh", { env: { PROGRESS_SECONDS: "5" } });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).not.toContain("pods ready");
  });
});

describe("make deploy with published images (IMAGES=<repository>:<version>)", () => {
  const published = { IMAGES: "ghcr.io/acme/meshcart:0.1.0" };

  it("builds and loads nothing; the chart names the published images", async () => {
    await setState({});
    const dry = await script("deploy.sh", { env: { ...published, DRY_RUN: "1" } });
    expect(dry.code, dry.stderr).toBe(0);
    const real = await script("deploy.sh", { env: published });
    expect(real.code, real.stderr).toBe(0);
    expect(dry.stdout.trimEnd().split("\n")).toEqual(real.trace);
    expect(real.trace.some((l) => l.startsWith("docker") || l.startsWith("kind load"))).toBe(false);
    const upgrade = words(real.trace.find((l) => l.startsWith("helm upgrade"))!);
    expect(upgrade).toContain("image.repository=ghcr.io/acme/meshcart");
    for (const service of services) expect(upgrade).toContain(`${service}.image.tag=0.1.0`);
    expect((await getState()).docker.images).toEqual([]);
  });

  it.each(["ghcr.io/acme/meshcart", "GHCR.io/Acme/meshcart:0.1.0", "ghcr.io/acme/meshcart:"])(
    "refuses IMAGES=%s before it changes anything",
    async (images) => {
      await setState({});
      const result = await script("deploy.sh", { env: { IMAGES: images } });
      expect(result.code).toBe(1);
      expect(result.stderr).toContain("expected <repository>:<version>");
      expect(result.calls.filter((c) => c.changed)).toEqual([]);
    },
  );
});

describe("make images", () => {
  it("builds every target, then removes the images of an older build, and loads one archive", async () => {
    const older = services.map((s) => `meshcart/${s}:0123456789abcdef`);
    await setState({ docker: { daemon: true, containerdStore: true, images: ["node:24.21.0-trixie-slim", ...older] } });
    await script("cluster.sh");
    const result = await script("images.sh");
    expect(result.code, result.stderr).toBe(0);
    expect(result.trace.filter((l) => l.startsWith("docker buildx build"))).toHaveLength(services.length);
    expect(result.trace).toContain(`docker image rm ${older.join(" ")}`);
    expect(result.trace.filter((l) => l.startsWith("kind load"))).toEqual([`kind load image-archive ${archive} --name meshcart`]);
    const state = await getState();
    expect(state.docker.images.sort()).toEqual(["node:24.21.0-trixie-slim", ...refs].sort());
    expect(state.clusters.meshcart.images.sort()).toEqual(refs.map((r) => `docker.io/${r}`).sort());
  });
});

describe("images without the containerd store", () => {
  it("saves without --platform (the classic store has one platform per tag)", async () => {
    await setState({ docker: { daemon: true, images: [], containerdStore: false } });
    await script("cluster.sh");
    const result = await script("images.sh");
    expect(result.code, result.stderr).toBe(0);
    const saves = result.trace.filter((l) => l.startsWith("docker save"));
    expect(saves).toEqual([`docker save -o ${archive} ${refs.join(" ")}`]);
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
