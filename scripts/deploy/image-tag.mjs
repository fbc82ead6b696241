#!/usr/bin/env node
// The images' tag: prints "<service> <tag>" for every service target of the
// Dockerfile (or the ones named), or, with --values, the Helm values that
// point the chart at them.
//
//   node scripts/deploy/image-tag.mjs [--values] [service...]
//
// Every image is built by the same Dockerfile from the same build context,
// so they all share one tag: the first 16 hex digits of a SHA-256 over the
// Dockerfile, the .dockerignore, the build args `make images` passes
// (NODE_VERSION, from versions.env) and every file Docker sends as the build
// context (path, executable bit, content), after .dockerignore's rules.
// The tag changes exactly when what the images are built from changes;
// tests, docs and build output, which .dockerignore leaves out, change
// nothing. Node built-ins only: `make deploy` runs this without `npm ci`.
import { createHash } from "node:crypto";
import { existsSync, lstatSync, readFileSync, readdirSync, readlinkSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

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
 * The build args `make images` passes (scripts/deploy/images.sh); the same
 * for every service (the argument is kept for the callers that name one).
 * @param {string} [_service]
 * @returns {Record<string, string>}
 */
export function buildArgs(_service, root = repoRoot) {
  const { NODE_VERSION } = readVersions(root);
  if (!NODE_VERSION) throw new Error("versions.env has no NODE_VERSION");
  return { NODE_VERSION };
}

/**
 * The service targets: the Dockerfile's stages built `FROM runtime`.
 * @returns {string[]}
 */
export function services(root = repoRoot) {
  const dockerfile = readFileSync(path.join(root, "Dockerfile"), "utf8");
  return [...dockerfile.matchAll(/^FROM\s+runtime\s+AS\s+(\S+)\s*$/gim)].map((m) => m[1]);
}

// --- the build context: .dockerignore as Docker reads it ---------------------

/**
 * .dockerignore's rules: each line a pattern (Go's filepath.Match, plus `**`
 * for any number of folders), `!` for an exception; the last rule that
 * matches a path, or any folder above it, decides.
 */
export function readDockerignore(contextDir) {
  const file = path.join(contextDir, ".dockerignore");
  const rules = [];
  for (const raw of existsSync(file) ? readFileSync(file, "utf8").split("\n") : []) {
    let pattern = raw.trim();
    if (pattern === "" || pattern.startsWith("#")) continue;
    const exception = pattern.startsWith("!");
    if (exception) pattern = pattern.slice(1).trim();
    pattern = path.posix.normalize(pattern).replace(/^\/+/, "").replace(/\/+$/, "");
    rules.push({ exception, pattern, re: globToRegExp(pattern) });
  }
  return {
    /** Whether Docker leaves this context-relative path out. */
    ignores(relative) {
      const prefixes = relative.split("/").map((_, i, parts) => parts.slice(0, i + 1).join("/"));
      let ignored = false;
      for (const rule of rules) if (prefixes.some((p) => rule.re.test(p))) ignored = !rule.exception;
      return ignored;
    },
    /** Whether an exception could bring back something inside this ignored folder. */
    mayReinclude(relativeDir) {
      return rules.some((r) => r.exception && (r.pattern.startsWith(`${relativeDir}/`) || /[*?[\\]/.test(r.pattern)));
    },
  };
}

function globToRegExp(pattern) {
  let re = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (pattern.startsWith("**/", i)) {
      re += "(?:.*/)?";
      i += 2;
    } else if (pattern.startsWith("**", i)) {
      re += ".*";
      i += 1;
    } else if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else if (c === "[") {
      const end = pattern.indexOf("]", i + 1);
      if (end < 0) throw new Error(`.dockerignore: unclosed [ in ${pattern}`);
      re += `[${pattern
        .slice(i + 1, end)
        .replace(/^[!^]/, "^")
        .replaceAll("\\", "\\\\")}]`;
      i = end;
    } else if (c === "\\" && i + 1 < pattern.length) re += escape(pattern[++i]);
    else re += escape(c);
  }
  return new RegExp(`^${re}$`);
}

const escape = (c) => c.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");

/**
 * Every file and folder Docker sends as the build context, sorted,
 * context-relative; folders end with "/".
 */
export function contextFiles(contextDir = repoRoot) {
  const ignore = readDockerignore(contextDir);
  const entries = [];
  const walk = (relative) => {
    for (const entry of readdirSync(path.join(contextDir, relative), { withFileTypes: true })) {
      const child = relative ? `${relative}/${entry.name}` : entry.name;
      if (entry.isDirectory()) {
        // Docker sends a folder (empty ones too) unless it is left out.
        if (!ignore.ignores(child)) entries.push(`${child}/`);
        if (!ignore.ignores(child) || ignore.mayReinclude(child)) walk(child);
      } else if (!ignore.ignores(child)) {
        entries.push(child);
      }
    }
  };
  walk("");
  return entries.sort();
}

/** The tag every image built from this context gets. */
export function imageTag(contextDir = repoRoot, args = buildArgs(undefined, contextDir)) {
  const hash = createHash("sha256");
  const line = (text) => hash.update(`${text}\n`);
  for (const file of ["Dockerfile", ".dockerignore"]) {
    const full = path.join(contextDir, file);
    line(`${file} ${existsSync(full) ? sha256(readFileSync(full)) : "-"}`);
  }
  for (const key of Object.keys(args).sort()) line(`arg ${key}=${args[key]}`);
  for (const file of contextFiles(contextDir)) {
    if (file.endsWith("/")) {
      line(`dir ${file}`);
      continue;
    }
    const full = path.join(contextDir, file);
    const stat = lstatSync(full);
    const content = stat.isSymbolicLink() ? `link:${readlinkSync(full)}` : sha256(readFileSync(full));
    line(`file ${file} ${stat.mode & 0o111 ? "x" : "-"} ${content}`);
  }
  return hash.digest("hex").slice(0, 16);
}

const sha256 = (data) => createHash("sha256").update(data).digest("hex");

/**
 * @param {string[]} [names]
 * @returns {Record<string, string>}
 */
export function tags(names = services(), root = repoRoot) {
  const known = services(root);
  const tag = imageTag(root);
  /** @type {Record<string, string>} */
  const out = {};
  for (const name of names) {
    if (!known.includes(name)) throw new Error(`the Dockerfile has no target ${name} (targets: ${known.join(", ")})`);
    out[name] = tag;
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
