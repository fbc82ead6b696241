import type { ChildProcess } from "node:child_process";

/** Signals a detached child's whole process group, so its own children go too. */
export function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // The group is already gone.
  }
}

const pending = new Map<ChildProcess, NodeJS.Signals>();
let hookInstalled = false;

/**
 * Detached children outlive this process unless someone ends them. When it
 * exits without having stopped them (an uncaught error, a forced second
 * Ctrl-C, a test run cut short), they get `signal` on the way out; waiting
 * for them is impossible there, which is why the signal must be decisive.
 */
export function signalOnExit(child: ChildProcess, signal: NodeJS.Signals): void {
  if (!hookInstalled) {
    process.on("exit", () => {
      for (const [survivor, last] of pending) signalGroup(survivor, last);
    });
    hookInstalled = true;
  }
  pending.set(child, signal);
  child.once("close", () => pending.delete(child));
}
