import { sleep } from "@meshcart/lib";

/**
 * Polls `probe` until it returns a value other than undefined, or fails
 * with `what` after `timeoutMs`. The bound only keeps a broken test from
 * hanging; no test asserts how fast anything happens.
 */
export async function eventually<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000, intervalMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${last instanceof Error ? last.message : String(last)})` : ""}`);
    }
    await sleep(intervalMs);
  }
}

export { sleep };

let serial = 0;
/** A name no other test uses, so tests sharing a database never see each other's rows. */
export function unique(prefix: string): string {
  serial += 1;
  return `${prefix}-${serial}-${Math.random().toString(36).slice(2, 8)}`;
}
