/**
 * Where a service spends its CPU, from a V8 profile (`node --cpu-prof`,
 * which `make bench BENCH_PROFILE=1` turns on): self time per function and
 * per package, the two views that say what to look at first.
 */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface HotSpot {
  name: string;
  /** Self time in milliseconds. */
  selfMs: number;
  /** Share of all sampled time, idle included. */
  share: number;
}

export interface ProfileSummary {
  totalMs: number;
  /** Time the process had nothing to do. */
  idleShare: number;
  garbageCollectionShare: number;
  functions: HotSpot[];
  packages: HotSpot[];
}

export function summariseProfile(profile: CpuProfile, top = 15): ProfileSummary {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  // A sample's time is the delta to the next one: the time until the next tick.
  for (let i = 0; i < samples.length; i++) {
    const ms = (deltas[i + 1] ?? 0) / 1000;
    self.set(samples[i]!, (self.get(samples[i]!) ?? 0) + ms);
  }
  const total = [...self.values()].reduce((sum, ms) => sum + ms, 0);
  const functions = new Map<string, number>();
  const packages = new Map<string, number>();
  let idle = 0;
  let gc = 0;
  for (const [id, ms] of self) {
    const frame = byId.get(id)?.callFrame;
    if (!frame) continue;
    if (frame.functionName === "(idle)") {
      idle += ms;
      continue;
    }
    if (frame.functionName === "(garbage collector)") gc += ms;
    const name = `${frame.functionName || "(anonymous)"} ${location(frame.url, frame.lineNumber)}`.trim();
    functions.set(name, (functions.get(name) ?? 0) + ms);
    const pkg = packageOf(frame.url, frame.functionName);
    packages.set(pkg, (packages.get(pkg) ?? 0) + ms);
  }
  const rank = (entries: Map<string, number>) =>
    [...entries.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, selfMs]) => ({ name, selfMs, share: total > 0 ? selfMs / total : 0 }));
  return {
    totalMs: total,
    idleShare: total > 0 ? idle / total : 0,
    garbageCollectionShare: total > 0 ? gc / total : 0,
    functions: rank(functions),
    packages: rank(packages),
  };
}

/** The npm package of a script URL, "node:<module>" for Node's own, or the meshcart workspace. */
export function packageOf(url: string, functionName = ""): string {
  if (!url) return functionName.startsWith("(") ? functionName : "(native)";
  if (url.startsWith("node:")) return url;
  const modules = url.lastIndexOf("/node_modules/");
  if (modules >= 0) {
    const rest = url.slice(modules + "/node_modules/".length).split("/");
    return rest[0]!.startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  const workspace = /\/(services\/[^/]+|dev)\//.exec(url);
  return workspace ? `meshcart ${workspace[1]}` : url;
}

function location(url: string, line: number): string {
  if (!url) return "";
  const short = url
    .replace(/^file:\/\//, "")
    .replace(/^.*\/node_modules\//, "")
    .replace(/^.*\/(services|dev)\//, "$1/");
  return `(${short}:${line + 1})`;
}
