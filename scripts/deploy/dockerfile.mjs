// Reads meshcart's Dockerfile the way `docker build --target <t>` does, as
// far as this project needs: stages, ARG and ENV scoping, COPY sources,
// .dockerignore. Two users, so that neither keeps a second list of what an
// image contains:
//   - scripts/deploy/image-tag.mjs hashes the files a target copies from the
//     build context into the image's tag;
//   - test/deploy/dockerfile.test.ts assembles the same artefact outside
//     Docker and starts each service from it.
// Anything this reader does not understand is an error, never a guess.
import { createHash } from "node:crypto";
import { existsSync, lstatSync, readFileSync, readdirSync, readlinkSync } from "node:fs";
import path from "node:path";

/** Instructions the reader knows; any other one is refused. */
const KNOWN = new Set(["FROM", "ARG", "ENV", "WORKDIR", "COPY", "RUN", "USER", "LABEL", "EXPOSE", "CMD", "ENTRYPOINT", "STOPSIGNAL"]);

/** Splits a Dockerfile into instructions: comments dropped, continuations joined. */
export function parseDockerfile(text) {
  const instructions = [];
  let current = "";
  let startLine = 0;
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const trimmed = line.trim();
    if (current === "" && (trimmed === "" || trimmed.startsWith("#"))) continue;
    if (current !== "" && trimmed.startsWith("#")) continue; // comment inside a continuation
    if (current === "") startLine = i + 1;
    if (trimmed.endsWith("\\")) {
      current += trimmed.slice(0, -1) + " ";
      continue;
    }
    current += trimmed;
    const match = /^(\S+)\s*(.*)$/s.exec(current);
    const keyword = match[1].toUpperCase();
    if (!KNOWN.has(keyword)) throw new Error(`Dockerfile line ${startLine}: ${keyword} is not understood by scripts/deploy/dockerfile.mjs`);
    instructions.push({ keyword, rest: match[2].trim(), line: startLine });
    current = "";
  }
  if (current !== "") throw new Error("Dockerfile ends inside a line continuation");

  const globalArgs = [];
  const stages = [];
  for (const instruction of instructions) {
    if (instruction.keyword === "FROM") {
      const words = instruction.rest.split(/\s+/);
      const flags = {};
      while (words[0]?.startsWith("--")) {
        const [key, value] = words.shift().slice(2).split("=");
        flags[key] = value;
      }
      const [image, as, name] = words;
      if (as !== undefined && (as.toUpperCase() !== "AS" || !name)) throw new Error(`Dockerfile line ${instruction.line}: bad FROM`);
      stages.push({ name: name ?? String(stages.length), image, platform: flags.platform, line: instruction.line, instructions: [] });
    } else if (stages.length === 0) {
      if (instruction.keyword !== "ARG") throw new Error(`Dockerfile line ${instruction.line}: only ARG may come before the first FROM`);
      globalArgs.push(parseArg(instruction.rest));
    } else {
      stages.at(-1).instructions.push(instruction);
    }
  }
  return { globalArgs, stages };
}

function parseArg(rest) {
  const eq = rest.indexOf("=");
  return eq < 0 ? { name: rest.trim(), value: undefined } : { name: rest.slice(0, eq).trim(), value: unquote(rest.slice(eq + 1).trim()) };
}

function unquote(value) {
  return /^".*"$/s.test(value) || /^'.*'$/s.test(value) ? value.slice(1, -1) : value;
}

/** `$VAR`, `${VAR}`, `${VAR:-default}` and `${VAR:+alt}` as Docker expands them; unset is empty. */
export function substitute(text, vars) {
  return text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([-+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (_, braced, op, word, bare) => {
    const value = vars[braced ?? bare];
    if (op === "-") return value ? value : word;
    if (op === "+") return value ? word : "";
    return value ?? "";
  });
}

/** Key=value pairs of LABEL or ENV (`ENV K V` too), quotes removed. */
function parsePairs(rest) {
  const pairs = [];
  const re = /([A-Za-z_][A-Za-z0-9_.-]*)=("(?:[^"\\]|\\.)*"|'[^']*'|\S*)/g;
  if (!rest.includes("=")) {
    const [key, ...value] = rest.split(/\s+/);
    return [[key, value.join(" ")]];
  }
  for (const match of rest.matchAll(re)) pairs.push([match[1], unquote(match[2])]);
  return pairs;
}

function parseExecForm(rest, line) {
  try {
    const value = JSON.parse(rest);
    if (Array.isArray(value) && value.every((v) => typeof v === "string")) return value;
  } catch {
    // fall through
  }
  throw new Error(`Dockerfile line ${line}: CMD and ENTRYPOINT must use the exec form (a JSON array) so that node is PID 1 and gets SIGTERM`);
}

/**
 * What `docker build --target <target>` with these build args runs: the
 * stages it needs, in build order, with every value expanded.
 * @param {ReturnType<typeof parseDockerfile>} parsed
 * @param {string} target
 * @param {Record<string, string>} [buildArgs]
 */
export function resolveTarget(parsed, target, buildArgs = {}) {
  const globals = {};
  for (const arg of parsed.globalArgs) globals[arg.name] = buildArgs[arg.name] ?? arg.value;
  // BuildKit's automatic platform arguments, for FROM lines.
  const automatic = { BUILDPLATFORM: "", TARGETPLATFORM: "" };

  const byName = new Map(parsed.stages.map((stage) => [stage.name, stage]));
  if (!byName.has(target)) throw new Error(`Dockerfile has no stage named ${target}`);

  const resolved = new Map();
  const order = [];
  const visit = (name, chain) => {
    if (resolved.has(name)) return resolved.get(name);
    if (chain.includes(name)) throw new Error(`Dockerfile stages depend on each other in a cycle: ${[...chain, name].join(" -> ")}`);
    const stage = byName.get(name);
    const image = substitute(stage.image, { ...automatic, ...globals });
    const parent = byName.has(image) ? visit(image, [...chain, name]) : undefined;
    const out = {
      name,
      base: parent ? { stage: parent.name } : { image },
      env: { ...(parent?.env ?? {}) },
      workdir: parent?.workdir ?? "/",
      user: parent?.user,
      cmd: parent?.cmd,
      entrypoint: parent?.entrypoint,
      labels: { ...(parent?.labels ?? {}) },
      steps: [],
    };
    const args = {};
    const vars = () => ({ ...args, ...out.env });
    for (const { keyword, rest, line } of stage.instructions) {
      switch (keyword) {
        case "ARG": {
          const { name: argName, value } = parseArg(rest);
          args[argName] = buildArgs[argName] ?? (value === undefined ? globals[argName] : substitute(value, vars()));
          break;
        }
        case "ENV":
          for (const [key, value] of parsePairs(rest)) out.env[key] = substitute(value, vars());
          break;
        case "LABEL":
          for (const [key, value] of parsePairs(rest)) out.labels[key] = substitute(value, vars());
          break;
        case "WORKDIR": {
          const dir = substitute(rest, vars());
          out.workdir = path.posix.resolve(out.workdir, dir);
          break;
        }
        case "USER":
          out.user = substitute(rest, vars());
          break;
        case "COPY": {
          const words = rest.split(/\s+/);
          const flags = {};
          while (words[0]?.startsWith("--")) {
            const [key, value = "true"] = words.shift().slice(2).split("=");
            flags[key] = substitute(value, vars());
          }
          for (const key of Object.keys(flags)) {
            if (!["from", "chown", "chmod", "link"].includes(key)) throw new Error(`Dockerfile line ${line}: COPY --${key} is not understood`);
          }
          const all = words.map((word) => substitute(word, vars()));
          if (all.length < 2) throw new Error(`Dockerfile line ${line}: COPY needs a source and a destination`);
          const sources = all.slice(0, -1);
          for (const source of sources) {
            if (/[*?[]/.test(source)) throw new Error(`Dockerfile line ${line}: COPY wildcards are not understood (${source})`);
          }
          let from;
          if (flags.from !== undefined) {
            if (!byName.has(flags.from)) throw new Error(`Dockerfile line ${line}: COPY --from=${flags.from} must name a stage`);
            from = visit(flags.from, [...chain, name]).name;
          }
          const dest = path.posix.resolve(out.workdir, all.at(-1)) + (all.at(-1).endsWith("/") ? "/" : "");
          out.steps.push({ kind: "copy", line, from, sources, dest });
          break;
        }
        case "RUN":
          // The shell expands variables itself; it gets the stage's ARGs and ENV.
          out.steps.push({ kind: "run", line, command: rest, env: vars(), workdir: out.workdir });
          break;
        case "CMD":
          out.cmd = parseExecForm(rest, line);
          break;
        case "ENTRYPOINT":
          out.entrypoint = parseExecForm(rest, line);
          break;
        default:
          break; // EXPOSE, STOPSIGNAL: metadata only
      }
    }
    resolved.set(name, out);
    order.push(out);
    return out;
  };
  visit(target, []);
  return { target, stages: order, final: resolved.get(target) };
}

// --- .dockerignore -------------------------------------------------------

/** Docker's .dockerignore rules (Go filepath.Match plus `**`), last match wins. */
export function readDockerignore(contextDir) {
  const file = path.join(contextDir, ".dockerignore");
  const lines = existsSync(file) ? readFileSync(file, "utf8").split("\n") : [];
  const rules = [];
  for (const raw of lines) {
    let pattern = raw.trim();
    if (pattern === "" || pattern.startsWith("#")) continue;
    const exclude = !pattern.startsWith("!");
    if (!exclude) pattern = pattern.slice(1).trim();
    pattern = path.posix.normalize(pattern).replace(/^\/+/, "").replace(/\/+$/, "");
    rules.push({ exclude, pattern, re: patternToRegExp(pattern) });
  }
  return {
    rules,
    /** Whether a context-relative path (or a folder it is in) is left out. */
    ignores(relative) {
      const parts = relative.split("/");
      let excluded = false;
      for (const rule of rules) {
        let matched = false;
        for (let n = parts.length; n >= 1 && !matched; n--) matched = rule.re.test(parts.slice(0, n).join("/"));
        if (matched) excluded = rule.exclude;
      }
      return excluded;
    },
    /** Whether some exception could bring back a file under this folder. */
    mayReinclude(relativeDir) {
      return rules.some((rule) => !rule.exclude && (rule.pattern.startsWith(`${relativeDir}/`) || rule.pattern.includes("*")));
    },
  };
}

function patternToRegExp(pattern) {
  let re = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === "*") {
      if (pattern[i + 1] === "*") {
        i++;
        if (pattern[i + 1] === "/") {
          i++;
          re += "(?:.*/)?";
        } else {
          re += ".*";
        }
      } else {
        re += "[^/]*";
      }
    } else if (c === "?") {
      re += "[^/]";
    } else if (c === "[") {
      const end = pattern.indexOf("]", i + 1);
      if (end < 0) throw new Error(`.dockerignore: unclosed [ in ${pattern}`);
      let cls = pattern.slice(i + 1, end);
      if (cls.startsWith("^") || cls.startsWith("!")) cls = `^${cls.slice(1)}`;
      re += `[${cls.replaceAll("\\", "\\\\")}]`;
      i = end;
    } else if (c === "\\" && i + 1 < pattern.length) {
      re += escapeRegExp(pattern[++i]);
    } else {
      re += escapeRegExp(c);
    }
  }
  return new RegExp(`^${re}$`);
}

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

// --- the build context a target copies ---------------------------------------

/**
 * Every file of the build context that the target's stages COPY, as sorted
 * context-relative paths, after .dockerignore. A named source that does not
 * exist or is ignored is an error, as it is for docker build.
 */
export function contextFiles(contextDir, build) {
  const ignore = readDockerignore(contextDir);
  const files = new Set();
  const walk = (relative) => {
    const full = path.join(contextDir, relative);
    const stat = lstatSync(full);
    if (stat.isDirectory()) {
      if (relative !== "" && ignore.ignores(relative) && !ignore.mayReinclude(relative)) return;
      for (const entry of readdirSync(full).sort()) walk(relative === "" ? entry : `${relative}/${entry}`);
    } else if (!ignore.ignores(relative)) {
      files.add(relative);
    }
  };
  for (const stage of build.stages) {
    for (const step of stage.steps) {
      if (step.kind !== "copy" || step.from !== undefined) continue;
      for (const source of step.sources) {
        const relative = path.posix.normalize(source).replace(/^\/+/, "").replace(/\/+$/, "");
        const full = path.join(contextDir, relative);
        if (!existsSync(full)) throw new Error(`COPY ${source} (Dockerfile line ${step.line}): no such file in the build context`);
        if (relative !== "" && ignore.ignores(relative) && !lstatSync(full).isDirectory()) {
          throw new Error(`COPY ${source} (Dockerfile line ${step.line}): excluded by .dockerignore`);
        }
        walk(relative === "." ? "" : relative);
      }
    }
  }
  return [...files].sort();
}

/** The files of one COPY step from the context, for the artefact test. */
export function copySourceFiles(contextDir, source) {
  return contextFiles(contextDir, { stages: [{ steps: [{ kind: "copy", sources: [source], line: 0 }] }] });
}

/**
 * The image's tag: a hash of the Dockerfile, the .dockerignore, the target,
 * the build args and every context file the target copies (path, executable
 * bit, content). Same inputs, same tag; any change to them, a new tag.
 */
export function imageTag(contextDir, target, buildArgs = {}, dockerfile = "Dockerfile") {
  const text = readFileSync(path.join(contextDir, dockerfile), "utf8");
  const build = resolveTarget(parseDockerfile(text), target, buildArgs);
  const hash = createHash("sha256");
  const line = (value) => hash.update(`${value}\n`);
  line(`dockerfile ${sha256(text)}`);
  const ignoreFile = path.join(contextDir, ".dockerignore");
  line(`dockerignore ${existsSync(ignoreFile) ? sha256(readFileSync(ignoreFile)) : "-"}`);
  line(`target ${target}`);
  for (const key of Object.keys(buildArgs).sort()) line(`arg ${key}=${buildArgs[key]}`);
  for (const file of contextFiles(contextDir, build)) {
    const full = path.join(contextDir, file);
    const stat = lstatSync(full);
    const content = stat.isSymbolicLink() ? `link:${readlinkSync(full)}` : sha256(readFileSync(full));
    line(`file ${file} ${stat.mode & 0o111 ? "x" : "-"} ${content}`);
  }
  return hash.digest("hex").slice(0, 16);
}

function sha256(data) {
  return createHash("sha256").update(data).digest("hex");
}

/**
 * The service targets: stages that set their own CMD.
 * @returns {string[]}
 */
export function serviceTargets(parsed) {
  return parsed.stages.filter((stage) => stage.instructions.some((i) => i.keyword === "CMD")).map((stage) => stage.name);
}
