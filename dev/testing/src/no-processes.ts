import childProcess, { ChildProcess } from "node:child_process";
import { syncBuiltinESMExports } from "node:module";
import { afterAll } from "vitest";

/**
 * The unit tier's setup file (vitest.config.ts): a unit test starts no
 * process, so that the tier needs no build, no Postgres and no tools, and
 * stays fast. Starting one fails the test with where it belongs instead.
 * spawn, exec, execFile and fork all start their child through
 * ChildProcess.prototype.spawn; the synchronous ones are replaced by name.
 * Everything is put back after the file, in case vitest reuses the worker.
 */
function refuse(): never {
  throw new Error("a unit test (*.unit.test.ts) starts no process: name the file *.test.ts to move it to the integration tier (docs/testing.md)");
}

const SYNC = ["spawnSync", "execSync", "execFileSync"] as const;
const originalSpawn = Object.getOwnPropertyDescriptor(ChildProcess.prototype, "spawn")!;
const originalSync = SYNC.map((name) => [name, Object.getOwnPropertyDescriptor(childProcess, name)!] as const);

// spawn is the internal method (not in the typings) every async form calls.
Object.defineProperty(ChildProcess.prototype, "spawn", { ...originalSpawn, value: refuse });
for (const name of SYNC) Object.defineProperty(childProcess, name, { value: refuse, configurable: true, writable: true });
// Modules that imported the synchronous functions by name see the change too.
syncBuiltinESMExports();

afterAll(() => {
  Object.defineProperty(ChildProcess.prototype, "spawn", originalSpawn);
  for (const [name, descriptor] of originalSync) Object.defineProperty(childProcess, name, descriptor);
  syncBuiltinESMExports();
});
