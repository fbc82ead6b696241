#!/usr/bin/env node
// What scripts/deploy/apiserver-test.sh asks of the chart's rendered
// objects and of the server's answers, where a shell would have to parse
// YAML or JSON:
//
//   node scripts/deploy/apiserver-test.mjs claims <rendered.yaml>
//       the PersistentVolumeClaims the StatefulSets will create, one JSON
//       object a line: {"name","storage","accessModes","storageClassName"}
//   node scripts/deploy/apiserver-test.mjs invalid-grpc-method <rendered.yaml>
//       the first GRPCRoute with a method match, that method renamed to one
//       the Gateway API's CEL rule refuses and its schema does not (YAML on
//       stdout; what was changed on stderr)
//   node scripts/deploy/apiserver-test.mjs tests <rendered.yaml>
//       only the helm test hooks (YAML)
//   node scripts/deploy/apiserver-test.mjs backends <service> < grpcroutes.json
//       for each GRPCRoute attached to the Service: "<route> <backends>",
//       backends as name=weight, or "<service>" itself when it has none
import { readFileSync } from "node:fs";
import { parseAllDocuments, stringify } from "yaml";

function documents(file) {
  return parseAllDocuments(readFileSync(file, "utf8"))
    .map((doc) => doc.toJS())
    .filter((object) => object && typeof object === "object");
}

function claims(file) {
  for (const set of documents(file).filter((o) => o.kind === "StatefulSet")) {
    const replicas = set.spec.replicas ?? 1;
    for (const template of set.spec.volumeClaimTemplates ?? []) {
      for (let ordinal = 0; ordinal < replicas; ordinal++) {
        console.log(
          JSON.stringify({
            name: `${template.metadata.name}-${set.metadata.name}-${ordinal}`,
            storage: template.spec.resources.requests.storage,
            accessModes: template.spec.accessModes,
            storageClassName: template.spec.storageClassName ?? "",
          }),
        );
      }
    }
  }
}

function invalidGrpcMethod(file) {
  for (const route of documents(file).filter((o) => o.kind === "GRPCRoute")) {
    for (const rule of route.spec.rules ?? []) {
      for (const match of rule.matches ?? []) {
        if (!match.method?.method) continue;
        const before = match.method.method;
        // A dot is outside the CEL rule's ^[A-Za-z_][A-Za-z_0-9]*$; the
        // field's schema only limits its length.
        match.method.method = `${before}.v2`;
        process.stderr.write(`GRPCRoute ${route.metadata.name}: method ${before} renamed ${match.method.method}\n`);
        process.stdout.write(stringify(route));
        return;
      }
    }
  }
  throw new Error(`${file} has no GRPCRoute with a method match`);
}

function tests(file) {
  const hooks = documents(file).filter((o) => /(^|,)test(,|$)/.test(o.metadata?.annotations?.["helm.sh/hook"] ?? ""));
  if (hooks.length === 0) throw new Error(`${file} has no helm test hooks`);
  process.stdout.write(hooks.map((o) => stringify(o)).join("---\n"));
}

function backends(service) {
  const list = JSON.parse(readFileSync(0, "utf8"));
  for (const route of list.items) {
    const attached = (route.spec.parentRefs ?? []).some((p) => p.kind === "Service" && p.name === service);
    if (!attached) continue;
    const refs = new Set();
    for (const rule of route.spec.rules ?? []) {
      const named = (rule.backendRefs ?? []).map((b) => `${b.name}=${b.weight ?? 1}`).join(" ");
      refs.add(named || service);
    }
    console.log(`${route.metadata.name} ${[...refs].join(" | ")}`);
  }
}

const [command, argument] = process.argv.slice(2);
const commands = { claims, "invalid-grpc-method": invalidGrpcMethod, tests, backends };
if (!commands[command] || !argument) {
  console.error("usage: apiserver-test.mjs claims|invalid-grpc-method|tests <rendered.yaml> | backends <service>");
  process.exit(2);
}
commands[command](argument);
