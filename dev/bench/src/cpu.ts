import { readFile, readdir } from "node:fs/promises";
import path from "node:path";

/**
 * CPU time that processes have used, from /proc (Linux). Unlike a rate, CPU
 * time per call barely depends on what else runs on the machine, so it is
 * the figure that still means something on a shared one; elsewhere the
 * functions answer undefined and the report leaves it out.
 */

/** Clock ticks per second of /proc/<pid>/stat: 100 on every Linux that Node runs on. */
const TICKS_PER_SECOND = 100;

export interface ProcStat {
  ppid: number;
  /** User plus system time of the process itself, in seconds. */
  cpuSeconds: number;
  /** Of its children that have ended and been waited for. */
  childrenCpuSeconds: number;
}

/** Fields of /proc/<pid>/stat; the command name may hold spaces and parentheses, so fields count from its last ")". */
export function parseProcStat(text: string): ProcStat | undefined {
  const end = text.lastIndexOf(")");
  if (end < 0) return undefined;
  const fields = text
    .slice(end + 2)
    .trim()
    .split(/\s+/);
  // After the name: state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17), numbered from 1.
  const at = (field: number) => Number(fields[field - 3]);
  const values = [at(4), at(14), at(15), at(16), at(17)];
  if (values.some((v) => !Number.isFinite(v))) return undefined;
  const [ppid, utime, stime, cutime, cstime] = values as [number, number, number, number, number];
  return { ppid, cpuSeconds: (utime + stime) / TICKS_PER_SECOND, childrenCpuSeconds: (cutime + cstime) / TICKS_PER_SECOND };
}

export async function procStat(pid: number | "self"): Promise<ProcStat | undefined> {
  try {
    return parseProcStat(await readFile(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return undefined;
  }
}

/** CPU seconds of one process; undefined without /proc. */
export async function cpuSeconds(pid: number): Promise<number | undefined> {
  return (await procStat(pid))?.cpuSeconds;
}

/**
 * CPU seconds of this process's children that have exited: read before and
 * after a ghz run, the difference is what the load tool itself burnt.
 */
export async function exitedChildrenCpuSeconds(): Promise<number | undefined> {
  return (await procStat("self"))?.childrenCpuSeconds;
}

/**
 * CPU seconds of a Postgres cluster: the postmaster (its pid is the first
 * line of postmaster.pid) and every process it forked (one backend per
 * connection, plus the WAL writer, checkpointer and friends), with the time
 * of those that already ended; `apart`: the share of the backends serving
 * the databases named (by their process titles).
 */
export async function postgresCpuSeconds(dataDir: string, apart: ReadonlySet<string> = new Set()): Promise<{ total: number; apart: number } | undefined> {
  let postmaster: number;
  try {
    postmaster = Number((await readFile(path.join(dataDir, "postmaster.pid"), "utf8")).split("\n")[0]);
  } catch {
    return undefined;
  }
  const own = await procStat(postmaster);
  if (!own) return undefined;
  let total = own.cpuSeconds + own.childrenCpuSeconds;
  let apartSeconds = 0;
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await procStat(Number(entry));
    if (stat?.ppid !== postmaster) continue;
    total += stat.cpuSeconds;
    if (apart.size > 0 && apart.has((await backendDatabase(Number(entry))) ?? "")) apartSeconds += stat.cpuSeconds;
  }
  return { total, apart: apartSeconds };
}

/** The database a Postgres backend serves, from its process title ("postgres: <user> <database> <host> <state>"); undefined for other processes. */
export async function backendDatabase(pid: number): Promise<string | undefined> {
  try {
    return databaseOfTitle((await readFile(`/proc/${pid}/cmdline`, "utf8")).replaceAll("\0", " "));
  } catch {
    return undefined;
  }
}

export function databaseOfTitle(title: string): string | undefined {
  return /^postgres: \S+ (\S+) (?:\[local\]|\S+\(\d+\))/.exec(title.trim())?.[1];
}
