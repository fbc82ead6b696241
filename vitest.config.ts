import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { configDefaults, defineConfig } from "vitest/config";

/**
 * The test suite in two tiers, told apart by file name (docs/testing.md):
 *
 * - unit: `*.unit.test.ts`, run from source: no build, no Postgres, no child
 *   process (a setup file refuses to start one); in-process servers on
 *   loopback are fine. `npm run test:unit`.
 * - integration: every other `*.test.ts`: one embedded Postgres for the run
 *   (each file makes its own databases in it), the services as compiled
 *   processes (`tsc -b` first), NATS, helm, grpcurl, promtool.
 *
 * `make test` runs both. Tests live in `test/` folders; run from a
 * workspace's folder (its `npm test`), the tiers hold that workspace's only.
 */
const root = fileURLToPath(new URL(".", import.meta.url));
const fromRoot = path.relative(root, process.cwd());
const inWorkspace = !fromRoot.startsWith("..") && !path.isAbsolute(fromRoot) && existsSync("package.json");
// Where vitest looks for test files: the workspace it runs in, or all of them.
const dir = inWorkspace ? process.cwd() : root;

const TESTS = "**/test/**/*.test.ts";
const UNIT = "**/test/**/*.unit.test.ts";
const exclude = [...configDefaults.exclude, ".tools/**", ".data/**"];

export default defineConfig({
  // The repository, also when vitest runs from a workspace folder (--config).
  root,
  // Workspace packages resolve to their TypeScript source (the
  // "@meshcart/source" export condition), so in-process code never needs a
  // build; node itself, running the services' dist/, ignores the condition.
  // (The other two are vitest's defaults for node.)
  ssr: { resolve: { conditions: ["@meshcart/source", "node", "development|production"] } },
  test: {
    projects: [
      {
        extends: true,
        test: {
          name: "unit",
          dir,
          include: [UNIT],
          exclude,
          setupFiles: ["dev/testing/src/no-processes.ts"],
          testTimeout: 20_000,
        },
      },
      {
        extends: true,
        test: {
          name: "integration",
          dir,
          include: [TESTS],
          exclude: [...exclude, UNIT],
          globalSetup: ["dev/testing/src/global-setup.ts"],
          // Files start real processes (Postgres, services): bounds, not targets.
          testTimeout: 60_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
