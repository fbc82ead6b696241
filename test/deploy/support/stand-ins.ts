import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { repoRoot, toolsBin } from "./paths.js";

/**
 * A sandbox in which the deploy scripts run against the stand-in docker,
 * kind, kubectl, helm, linkerd, grpcurl and df of test/deploy/stand-ins: they
 * record every call and answer like the real tools from a pretend machine
 * and cluster (a JSON state file). The PATH holds the stand-ins, node and
 * the few system commands a test allows, nothing else, so a script that
 * starts to depend on another command fails its test.
 */

export const STAND_INS = ["docker", "kind", "kubectl", "helm", "linkerd", "grpcurl", "df"] as const;

const STAND_IN = path.join(repoRoot, "test/deploy/stand-ins/stand-in.sh");

export interface Call {
  tool: string;
  args: string[];
  changed: boolean;
}

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
  /** The commands a real run traced ("+ cmd" on stderr). */
  trace: string[];
  calls: Call[];
}

export interface RunOptions {
  args?: string[];
  env?: Record<string, string>;
  /** Stand-ins left off the PATH, as on a machine without that tool. */
  without?: readonly string[];
}

export interface StandInSandbox {
  readonly dir: string;
  /** The pretend machine and cluster, as JSON. */
  readonly statePath: string;
  /** Runs scripts/deploy/<name> in the sandbox against the current state. */
  script(name: string, options?: RunOptions): Promise<Result>;
  remove(): Promise<void>;
}

/** `basics`: the system commands the scripts under test may use besides the stand-ins and node. */
export async function standInSandbox(prefix: string, basics: readonly string[]): Promise<StandInSandbox> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), `meshcart-${prefix}-`));
  const system = path.join(dir, "system");
  await fs.mkdir(system);
  for (const name of basics) {
    const found = which(name);
    if (!found) throw new Error(`the deploy tests need ${name} on this machine`);
    await fs.symlink(found, path.join(system, name));
  }
  await fs.symlink(process.execPath, path.join(system, "node"));
  const statePath = path.join(dir, "state.json");

  const toolDirs = new Map<string, string>();
  async function toolDir(without: readonly string[]): Promise<string> {
    const key = [...without].sort().join("-");
    let found = toolDirs.get(key);
    if (!found) {
      found = path.join(dir, key ? `bin-without-${key}` : "bin");
      await fs.mkdir(found);
      for (const tool of STAND_INS.filter((t) => !without.includes(t))) await fs.symlink(STAND_IN, path.join(found, tool));
      toolDirs.set(key, found);
    }
    return found;
  }

  return {
    dir,
    statePath,
    async script(name, options = {}) {
      const log = path.join(dir, `log-${Date.now()}-${Math.random().toString(16).slice(2)}.jsonl`);
      await fs.writeFile(log, "");
      const env = {
        PATH: `${await toolDir(options.without ?? [])}:${system}`,
        HOME: dir,
        STANDIN_MJS: path.join(repoRoot, "test/deploy/stand-ins/stand-in.mjs"),
        STANDIN_STATE: statePath,
        STANDIN_REAL_HELM: path.join(toolsBin, "helm"),
        STANDIN_LOG: log,
        ...options.env,
      };
      const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        execFile(path.join(repoRoot, "scripts/deploy", name), options.args ?? [], { env, cwd: dir, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) =>
          resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
        );
      });
      const calls = (await fs.readFile(log, "utf8"))
        .split("\n")
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Call);
      const trace = stderr
        .split("\n")
        .filter((line) => line.startsWith("+ "))
        .map((line) => line.slice(2));
      return { code, stdout, stderr, trace, calls };
    },
    remove: () => fs.rm(dir, { recursive: true, force: true }),
  };
}

/** The machine's own command, never one of node_modules/.bin. */
function which(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(":")) {
    const file = path.join(dir, name);
    if (dir && existsSync(file) && !dir.startsWith(path.join(repoRoot, "node_modules"))) return file;
  }
  return undefined;
}
