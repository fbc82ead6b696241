import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    // The package directory, also when run from the repository root with --config.
    root: fileURLToPath(new URL(".", import.meta.url)),
    include: ["test/**/*.test.ts"],
    // One embedded Postgres for the run; each DB test file makes its own database in it.
    globalSetup: ["../../dev/src/testing/global-setup.ts"],
    // The gRPC tests start the compiled service (tsc -b first) as a child process.
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
