import { defineConfig } from "vitest/config";

/**
 * The whole suite in one run (`make test`): one embedded Postgres for every
 * file (each file makes its own databases in it). Each workspace also has a
 * vitest.config.ts for running its tests alone.
 */
export default defineConfig({
  test: {
    include: ["services/*/test/**/*.test.ts", "dev/test/**/*.test.ts", "test/**/*.test.ts"],
    globalSetup: ["dev/src/testing/global-setup.ts"],
    // Files start real processes (Postgres, services): bounds, not targets.
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
