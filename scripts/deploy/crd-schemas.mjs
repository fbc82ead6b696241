#!/usr/bin/env node
// Converts CustomResourceDefinitions into the JSON schemas kubeconform reads,
// the way kubeconform's openapi2jsonschema script does, strictly: an object
// that lists its properties admits no others (as the API server prunes or,
// with `kubectl apply --validate=strict`, rejects them), unless the CRD says
// x-kubernetes-preserve-unknown-fields.
//
//   node scripts/deploy/crd-schemas.mjs <out dir> <CRD file or folder>...
//
// Writes <out dir>/<group>/<kind>_<version>.json (kind in lower case), for
// kubeconform's -schema-location '<out dir>/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json'.
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";

/** The JSON schema of one CRD version, made strict. */
export function strictSchema(openAPIV3Schema) {
  const walk = (node) => {
    if (Array.isArray(node)) return node.map(walk);
    if (node === null || typeof node !== "object") return node;
    const out = {};
    for (const [key, value] of Object.entries(node)) out[key] = key === "properties" ? mapValues(value, walk) : walk(value);
    if (out["x-kubernetes-int-or-string"] === true) {
      delete out.type;
      out.anyOf = [{ type: "string" }, { type: "integer" }];
    }
    if (out.properties && out.additionalProperties === undefined && out["x-kubernetes-preserve-unknown-fields"] !== true) {
      out.additionalProperties = false;
    }
    return out;
  };
  return walk(openAPIV3Schema);
}

function mapValues(object, fn) {
  return Object.fromEntries(Object.entries(object).map(([key, value]) => [key, fn(value)]));
}

/** Every CRD in the given files and folders (YAML, any number of documents, List items too). */
export function readCrds(sources) {
  const files = [];
  for (const source of sources) {
    if (statSync(source).isDirectory()) {
      for (const entry of readdirSync(source).sort()) if (/\.(ya?ml|json)$/.test(entry)) files.push(path.join(source, entry));
    } else {
      files.push(source);
    }
  }
  const crds = [];
  for (const file of files) {
    for (const doc of parseAllDocuments(readFileSync(file, "utf8"))) {
      if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0].message}`);
      const value = doc.toJS();
      const items = value?.kind === "List" ? value.items : [value];
      for (const item of items ?? []) if (item?.kind === "CustomResourceDefinition") crds.push(item);
    }
  }
  return crds;
}

export function writeSchemas(outDir, crds) {
  rmSync(outDir, { recursive: true, force: true });
  let count = 0;
  for (const crd of crds) {
    const group = crd.spec.group;
    const kind = crd.spec.names.kind.toLowerCase();
    for (const version of crd.spec.versions ?? []) {
      const schema = version.schema?.openAPIV3Schema;
      if (!schema) continue;
      // The API server knows these at the top of every object; the CRD may not list them.
      const root = { ...schema, properties: { apiVersion: { type: "string" }, kind: { type: "string" }, metadata: { type: "object" }, ...schema.properties } };
      const dir = path.join(outDir, group);
      mkdirSync(dir, { recursive: true });
      writeFileSync(path.join(dir, `${kind}_${version.name}.json`), JSON.stringify(strictSchema(root), null, 1));
      count++;
    }
  }
  return count;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const [outDir, ...sources] = process.argv.slice(2);
  if (!outDir || sources.length === 0) {
    console.error("usage: crd-schemas.mjs <out dir> <CRD file or folder>...");
    process.exit(2);
  }
  const crds = readCrds(sources);
  if (crds.length === 0) {
    console.error(`crd-schemas: no CustomResourceDefinition in ${sources.join(", ")}`);
    process.exit(1);
  }
  const count = writeSchemas(outDir, crds);
  console.log(`${count} custom resource schemas from ${crds.length} CRDs ready (${outDir})`);
}
