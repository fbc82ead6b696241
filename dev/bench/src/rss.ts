import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Resident set size of a process in bytes: /proc on Linux, ps elsewhere; undefined once it is gone. */
export async function rssBytes(pid: number): Promise<number | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, "utf8");
    return parseProcStatusRss(status);
  } catch {
    // No /proc (macOS): ps reports kilobytes.
    try {
      const { stdout } = await run("ps", ["-o", "rss=", "-p", String(pid)]);
      const kb = Number(stdout.trim());
      return Number.isFinite(kb) && kb > 0 ? kb * 1024 : undefined;
    } catch {
      return undefined;
    }
  }
}

/** VmRSS of a /proc/<pid>/status text, in bytes. */
export function parseProcStatusRss(status: string): number | undefined {
  const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  return match ? Number(match[1]) * 1024 : undefined;
}

/**
 * The highest RSS of each process while a load runs, sampled every
 * `intervalMs`: a garbage collection between two samples may hide a peak,
 * so this is a lower bound of the true peak, close at this rate.
 */
export class RssPeaks {
  private readonly peaks = new Map<number, number>();
  private timer: NodeJS.Timeout | undefined;
  private sampling: Promise<void> = Promise.resolve();

  constructor(
    private readonly pids: readonly number[],
    private readonly intervalMs = 100,
  ) {}

  start(): void {
    const tick = () => {
      this.sampling = this.sample().finally(() => {
        if (this.timer) this.timer = setTimeout(tick, this.intervalMs);
      });
    };
    this.timer = setTimeout(tick, 0);
  }

  async stop(): Promise<Map<number, number>> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.sampling;
    await this.sample();
    return new Map(this.peaks);
  }

  private async sample(): Promise<void> {
    await Promise.all(
      this.pids.map(async (pid) => {
        const rss = await rssBytes(pid);
        if (rss !== undefined && rss > (this.peaks.get(pid) ?? 0)) this.peaks.set(pid, rss);
      }),
    );
  }
}
