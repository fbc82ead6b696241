import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { TestProject } from "vitest/node";
import { freePort } from "@meshcart/stack/net.js";
import { startPostgres } from "@meshcart/stack/postgres.js";
import type {} from "./context.js";

/**
 * One embedded Postgres for the whole test run, in a fresh directory on a
 * free port; each test file makes its own databases in it
 * (createTestDatabase), which is far cheaper than a cluster per file.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "meshcart-test-pg-"));
  try {
    const postgres = await startPostgres({
      dataDir,
      port: await freePort(),
      persistent: false,
      // Otherwise a server that dies mid-run shows up only as puzzling
      // connection errors in whichever tests run next.
      log: (line) => {
        if (/exited unexpectedly|\bPANIC:/.test(line)) console.error(`test Postgres: ${line}`);
      },
    });
    project.provide("pgUrl", postgres.url("postgres"));
    return async () => {
      await postgres.stop();
      await fs.rm(dataDir, { recursive: true, force: true });
    };
  } catch (error) {
    await fs.rm(dataDir, { recursive: true, force: true });
    throw error;
  }
}
