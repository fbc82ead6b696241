import pg from "pg";
import { describe, expect, inject, it } from "vitest";
// The type of inject("pgUrl").
import type {} from "../src/context.js";
import { createTestDatabase } from "../src/database.js";

async function query(url: string, sql: string): Promise<Record<string, unknown>[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}

describe("createTestDatabase", () => {
  it("creates a separate, usable database per call and drops it", async () => {
    const [first, second] = await Promise.all([createTestDatabase("Orders Spec"), createTestDatabase("orders spec")]);
    expect(first.name).toMatch(/^orders_spec_[0-9a-f]{12}$/);
    expect(second.name).not.toBe(first.name);
    expect(first.url).toBe(inject("pgUrl").replace(/\/postgres$/, `/${first.name}`));

    await query(first.url, "CREATE TABLE only_here (n int)");
    expect(await query(second.url, "SELECT to_regclass('only_here') AS found")).toEqual([{ found: null }]);
    expect(await query(first.url, "SELECT current_database() AS name")).toEqual([{ name: first.name }]);

    await Promise.all([first.drop(), second.drop()]);
    const left = await query(inject("pgUrl"), "SELECT datname FROM pg_database");
    expect(left.map((row) => row.datname)).not.toContain(first.name);
    expect(left.map((row) => row.datname)).not.toContain(second.name);
  });
});
