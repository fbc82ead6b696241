import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { repoRoot } from "../deploy/support/paths.js";

interface ConfigTableModule {
  PAGE: string;
  configTable(): Promise<string>;
  documentedTable(page: string): string;
}

describe("the configuration table of docs/configuration.md", () => {
  it("equals the table generated from the services' config schemas", async () => {
    const module = (await import(path.join(repoRoot, "scripts", "config-table.mjs"))) as ConfigTableModule;
    expect(module.PAGE).toBe("docs/configuration.md");
    const page = readFileSync(path.join(repoRoot, module.PAGE), "utf8");
    const generated = await module.configTable();
    expect(generated).toMatch(/\| `GRPC_PORT` \| all \| `50051` \|/);
    expect(generated).toMatch(/\| `DATABASE_URL` \| inventory, payment, order, fulfillment \| required \|/);
    expect(generated).toMatch(/\| `STOREFRONT_JWT_SECRET` \| storefront, loadgen \| required \|/);
    expect(module.documentedTable(page), "regenerate with: node scripts/config-table.mjs --write").toBe(generated);
  });
});
