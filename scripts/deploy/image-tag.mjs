#!/usr/bin/env node
// Content-derived image tags: prints "<service> <tag>" for every service
// target of the Dockerfile (or the ones named), or, with --values, the Helm
// values that point the chart at those tags.
//
//   node scripts/deploy/image-tag.mjs [--values] [service...]
//
// A tag is a hash of exactly what the target copies from the build context
// (see imageTag in dockerfile.mjs), plus the build args `make images`
// passes: SERVICE and NODE_VERSION (from versions.env). An unchanged service
// keeps its tag, so `helm upgrade` leaves its pods alone.
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { imageTag, parseDockerfile, serviceTargets } from "./dockerfile.mjs";

export const repoRoot = fileURLToPath(new URL("../..", import.meta.url));

/**
 * versions.env as an object (plain KEY=VALUE lines).
 * @returns {Record<string, string>}
 */
export function readVersions(root = repoRoot) {
  /** @type {Record<string, string>} */
  const versions = {};
  for (const line of readFileSync(path.join(root, "versions.env"), "utf8").split("\n")) {
    const match = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (match) versions[match[1]] = match[2];
  }
  return versions;
}

/**
 * The build args `make images` passes for a service (scripts/deploy/images.sh).
 * @param {string} service
 * @returns {Record<string, string>}
 */
export function buildArgs(service, root = repoRoot) {
  const { NODE_VERSION } = readVersions(root);
  if (!NODE_VERSION) throw new Error("versions.env has no NODE_VERSION");
  return { NODE_VERSION, SERVICE: service };
}

/** @returns {string[]} */
export function services(root = repoRoot) {
  return serviceTargets(parseDockerfile(readFileSync(path.join(root, "Dockerfile"), "utf8")));
}

/**
 * @param {string[]} [names]
 * @returns {Record<string, string>}
 */
export function tags(names = services(), root = repoRoot) {
  const known = services(root);
  /** @type {Record<string, string>} */
  const out = {};
  for (const name of names) {
    if (!known.includes(name)) throw new Error(`the Dockerfile has no target ${name} (targets: ${known.join(", ")})`);
    out[name] = imageTag(root, name, buildArgs(name, root));
  }
  return out;
}

/**
 * Helm values: `<service>.image.tag` for each service (payment's serves v1 and v2).
 * @param {Record<string, string>} tagMap
 */
export function helmValues(tagMap) {
  return Object.entries(tagMap)
    .map(([name, tag]) => `${name}:\n  image:\n    tag: "${tag}"\n`)
    .join("");
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const args = process.argv.slice(2);
  const values = args.includes("--values");
  const names = args.filter((a) => !a.startsWith("--"));
  try {
    const result = tags(names.length > 0 ? names : services());
    if (values) process.stdout.write(helmValues(result));
    else for (const [name, tag] of Object.entries(result)) console.log(`${name} ${tag}`);
  } catch (error) {
    console.error(`image-tag: ${error.message}`);
    process.exit(1);
  }
}
