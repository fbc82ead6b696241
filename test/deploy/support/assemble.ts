import { spawn } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import { copySourceFiles, parseDockerfile, resolveTarget } from "../../../scripts/deploy/dockerfile.mjs";

export interface Artefact {
  /** The final stage's root folder ("/" of the image). */
  root: string;
  /** The image's WORKDIR, inside root. */
  workdir: string;
  /** The process the image starts: ENTRYPOINT then CMD. */
  command: string[];
  /** The image's ENV. */
  env: Record<string, string>;
  /** USER, as the Dockerfile writes it. */
  user: string | undefined;
  labels: Record<string, string>;
}

type Stage = ReturnType<typeof resolveTarget>["stages"][number];

/**
 * Builds one Dockerfile target without Docker: every stage is a folder
 * standing for the image's "/", a base image is an empty folder (the host's
 * Node, pinned to the same version, stands in for the image's), COPY copies
 * exactly what Docker would (context files after .dockerignore, or another
 * stage's files) and RUN runs the same command in the stage's WORKDIR with
 * the stage's ARGs and ENV. What the target would hold is then in
 * `<scratch>/<target>`; the intermediate stages are removed.
 *
 * `runEnv` is added to every RUN (for example npm's offline cache setting);
 * it never changes what a command does, only where npm reads packages from.
 */
export async function assembleTarget(options: {
  context: string;
  scratch: string;
  target: string;
  buildArgs: Record<string, string>;
  runEnv?: Record<string, string>;
  log?: (line: string) => void;
}): Promise<Artefact> {
  const { context, scratch, target } = options;
  const parsed = parseDockerfile(await fs.readFile(path.join(context, "Dockerfile"), "utf8"));
  const build = resolveTarget(parsed, target, options.buildArgs);
  const dirOf = (stage: string) => path.join(scratch, `stage-${target}-${stage}`);

  for (const stage of build.stages) {
    const root = dirOf(stage.name);
    await fs.rm(root, { recursive: true, force: true });
    if ("stage" in stage.base && stage.base.stage) {
      await fs.cp(dirOf(stage.base.stage), root, { recursive: true, verbatimSymlinks: true });
    } else {
      await fs.mkdir(root, { recursive: true });
    }
    await fs.mkdir(path.join(root, stage.workdir), { recursive: true });
    for (const step of stage.steps) {
      if (step.kind === "copy") {
        await copyStep(context, root, step.from === undefined ? undefined : dirOf(step.from), step.sources, step.dest);
      } else {
        await runStep(root, stage, step, options.runEnv ?? {}, options.log);
      }
    }
  }
  const final = build.final;
  const root = path.join(scratch, target);
  await fs.rm(root, { recursive: true, force: true });
  await fs.rename(dirOf(final.name), root);
  for (const stage of build.stages) await fs.rm(dirOf(stage.name), { recursive: true, force: true });
  return {
    root,
    workdir: path.join(root, final.workdir),
    command: [...(final.entrypoint ?? []), ...(final.cmd ?? [])],
    env: final.env,
    user: final.user,
    labels: final.labels,
  };
}

/** Docker's COPY: a folder's contents go into the destination; a file into it when it ends with "/". */
async function copyStep(context: string, root: string, fromStage: string | undefined, sources: string[], dest: string) {
  const target = path.join(root, dest);
  const intoFolder = dest.endsWith("/") || sources.length > 1;
  for (const source of sources) {
    if (fromStage === undefined) {
      const base = path.posix.normalize(source).replace(/\/+$/, "");
      const isDir = (await fs.lstat(path.join(context, base))).isDirectory();
      for (const file of copySourceFiles(context, source)) {
        const relative = isDir ? path.posix.relative(base === "." ? "" : base, file) : path.posix.basename(file);
        const to = isDir || intoFolder ? path.join(target, relative) : target;
        await fs.mkdir(path.dirname(to), { recursive: true });
        await fs.cp(path.join(context, file), to, { verbatimSymlinks: true });
      }
    } else {
      const from = path.join(fromStage, source);
      const stat = await fs.lstat(from).catch(() => {
        throw new Error(`COPY --from: ${source} does not exist in that stage`);
      });
      const to = stat.isDirectory() ? target : intoFolder ? path.join(target, path.basename(source)) : target;
      await fs.mkdir(stat.isDirectory() ? to : path.dirname(to), { recursive: true });
      await fs.cp(from, to, { recursive: true, verbatimSymlinks: true, force: true });
    }
  }
}

async function runStep(
  root: string,
  stage: Stage,
  step: { command: string; env: Record<string, string>; workdir: string; line: number },
  runEnv: Record<string, string>,
  log?: (line: string) => void,
) {
  // Outside a container an absolute path would reach the host: refuse it.
  if (/(^|[\s=;&|(])\//.test(step.command)) {
    throw new Error(`Dockerfile line ${step.line}: RUN uses an absolute path, which this test cannot run outside a container: ${step.command}`);
  }
  const cwd = path.join(root, step.workdir);
  log?.(`[${stage.name}] RUN ${step.command}`);
  const env = { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/root", ...step.env, ...runEnv };
  await new Promise<void>((resolve, reject) => {
    const child = spawn("sh", ["-c", step.command], { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.once("error", reject);
    child.once("close", (code) => {
      if (code === 0) resolve();
      else reject(new Error(`Dockerfile line ${step.line} (${stage.name}): RUN ${step.command} exited ${code}:\n${output.slice(-4000)}`));
    });
  });
}
