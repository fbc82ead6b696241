import fs from "node:fs/promises";
import path from "node:path";
import { isErrno } from "./net.js";
import { sleep } from "@meshcart/lib";

const leftoverGraceMs = 3_000;

/**
 * A Postgres that crashed or was killed with its supervisor leaves
 * postmaster.pid behind. Postgres copes when that pid is dead, but refuses to
 * start when the pid has since been reused by an unrelated process, which is
 * routine in containers. This tells the cases apart by looking for processes
 * that really belong to the cluster (a postgres binary whose working
 * directory is the data directory) and removes the file only when none is
 * left. A live server on the directory is reported with how to stop it.
 *
 * Without /proc (macOS) it does nothing and Postgres's own check applies.
 */
export async function clearStalePidFile(dataDir: string, log: (line: string) => void): Promise<void> {
  const pidFile = path.join(dataDir, "postmaster.pid");
  const pid = await readPid(pidFile);
  if (pid === undefined || !(await hasProcfs())) return;

  const deadline = Date.now() + leftoverGraceMs;
  let holders = await clusterProcesses(dataDir);
  // Backends of a crashed postmaster notice its death and exit on their own
  // within moments; give them that time before calling them leftovers.
  while (holders.length > 0 && !holders.includes(pid) && Date.now() < deadline) {
    await sleep(100);
    holders = await clusterProcesses(dataDir);
  }
  if (holders.includes(pid)) {
    throw new Error(
      `Postgres is already running on ${dataDir} (pid ${pid}), probably left over from an earlier run ` +
        `that did not shut down. Stop it with "kill -INT ${pid}" and try again.`,
    );
  }
  if (holders.length > 0) {
    throw new Error(
      `processes of a crashed Postgres (pids ${holders.join(", ")}) still use ${dataDir}. ` + `Stop them with "kill -QUIT ${holders.join(" ")}" and try again.`,
    );
  }
  await fs.rm(pidFile, { force: true });
  log(`removed the stale postmaster.pid (pid ${pid}) of a Postgres that did not shut down cleanly`);
}

async function readPid(pidFile: string): Promise<number | undefined> {
  let text: string;
  try {
    text = await fs.readFile(pidFile, "utf8");
  } catch (error) {
    if (isErrno(error, "ENOENT")) return undefined;
    throw error;
  }
  const pid = Number.parseInt(text.split("\n", 1)[0] ?? "", 10);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

async function hasProcfs(): Promise<boolean> {
  return fs.access("/proc/self/cwd").then(
    () => true,
    () => false,
  );
}

/** Pids of postgres processes (postmaster and backends) working in `dataDir`. */
async function clusterProcesses(dataDir: string): Promise<number[]> {
  const target = await fs.realpath(dataDir);
  const pids = (await fs.readdir("/proc")).filter((entry) => /^\d+$/.test(entry));
  const found = await Promise.all(
    pids.map(async (entry) => {
      try {
        const [cwd, exe] = await Promise.all([fs.readlink(`/proc/${entry}/cwd`), fs.readlink(`/proc/${entry}/exe`)]);
        return cwd === target && path.basename(exe) === "postgres" ? Number(entry) : undefined;
      } catch {
        // Gone meanwhile, or another user's process: not ours either way.
        return undefined;
      }
    }),
  );
  return found.filter((pid) => pid !== undefined);
}
