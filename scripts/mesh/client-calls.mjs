// Which RPCs each deployable's code calls, read from its source with the
// TypeScript compiler: every `client.method(...)` whose client is a
// nice-grpc client of a generated service definition. The mesh contract
// (proto/mesh.yaml) must authorize exactly these calls between the meshed
// services: a call the code no longer makes must not stay authorized, and a
// new one must be (default-deny refuses it). The chart tests compare both.
//
//   node scripts/mesh/client-calls.mjs [service...]   "<caller> -> <pkg.Service>/<Method>", one a line
//
// It reads the types through the workspaces' built declarations
// (services/contracts/dist), so `tsc -b` must have run. A call is found where
// the method is named on a client (`client.charge(...)`,
// `clients.order.getOrder(...)`); the services call no other way.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { root } from "./contract.mjs";

/** The deployables whose code may call other services (services/<name>, except the shared kit and the contracts). */
export function deployables() {
  return fs
    .readdirSync(path.join(root, "services"), { withFileTypes: true })
    .filter((d) => d.isDirectory() && !["lib", "contracts"].includes(d.name) && fs.existsSync(path.join(root, "services", d.name, "tsconfig.json")))
    .map((d) => d.name)
    .sort();
}

/** The string literal type of a property of `type`, if it is one. */
function literal(checker, type, property) {
  const symbol = type.getProperty(property);
  const value = symbol && checker.getTypeOfSymbol(symbol);
  return value?.isStringLiteral() ? value.value : undefined;
}

/**
 * The RPCs the source of services/<service>/src calls, as "<pkg.Service>/<Method>" strings.
 * A nice-grpc client's methods are mapped from the definition's `methods`,
 * and TypeScript keeps the original declaration: the ts-proto definition's
 * `methods.<name>: { name: "Method", ... }`, inside the definition that
 * carries `fullName`.
 */
export function clientCalls(service) {
  const configFile = path.join(root, "services", service, "tsconfig.json");
  const host = {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (d) => {
      throw new Error(ts.flattenDiagnosticMessageText(d.messageText, "\n"));
    },
  };
  const config = ts.getParsedCommandLineOfConfigFile(configFile, {}, host);
  const lib = path.join(root, "services", "contracts", "dist");
  if (!fs.existsSync(lib)) throw new Error(`${path.relative(root, lib)} is missing: build first (tsc -b)`);
  const program = ts.createProgram({ rootNames: config.fileNames, options: { ...config.options, noEmit: true }, projectReferences: config.projectReferences });
  const checker = program.getTypeChecker();
  const source = path.join(root, "services", service, "src") + path.sep;
  const calls = new Set();
  const visit = (node) => {
    if (ts.isCallExpression(node) && ts.isPropertyAccessExpression(node.expression)) {
      for (const declaration of checker.getSymbolAtLocation(node.expression.name)?.declarations ?? []) {
        if (!declaration.getSourceFile().fileName.startsWith(lib + path.sep)) continue;
        const method = literal(checker, checker.getTypeAtLocation(declaration), "name");
        const definition = declaration.parent?.parent?.parent; // methods: { <this> } inside { name, fullName, methods }
        const fullName = definition && literal(checker, checker.getTypeAtLocation(definition), "fullName");
        if (method && fullName) calls.add(`${fullName}/${method}`);
      }
    }
    ts.forEachChild(node, visit);
  };
  for (const file of program.getSourceFiles()) if (file.fileName.startsWith(source)) visit(file);
  return [...calls].sort();
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const services = process.argv.length > 2 ? process.argv.slice(2) : deployables();
  for (const service of services) for (const call of clientCalls(service)) console.log(`${service} -> ${call}`);
}
