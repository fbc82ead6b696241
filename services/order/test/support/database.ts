import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { inject } from "vitest";
import { createDatabase, dropDatabase, withDatabase } from "@meshcart/stack/databases.js";
import { freePort } from "@meshcart/stack/net.js";
import { startPostgres, type LocalPostgres } from "@meshcart/stack/postgres.js";
import { createTestDatabase, type TestDatabase } from "@meshcart/testing/database.js";
import type {} from "@meshcart/testing/context.js";

/**
 * The test databases of one test file. Under the repository's
 * vitest.config.ts (its integration tier runs dev's global setup) they live
 * in the run's shared embedded Postgres, like every other package's tests. When
 * vitest runs without that setup (e.g. `--config` pointing elsewhere, or no
 * config at all), the file starts its own embedded Postgres instead, so the
 * tests run either way.
 */
export class TestDatabases {
  private own: { postgres: LocalPostgres; dataDir: string } | undefined;
  private readonly made: TestDatabase[] = [];

  async create(prefix: string): Promise<TestDatabase> {
    let database: TestDatabase;
    if (inject("pgUrl")) {
      database = await createTestDatabase(prefix);
    } else {
      const adminUrl = (await this.ownPostgres()).url("postgres");
      const name = `${prefix}_${Math.random().toString(16).slice(2, 10)}`;
      await createDatabase(adminUrl, name);
      database = { name, url: withDatabase(adminUrl, name), drop: () => dropDatabase(adminUrl, name) };
    }
    this.made.push(database);
    return database;
  }

  /** Drops every database made, then stops the file's own Postgres if it started one. */
  async dropAll(): Promise<void> {
    for (const database of this.made.splice(0)) await database.drop().catch(() => undefined);
    if (this.own) {
      await this.own.postgres.stop();
      await fs.rm(this.own.dataDir, { recursive: true, force: true });
      this.own = undefined;
    }
  }

  private async ownPostgres(): Promise<LocalPostgres> {
    if (!this.own) {
      const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "meshcart-order-test-pg-"));
      const postgres = await startPostgres({ dataDir, port: await freePort(), persistent: false });
      this.own = { postgres, dataDir };
    }
    return this.own.postgres;
  }
}
