import { readFileSync } from "node:fs";
import path from "node:path";
import { parse as parseYaml } from "yaml";
import { beforeAll, describe, expect, it } from "vitest";
import { authorizedEdges, durationMs, loadContract, rpcs, validate } from "../../scripts/mesh/contract.mjs";
import { renderAll } from "../../scripts/mesh/render.mjs";
import { chartDir, namespace, pods, render, valueSets, type K8sObject, type Manifest, type PodOf } from "./support/chart.js";
import { repoRoot } from "./support/paths.js";

/*
 * The chart's Linkerd objects against the mesh contract (proto/mesh.yaml):
 * whatever the generator did, the rendered manifests must hold these
 * invariants, which are checked here from the objects themselves.
 */

const contract = loadContract();

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function deepMerge(base: any, over: any): any {
  if (over === undefined) return base;
  if (base === null || typeof base !== "object" || Array.isArray(base) || typeof over !== "object" || over === null) return over;
  const out = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = deepMerge(base[k], v);
  return out;
}

function valuesOf(file?: string): Manifest {
  const defaults = parseYaml(readFileSync(path.join(chartDir, "values.yaml"), "utf8"));
  return file ? deepMerge(defaults, parseYaml(readFileSync(file, "utf8"))) : defaults;
}

function valueAt(values: Manifest, dotted: string | undefined): boolean {
  if (!dotted) return true;
  return Boolean(dotted.split(".").reduce((v: Manifest, k) => v?.[k], values));
}

const podTargets: Record<string, string | undefined> = {
  storefront: undefined,
  order: undefined,
  payment: undefined,
  inventory: undefined,
  loadgen: "loadgen.enabled",
  postgres: undefined,
  jaeger: "jaeger.enabled",
  grafana: "grafana.enabled",
};

/** The contract's edges that exist under these values (an identity or target may be switched off). */
function expectedEdges(values: Manifest): string[] {
  const on = (identity: string) => valueAt(values, contract.identities[identity]?.when);
  return authorizedEdges(contract).filter((edge: string) => {
    const [from, rest] = edge.split(" -> ");
    const to = rest!.split(":")[0]!;
    if (to === "viz-prometheus") return false; // lives in viz's namespace; checked apart
    return on(from!) && (to === "all-meshed-pods" || valueAt(values, podTargets[to]));
  });
}

const byKind = (objects: K8sObject[], kind: string) => objects.filter((o) => o.kind === kind && (o.metadata.namespace ?? namespace) === namespace);
const find = (objects: K8sObject[], kind: string, name: string) => byKind(objects, kind).find((o) => o.metadata.name === name);

function podsSelectedBy(allPods: PodOf[], selector: Manifest): PodOf[] {
  const labels = selector?.matchLabels ?? {};
  return allPods.filter((p) => Object.entries(labels).every(([k, v]) => p.labels[k] === v));
}

function containerPortNames(pod: PodOf): Set<string> {
  return new Set(pod.spec.containers.flatMap((c: Manifest) => (c.ports ?? []).map((p: Manifest) => p.name)));
}

function methodKey(m: Manifest): string {
  return m.method.method ? `${m.method.service}/${m.method.method}` : m.method.service;
}

describe.each(valueSets)("the mesh objects with $name values", ({ file }) => {
  let objects: K8sObject[];
  let allPods: PodOf[];
  let values: Manifest;

  beforeAll(async () => {
    objects = await render(file ? ["-f", file] : []);
    allPods = pods(objects);
    values = valuesOf(file);
  });

  it("puts every pod under the default-deny inbound policy", () => {
    for (const pod of allPods) {
      expect(pod.annotations["config.linkerd.io/default-inbound-policy"], pod.owner.metadata.name).toBe("deny");
    }
  });

  it("has Servers that select pods exposing their port", () => {
    const servers = byKind(objects, "Server");
    expect(servers.length).toBeGreaterThan(0);
    for (const server of servers) {
      const where = `Server/${server.metadata.name}`;
      expect(server.spec.accessPolicy, where).toBe("deny");
      if (server.spec.port === "linkerd-admin") {
        // The proxy's own port, injected at admission: every pod must be meshed.
        expect(server.spec.podSelector, where).toEqual({});
        for (const pod of allPods) expect(pod.annotations["linkerd.io/inject"], pod.owner.metadata.name).toBe("enabled");
        continue;
      }
      const selected = podsSelectedBy(allPods, server.spec.podSelector).filter((p) => !p.isTest);
      expect(selected.length, `${where} selects no pod`).toBeGreaterThan(0);
      for (const pod of selected) expect(containerPortNames(pod), `${where} on ${pod.owner.metadata.name}`).toContain(server.spec.port);
    }
  });

  it("covers every port the contract opens with a Server, and only those", () => {
    const servers = byKind(objects, "Server").map((s) => s.metadata.name).sort();
    const expected = new Set<string>();
    for (const service of Object.keys(contract.services)) expected.add(`${service}-grpc`);
    for (const edge of contract.edges) {
      for (const to of edge.to) {
        if (to === "all-meshed-pods") expected.add(edge.port);
        else if (to !== "viz-prometheus" && valueAt(values, podTargets[to])) expected.add(`${to}-${edge.port}`);
      }
    }
    expect(servers).toEqual([...expected].sort());
  });

  it("points every route at an existing parent and backends with matching ports", () => {
    for (const route of [...byKind(objects, "GRPCRoute"), ...byKind(objects, "HTTPRoute")]) {
      const where = `${route.kind}/${route.metadata.name}`;
      for (const parent of route.spec.parentRefs) {
        if (parent.kind === "Service") {
          expect(parent.group, where).toBe("core");
          const svc = find(objects, "Service", parent.name);
          expect(svc, `${where}: no Service ${parent.name}`).toBeDefined();
          expect(svc!.spec.ports.map((p: Manifest) => p.port), where).toContain(parent.port);
        } else {
          expect(parent, where).toMatchObject({ group: "policy.linkerd.io", kind: "Server" });
          expect(find(objects, "Server", parent.name), `${where}: no Server ${parent.name}`).toBeDefined();
        }
      }
      for (const rule of route.spec.rules) {
        expect(rule.matches?.length, `${where}: every rule needs a match`).toBeGreaterThan(0);
        if (route.kind === "GRPCRoute") for (const m of rule.matches) expect(m.method?.service, where).toBeTruthy();
        for (const backend of rule.backendRefs ?? []) {
          const svc = find(objects, "Service", backend.name);
          expect(svc, `${where}: no Service ${backend.name}`).toBeDefined();
          expect(svc!.spec.ports.map((p: Manifest) => p.port), where).toContain(backend.port);
        }
      }
    }
  });

  it("never lets two routes of one parent match the same call", () => {
    const seen = new Map<string, string>();
    for (const route of byKind(objects, "GRPCRoute")) {
      for (const parent of route.spec.parentRefs) {
        const parentKey = `${parent.kind}/${parent.name}`;
        for (const rule of route.spec.rules) {
          for (const m of rule.matches) {
            const key = `${parentKey} ${methodKey(m)}`;
            expect(seen.get(key), `${key} is matched by ${seen.get(key)} and ${route.metadata.name}`).toBeUndefined();
            seen.set(key, route.metadata.name);
          }
        }
      }
    }
    // A service-wide match overlaps any method match of that service.
    for (const key of seen.keys()) {
      const [parentKey, method] = key.split(" ");
      if (!method!.includes("/")) {
        for (const other of seen.keys()) expect(other.startsWith(`${parentKey} ${method}/`), `${key} overlaps ${other}`).toBe(false);
      }
    }
  });

  it("matches every RPC of the contract with exactly the retries and timeouts it allows", () => {
    const outbound = byKind(objects, "GRPCRoute").filter((r) => r.spec.parentRefs[0].kind === "Service");
    for (const rpc of rpcs(contract)) {
      const route = outbound.find((r) =>
        r.spec.parentRefs[0].name === rpc.service &&
        r.spec.rules.some((rule: Manifest) => rule.matches.some((m: Manifest) => methodKey(m) === `${rpc.fqService}/${rpc.method}`)),
      );
      const where = `${rpc.service}.${rpc.method}`;
      expect(route, `${where} has no route`).toBeDefined();
      const a = route!.metadata.annotations ?? {};
      if (rpc.retry.length > 0) {
        expect(rpc.idempotent, where).toBe(true);
        expect(a["retry.linkerd.io/grpc"]?.split(",").sort(), where).toEqual([...rpc.retry].sort());
        expect(a["retry.linkerd.io/limit"], where).toBe(String(rpc.limit));
      } else {
        expect(a["retry.linkerd.io/grpc"], where).toBeUndefined();
        expect(a["retry.linkerd.io/http"], where).toBeUndefined();
      }
      expect(a["retry.linkerd.io/timeout"], where).toBe(rpc.attempt);
      expect(a["timeout.linkerd.io/request"], where).toBe(rpc.request);
      if (rpc.streaming) expect(Object.keys(a).filter((k) => k.includes("linkerd.io/")), where).toEqual([]);
      if (rpc.service === contract.rateLimit.server) expect(a["retry.linkerd.io/grpc"] ?? "", where).not.toContain("resource-exhausted");
    }
  });

  it("splits every payment route with the same weights while v2 runs", () => {
    const paymentRoutes = byKind(objects, "GRPCRoute").filter((r) => r.spec.parentRefs[0].kind === "Service" && r.spec.parentRefs[0].name === "payment");
    expect(paymentRoutes.length).toBeGreaterThan(1);
    const splits = paymentRoutes.flatMap((r) => r.spec.rules.map((rule: Manifest) => JSON.stringify(rule.backendRefs ?? null)));
    expect(new Set(splits).size, "every payment rule carries the same backends").toBe(1);
    if (values.payment.v2.enabled) {
      const backends = JSON.parse(splits[0]!);
      const weight = values.payment.canary.weight;
      expect(backends).toEqual([
        { name: "payment-v1", port: values.services.grpcPort, weight: 100 - weight },
        { name: "payment-v2", port: values.services.grpcPort, weight },
      ]);
    } else {
      expect(splits[0]).toBe("null");
    }
  });

  it("references existing targets and authentications from every policy", () => {
    const accounts = new Set(byKind(objects, "ServiceAccount").map((s) => s.metadata.name));
    for (const authn of byKind(objects, "MeshTLSAuthentication")) {
      for (const ref of authn.spec.identityRefs ?? []) {
        if (ref.namespace && ref.namespace !== namespace) continue; // viz's Prometheus
        expect(accounts, `MeshTLSAuthentication/${authn.metadata.name}`).toContain(ref.name);
      }
    }
    for (const policy of byKind(objects, "AuthorizationPolicy")) {
      const where = `AuthorizationPolicy/${policy.metadata.name}`;
      expect(find(objects, policy.spec.targetRef.kind, policy.spec.targetRef.name), `${where}: no target`).toBeDefined();
      expect(policy.spec.requiredAuthenticationRefs, where).toHaveLength(1);
      for (const ref of policy.spec.requiredAuthenticationRefs) {
        expect(find(objects, ref.kind, ref.name), `${where}: no ${ref.kind}/${ref.name}`).toBeDefined();
      }
    }
    const limit = byKind(objects, "HTTPLocalRateLimitPolicy");
    expect(limit).toHaveLength(1);
    expect(find(objects, "Server", limit[0]!.spec.targetRef.name)).toBeDefined();
    for (const o of limit[0]!.spec.overrides ?? []) for (const c of o.clientRefs) expect(accounts).toContain(c.name);
  });

  it("authorizes exactly the edges of the contract", () => {
    const rendered: string[] = [];
    for (const policy of byKind(objects, "AuthorizationPolicy")) {
      const caller = callerOf(find(objects, policy.spec.requiredAuthenticationRefs[0].kind, policy.spec.requiredAuthenticationRefs[0].name)!);
      const target = find(objects, policy.spec.targetRef.kind, policy.spec.targetRef.name)!;
      const serverOf = (name: string) => find(objects, "Server", name)!;
      if (target.kind === "Server") {
        rendered.push(`${caller} -> ${serverTarget(target)}:${target.spec.port}`);
        continue;
      }
      const server = serverOf(target.spec.parentRefs[0].name);
      for (const rule of target.spec.rules) {
        for (const m of rule.matches) {
          const what = target.kind === "GRPCRoute" ? methodKey(m) : m.path.value;
          rendered.push(`${caller} -> ${serverTarget(server)}:${server.spec.port} ${what}`);
        }
      }
    }
    expect(rendered.sort()).toEqual(expectedEdges(values));
  });

  it("annotates the Services the contract names for circuit breaking, and only those", () => {
    const cb = contract.circuitBreaking;
    for (const svc of byKind(objects, "Service")) {
      const a = svc.metadata.annotations ?? {};
      if (cb.services.includes(svc.metadata.name)) {
        expect(a["balancer.linkerd.io/failure-accrual"], svc.metadata.name).toBe("consecutive");
        expect(a["balancer.linkerd.io/failure-accrual-consecutive-max-failures"]).toBe(String(cb.consecutiveFailures));
        const endpoints = allPods.filter((p) => Object.entries(svc.spec.selector).every(([k, v]) => p.labels[k] === v));
        const replicas = endpoints.reduce((n, p) => n + p.replicas, 0);
        expect(replicas, svc.metadata.name).toBeGreaterThanOrEqual(1);
        // A breaker needs somewhere else to send calls: the defaults give it two.
        if (!file && svc.metadata.name !== "payment-v2") expect(replicas, svc.metadata.name).toBeGreaterThanOrEqual(2);
      } else {
        expect(a["balancer.linkerd.io/failure-accrual"], svc.metadata.name).toBeUndefined();
      }
    }
  });
});

/**
 * The contract's identity an authentication admits, read from what it
 * admits (the ServiceAccount), not from its name. Networks cannot tell the
 * kubelet from the public, so those go by name.
 */
function callerOf(authn: K8sObject): string {
  if (authn.kind === "NetworkAuthentication") return authn.metadata.name;
  if (authn.spec.identities?.[0] === "*") return "any-meshed";
  const ref = authn.spec.identityRefs[0];
  const found = Object.entries(contract.identities).find(
    ([, id]: [string, Manifest]) => id.serviceAccount === ref.name && (ref.namespace ?? namespace) === (id.namespace ?? namespace).replace("linkerd-viz", ref.namespace ?? ""),
  );
  return found ? found[0] : `ServiceAccount ${ref.name}`;
}

/** The contract's name of the pods a Server selects. */
function serverTarget(server: K8sObject): string {
  const labels = server.spec.podSelector?.matchLabels;
  return labels ? labels["app.kubernetes.io/name"] : "all-meshed-pods";
}

describe("the mesh contract", () => {
  it("lists every RPC of the .proto files and validates", () => {
    expect(validate(contract)).toEqual([]);
    expect(rpcs(contract).length).toBe(8 + 5 + 4 + 8);
  });

  it("refuses an RPC the .proto lacks, a retried write that is not idempotent, and a stream with a timeout", () => {
    const broken = structuredClone(contract);
    broken.services.payment.rpcs.Teleport = { ...broken.services.payment.rpcs.GetPayment };
    broken.services.payment.rpcs.Charge = { ...broken.services.payment.rpcs.Charge, idempotent: false };
    broken.services.order.rpcs.WatchOrder = { ...broken.services.order.rpcs.WatchOrder, request: "5s" };
    delete broken.services.inventory.rpcs.Restock;
    broken.services.storefront.rpcs.GetOrder = { ...broken.services.storefront.rpcs.GetOrder, retry: ["resource-exhausted"] };
    const problems = validate(broken).join("\n");
    expect(problems).toContain("payment.Teleport: no such RPC");
    expect(problems).toContain("payment.Charge: retried but not idempotent");
    expect(problems).toContain("order.WatchOrder: a stream gets no request timeout");
    expect(problems).toContain("inventory: Restock is in the .proto but not in the contract");
    expect(problems).toContain("never retry RESOURCE_EXHAUSTED toward a rate-limited service");
  });

  it("keeps each retry budget inside its request timeout", () => {
    for (const rpc of rpcs(contract).filter((r: Manifest) => r.attempt)) {
      // Every attempt the route allows must fit, with room left for the backoff between them.
      const attempts = rpc.retry.length > 0 ? rpc.limit + 1 : 1;
      expect(durationMs(rpc.attempt) * Math.max(attempts, 2), `${rpc.service}.${rpc.method}`).toBeLessThan(durationMs(rpc.request));
    }
  });

  it("is what the committed chart templates and docs/mesh-contract.md were generated from", () => {
    for (const [rel, text] of Object.entries(renderAll(contract))) {
      expect(readFileSync(path.join(repoRoot, rel), "utf8"), `${rel}: run npm run generate`).toBe(text);
    }
  });
});
