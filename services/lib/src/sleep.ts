import { setTimeout } from "node:timers/promises";

/**
 * Waits `ms`, or less when `signal` aborts first. It never rejects on the
 * abort: a loop wakes up, sees its signal and winds down in its own way.
 */
export async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  try {
    await setTimeout(ms, undefined, { signal });
  } catch (error) {
    if (!signal?.aborted) throw error;
  }
}
