import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["src/testing/global-setup.ts"],
    // Each file starts real processes (Postgres clusters, fake services).
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
