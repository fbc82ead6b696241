import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { contextFiles } from "../../../scripts/deploy/image-tag.mjs";

/** One instruction of the Dockerfile: comments dropped, continuation lines joined. */
interface Instruction {
  keyword: string;
  args: string;
}

export interface Artefact {
  /** The runtime stage's files (what the image adds to its Node base), laid out from "/". */
  root: string;
  /** The image's WORKDIR, inside root. */
  workdir: string;
  /** The image's ENV. */
  env: Record<string, string>;
  /** USER, as the Dockerfile writes it. */
  user: string;
  /** Each service target's command (its CMD). */
  commands: Record<string, string[]>;
}

/** The Dockerfile's stages by name, each a list of instructions. */
export function dockerfileStages(text: string): Map<string, Instruction[]> {
  const stages = new Map<string, Instruction[]>();
  let current: Instruction[] | undefined;
  const joined = text.replace(/\\\n\s*/g, " ");
  for (const line of joined.split("\n").map((l) => l.trim())) {
    if (line === "" || line.startsWith("#")) continue;
    const [, keyword, args] = /^(\S+)\s*(.*)$/.exec(line)!;
    if (keyword!.toUpperCase() === "FROM") {
      const name = /\sAS\s+(\S+)$/i.exec(args!)?.[1];
      if (!name) throw new Error(`Dockerfile: every stage needs a name: ${line}`);
      stages.set(name, (current = []));
    }
    current?.push({ keyword: keyword!.toUpperCase(), args: args! });
  }
  return stages;
}

/**
 * Builds what the Dockerfile's runtime stage holds, without Docker, by
 * running the stages it needs in folders standing for their "/": FROM a
 * stage copies that folder, FROM an image starts empty (the host's Node,
 * pinned to the same version, stands in for the base image's); COPY takes
 * exactly what Docker would from the build context (the files
 * scripts/deploy/image-tag.mjs hashes) or from another stage; RUN runs the
 * same command in the stage's WORKDIR (`--mount` dropped: npm's cache is
 * the host's). Only the instructions this Dockerfile uses are understood;
 * anything else is an error, never a guess.
 *
 * `runEnv` is added to every RUN (npm reading its cache first): it never
 * changes what a command installs, only where npm reads packages from.
 */
export async function assembleImage(options: { context: string; scratch: string; runEnv?: Record<string, string> }): Promise<Artefact> {
  const { context, scratch } = options;
  const stages = dockerfileStages(readFileSync(path.join(context, "Dockerfile"), "utf8"));
  const dirOf = (stage: string) => path.join(scratch, `stage-${stage}`);
  const files = contextFiles(context).filter((f) => !f.endsWith("/"));
  const built = new Map<string, { workdir: string; env: Record<string, string>; user: string }>();

  const build = async (name: string): Promise<void> => {
    if (built.has(name)) return;
    const root = dirOf(name);
    let workdir = "/";
    let env: Record<string, string> = {};
    let user = "";
    for (const { keyword, args } of stages.get(name) ?? []) {
      const words = args.split(/\s+/);
      if (keyword === "FROM") {
        const base = words.filter((w) => !w.startsWith("--"))[0]!;
        await fs.rm(root, { recursive: true, force: true });
        if (stages.has(base)) {
          await build(base);
          await fs.cp(dirOf(base), root, { recursive: true, verbatimSymlinks: true });
          ({ workdir, env, user } = structuredClone(built.get(base)!));
        } else {
          await fs.mkdir(root, { recursive: true });
        }
      } else if (keyword === "WORKDIR") {
        workdir = path.posix.resolve(workdir, args);
        await fs.mkdir(path.join(root, workdir), { recursive: true });
      } else if (keyword === "COPY") {
        const from = words[0]!.startsWith("--from=") ? words.shift()!.slice("--from=".length) : undefined;
        if (words.some((w) => w.startsWith("--"))) throw new Error(`Dockerfile: COPY ${args}: flag not understood here`);
        const dest = path.join(root, path.posix.resolve(workdir, words.at(-1)!));
        for (const source of words.slice(0, -1)) {
          if (from) {
            await build(from);
            await fs.mkdir(dest, { recursive: true });
            await fs.cp(path.join(dirOf(from), source), dest, { recursive: true, verbatimSymlinks: true });
          } else {
            const prefix = source.replace(/\/$/, "");
            const isFolder = source.endsWith("/");
            for (const file of files.filter((f) => (isFolder ? f.startsWith(`${prefix}/`) : f === prefix))) {
              const to = path.join(dest, isFolder ? path.relative(prefix, file) : path.basename(file));
              await fs.mkdir(path.dirname(to), { recursive: true });
              await fs.cp(path.join(context, file), to, { verbatimSymlinks: true });
            }
          }
        }
      } else if (keyword === "RUN") {
        await runStep(name, path.join(root, workdir), args.replace(/^(--mount=\S+\s+)+/, ""), { ...env, ...options.runEnv });
      } else if (keyword === "ENV") {
        const [key, value] = args.split("=");
        env[key!] = value!;
      } else if (keyword === "USER") {
        user = args;
      } else if (!["ARG", "LABEL", "EXPOSE", "CMD"].includes(keyword)) {
        throw new Error(`Dockerfile: ${keyword} is not understood here`);
      }
    }
    built.set(name, { workdir, env, user });
  };

  await build("runtime");
  const runtime = built.get("runtime")!;
  const commands: Record<string, string[]> = {};
  for (const [name, instructions] of stages) {
    const from = instructions[0]!.args.split(/\s+/)[0];
    const cmd = instructions.find((i) => i.keyword === "CMD");
    if (from === "runtime" && cmd) commands[name] = JSON.parse(cmd.args) as string[];
  }
  const root = path.join(scratch, "image");
  await fs.rm(root, { recursive: true, force: true });
  await fs.rename(dirOf("runtime"), root);
  for (const name of built.keys()) await fs.rm(dirOf(name), { recursive: true, force: true });
  return { root, workdir: path.join(root, runtime.workdir), env: runtime.env, user: runtime.user, commands };
}

/**
 * The host's way to the registry (a proxy, the CA that proxy signs with),
 * which a build's RUN gets from the Docker daemon's network: without it an
 * npm ci that misses its cache (a new dependency) fails on a machine whose
 * registry is reached through a TLS-inspecting proxy.
 */
function hostNetwork(): Record<string, string> {
  const names = ["NODE_EXTRA_CA_CERTS", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"];
  return Object.fromEntries(names.flatMap((name) => (process.env[name] ? [[name, process.env[name]]] : [])));
}

async function runStep(stage: string, cwd: string, command: string, env: Record<string, string>) {
  // Outside a container an absolute path would reach the host: refuse it.
  if (/(^|[\s=;&|(])\//.test(command)) throw new Error(`Dockerfile (${stage}): RUN uses an absolute path, which cannot run outside a container: ${command}`);
  await new Promise<void>((resolve, reject) => {
    const child = spawn("sh", ["-c", command], {
      cwd,
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/root", ...hostNetwork(), ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.once("error", reject);
    child.once("close", (code) =>
      code === 0 ? resolve() : reject(new Error(`Dockerfile (${stage}): RUN ${command} exited ${code}:\n${output.slice(-4000)}`)),
    );
  });
}
