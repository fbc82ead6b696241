import { randomBytes } from "node:crypto";
import { inject } from "vitest";
import { createDatabase, dropDatabase, withDatabase } from "@meshcart/stack/databases.js";
import type {} from "./context.js";

export interface TestDatabase {
  name: string;
  /** postgres:// URL of the new, empty database. */
  url: string;
  /** Drops the database, ending any sessions still connected. */
  drop(): Promise<void>;
}

/**
 * A new empty database in the test run's Postgres, named `<prefix>_<random>`
 * so that test files running in parallel never share one.
 */
export async function createTestDatabase(prefix: string): Promise<TestDatabase> {
  const adminUrl = inject("pgUrl");
  if (!adminUrl) {
    throw new Error(
      "no test Postgres: only the integration tier has one (vitest.config.ts); a test that needs Postgres is named *.test.ts, not *.unit.test.ts",
    );
  }
  const name = uniqueName(prefix);
  await createDatabase(adminUrl, name);
  return { name, url: withDatabase(adminUrl, name), drop: () => dropDatabase(adminUrl, name) };
}

function uniqueName(prefix: string): string {
  // Postgres truncates identifiers at 63 bytes; keep the random part intact.
  const readable =
    prefix
      .toLowerCase()
      .replace(/[^a-z0-9_]+/g, "_")
      .slice(0, 40) || "test";
  return `${readable}_${randomBytes(6).toString("hex")}`;
}
