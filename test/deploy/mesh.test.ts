import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { Client, credentials, type ServiceError } from "@grpc/grpc-js";
import { beforeAll, describe, expect, it } from "vitest";
import { Status } from "nice-grpc";
import { createLogger, loadConfig, SHED_STATUS, serviceConfig, startServiceRuntime } from "@meshcart/lib";
import { freePort } from "@meshcart/stack/net.js";
import {
  authorizedEdges,
  durationMs,
  isNetwork,
  loadContract,
  outboundRoutes,
  parseReference,
  routeName,
  rpcs,
  validate,
} from "../../scripts/mesh/contract.mjs";
import { clientCalls, deployables } from "../../scripts/mesh/client-calls.mjs";
import { renderAll } from "../../scripts/mesh/render.mjs";
import { chartValueAt, chartValues, namespace, pods, render, valueSets, type K8sObject, type Manifest, type PodOf } from "./support/chart.js";
import { repoRoot, toolsBin } from "./support/paths.js";

const run = promisify(execFile);

/*
 * The chart's Linkerd objects against the mesh contract (proto/mesh.yaml):
 * whatever the generator did, the rendered manifests must hold these
 * invariants, which are checked here from the objects themselves.
 */

const contract = loadContract();

function valuesOf(file?: string): Manifest {
  return chartValues(file ? [file] : []);
}

function valueAt(values: Manifest, dotted: string | undefined): boolean {
  if (!dotted) return true;
  return Boolean(chartValueAt(values, dotted));
}

/** proxyProtocol values whose Servers get HTTPRoutes and a rate limit (policy-controller/grpc/src/inbound.rs, version-2.20). */
const HTTP_SERVER_PROTOCOLS = ["HTTP/1", "HTTP/2", "unknown"];
const protocolOf = (server: K8sObject) => server.spec.proxyProtocol ?? "unknown";

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
    const servers = byKind(objects, "Server")
      .map((s) => s.metadata.name)
      .sort();
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
          expect(
            svc!.spec.ports.map((p: Manifest) => p.port),
            where,
          ).toContain(parent.port);
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
          expect(
            svc!.spec.ports.map((p: Manifest) => p.port),
            where,
          ).toContain(backend.port);
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
      const route = outbound.find(
        (r) =>
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
      if (rpc.streaming)
        expect(
          Object.keys(a).filter((k) => k.includes("linkerd.io/")),
          where,
        ).toEqual([]);
    }
  });

  it("retries shed load on no route: RESOURCE_EXHAUSTED, the status the services shed with (admission control, an exhausted pool, the rate limit)", () => {
    // retry.linkerd.io/grpc names codes in kebab case: RESOURCE_EXHAUSTED → resource-exhausted.
    const shed = Status[SHED_STATUS]!.toLowerCase().replaceAll("_", "-");
    const routes = [...byKind(objects, "GRPCRoute"), ...byKind(objects, "HTTPRoute")];
    expect(
      routes.some((r) => r.metadata.annotations?.["retry.linkerd.io/grpc"]),
      "some routes retry (transient faults)",
    ).toBe(true);
    for (const route of routes) {
      const codes = (route.metadata.annotations?.["retry.linkerd.io/grpc"] ?? "").split(",").map((c: string) => c.trim());
      expect(codes, `${route.kind}/${route.metadata.name}`).not.toContain(shed);
    }
  });

  it("gives every RPC an outbound GRPCRoute of its own, matching that one method (the proxies' route metrics are then per method)", () => {
    // linkerd2-proxy labels outbound route metrics with parent, route and
    // hostname, never the gRPC method (release/v2.359.0,
    // linkerd/app/outbound/src/http/logical/policy/route/metrics/labels.rs).
    const outbound = byKind(objects, "GRPCRoute").filter((r) => r.spec.parentRefs[0].kind === "Service");
    for (const rpc of rpcs(contract)) {
      const name = routeName(rpc.service, rpc.method);
      const route = find(outbound, "GRPCRoute", name);
      const where = `${rpc.service}.${rpc.method}`;
      expect(route, `${where} has no route ${name}`).toBeDefined();
      expect(route!.spec.parentRefs, where).toEqual([{ group: "core", kind: "Service", name: rpc.service, port: values.services.grpcPort }]);
      const matches = route!.spec.rules.flatMap((rule: Manifest) => rule.matches);
      expect(matches, where).toEqual([{ method: { type: "Exact", service: rpc.fqService, method: rpc.method } }]);
    }
    // Besides them, each Service has only its route for health and reflection.
    const services = Object.keys(contract.services);
    expect(outbound.map((r) => r.metadata.name).sort()).toEqual(
      [...rpcs(contract).map((r: Manifest) => routeName(r.service, r.method)), ...services.map((s) => `${s}-standard`)].sort(),
    );
  });

  it("splits every payment route with the same weights while v2 runs", () => {
    const paymentRoutes = byKind(objects, "GRPCRoute").filter((r) => r.spec.parentRefs[0].kind === "Service" && r.spec.parentRefs[0].name === "payment");
    // One per RPC of payment and the standard route: a route without the backends would keep its RPC on v1.
    expect(paymentRoutes.map((r) => r.metadata.name).sort()).toEqual(
      outboundRoutes(contract, "payment")
        .map((r: Manifest) => r.name)
        .sort(),
    );
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
          let what = target.kind === "GRPCRoute" ? methodKey(m) : m.path.value;
          // gRPC on an HTTP/2 Server: /<service>/<method> exactly, or a whole service as a path prefix.
          if (target.kind === "HTTPRoute" && server.spec.port === "grpc") what = grpcPathKey(m.path);
          rendered.push(`${caller} -> ${serverTarget(server)}:${server.spec.port} ${what}`);
        }
      }
    }
    expect(rendered.sort()).toEqual(expectedEdges(values));
  });

  it("attaches every inbound route to a Server of its protocol, and the rate limit to an HTTP Server", () => {
    // The policy controller sends a gRPC Server its GRPCRoutes only, an HTTP
    // one its HTTPRoutes only, and a rate limit only to the HTTP ones
    // (policy-controller/grpc/src/inbound.rs `to_server`, linkerd2
    // version-2.20). Anything else is accepted by the API server and inert:
    // a dropped route denies every caller, a dropped limit limits nothing.
    const kindsOn = new Map<string, Set<string>>();
    for (const route of [...byKind(objects, "GRPCRoute"), ...byKind(objects, "HTTPRoute")]) {
      for (const parent of route.spec.parentRefs.filter((p: Manifest) => p.kind === "Server")) {
        const server = find(objects, "Server", parent.name)!;
        const where = `${route.kind}/${route.metadata.name} on Server/${parent.name} (${protocolOf(server)})`;
        if (route.kind === "GRPCRoute") expect(protocolOf(server), where).toBe("gRPC");
        else expect(HTTP_SERVER_PROTOCOLS, where).toContain(protocolOf(server));
        kindsOn.set(parent.name, (kindsOn.get(parent.name) ?? new Set()).add(route.kind));
      }
    }
    // Both kinds on one Server: the HTTPRoutes are refused as conflicting (policy-controller/k8s/status/src/index.rs).
    for (const [server, kinds] of kindsOn) expect(kinds.size, `Server/${server} has ${[...kinds].join(" and ")}`).toBe(1);
    for (const limit of byKind(objects, "HTTPLocalRateLimitPolicy")) {
      const server = find(objects, "Server", limit.spec.targetRef.name)!;
      expect(HTTP_SERVER_PROTOCOLS, `HTTPLocalRateLimitPolicy/${limit.metadata.name} on a ${protocolOf(server)} Server is never enforced`).toContain(
        protocolOf(server),
      );
    }
  });

  it("puts a Server on every port a Service sends to, so that no advertised port is a dead end under deny", () => {
    const servers = byKind(objects, "Server");
    for (const svc of byKind(objects, "Service")) {
      const selected = allPods.filter((p) => !p.isTest && Object.entries(svc.spec.selector ?? {}).every(([k, v]) => p.labels[k] === v));
      for (const port of svc.spec.ports) {
        for (const pod of selected) {
          const covered = servers.some((server) => server.spec.port === port.targetPort && podsSelectedBy([pod], server.spec.podSelector).length === 1);
          expect(covered, `Service ${svc.metadata.name} port ${port.name} -> ${pod.owner.metadata.name}:${port.targetPort} has no Server`).toBe(true);
        }
      }
    }
  });

  it("names each workload's proxy spans after the workload", () => {
    const names = new Map<string, string>();
    for (const pod of allPods) {
      const name = pod.annotations["resource.opentelemetry.io/service.name"];
      const owner = pod.owner.metadata.name;
      expect(name, owner).toBe(`${owner}-proxy`);
      // The injector would otherwise take app.kubernetes.io/instance: the release, alike on every pod.
      expect(name, owner).not.toBe(pod.labels["app.kubernetes.io/instance"]);
      expect(names.get(name!), `${owner} and ${names.get(name!)} share ${name}`).toBeUndefined();
      names.set(name!, owner);
    }
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
    ([, id]: [string, Manifest]) =>
      id.serviceAccount === ref.name && (ref.namespace ?? namespace) === (id.namespace ?? namespace).replace("linkerd-viz", ref.namespace ?? ""),
  );
  return found ? found[0] : `ServiceAccount ${ref.name}`;
}

/** An HTTPRoute path match on a gRPC port as "<service>/<method>" (Exact) or "<service>" (PathPrefix). */
function grpcPathKey(path: { type: string; value: string }): string {
  const parts = path.value.split("/").slice(1);
  if (path.type === "Exact") {
    expect(parts, `${path.value}: an exact gRPC path is /<service>/<method>`).toHaveLength(2);
  } else {
    expect(path.type, path.value).toBe("PathPrefix");
    expect(parts, `${path.value}: a gRPC service prefix is /<service>`).toHaveLength(1);
  }
  return parts.join("/");
}

/** The contract's name of the pods a Server selects. */
function serverTarget(server: K8sObject): string {
  const labels = server.spec.podSelector?.matchLabels;
  return labels ? labels["app.kubernetes.io/name"] : "all-meshed-pods";
}

describe("the mesh contract", () => {
  it("lists every RPC of the .proto files and validates", () => {
    expect(validate(contract)).toEqual([]);
    expect(rpcs(contract).length).toBe(8 + 5 + 4 + 8 + 3);
  });

  it("refuses an RPC the .proto lacks, a retried write that is not idempotent, and a stream with a timeout", () => {
    const broken = structuredClone(contract);
    broken.services.payment.rpcs.Teleport = { ...broken.services.payment.rpcs.GetPayment };
    broken.services.payment.rpcs.Charge = { ...broken.services.payment.rpcs.Charge, idempotent: false };
    broken.services.order.rpcs.WatchOrder = { ...broken.services.order.rpcs.WatchOrder, request: "5s" };
    delete broken.services.inventory.rpcs.Restock;
    broken.services.storefront.rpcs.GetOrder = { ...broken.services.storefront.rpcs.GetOrder, retry: ["resource-exhausted"] };
    broken.services.inventory.rpcs.GetProduct = { ...broken.services.inventory.rpcs.GetProduct, retry: ["unavailable", "resource-exhausted"] };
    const problems = validate(broken).join("\n");
    expect(problems).toContain("payment.Teleport: no such RPC");
    expect(problems).toContain("payment.Charge: retried but not idempotent");
    expect(problems).toContain("order.WatchOrder: a stream gets no request timeout");
    expect(problems).toContain("inventory: Restock is in the .proto but not in the contract");
    // Shed load is never retried, whichever service sheds it (the storefront's rate limit or a service's overload answer).
    expect(problems).toContain("storefront.GetOrder: never retry RESOURCE_EXHAUSTED");
    expect(problems).toContain("inventory.GetProduct: never retry RESOURCE_EXHAUSTED");
  });

  it("refuses a route grouping (each RPC has its own route) and keys it does not know", () => {
    const broken = structuredClone(contract);
    broken.services.payment.rpcs.Charge = { ...broken.services.payment.rpcs.Charge, route: "money" };
    broken.services.payment.rpcs.Refund = { ...broken.services.payment.rpcs.Refund, retries: 2 };
    const problems = validate(broken).join("\n");
    expect(problems).toContain("payment.Charge: route is gone: every RPC has a GRPCRoute of its own (payment-charge)");
    expect(problems).toContain("payment.Refund: unknown key retries");
  });

  it("names each RPC's route after its Service and method, a DNS-1123 label no other route has", () => {
    expect(routeName("payment", "Charge")).toBe("payment-charge");
    expect(routeName("inventory", "ReserveStock")).toBe("inventory-reserve-stock");
    expect(routeName("storefront", "GetOrderDetails")).toBe("storefront-get-order-details");
    expect(routeName("catalog", "GetHTTPStatus")).toBe("catalog-get-http-status");
    const badName = structuredClone(contract);
    badName.services.Payment = badName.services.payment;
    delete badName.services.payment;
    expect(validate(badName).join("\n")).toContain("route name Payment-charge (the outbound route of Charge): not a DNS-1123 label");
    // An inbound route is <service>-grpc-<callers>; an outbound one <service>-<method>: made to meet here.
    const clash = structuredClone(contract);
    clash.identities.charge = { serviceAccount: "charge", about: "a caller whose name makes the clash" };
    clash.services.pay = structuredClone(clash.services.payment);
    for (const rpc of Object.values(clash.services.pay.rpcs) as Manifest[]) rpc.callers = ["charge"];
    clash.services["pay-grpc"] = structuredClone(clash.services.payment);
    expect(validate(clash).join("\n")).toContain("route name pay-grpc-charge is both");
  });

  it("authorizes exactly the calls the services' code makes to each other (default-deny stays exact)", () => {
    // Each deployable's identity is its ServiceAccount; calls to an RPC open
    // to a network (the public edge) need no grant of their own.
    const identityOf = (folder: string) => (contract.identities[folder]?.serviceAccount === folder ? folder : undefined);
    const made: string[] = [];
    const viaNetwork: string[] = [];
    for (const folder of deployables()) {
      const identity = identityOf(folder);
      expect(identity, `services/${folder} has no identity in proto/mesh.yaml`).toBeDefined();
      for (const call of clientCalls(folder)) {
        const [fq, method] = call.split("/");
        const rpc = rpcs(contract).find((r: Manifest) => r.fqService === fq && r.method === method);
        expect(rpc, `${folder} calls ${call}, which proto/mesh.yaml does not list`).toBeDefined();
        if (rpc.callers.some((c: string) => isNetwork(contract.identities[c]))) viaNetwork.push(`${identity} -> ${call}`);
        else made.push(`${identity} -> ${call}`);
      }
    }
    const deployed = new Set(deployables().map(identityOf));
    const granted = rpcs(contract)
      .filter((r: Manifest) => !r.callers.some((c: string) => isNetwork(contract.identities[c])))
      .flatMap((r: Manifest) => r.callers.filter((c: string) => deployed.has(c)).map((c: string) => `${c} -> ${r.fqService}/${r.method}`));
    // The finder must see the saga's calls, or an empty list would pass.
    expect(made).toContain("order -> meshcart.payment.v1.PaymentService/Charge");
    expect(viaNetwork).toContain("loadgen -> meshcart.storefront.v1.StorefrontService/PlaceOrder");
    expect(made.sort()).toEqual(granted.sort());
  });

  it("refuses a rate limit on a gRPC Server, where Linkerd never enforces it", () => {
    const broken = structuredClone(contract);
    delete broken.services[broken.rateLimit.server].server;
    expect(validate(broken).join("\n")).toContain(`rateLimit: ${broken.rateLimit.server}'s Server is gRPC`);
    broken.services[broken.rateLimit.server].server = "HTTP/3";
    expect(validate(broken).join("\n")).toContain("server must be one of gRPC, HTTP/2");
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

/**
 * The timeouts of the chart's routes against what the services are built to
 * do, with the numbers taken from where they are defined: each service's
 * configuration defaults (services/<service>/src/config.ts, compiled by
 * `tsc -b`), combined as proto/mesh.yaml's `waits` and `deadlines` say.
 */
describe("the routes' timeouts against the services' configuration", () => {
  const shapes = new Map<string, Record<string, { parse(v: unknown): unknown }>>();
  let outbound: K8sObject[];

  /** The default of a service's configuration variable, in milliseconds. */
  function configMs(service: string, variable: string): number {
    const shape = shapes.get(service);
    if (!shape) throw new Error(`no configuration of ${service} loaded`);
    expect(Object.keys(shape), `${variable} is not a variable of services/${service}/src/config.ts`).toContain(variable);
    const value = shape[variable]!.parse(undefined);
    expect(typeof value, `${service}.${variable} has no numeric default`).toBe("number");
    return value as number;
  }

  /** How long an RPC takes by design: the sum of its `waits`, an RPC counting with its own. */
  function designedMs(service: string, method: string, seen: string[] = []): number {
    const key = `${service}.${method}`;
    if (seen.includes(key)) throw new Error(`waits loop: ${[...seen, key].join(" -> ")}`);
    const rpc = contract.services[service].rpcs[method];
    let total = 0;
    for (const ref of rpc.waits ?? []) {
      const parsed = parseReference(ref)!;
      total += parsed.kind === "config" ? configMs(parsed.service, parsed.name) : designedMs(parsed.service, parsed.name, [...seen, key]);
    }
    return total;
  }

  function routeOf(rpc: Manifest): K8sObject {
    const route = outbound.find(
      (r) =>
        r.spec.parentRefs[0].name === rpc.service &&
        r.spec.rules.some((rule: Manifest) => rule.matches.some((m: Manifest) => methodKey(m) === `${rpc.fqService}/${rpc.method}`)),
    );
    expect(route, `${rpc.service}.${rpc.method} has no route`).toBeDefined();
    return route!;
  }

  beforeAll(async () => {
    const services = new Set<string>();
    for (const rpc of rpcs(contract)) {
      for (const ref of [...(rpc.waits ?? []), ...(rpc.deadlines ?? [])]) services.add(parseReference(ref)!.service);
    }
    for (const service of services) {
      const file = path.join(repoRoot, "services", service, "dist", "config.js");
      if (!existsSync(file)) throw new Error(`${file} is missing: build first (tsc -b)`);
      const module = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
      const shape = Object.values(module).find((v) => v !== null && typeof v === "object" && "GRPC_PORT" in v);
      if (!shape) throw new Error(`${file} exports no configuration shape`);
      shapes.set(service, shape as Record<string, { parse(v: unknown): unknown }>);
    }
    outbound = (await render()).filter((o) => o.kind === "GRPCRoute" && o.spec.parentRefs[0].kind === "Service");
  });

  it("lets every attempt and every request outlast what each RPC on the route waits for on purpose", () => {
    const waiting: string[] = [];
    for (const rpc of rpcs(contract).filter((r: Manifest) => !r.streaming)) {
      const designed = designedMs(rpc.service, rpc.method);
      if (designed > 0) waiting.push(`${rpc.service}.${rpc.method} ${designed}ms`);
      const route = routeOf(rpc);
      const a = route.metadata.annotations ?? {};
      const where = `${rpc.service}.${rpc.method} on ${route.metadata.name}, designed to take up to ${designed}ms`;
      if (a["retry.linkerd.io/timeout"]) expect(durationMs(a["retry.linkerd.io/timeout"]), `${where}: per-attempt timeout`).toBeGreaterThan(designed);
      if (a["timeout.linkerd.io/request"]) expect(durationMs(a["timeout.linkerd.io/request"]), `${where}: request timeout`).toBeGreaterThan(designed);
    }
    // The check means something only if some RPC does wait: the composed read and the saga do.
    expect(waiting.length, "no RPC of proto/mesh.yaml waits on purpose").toBeGreaterThan(0);
  });

  it("fits every attempt of a retry budget in the deadline its callers give", () => {
    let checked = 0;
    for (const rpc of rpcs(contract).filter((r: Manifest) => r.deadlines?.length)) {
      const a = routeOf(rpc).metadata.annotations ?? {};
      if (!a["retry.linkerd.io/timeout"]) continue;
      const attempts = Number(a["retry.linkerd.io/limit"] ?? 0) + 1;
      const deadline = Math.min(...rpc.deadlines.map((d: string) => configMs(parseReference(d)!.service, parseReference(d)!.name)));
      expect(durationMs(a["retry.linkerd.io/timeout"]) * attempts, `${rpc.service}.${rpc.method}: ${attempts} attempts within ${deadline}ms`).toBeLessThan(
        deadline,
      );
      checked += 1;
    }
    expect(checked).toBeGreaterThan(0);
  });
});

/** A list_services request of gRPC server reflection, and the service names of its answer (protobuf, by hand: three fields). */
function reflect(address: string, service: string): Promise<{ services: string[] } | { code: number }> {
  const client = new Client(address, credentials.createInsecure());
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const call = client.makeBidiStreamRequest(
      `/${service}/ServerReflectionInfo`,
      (b: Buffer) => b,
      (b: Buffer) => b,
    );
    call.on("data", (b: Buffer) => chunks.push(b));
    call.on("error", (error: ServiceError) => {
      client.close();
      resolve({ code: error.code });
    });
    call.on("end", () => {
      client.close();
      const services: string[] = [];
      for (const chunk of chunks) {
        // ServerReflectionResponse.list_services_response = 6 { repeated ServiceResponse service = 1 { string name = 1 } }
        for (const list of fields(chunk).filter((f) => f.number === 6)) {
          for (const entry of fields(list.bytes).filter((f) => f.number === 1)) {
            services.push(
              ...fields(entry.bytes)
                .filter((f) => f.number === 1)
                .map((f) => f.bytes.toString("utf8")),
            );
          }
        }
      }
      resolve({ services });
    });
    call.write(Buffer.from([(7 << 3) | 2, 0])); // list_services = 7: ""
    call.end();
  });
}

/** The length-delimited fields of a protobuf message (the only wire type these messages use). */
function fields(buffer: Buffer): { number: number; bytes: Buffer }[] {
  const out: { number: number; bytes: Buffer }[] = [];
  let at = 0;
  const varint = () => {
    let value = 0;
    for (let shift = 0; ; shift += 7) {
      const byte = buffer[at++]!;
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
    }
  };
  while (at < buffer.length) {
    const tag = varint();
    if ((tag & 7) !== 2) throw new Error(`unexpected wire type ${tag & 7}`);
    const length = varint();
    out.push({ number: tag >>> 3, bytes: buffer.subarray(at, at + length) });
    at += length;
  }
  return out;
}

describe("the standard services the contract authorizes", () => {
  it("are exactly what a meshcart gRPC server serves besides its own API (no reflection v1alpha)", async () => {
    const [grpcPort, adminPort] = [await freePort(), await freePort()];
    const config = loadConfig(serviceConfig, { GRPC_PORT: String(grpcPort), ADMIN_PORT: String(adminPort), LOG_LEVEL: "silent" });
    const runtime = await startServiceRuntime({
      name: "standard-services",
      config,
      logger: createLogger({ service: "standard-services", version: "test", level: "silent" }),
      services: [],
      host: "127.0.0.1",
    });
    try {
      const address = `127.0.0.1:${grpcPort}`;
      const served = new Set<string>();
      for (const reflection of ["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"]) {
        const answer = await reflect(address, reflection);
        if ("services" in answer) {
          served.add(reflection);
          for (const name of answer.services) served.add(name);
        }
      }
      expect(served.size, "the server answered no reflection at all").toBeGreaterThan(0);
      // What grpcurl sees through the same server (it asks v1, then v1alpha).
      const grpcurl = path.join(toolsBin, "grpcurl");
      if (!existsSync(grpcurl)) throw new Error("grpcurl is missing: run `make tools` (make test installs it)");
      const health = await run(grpcurl, ["-plaintext", address, "grpc.health.v1.Health/Check"]);
      expect(health.stdout).toContain("SERVING");
      expect([...served].sort()).toEqual(Object.keys(contract.standard).sort());
    } finally {
      await runtime.shutdown("test over");
    }
  });
});

describe("the kubelet's network authentication", () => {
  it("admits the networks of mesh.probeNetworks (Linkerd's own probeNetworks default), and reaches probe paths only", async () => {
    const authnOf = (objects: K8sObject[]) => objects.find((o) => o.kind === "NetworkAuthentication" && o.metadata.name === "kubelet")!;
    const defaults = await render();
    expect(authnOf(defaults).spec.networks).toEqual(chartValues().mesh.probeNetworks.map((cidr: string) => ({ cidr })));
    const narrowed = await render(["--set", "mesh.probeNetworks={10.244.0.1/32,172.18.0.0/16}"]);
    expect(authnOf(narrowed).spec.networks).toEqual([{ cidr: "10.244.0.1/32" }, { cidr: "172.18.0.0/16" }]);
    // Whatever its networks, the kubelet may only GET what the pods' probes ask for.
    const probePaths = new Set<string>(["/live", "/ready"]); // the proxy's own (linkerd-admin)
    for (const pod of pods(defaults)) {
      for (const c of pod.spec.containers) {
        for (const probe of ["startupProbe", "livenessProbe", "readinessProbe"]) if (c[probe]?.httpGet) probePaths.add(c[probe].httpGet.path);
      }
    }
    const kubeletEdges = authorizedEdges(contract).filter((e: string) => e.startsWith("kubelet -> "));
    expect(kubeletEdges.length).toBeGreaterThan(0);
    for (const edge of kubeletEdges) expect(probePaths, edge).toContain(edge.split(" ").at(-1));
  });
});
