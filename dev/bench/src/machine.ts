import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface Machine {
  cpuModel: string;
  /** Logical CPUs this process may use. */
  cores: number;
  memoryBytes: number;
  os: string;
  node: string;
  ghz: string;
  /** 1-minute load average when the run started and ended: other work on the machine shows here. */
  loadAverageStart: number;
  loadAverageEnd?: number;
}

export async function describeMachine(ghz: string, toolsBin: string): Promise<Machine> {
  const cpus = os.cpus();
  return {
    cpuModel: cpus[0]?.model.trim() || "unknown",
    cores: os.availableParallelism(),
    memoryBytes: os.totalmem(),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    ghz: await ghzVersion(ghz, toolsBin),
    loadAverageStart: os.loadavg()[0]!,
  };
}

/**
 * ghz built by `go install` says "dev"; scripts/tools.sh writes the pinned
 * version it installed next to the binary, which is what we report then.
 */
async function ghzVersion(ghz: string, toolsBin: string): Promise<string> {
  const { stdout, stderr } = await run(ghz, ["--version"]).catch(() => ({ stdout: "", stderr: "" }));
  const said = (stdout || stderr).trim();
  if (said && said !== "dev") return said.replace(/^v/, "");
  const stamp = await readFile(path.join(toolsBin, ".ghz.version"), "utf8").catch(() => "");
  return stamp.split(/\s+/)[0] || said || "unknown";
}
