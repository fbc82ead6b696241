import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { sleep } from "@meshcart/lib";

export const fakeServiceEntry = fileURLToPath(new URL("../fixtures/fake-service.mjs", import.meta.url));

/**
 * A fresh directory, open to other users: run as root, Postgres runs as the
 * "postgres" user and must be able to enter it.
 */
export async function tempDir(label: string): Promise<{ path: string; remove(): Promise<void> }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), `meshcart-dev-test-${label}-`));
  await fs.chmod(dir, 0o755);
  return { path: dir, remove: () => fs.rm(dir, { recursive: true, force: true }) };
}

/** Polls until `check` holds, or fails after `timeoutMs`. */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(25);
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
