import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

/**
 * The library's tests. The database tests need the test run's embedded
 * Postgres, which dev's global setup starts once for all test files.
 */
export default defineConfig({
  test: {
    root: fileURLToPath(new URL(".", import.meta.url)),
    include: ["test/**/*.test.ts"],
    globalSetup: [fileURLToPath(new URL("../../dev/src/testing/global-setup.ts", import.meta.url))],
    testTimeout: 20_000,
    hookTimeout: 60_000,
  },
});
