import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { sleep } from "@meshcart/lib";

/**
 * Memory cgroups for the bench's memory step: each service runs in a
 * cgroup of its own whose limit is its container's limit in the chart, so
 * that the kernel charges and limits it as Kubernetes would (the kubelet
 * sets the same knob: memory.max on cgroup v2, memory.limit_in_bytes on v1).
 * cgroup v2 is used where its memory controller is available, else v1's
 * memory hierarchy (both need root, as creating cgroups does). Elsewhere
 * (macOS, a container without a writable cgroup filesystem, a user who is
 * not root) the step reports why it could not measure.
 */

export type CgroupVersion = "v2" | "v1";

export interface MemoryReading {
  /** Charged now (memory.current / memory.usage_in_bytes): anonymous memory plus the page cache charged to it. */
  usageBytes: number;
  /**
   * The working set, as the kubelet computes it (usage less inactive file
   * pages, which the kernel reclaims first): what `kubectl top` shows and
   * what eviction and scheduling pressure are judged by.
   */
  workingSetBytes: number;
  /** The kernel's own high-water mark since the cgroup was made (memory.peak / memory.max_usage_in_bytes); undefined when the kernel has none. */
  peakBytes: number | undefined;
  /** Times the usage hit the limit and the kernel had to reclaim (memory.events "max" / memory.failcnt). */
  limitHits: number;
  /** Processes the kernel's OOM killer killed in it (memory.events / memory.oom_control "oom_kill"). */
  oomKills: number;
}

export interface MemoryCgroup {
  readonly name: string;
  readonly limitBytes: number;
  /** Write a pid here to move the process in (what `sh -c 'echo $$ > …; exec …'` does before Node starts). */
  readonly procsFile: string;
  read(): Promise<MemoryReading>;
  remove(): Promise<void>;
}

export interface CgroupHost {
  version: CgroupVersion;
  /** The folder the bench's cgroups are made in. */
  parent: string;
  create(name: string, limitBytes: number): Promise<MemoryCgroup>;
  /** Removes the parent folder (after every cgroup in it). */
  remove(): Promise<void>;
}

/** A place to make memory cgroups, or why there is none. */
export async function memoryCgroups(label: string, mounts = "/proc/mounts"): Promise<CgroupHost | { unavailable: string }> {
  if (process.platform !== "linux") return { unavailable: `${process.platform} has no cgroups` };
  if (process.getuid?.() !== 0) return { unavailable: "making cgroups needs root (run make bench as root, or in a VM or container where you are)" };
  let table: string;
  try {
    table = await fs.readFile(mounts, "utf8");
  } catch {
    return { unavailable: `${mounts} cannot be read` };
  }
  const entries = table
    .split("\n")
    .map((line) => line.split(" "))
    .filter((f) => f.length >= 4)
    .map(([, where, type, options]) => ({ where: where!, type: type!, options: options!.split(",") }));
  const reasons: string[] = [];

  // v2: the unified hierarchy, if the memory controller is enabled for its children.
  for (const mount of entries.filter((e) => e.type === "cgroup2")) {
    const controllers = await fs.readFile(path.join(mount.where, "cgroup.controllers"), "utf8").catch(() => "");
    if (!controllers.split(/\s+/).includes("memory")) {
      reasons.push(`cgroup v2 at ${mount.where} has no memory controller`);
      continue;
    }
    const subtree = path.join(mount.where, "cgroup.subtree_control");
    await fs.writeFile(subtree, "+memory").catch(() => undefined);
    if (!(await fs.readFile(subtree, "utf8").catch(() => "")).split(/\s+/).includes("memory")) {
      reasons.push(`cgroup v2 at ${mount.where} does not delegate its memory controller`);
      continue;
    }
    const parent = path.join(mount.where, label);
    try {
      await fs.mkdir(parent, { recursive: true });
      await fs.writeFile(path.join(parent, "cgroup.subtree_control"), "+memory");
      return host("v2", parent);
    } catch (error) {
      reasons.push(`cannot make a cgroup under ${mount.where}: ${(error as Error).message}`);
    }
  }
  // v1: the memory hierarchy.
  for (const mount of entries.filter((e) => e.type === "cgroup" && e.options.includes("memory"))) {
    const parent = path.join(mount.where, label);
    try {
      await fs.mkdir(parent, { recursive: true });
      return host("v1", parent);
    } catch (error) {
      reasons.push(`cannot make a cgroup under ${mount.where}: ${(error as Error).message}`);
    }
  }
  if (reasons.length === 0) reasons.push("no cgroup filesystem with a memory controller is mounted");
  return { unavailable: reasons.join("; ") };
}

function host(version: CgroupVersion, parent: string): CgroupHost {
  const made: MemoryCgroup[] = [];
  return {
    version,
    parent,
    async create(name, limitBytes) {
      const dir = path.join(parent, name);
      await fs.mkdir(dir, { recursive: true });
      const group = version === "v2" ? await v2Group(dir, name, limitBytes) : await v1Group(dir, name, limitBytes);
      made.push(group);
      return group;
    },
    async remove() {
      for (const group of made.splice(0)) await group.remove();
      await fs.rmdir(parent).catch(() => undefined);
    },
  };
}

async function v2Group(dir: string, name: string, limitBytes: number): Promise<MemoryCgroup> {
  await fs.writeFile(path.join(dir, "memory.max"), String(limitBytes));
  // As a pod without swap: the limit is the limit.
  if (existsSync(path.join(dir, "memory.swap.max"))) await fs.writeFile(path.join(dir, "memory.swap.max"), "0");
  return {
    name,
    limitBytes,
    procsFile: path.join(dir, "cgroup.procs"),
    async read() {
      const events = keyValues(await fs.readFile(path.join(dir, "memory.events"), "utf8"));
      const peak = await fs.readFile(path.join(dir, "memory.peak"), "utf8").catch(() => undefined);
      const usageBytes = Number((await fs.readFile(path.join(dir, "memory.current"), "utf8")).trim());
      const stat = keyValues(await fs.readFile(path.join(dir, "memory.stat"), "utf8"));
      return {
        usageBytes,
        workingSetBytes: Math.max(0, usageBytes - (stat.get("inactive_file") ?? 0)),
        peakBytes: peak === undefined ? undefined : Number(peak.trim()),
        limitHits: events.get("max") ?? 0,
        oomKills: events.get("oom_kill") ?? 0,
      };
    },
    remove: () => removeGroup(dir),
  };
}

async function v1Group(dir: string, name: string, limitBytes: number): Promise<MemoryCgroup> {
  await fs.writeFile(path.join(dir, "memory.limit_in_bytes"), String(limitBytes));
  // As a pod without swap: the limit is the limit (memsw exists only with swap accounting).
  const memsw = path.join(dir, "memory.memsw.limit_in_bytes");
  if (existsSync(memsw)) await fs.writeFile(memsw, String(limitBytes)).catch(() => undefined);
  await fs.writeFile(path.join(dir, "memory.swappiness"), "0").catch(() => undefined);
  return {
    name,
    limitBytes,
    procsFile: path.join(dir, "cgroup.procs"),
    async read() {
      const number = async (file: string) => Number((await fs.readFile(path.join(dir, file), "utf8")).trim());
      const oom = keyValues(await fs.readFile(path.join(dir, "memory.oom_control"), "utf8"));
      const usageBytes = await number("memory.usage_in_bytes");
      const stat = keyValues(await fs.readFile(path.join(dir, "memory.stat"), "utf8"));
      return {
        usageBytes,
        workingSetBytes: Math.max(0, usageBytes - (stat.get("total_inactive_file") ?? 0)),
        peakBytes: await number("memory.max_usage_in_bytes"),
        limitHits: await number("memory.failcnt"),
        oomKills: oom.get("oom_kill") ?? 0,
      };
    },
    remove: () => removeGroup(dir),
  };
}

/** "key value" lines (memory.events, memory.oom_control). */
export function keyValues(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const [key, value] = line.trim().split(/\s+/);
    if (key && value !== undefined && Number.isFinite(Number(value))) out.set(key, Number(value));
  }
  return out;
}

/** A cgroup can be removed once its processes are gone; they may take a moment to be reaped. */
async function removeGroup(dir: string): Promise<void> {
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      await fs.rmdir(dir);
      return;
    } catch {
      await sleep(100);
    }
  }
}
