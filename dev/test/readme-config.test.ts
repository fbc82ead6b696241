import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { repoRoot } from "../src/paths.js";

interface ConfigTableModule {
  configTable(): Promise<string>;
  readmeTable(readme: string): string;
}

describe("README configuration table", () => {
  it("equals the table generated from the services' config schemas", async () => {
    const module = (await import(path.join(repoRoot, "scripts", "config-table.mjs"))) as ConfigTableModule;
    const readme = readFileSync(path.join(repoRoot, "README.md"), "utf8");
    const generated = await module.configTable();
    expect(generated).toMatch(/\| `GRPC_PORT` \| all \| `50051` \|/);
    expect(generated).toMatch(/\| `DATABASE_URL` \| inventory, payment, order, fulfillment \| required \|/);
    expect(generated).toMatch(/\| `STOREFRONT_JWT_SECRET` \| storefront, loadgen \| required \|/);
    expect(module.readmeTable(readme)).toBe(generated);
  });
});
