// The mesh contract (proto/mesh.yaml): loading, validation against the
// .proto files, and the groupings the chart's Linkerd objects are made of.
// Used by the generator (render.mjs), the chart tests and make e2e.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import YAML from "yaml";

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const contractPath = path.join(root, "proto/mesh.yaml");

const RETRY_CODES = new Set(["cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"]);
const DURATION = /^\d+(ms|s|m)$/;
/** A service's configuration variable (`order.ORDER_MAX_WAIT_MS`) or an RPC (`order.CreateOrder`). */
const REFERENCE = /^([a-z]+)\.([A-Za-z][A-Za-z0-9_]*)$/;
const CONFIG_VARIABLE = /^[A-Z][A-Z0-9_]*$/;
/** What an RPC of the contract may say; anything else is a typo or a field that is gone. */
const RPC_KEYS = new Set(["callers", "idempotent", "retry", "limit", "attempt", "request", "streaming", "waits", "deadlines", "why"]);
/** A Kubernetes object name that is also a DNS-1123 label (what a route name must be to be used anywhere). */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/**
 * The name of an RPC's outbound GRPCRoute: the Service, then the method in
 * kebab case (payment-charge, inventory-reserve-stock). One route per RPC,
 * because linkerd2-proxy labels its outbound route metrics with the route,
 * never the gRPC method (release/v2.359.0,
 * linkerd/app/outbound/src/http/logical/policy/route/metrics/labels.rs:
 * parent, route and hostname): a route per method is what makes the mesh's
 * figures per method. The name changes only when the method does.
 */
export function routeName(service, method) {
  const kebab = method
    .replace(/([a-z0-9])([A-Z])/g, "$1-$2")
    .replace(/([A-Z]+)([A-Z][a-z])/g, "$1-$2")
    .replace(/_+/g, "-")
    .toLowerCase();
  return `${service}-${kebab}`;
}

/**
 * The proxyProtocol values of a Server on a service's gRPC port, and the
 * route kind the policy controller sends for each (linkerd2 version-2.20,
 * policy-controller/grpc/src/inbound.rs `to_server`: a gRPC Server gets only
 * its GRPCRoutes and no rate limit; an HTTP/2 Server only its HTTPRoutes,
 * with the rate limit).
 */
export const SERVER_PROTOCOLS = { gRPC: { route: "GRPCRoute", rateLimit: false }, "HTTP/2": { route: "HTTPRoute", rateLimit: true } };

/** The proxyProtocol of a service's gRPC Server. */
export function serverProtocol(contract, service) {
  return contract.services[service]?.server ?? "gRPC";
}

/** Whether an identity is a caller outside the mesh, told by source address. */
export function isNetwork(identity) {
  return Boolean(identity?.networks ?? identity?.networksValue);
}

/**
 * A `waits`/`deadlines` reference: a configuration variable or an RPC of a service.
 * @param {string | undefined} text
 * @returns {{ service: string, name: string, kind: "config" | "rpc" } | undefined}
 */
export function parseReference(text) {
  const match = REFERENCE.exec(text ?? "");
  if (!match) return undefined;
  const [, service = "", name = ""] = match;
  return { service, name, kind: CONFIG_VARIABLE.test(name) ? "config" : "rpc" };
}

/** Milliseconds of a Linkerd duration ("600ms", "2s", "1m"). */
export function durationMs(value) {
  const match = /^(\d+)(ms|s|m)$/.exec(value);
  if (!match) throw new Error(`not a duration: ${value}`);
  return Number(match[1]) * { ms: 1, s: 1000, m: 60_000 }[match[2]];
}

/** The RPCs a .proto declares: { service: "pkg.Service", methods: [{ name, serverStreaming }] }[]. */
export function protoServices(protoFile) {
  const text = fs.readFileSync(path.join(root, protoFile), "utf8").replace(/\/\/.*$/gm, "");
  const pkg = /^\s*package\s+([\w.]+)\s*;/m.exec(text)?.[1];
  const services = [];
  for (const match of text.matchAll(/service\s+(\w+)\s*\{([\s\S]*?)\n\}/g)) {
    const methods = [...match[2].matchAll(/rpc\s+(\w+)\s*\(\s*(stream\s+)?[\w.]+\s*\)\s*returns\s*\(\s*(stream\s+)?[\w.]+\s*\)/g)].map((m) => ({
      name: m[1],
      clientStreaming: Boolean(m[2]),
      serverStreaming: Boolean(m[3]),
    }));
    services.push({ service: `${pkg}.${match[1]}`, methods });
  }
  return services;
}

/** Reads and validates the contract; throws one error listing every problem. */
export function loadContract(file = contractPath) {
  const contract = YAML.parse(fs.readFileSync(file, "utf8"));
  const problems = validate(contract);
  if (problems.length > 0) throw new Error(`${path.relative(root, file)}:\n  ${problems.join("\n  ")}`);
  return contract;
}

export function validate(contract) {
  const problems = [];
  const identities = contract.identities ?? {};
  for (const [name, id] of Object.entries(identities)) {
    const kinds = ["serviceAccount", "networks", "networksValue", "meshed"].filter((k) => id[k] !== undefined);
    if (kinds.length !== 1) problems.push(`identity ${name}: needs exactly one of serviceAccount, networks, networksValue, meshed`);
    if (!id.about) problems.push(`identity ${name}: say who it is (about)`);
  }
  const known = (who, where) => {
    for (const caller of who ?? []) if (!identities[caller]) problems.push(`${where}: unknown identity ${caller}`);
  };
  for (const [name, svc] of Object.entries(contract.services ?? {})) {
    if (svc.server !== undefined && !SERVER_PROTOCOLS[svc.server]) {
      problems.push(`service ${name}: server must be one of ${Object.keys(SERVER_PROTOCOLS).join(", ")}`);
    }
    const declared = protoServices(svc.proto).find((s) => s.service === svc.service);
    if (!declared) {
      problems.push(`service ${name}: ${svc.service} is not in ${svc.proto}`);
      continue;
    }
    const listed = Object.keys(svc.rpcs ?? {});
    for (const method of declared.methods) {
      if (!listed.includes(method.name)) problems.push(`service ${name}: ${method.name} is in the .proto but not in the contract`);
    }
    for (const [method, rpc] of Object.entries(svc.rpcs ?? {})) {
      const where = `${name}.${method}`;
      const proto = declared.methods.find((m) => m.name === method);
      if (!proto) {
        problems.push(`${where}: no such RPC in ${svc.proto}`);
        continue;
      }
      for (const key of Object.keys(rpc)) {
        if (key === "route") problems.push(`${where}: route is gone: every RPC has a GRPCRoute of its own (${routeName(name, method)})`);
        else if (!RPC_KEYS.has(key)) problems.push(`${where}: unknown key ${key} (known: ${[...RPC_KEYS].join(", ")})`);
      }
      if (!rpc.callers?.length) problems.push(`${where}: no callers`);
      known(rpc.callers, where);
      if (typeof rpc.idempotent !== "boolean") problems.push(`${where}: idempotent must be true or false`);
      if (!rpc.why) problems.push(`${where}: say why (why)`);
      if (Boolean(rpc.streaming) !== (proto.serverStreaming || proto.clientStreaming)) {
        problems.push(`${where}: streaming is ${Boolean(rpc.streaming)} but the .proto says ${proto.serverStreaming || proto.clientStreaming}`);
      }
      const retry = rpc.retry ?? [];
      for (const code of retry) if (!RETRY_CODES.has(code)) problems.push(`${where}: Linkerd cannot retry on ${code}`);
      if (retry.length > 0 && !rpc.idempotent) problems.push(`${where}: retried but not idempotent`);
      if (retry.length > 0 && !(Number.isInteger(rpc.limit) && rpc.limit >= 1)) problems.push(`${where}: a retried RPC needs a limit ≥ 1`);
      if (retry.length === 0 && rpc.limit !== undefined) problems.push(`${where}: limit without retry codes`);
      // The services shed load with RESOURCE_EXHAUSTED and the storefront's
      // rate limit answers with it: fast, and never retried by the mesh, or
      // the retries bring back the load that was just refused.
      if (retry.includes("resource-exhausted")) {
        problems.push(`${where}: never retry RESOURCE_EXHAUSTED: it is shed load (a service's overload answer, the rate limit's refusal)`);
      }
      for (const key of ["attempt", "request"]) {
        if (rpc[key] !== undefined && !DURATION.test(rpc[key])) problems.push(`${where}: ${key} must be a duration like 500ms or 2s`);
      }
      if (rpc.streaming && (rpc.request || rpc.attempt || retry.length > 0)) {
        problems.push(`${where}: a stream gets no request timeout, attempt timeout or retries`);
      }
      if (!rpc.streaming && !rpc.request) problems.push(`${where}: a unary RPC needs a request timeout`);
      if (rpc.attempt && rpc.request && durationMs(rpc.attempt) >= durationMs(rpc.request)) {
        problems.push(`${where}: the attempt timeout must be shorter than the request timeout`);
      }
      if (rpc.attempt && retry.length === 0) problems.push(`${where}: an attempt timeout only means something with retries`);
      for (const key of ["waits", "deadlines"]) {
        for (const ref of rpc[key] ?? []) {
          const parsed = parseReference(ref);
          if (!parsed) problems.push(`${where}: ${key} names ${ref}: want <service>.<CONFIG_VARIABLE> or <service>.<Rpc>`);
          else if (key === "deadlines" && parsed.kind !== "config") problems.push(`${where}: deadlines names ${ref}: want a configuration variable`);
          else if (parsed.kind === "rpc" && !contract.services?.[parsed.service]?.rpcs?.[parsed.name])
            problems.push(`${where}: waits names ${ref}: no such RPC`);
        }
      }
      if (rpc.streaming && rpc.waits) problems.push(`${where}: a stream has no designed latency (waits)`);
    }
  }
  if (problems.length === 0) problems.push(...routeNameProblems(contract));
  for (const [service, std] of Object.entries(contract.standard ?? {})) {
    known(std.callers, service);
    known(std.edgeCallers, service);
  }
  for (const edge of contract.edges ?? []) {
    known([edge.from].flat(), `edge ${edge.name}`);
    if (!edge.why) problems.push(`edge ${edge.name}: say why (why)`);
  }
  const rl = contract.rateLimit;
  if (rl) {
    if (!contract.services?.[rl.server]) problems.push(`rateLimit: unknown service ${rl.server}`);
    else if (!SERVER_PROTOCOLS[serverProtocol(contract, rl.server)]?.rateLimit) {
      problems.push(
        `rateLimit: ${rl.server}'s Server is ${serverProtocol(contract, rl.server)}, where Linkerd 2.20 accepts a rate limit and never enforces it ` +
          "(the policy controller sends limits only to detect, HTTP/1 and HTTP/2 Servers): set its server to HTTP/2",
      );
    }
    for (const o of rl.overrides ?? []) {
      if (!identities[o.identity]?.serviceAccount) problems.push(`rateLimit: override ${o.identity} is not a ServiceAccount identity`);
      if (o.requestsPerSecond > rl.total) problems.push(`rateLimit: override ${o.identity} exceeds the total`);
    }
    if (rl.perIdentity > rl.total) problems.push("rateLimit: perIdentity exceeds the total");
  }
  return problems;
}

/**
 * The GRPCRoutes the chart renders, outbound and inbound, share one
 * namespace: every name must be a DNS-1123 label (63 characters at most)
 * and unique, or one route would silently replace another.
 */
function routeNameProblems(contract) {
  const problems = [];
  const owners = new Map();
  for (const service of Object.keys(contract.services ?? {})) {
    const names = [
      ...outboundRoutes(contract, service).map((r) => [r.name, `the outbound route of ${r.methods.map((m) => m.method ?? m.service).join(", ")}`]),
      ...inboundGroups(contract, service).map((g) => [g.name, `the inbound route of ${g.callers.join(", ")}`]),
    ];
    for (const [name, what] of names) {
      if (name.length > 63 || !DNS_LABEL.test(name)) problems.push(`route name ${name} (${what}): not a DNS-1123 label of at most 63 characters`);
      if (owners.has(name)) problems.push(`route name ${name} is both ${owners.get(name)} and ${what}`);
      owners.set(name, what);
    }
  }
  return problems;
}

/** Every RPC as a flat record: { service, fqService, method, ...rpc }. */
export function rpcs(contract) {
  return Object.entries(contract.services).flatMap(([service, svc]) =>
    Object.entries(svc.rpcs).map(([method, rpc]) => ({ service, fqService: svc.service, method, ...rpc })),
  );
}

/**
 * Outbound routes of a service: one per RPC, in the contract's order, with
 * that RPC's exact method match and policy, plus a "standard" route for
 * health and reflection (once a route is attached to a Service, a call no
 * route matches fails). Exact matches of different methods never overlap, so
 * the proxy's choice among the routes of a parent (the longest service and
 * method match, linkerd/http/route/src/grpc/match.rs) has no ties to break.
 */
export function outboundRoutes(contract, service) {
  const routes = rpcs(contract)
    .filter((r) => r.service === service)
    .map((rpc) => ({ name: routeName(service, rpc.method), service, methods: [{ service: rpc.fqService, method: rpc.method }], policy: rpc }));
  const standard = {
    name: `${service}-standard`,
    service,
    methods: Object.keys(contract.standard).map((s) => ({ service: s })),
    // Health/Watch and ServerReflectionInfo are streams: a request timeout
    // would cut a healthy one and a retry cannot resume one, so the route
    // that carries them (with the unary Health/Check) has neither.
    policy: { retry: [], why: "health and reflection, streams among them" },
  };
  return [...routes, standard];
}

/**
 * Inbound authorization of a service's gRPC port: methods grouped by the
 * exact set of identities allowed to call them. Each group becomes one
 * inbound route (a GRPCRoute on a gRPC Server, an HTTPRoute matching the
 * gRPC paths on an HTTP/2 Server), and each of its callers one
 * AuthorizationPolicy.
 */
export function inboundGroups(contract, service) {
  const groups = new Map();
  const add = (callers, match) => {
    const sorted = [...new Set(callers)].sort();
    const key = sorted.join("+");
    const group = groups.get(key) ?? { name: `${service}-grpc-${sorted.join("-")}`, callers: sorted, methods: [] };
    group.methods.push(match);
    groups.set(key, group);
  };
  for (const rpc of rpcs(contract).filter((r) => r.service === service)) add(rpc.callers, { service: rpc.fqService, method: rpc.method });
  const edge = contract.rateLimit?.server === service;
  for (const [std, rule] of Object.entries(contract.standard)) add(edge ? rule.edgeCallers : rule.callers, { service: std });
  return [...groups.values()];
}

/** Every authorized edge as "caller -> target:port[ what]" strings, for comparing with rendered policies. */
export function authorizedEdges(contract) {
  const edges = [];
  for (const service of Object.keys(contract.services)) {
    for (const group of inboundGroups(contract, service)) {
      for (const caller of group.callers) {
        for (const m of group.methods) edges.push(`${caller} -> ${service}:grpc ${m.service}${m.method ? `/${m.method}` : ""}`);
      }
    }
  }
  for (const edge of contract.edges) {
    for (const from of [edge.from].flat()) {
      for (const to of edge.to) {
        for (const p of edge.paths ?? [""]) edges.push(`${from} -> ${to}:${edge.port}${p ? ` ${p}` : ""}`);
      }
    }
  }
  return edges.sort();
}

/**
 * The unary RPCs an identity may not call, on the services only meshed
 * callers reach (the storefront is public): what make e2e calls from that
 * identity, expecting PERMISSION_DENIED. "<service> <fq service>/<method>".
 */
export function deniedFor(contract, identity) {
  return rpcs(contract)
    .filter((r) => !r.streaming && !r.callers.includes(identity) && !r.callers.some((c) => isNetwork(contract.identities[c])))
    .map((r) => `${r.service} ${r.fqService}/${r.method}`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  //   node scripts/mesh/contract.mjs denied presenter     the RPCs the presenter may not call
  //   node scripts/mesh/contract.mjs routes payment       the outbound GRPCRoutes of a Service, one a line
  //   node scripts/mesh/contract.mjs route payment Charge the outbound GRPCRoute of an RPC
  const [verb, name, method] = process.argv.slice(2);
  const contract = loadContract();
  if (verb === "denied" && name) {
    console.log(deniedFor(contract, name).join("\n"));
  } else if (verb === "routes" && contract.services[name]) {
    console.log(
      outboundRoutes(contract, name)
        .map((r) => r.name)
        .join("\n"),
    );
  } else if (verb === "route" && contract.services[name]?.rpcs?.[method]) {
    console.log(routeName(name, method));
  } else {
    console.error("usage: node scripts/mesh/contract.mjs denied <identity> | routes <service> | route <service> <Method>");
    process.exit(2);
  }
}
