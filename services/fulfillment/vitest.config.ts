import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

export default defineConfig({
  // This package, also when vitest runs from the repository root with --config.
  root: fileURLToPath(new URL(".", import.meta.url)),
  test: {
    include: ["test/**/*.test.ts"],
    // One embedded Postgres for the run; each test file makes its own databases in it.
    globalSetup: ["../../dev/src/testing/global-setup.ts"],
    // services.test.ts and crash.test.ts start inventory, payment and order as processes.
    testTimeout: 60_000,
    hookTimeout: 90_000,
  },
});
