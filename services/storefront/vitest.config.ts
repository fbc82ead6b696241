import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

export default defineConfig({
  // This package, also when vitest runs from the repository root with --config.
  root: fileURLToPath(new URL(".", import.meta.url)),
  test: {
    include: ["test/**/*.test.ts"],
    // One embedded Postgres for the run (inventory, payment and order need theirs).
    globalSetup: ["../../dev/src/testing/global-setup.ts"],
    // The tests start real processes: bounds, not targets.
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
