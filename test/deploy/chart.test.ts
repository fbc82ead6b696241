import { execFile } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { parse as parseYaml } from "yaml";
import { beforeAll, describe, expect, it } from "vitest";
import { readVersions, services, tags } from "../../scripts/deploy/image-tag.mjs";
import {
  chartDir,
  helmBinary,
  imageTagsFile,
  pods,
  quantity,
  render,
  testValueSets,
  valueSets,
  type K8sObject,
  type Manifest,
  type PodOf,
} from "./support/chart.js";
import { repoRoot } from "./support/paths.js";

/** The laptop budget: memory requests of everything the chart installs, proxies included. */
const MEMORY_BUDGET = 1.5 * 1024 ** 3;

const meshcartServices = services();

/**
 * The environment variables a service reads: the keys of its config shape
 * (the compiled module scripts/config-table.mjs also reads; `tsc -b` first),
 * plus the standard OTEL_* variables services/lib/src/telemetry.ts reads.
 */
async function configShape(service: string): Promise<Record<string, { safeParse(v: unknown): { success: boolean } }>> {
  const file = path.join(repoRoot, "services", service, "dist", "config.js");
  if (!existsSync(file)) throw new Error(`${file} is missing: build first (tsc -b)`);
  const module = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  const shape = Object.values(module).find((v) => v !== null && typeof v === "object" && "GRPC_PORT" in v);
  if (!shape) throw new Error(`${file} exports no config shape`);
  return shape as Record<string, { safeParse(v: unknown): { success: boolean } }>;
}
const otelVariables = new Set(readFileSync(path.join(repoRoot, "services/lib/src/telemetry.ts"), "utf8").match(/\bOTEL_[A-Z_]+[A-Z]\b/g));

function containers(pod: PodOf): Manifest[] {
  return [...(pod.spec.initContainers ?? []), ...pod.spec.containers];
}

function imageOf(image: string): { repository: string; tag: string } {
  const at = image.lastIndexOf(":");
  return { repository: image.slice(0, at), tag: image.slice(at + 1) };
}

/** The meshcart service a container runs (its image is <prefix>/<service>:<tag>), if any. */
function serviceOf(container: { image: string }): string | undefined {
  const name = imageOf(container.image).repository.split("/").at(-1)!;
  return imageOf(container.image).repository.startsWith("meshcart/") ? name : undefined;
}

describe.each([...valueSets, ...testValueSets])("the chart with $name values", ({ file }) => {
  let objects: K8sObject[];
  let allPods: PodOf[];

  beforeAll(async () => {
    objects = await render(file ? ["-f", file] : []);
    allPods = pods(objects);
  });

  it("renders each object once (Helm refuses a release that creates the same object twice)", () => {
    const keys = objects.map((o) => `${o.apiVersion.split("/")[0]} ${o.kind} ${o.metadata.namespace ?? "meshcart"}/${o.metadata.name}`);
    expect(keys.filter((key, i) => keys.indexOf(key) !== i)).toEqual([]);
  });

  it("gives every container requests, a memory limit, a locked-down securityContext and named ports", () => {
    for (const pod of allPods) {
      const where = `${pod.owner.kind}/${pod.owner.metadata.name}`;
      expect(pod.spec.securityContext?.runAsNonRoot, where).toBe(true);
      expect(pod.spec.securityContext?.seccompProfile?.type, where).toBe("RuntimeDefault");
      expect(pod.spec.automountServiceAccountToken, where).toBe(false);
      for (const c of containers(pod)) {
        const at = `${where} container ${c.name}`;
        expect(c.resources?.requests?.cpu, at).toBeDefined();
        expect(c.resources?.requests?.memory, at).toBeDefined();
        expect(c.resources?.limits?.memory, at).toBeDefined();
        expect(c.securityContext, at).toMatchObject({
          allowPrivilegeEscalation: false,
          readOnlyRootFilesystem: true,
          runAsNonRoot: true,
          capabilities: { drop: ["ALL"] },
          seccompProfile: { type: "RuntimeDefault" },
        });
        for (const port of c.ports ?? []) expect(port.name, `${at} port ${port.containerPort}`).toMatch(/^[a-z0-9-]{1,15}$/);
      }
    }
  });

  it("probes every long-running container; the services with httpGet on the admin port", () => {
    for (const pod of allPods.filter((p) => !p.isTest)) {
      for (const c of pod.spec.containers) {
        const at = `${pod.owner.metadata.name}/${c.name}`;
        for (const probe of ["startupProbe", "livenessProbe", "readinessProbe"]) expect(c[probe], `${at} ${probe}`).toBeDefined();
        if (serviceOf(c)) {
          expect(c.startupProbe.httpGet).toEqual({ path: "/healthz", port: "admin" });
          expect(c.livenessProbe.httpGet).toEqual({ path: "/healthz", port: "admin" });
          expect(c.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "admin" });
        }
      }
    }
    // Test pods run once and exit: they have no probes, and are hooks.
    for (const pod of allPods.filter((p) => p.owner.kind === "Pod")) expect(pod.isTest).toBe(true);
  });

  it("names every Service port, never makes gRPC opaque, and targets a port its pods have", () => {
    const services = objects.filter((o) => o.kind === "Service");
    expect(services.length).toBeGreaterThan(0);
    for (const svc of services) {
      const selected = allPods.filter((p) => Object.entries(svc.spec.selector ?? {}).every(([k, v]) => p.labels[k] === v));
      expect(selected.length, `Service ${svc.metadata.name} selects no pods`).toBeGreaterThan(0);
      for (const port of svc.spec.ports) {
        const at = `Service ${svc.metadata.name} port ${port.port}`;
        expect(port.name, at).toMatch(/^[a-z0-9-]{1,15}$/);
        expect([undefined, "kubernetes.io/h2c"], at).toContain(port.appProtocol);
        expect(typeof port.targetPort, `${at}: target a named container port`).toBe("string");
        for (const pod of selected) {
          const names = pod.spec.containers.flatMap((c: Manifest) => (c.ports ?? []).map((p: Manifest) => p.name));
          expect(names, `${at} -> ${pod.owner.metadata.name}`).toContain(port.targetPort);
        }
      }
    }
  });

  it("uses every ServiceAccount, and every pod runs as one of them", () => {
    const accounts = objects.filter((o) => o.kind === "ServiceAccount").map((o) => o.metadata.name);
    const used = new Set(allPods.map((p) => p.spec.serviceAccountName));
    expect([...used].sort()).toEqual([...accounts].sort());
    for (const o of objects.filter((o) => o.kind === "ServiceAccount")) expect((o as Manifest).automountServiceAccountToken).toBe(false);
  });

  it("tags the meshcart images by content and pins every other image", () => {
    const expected = tags();
    for (const pod of allPods) {
      for (const c of containers(pod)) {
        const { repository, tag } = imageOf(c.image);
        expect(tag, c.image).not.toMatch(/^(latest|)$/);
        const service = serviceOf(c);
        if (service) {
          expect(repository).toBe(`meshcart/${service}`);
          expect(tag, `${c.image} is not the content tag`).toBe(expected[service]);
          expect(c.imagePullPolicy).toBe("IfNotPresent");
        } else {
          expect(tag, c.image).toMatch(/^v?[0-9]+\.[0-9]+(\.[0-9]+)?/);
        }
      }
    }
  });

  it("sets only variables the services read, with values their schemas accept", async () => {
    const services = new Set<string>();
    for (const pod of allPods) {
      for (const c of containers(pod)) {
        const service = serviceOf(c);
        if (!service) continue;
        services.add(service);
        const shape = await configShape(service);
        for (const variable of c.env ?? []) {
          const at = `${pod.owner.metadata.name}/${c.name} ${variable.name}`;
          if (variable.name.startsWith("OTEL_")) {
            expect(otelVariables.has(variable.name), `${at}: services/lib/src/telemetry.ts does not read it`).toBe(true);
            continue;
          }
          // Node's own: the heap size, checked against the limit below.
          if (variable.name === "NODE_OPTIONS") continue;
          expect(Object.keys(shape), `${at}: not in services/${service}/src/config.ts`).toContain(variable.name);
          if (variable.value !== undefined) expect(shape[variable.name]!.safeParse(variable.value).success, `${at}=${variable.value}`).toBe(true);
        }
      }
    }
    for (const service of services) expect(meshcartServices, `${service} has no Dockerfile target`).toContain(service);
  });

  it("sizes Node's heap below each service container's memory limit, leaving room for what the heap size does not bound", () => {
    for (const pod of allPods.filter((p) => !p.isTest)) {
      for (const c of containers(pod).filter((x: Manifest) => serviceOf(x))) {
        const at = `${pod.owner.metadata.name}/${c.name}`;
        const options = (c.env ?? []).find((e: Manifest) => e.name === "NODE_OPTIONS")?.value ?? "";
        const heapMiB = Number(/^--max-old-space-size=(\d+)$/.exec(options)?.[1]);
        expect(heapMiB, `${at}: NODE_OPTIONS ${JSON.stringify(options)}`).toBeGreaterThan(0);
        const limitMiB = quantity(c.resources.limits.memory) / 1024 ** 2;
        const requestMiB = quantity(c.resources.requests.memory) / 1024 ** 2;
        // The young generation, code and native memory live beside the old space, within the same limit.
        expect(heapMiB, `${at}: old space ${heapMiB} MiB in a ${limitMiB} MiB limit`).toBeLessThanOrEqual(limitMiB * 0.6);
        expect(requestMiB, `${at}: request within its limit`).toBeLessThanOrEqual(limitMiB);
      }
    }
  });

  it("shuts down within the grace period, with a drain delay, and order retries left to Linkerd", () => {
    for (const pod of allPods.filter((p) => !p.isTest)) {
      const app = pod.spec.containers.find((c: Manifest) => serviceOf(c));
      if (!app) continue;
      const env = Object.fromEntries((app.env ?? []).map((e: Manifest) => [e.name, e]));
      const drain = Number(env.SHUTDOWN_DRAIN_DELAY_MS.value);
      const timeout = Number(env.SHUTDOWN_TIMEOUT_MS.value);
      expect(drain).toBeGreaterThan(0);
      expect(pod.spec.terminationGracePeriodSeconds * 1000).toBeGreaterThan(drain + timeout);
      expect(env.POD_NAME.valueFrom).toEqual({ fieldRef: { fieldPath: "metadata.name" } });
      // One retry layer in the cluster: the mesh's (proto/mesh.yaml), never the apps' own on top.
      if (serviceOf(app) === "order") expect(env.ORDER_CLIENT_RETRIES.value).toBe("0");
      if (serviceOf(app) === "loadgen") expect(env.LOADGEN_RESTOCK_RETRIES.value).toBe("0");
      const strategy = pod.owner.spec.strategy;
      expect(strategy).toMatchObject({ type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0 } });
    }
  });

  it("sets the proxy's resources on every meshed pod and stays within the laptop budget", () => {
    let total = 0;
    for (const pod of allPods) {
      const meshed = pod.annotations["linkerd.io/inject"] === "enabled";
      const proxy = meshed ? pod.annotations["config.linkerd.io/proxy-memory-request"] : "0";
      expect(proxy, `${pod.owner.metadata.name}: proxy memory request annotation`).toBeDefined();
      const app = pod.spec.containers.reduce((sum: number, c: Manifest) => sum + quantity(c.resources.requests.memory), 0);
      total += pod.replicas * (app + quantity(proxy!));
    }
    expect(total, `memory requests add up to ${(total / 1024 ** 2).toFixed(0)} MiB`).toBeLessThanOrEqual(MEMORY_BUDGET);
  });

  it("has a PodDisruptionBudget for every service workload", () => {
    const workloads = objects.filter((o) => o.kind === "Deployment" && o.spec.template.spec.containers.some((c: Manifest) => serviceOf(c)));
    const budgets = objects.filter((o) => o.kind === "PodDisruptionBudget");
    for (const w of workloads) {
      const match = budgets.find((b) => JSON.stringify(b.spec.selector.matchLabels) === JSON.stringify(w.spec.selector.matchLabels));
      expect(match, `no PodDisruptionBudget for ${w.metadata.name}`).toBeDefined();
    }
  });
});

describe("the chart's defaults", () => {
  let objects: K8sObject[];
  beforeAll(async () => {
    objects = await render();
  });

  // values.schema.json: a wrong value fails the install with a message naming it.
  it.each([
    ["storefront.replicas=two", "at '/storefront/replicas': got string, want integer"],
    ["payment.canary.weight=150", "at '/payment/canary/weight': maximum: got 150, want 100"],
    ["storefront.nodePort=80", "at '/storefront/nodePort': minimum: got 80"],
    ["loadgen.restockRetries=-1", "at '/loadgen/restockRetries': minimum: got -1, want 0"],
    ["replica=3", "additional properties 'replica' not allowed"],
  ])("refuses --set %s with a message that names the value", async (set, message) => {
    await expect(render(["--set", set])).rejects.toThrow(message);
  });

  it("runs two pods of storefront, order, payment v1 and inventory, one of the rest (presenter included)", () => {
    const replicas = Object.fromEntries(
      objects.filter((o) => o.kind === "Deployment" || o.kind === "StatefulSet").map((o) => [o.metadata.name, o.spec.replicas]),
    );
    expect(replicas).toEqual({
      storefront: 1,
      order: 1,
      "payment-v1": 2,
      inventory: 2,
      fulfillment: 1,
      loadgen: 1,
      presenter: 1,
      postgres: 1,
      nats: 1,
      jaeger: 1,
      grafana: 1,
    });
  });

  it("labels payment's versions and gives each its own Service, v2 off", async () => {
    const v1 = objects.find((o) => o.kind === "Deployment" && o.metadata.name === "payment-v1")!;
    expect(v1.spec.template.metadata.labels.version).toBe("v1");
    expect(objects.some((o) => o.metadata.name === "payment-v2")).toBe(false);
    const canary = await render(["--set", "payment.v2.enabled=true"]);
    const v2 = canary.find((o) => o.kind === "Deployment" && o.metadata.name === "payment-v2")!;
    expect(v2.spec.template.metadata.labels.version).toBe("v2");
    const env = Object.fromEntries(v2.spec.template.spec.containers[0].env.map((e: Manifest) => [e.name, e.value]));
    expect(env.SERVICE_VERSION).toBe("v2");
    const services = canary.filter((o) => o.kind === "Service").map((o) => o.metadata.name);
    expect(services).toEqual(expect.arrayContaining(["payment", "payment-v1", "payment-v2"]));
    expect(canary.find((o) => o.metadata.name === "payment-v2" && o.kind === "Service")!.spec.selector).toEqual({
      "app.kubernetes.io/name": "payment",
      version: "v2",
    });
  });

  it("exposes storefront on the NodePort kind maps to the host", () => {
    const kind = parseYaml(readFileSync(path.join(repoRoot, "k8s/kind-config.yaml"), "utf8"));
    const mapping = kind.nodes[0].extraPortMappings[0];
    const storefront = objects.find((o) => o.kind === "Service" && o.metadata.name === "storefront")!;
    expect(storefront.spec.type).toBe("NodePort");
    expect(storefront.spec.ports[0].nodePort).toBe(mapping.containerPort);
    expect(mapping).toMatchObject({ hostPort: mapping.containerPort, listenAddress: "127.0.0.1" });
    expect(kind.nodes[0].image).toMatch(/^kindest\/node:v1\.35\.\d+@sha256:[0-9a-f]{64}$/);
  });

  it("names where the kind node image's digest comes from: the release notes of the pinned kind", () => {
    // kind supports a node image only with the release that built it, by
    // digest; its release notes list them. Bumping KIND_VERSION without
    // taking the image from the new notes leaves this URL behind.
    const text = readFileSync(path.join(repoRoot, "k8s/kind-config.yaml"), "utf8");
    const { KIND_VERSION } = readVersions();
    const cited = [...text.matchAll(/https:\/\/github\.com\/kubernetes-sigs\/kind\/releases\/tag\/v([0-9.]+)/g)].map((m) => m[1]);
    expect(cited).toEqual([KIND_VERSION]);
  });

  it("runs the helm test pods' proxies as native sidecars, by annotation, so that the pods complete", () => {
    const tests = pods(objects).filter((p) => p.isTest);
    expect(tests.length).toBeGreaterThan(0);
    for (const pod of tests) {
      // The annotation linkerd2 version-2.20 reads first (pkg/k8s/labels.go, ProxyEnableNativeSidecarAnnotation).
      expect(pod.annotations["config.linkerd.io/proxy-enable-native-sidecar"], pod.owner.metadata.name).toBe("true");
      expect(pod.spec.restartPolicy).toBe("Never");
    }
  });

  it("stops an upgrade that would change the Postgres volume claim, saying what the cluster has and what to do", async () => {
    // The guard gets the live StatefulSet from lookup, which `helm template`
    // never answers: here a copy of the chart hands it the one an install
    // with storage 1Gi and class "standard" leaves behind.
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "meshcart-chart-live-"));
    const copy = path.join(dir, "meshcart");
    await fs.cp(chartDir, copy, { recursive: true, dereference: true });
    const live =
      '(dict "spec" (dict "volumeClaimTemplates" (list (dict "spec" (dict "storageClassName" "standard" "resources" (dict "requests" (dict "storage" "1Gi")))))))';
    await fs.writeFile(
      path.join(copy, "templates", "zz-live-postgres.yaml"),
      `{{- include "meshcart.postgresClaimUnchanged" (dict "root" . "live" ${live}) }}\n`,
    );
    const template = (...set: string[]) =>
      promisify(execFile)(
        helmBinary(),
        [
          "template",
          "meshcart",
          copy,
          "--namespace",
          "meshcart",
          "--kube-version",
          readVersions().KUBERNETES_SCHEMA_VERSION!,
          "-f",
          tagsFile,
          ...set.flatMap((s) => ["--set", s]),
        ],
        {
          maxBuffer: 64 * 1024 * 1024,
        },
      );
    const tagsFile = await imageTagsFile();
    try {
      await expect(template("postgres.storage=1Gi", "postgres.storageClassName=standard")).resolves.toBeDefined();
      await expect(template("postgres.storage=2Gi", "postgres.storageClassName=standard")).rejects.toThrow(
        "postgres.storage is 1Gi in the installed release and cannot become 2Gi",
      );
      await expect(template("postgres.storage=1Gi")).rejects.toThrow('postgres.storageClassName is "standard" in the installed release and cannot become ""');
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
    // And the values say so before anyone tries.
    const schema = JSON.parse(readFileSync(path.join(chartDir, "values.schema.json"), "utf8"));
    expect(schema.properties.postgres.properties.storage.description).toContain("Fixed at install");
    expect(readFileSync(path.join(chartDir, "values.yaml"), "utf8")).toMatch(/Fixed at install[^\n]*\n\s*storage:/);
  });

  it("keeps the generated credentials across upgrades", () => {
    for (const name of ["postgres", "storefront-jwt"]) {
      const secret = objects.find((o) => o.kind === "Secret" && o.metadata.name === name)!;
      expect(secret.metadata.annotations?.["helm.sh/resource-policy"]).toBe("keep");
    }
    const template = readFileSync(path.join(repoRoot, "helm/meshcart/templates/secret.yaml"), "utf8");
    expect(template).toContain('lookup "v1" "Secret" .Release.Namespace "postgres"');
    expect(template).toContain('lookup "v1" "Secret" .Release.Namespace "storefront-jwt"');
    const pg = objects.find((o) => o.kind === "Secret" && o.metadata.name === "postgres")!;
    for (const service of ["inventory", "payment", "order"]) {
      expect(pg.stringData![`${service}-database-url`]).toMatch(
        new RegExp(`^postgres://meshcart_${service}:[A-Za-z0-9]{32}@postgres\\.meshcart\\.svc\\.cluster\\.local:5432/meshcart_${service}$`),
      );
    }
  });

  it("lets Grafana read viz's Prometheus and Jaeger's query API, and provisions both data sources", () => {
    const policyOf = (name: string, ns?: string) =>
      objects.find((o) => o.kind === "AuthorizationPolicy" && o.metadata.name === name && o.metadata.namespace === ns)!;
    const identitiesOf = (policy: K8sObject) =>
      policy.spec.requiredAuthenticationRefs.flatMap(
        (ref: Manifest) =>
          objects.find((o) => o.kind === ref.kind && o.metadata.name === ref.name && o.metadata.namespace === policy.metadata.namespace)!.spec.identityRefs,
      );
    const prometheus = policyOf("meshcart-grafana", "linkerd-viz");
    expect(prometheus.spec.targetRef).toEqual({ group: "policy.linkerd.io", kind: "Server", name: "prometheus-admin" });
    expect(identitiesOf(prometheus)).toEqual([{ kind: "ServiceAccount", name: "grafana", namespace: "meshcart" }]);
    const jaeger = policyOf("jaeger-http-query-trace-queries.grafana");
    const route = objects.find((o) => o.kind === "HTTPRoute" && o.metadata.name === jaeger.spec.targetRef.name)!;
    const server = objects.find((o) => o.kind === "Server" && o.metadata.name === route.spec.parentRefs[0].name)!;
    expect(server.spec.port).toBe("http-query");
    expect(route.spec.rules[0].matches).toEqual([{ path: { type: "PathPrefix", value: "/jaeger" } }]);
    expect(identitiesOf(jaeger)).toEqual([{ kind: "ServiceAccount", name: "grafana" }]);
    const provisioning = objects.find((o) => o.kind === "ConfigMap" && o.metadata.name === "grafana-provisioning")!;
    const datasources = parseYaml(provisioning.data!["datasources.yaml"]!).datasources;
    // Jaeger serves under /jaeger (its base_path, for the viz dashboard's proxy).
    expect(datasources.map((d: Manifest) => [d.type, d.url])).toEqual([
      ["prometheus", "http://prometheus.linkerd-viz.svc.cluster.local:9090"],
      ["jaeger", "http://jaeger-query.meshcart.svc.cluster.local:16686/jaeger"],
    ]);
    const jaegerConfig = parseYaml(objects.find((o) => o.kind === "ConfigMap" && o.metadata.name === "jaeger")!.data!["config.yaml"]!);
    expect(jaegerConfig.extensions.jaeger_query.base_path).toBe("/jaeger");
  });

  it("lets the viz dashboard's web server through to Grafana and Jaeger, which serve the paths it proxies", () => {
    // linkerd2 version-2.20 web/srv/server.go: /grafana/* goes to grafana.url with
    // /grafana cut off, /jaeger/* to jaegerUrl unchanged; both requests leave
    // the web pod, ServiceAccount web in linkerd-viz, through its proxy.
    const policies = objects.filter((o) => o.kind === "AuthorizationPolicy" && o.metadata.name.endsWith(".viz-dashboard"));
    const auth = objects.find((o) => o.kind === "MeshTLSAuthentication" && o.metadata.name === "viz-dashboard")!;
    expect(auth.spec.identityRefs).toEqual([{ kind: "ServiceAccount", name: "web", namespace: "linkerd-viz" }]);
    const reached = policies.map((p) => {
      const route = objects.find((o) => o.kind === "HTTPRoute" && o.metadata.name === p.spec.targetRef.name)!;
      const server = objects.find((o) => o.kind === "Server" && o.metadata.name === route.spec.parentRefs[0].name)!;
      return [server.spec.podSelector.matchLabels["app.kubernetes.io/name"], server.spec.port, route.spec.rules[0].matches[0].path.value];
    });
    expect(reached.sort()).toEqual([
      ["grafana", "http", "/"],
      ["jaeger", "http-query", "/jaeger"],
    ]);
    const grafana = objects.find((o) => o.kind === "Deployment" && o.metadata.name === "grafana")!;
    const env = Object.fromEntries(grafana.spec.template.spec.containers[0].env.map((e: Manifest) => [e.name, e.value]));
    expect(env.GF_SERVER_ROOT_URL).toMatch(/\/grafana\/$/);
    expect(env.GF_SERVER_SERVE_FROM_SUB_PATH).toBe("false");
  });

  it("provisions every dashboard of dashboards/ in Grafana", () => {
    const dir = path.join(repoRoot, "dashboards");
    const files = existsSync(dir) ? readdirSorted(dir).filter((f) => f.endsWith(".json")) : [];
    const dashboards = objects.find((o) => o.kind === "ConfigMap" && o.metadata.name === "grafana-dashboards")!;
    expect(Object.keys(dashboards.data ?? {}).sort()).toEqual(files);
    // The same dashboards, as compact JSON (helm/meshcart/templates/grafana.yaml says why).
    for (const f of files) expect(JSON.parse(dashboards.data![f]!)).toEqual(JSON.parse(readFileSync(path.join(dir, f), "utf8")));
    expect(JSON.stringify(dashboards.data).length, "the dashboards must fit a kubectl apply's annotation (256 KiB)").toBeLessThan(240 * 1024);
  });

  it("runs the load generator against the storefront, forever and gently, with the storefront's key and no Service", async () => {
    const loadgen = objects.find((o) => o.kind === "Deployment" && o.metadata.name === "loadgen")!;
    expect(loadgen, "the load generator is on by default").toBeDefined();
    const pod = loadgen.spec.template.spec;
    expect(pod.serviceAccountName).toBe("loadgen");
    const env = Object.fromEntries(pod.containers[0].env.map((e: Manifest) => [e.name, e]));
    expect(env.STOREFRONT_ADDRESS.value).toBe("storefront.meshcart.svc.cluster.local:50051");
    expect(env.INVENTORY_ADDRESS.value).toBe("inventory.meshcart.svc.cluster.local:50051");
    expect(env.STOREFRONT_JWT_SECRET.valueFrom).toEqual({ secretKeyRef: { name: "storefront-jwt", key: "secret" } });
    const storefront = objects.find((o) => o.kind === "Deployment" && o.metadata.name === "storefront")!;
    const storefrontEnv = storefront.spec.template.spec.containers[0].env.find((e: Manifest) => e.name === "STOREFRONT_JWT_SECRET");
    expect(env.STOREFRONT_JWT_SECRET.valueFrom).toEqual(storefrontEnv.valueFrom);
    expect(env.LOADGEN_RPS.value).toBe("5");
    expect(env.LOADGEN_DURATION.value).toBe("forever");
    expect(objects.some((o) => o.kind === "Service" && o.metadata.name === "loadgen")).toBe(false);
    // The name e2e.sh and images.sh find it by: the Dockerfile's target.
    expect(meshcartServices).toContain("loadgen");
    const off = await render(["--set", "loadgen.enabled=false"]);
    expect(off.some((o) => o.metadata.name === "loadgen")).toBe(false);
  });

  it("opens the fault-control endpoint on payment and inventory only, on a named port no Service exposes", () => {
    for (const d of objects.filter((o) => o.kind === "Deployment" && o.spec.template.spec.containers.some((c: Manifest) => serviceOf(c)))) {
      const c = d.spec.template.spec.containers[0];
      const env = (c.env ?? []).find((e: Manifest) => e.name === "FAULT_CONTROL_PORT");
      const port = (c.ports ?? []).find((p: Manifest) => p.name === "faults");
      if (["payment", "inventory"].includes(serviceOf(c)!)) {
        expect(env?.value, d.metadata.name).toBe("9150");
        expect(port?.containerPort, d.metadata.name).toBe(9150);
      } else {
        expect(env, d.metadata.name).toBeUndefined();
        expect(port, d.metadata.name).toBeUndefined();
      }
    }
    for (const svc of objects.filter((o) => o.kind === "Service")) {
      for (const port of svc.spec.ports) expect(port.targetPort, `Service ${svc.metadata.name}`).not.toBe("faults");
    }
  });
});

describe("pod settings and extra environment from values (test/deploy/values/pod-settings.yaml)", () => {
  const settings = testValueSets.find((s) => s.name === "test pod-settings")!;
  let defaults: PodOf[];
  let set: PodOf[];
  const podOf = (podList: PodOf[], name: string) => podList.find((p) => p.owner.metadata.name === name)!;
  const envOf = (pod: PodOf) => (pod.spec.containers[0].env ?? []) as Manifest[];

  beforeAll(async () => {
    defaults = pods(await render());
    set = pods(await render(["-f", settings.file]));
  });

  it("renders no pod setting the values leave empty", () => {
    for (const pod of defaults) {
      for (const field of ["imagePullSecrets", "nodeSelector", "tolerations", "affinity"])
        expect(pod.spec[field], `${pod.owner.metadata.name} ${field}`).toBeUndefined();
    }
  });

  it("puts the chart-wide settings on every pod the chart makes: services, Postgres, NATS, Jaeger, Grafana, presenter, helm test pods", () => {
    expect(set.map((p) => p.owner.metadata.name).sort()).toEqual(defaults.map((p) => p.owner.metadata.name).sort());
    expect(set.map((p) => p.owner.kind)).toEqual(expect.arrayContaining(["Deployment", "StatefulSet", "Pod"]));
    for (const pod of set) {
      const at = `${pod.owner.kind}/${pod.owner.metadata.name}`;
      expect(pod.spec.imagePullSecrets, at).toContainEqual({ name: "registry-shop" });
      expect(pod.spec.nodeSelector, at).toMatchObject({ "kubernetes.io/os": "linux" });
      expect(pod.spec.tolerations, at).toContainEqual({ key: "meshcart.test/dedicated", operator: "Equal", value: "shop", effect: "NoSchedule" });
      expect(pod.spec.affinity, at).toBeDefined();
      expect(pod.annotations["meshcart.test/team"], at).toBeDefined();
      expect(pod.annotations["config.linkerd.io/proxy-log-level"], at).toBe("warn,linkerd=info");
    }
  });

  it("combines a workload's own settings with the chart-wide ones as values.yaml says", () => {
    const storefront = podOf(set, "storefront");
    expect(storefront.spec.imagePullSecrets).toEqual([{ name: "registry-shop" }, { name: "registry-storefront" }]);
    expect(storefront.annotations["meshcart.test/team"]).toBe("edge");
    expect(podOf(set, "order").annotations["meshcart.test/team"]).toBe("shop");
    const postgres = podOf(set, "postgres");
    expect(postgres.spec.nodeSelector).toEqual({ "kubernetes.io/os": "linux", type: "kwok" });
    expect(postgres.spec.tolerations.map((t: Manifest) => t.key)).toEqual(["meshcart.test/dedicated", "meshcart.test/storage"]);
    expect(podOf(set, "order").spec.affinity).toEqual({
      podAntiAffinity: expect.objectContaining({ preferredDuringSchedulingIgnoredDuringExecution: expect.any(Array) }),
    });
    expect(Object.keys(podOf(set, "inventory").spec.affinity)).toEqual(["nodeAffinity"]);
    expect(podOf(set, "nats").annotations["meshcart.test/backup"]).toBe("false");
    for (const test of set.filter((p) => p.isTest)) expect(test.spec.tolerations).toHaveLength(2);
  });

  it("keeps every annotation the chart sets: podAnnotations only add", () => {
    for (const pod of set) {
      const chart = podOf(defaults, pod.owner.metadata.name).annotations;
      const { "meshcart.test/team": _team, "meshcart.test/backup": _backup, "config.linkerd.io/proxy-log-level": _log, ...rest } = pod.annotations;
      expect(rest, pod.owner.metadata.name).toEqual(chart);
      expect(pod.annotations["linkerd.io/inject"], pod.owner.metadata.name).toBe("enabled");
    }
  });

  it.each([
    ["podAnnotations.linkerd\\.io/inject=disabled", "podAnnotations: linkerd.io/inject is set by the chart"],
    [
      "storefront.podAnnotations.config\\.linkerd\\.io/default-inbound-policy=all-unauthenticated",
      "podAnnotations: config.linkerd.io/default-inbound-policy is set by the chart on storefront's pods",
    ],
    ["nats.podAnnotations.config\\.linkerd\\.io/opaque-ports=", "podAnnotations: config.linkerd.io/opaque-ports is set by the chart on nats's pods"],
    ["tests.podAnnotations.helm\\.sh/hook=pre-install", "podAnnotations: helm.sh/hook is set by the chart on meshcart-test-"],
  ])("refuses --set-string %s: a pod never leaves the mesh or its policy through podAnnotations", async (value, message) => {
    await expect(render(["--set-string", value])).rejects.toThrow(message);
  });

  it("adds extraEnv after the variables the chart sets, services.extraEnv first and the workload's winning", () => {
    for (const pod of set.filter((p) => !p.isTest && serviceOf(p.spec.containers[0]))) {
      const env = envOf(pod);
      const names = env.map((e) => e.name);
      expect(new Set(names).size, `${pod.owner.metadata.name}: a variable set twice`).toBe(names.length);
      // The chart's own, unchanged and in front (so an extra may refer to them as $(NAME)).
      const chart = envOf(podOf(defaults, pod.owner.metadata.name));
      expect(env.slice(0, chart.length), pod.owner.metadata.name).toEqual(chart);
      const extra = Object.fromEntries(env.slice(chart.length).map((e) => [e.name, e.value]));
      const expected: Record<string, Record<string, string>> = {
        storefront: { GRPC_MAX_MESSAGE_BYTES: "8388608", STOREFRONT_PART_TIMEOUT_MS: "1500" },
        order: { GRPC_MAX_MESSAGE_BYTES: "2097152", ORDER_STEP_TIMEOUT_MS: "3000" },
      };
      expect(extra, pod.owner.metadata.name).toEqual(expected[pod.owner.metadata.name] ?? { GRPC_MAX_MESSAGE_BYTES: "2097152" });
    }
  });

  it.each([
    ["services.extraEnv[0].name=LOG_LEVEL,services.extraEnv[0].value=debug", "extraEnv: LOG_LEVEL of fulfillment is set by the chart"],
    ["order.extraEnv[0].name=NATS_URL,order.extraEnv[0].value=nats://elsewhere:4222", "extraEnv: NATS_URL of order is set by the chart"],
    ["loadgen.extraEnv[0].name=STOREFRONT_JWT_SECRET,loadgen.extraEnv[0].value=guess", "extraEnv: STOREFRONT_JWT_SECRET of loadgen is set by the chart"],
    ["payment.extraEnv[0].name=DATABASE_URL,payment.extraEnv[0].value=postgres://elsewhere/x", "extraEnv: DATABASE_URL of payment is set by the chart"],
  ])("refuses --set %s: extraEnv cannot override what the chart derives from its values", async (value, message) => {
    await expect(render(["--set", value])).rejects.toThrow(message);
  });

  it.each([
    ["storefront.extraEnv[0].name=PORT,storefront.extraEnv[0].value=5", "at '/storefront/extraEnv/0/value': got number, want string"],
    ["tolerations[0].operator=Maybe", "at '/tolerations/0/operator'"],
    ["imagePullSecrets[0]=regcred", "at '/imagePullSecrets/0': got string, want object"],
    ["nats.affinity.nodeAfinity.x=y", "additional properties 'nodeAfinity' not allowed"],
  ])("refuses --set %s with a message that names the value", async (value, message) => {
    await expect(render(["--set", value])).rejects.toThrow(message);
  });
});

function readdirSorted(dir: string): string[] {
  return readdirSync(dir).sort();
}
