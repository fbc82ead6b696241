import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { contextFiles, imageTag, readDockerignore, tags } from "../../scripts/deploy/image-tag.mjs";
import { repoRoot } from "./support/paths.js";

/**
 * The images' tag is a hash of what they are built from (the real
 * Dockerfile and .dockerignore, on a small copy of the tree): it changes
 * exactly when that changes, so `make deploy` rolls out a change and a
 * `make deploy` without one changes nothing.
 */
describe("the images' tag", () => {
  let context: string;
  const tag = (args = { NODE_VERSION: "24.0.0" }) => imageTag(context, args);
  const write = async (file: string, text: string) => {
    await fs.mkdir(path.dirname(path.join(context, file)), { recursive: true });
    await fs.writeFile(path.join(context, file), text);
  };

  beforeEach(async () => {
    context = await fs.mkdtemp(path.join(os.tmpdir(), "meshcart-tag-"));
    for (const file of ["Dockerfile", ".dockerignore"]) await fs.copyFile(path.join(repoRoot, file), path.join(context, file));
    for (const file of ["package.json", "package-lock.json", "tsconfig.base.json"]) await write(file, `{"${file}": 1}`);
    for (const workspace of ["lib", "order", "inventory"]) {
      await write(`services/${workspace}/package.json`, `{"name": "${workspace}"}`);
      await write(`services/${workspace}/src/main.ts`, `export const name = "${workspace}";`);
      await write(`services/${workspace}/test/main.test.ts`, "test");
    }
    await write("services/contracts/src/meshcart/order/v1/order.ts", "export const generated = 1;");
    await write("services/contracts/descriptor/meshcart.binpb", "descriptor");
    await write("services/order/migrations/001_orders.sql", "create table orders ();");
  });

  afterEach(async () => {
    await fs.rm(context, { recursive: true, force: true });
  });

  it.each([
    ["a service's source", () => write("services/order/src/main.ts", "export const name = 'order, changed';")],
    ["a new file no git knows of", () => write("services/inventory/src/extra.ts", "export {};")],
    ["an empty new folder", () => fs.mkdir(path.join(context, "services/order/src/empty"))],
    ["a migration", () => write("services/order/migrations/002_more.sql", "alter table orders add x int;")],
    ["a generated stub", () => write("services/contracts/src/meshcart/order/v1/order.ts", "export const generated = 2;")],
    ["the contracts' descriptor", () => write("services/contracts/descriptor/meshcart.binpb", "descriptor 2")],
    ["the lock file", () => write("package-lock.json", '{"lockfileVersion": 3}')],
    ["the Dockerfile", async () => fs.appendFile(path.join(context, "Dockerfile"), "\n# changed\n")],
    ["the .dockerignore", async () => fs.appendFile(path.join(context, ".dockerignore"), "\nservices/*/README.md\n")],
    ["a file's executable bit", () => fs.chmod(path.join(context, "services/order/src/main.ts"), 0o755)],
    ["a file moved", () => fs.rename(path.join(context, "services/order/src/main.ts"), path.join(context, "services/order/src/start.ts"))],
  ])("changes with %s", async (_, change) => {
    const before = tag();
    await change();
    expect(tag()).not.toBe(before);
  });

  it("changes with the build args (the Node version)", () => {
    expect(tag({ NODE_VERSION: "24.1.0" })).not.toBe(tag({ NODE_VERSION: "24.0.0" }));
  });

  it("does not change with what never enters an image: tests, build output, installs, other folders", async () => {
    const before = tag();
    await write("services/order/test/main.test.ts", "changed");
    await write("services/order/dist/main.js", "built");
    await write("services/order/node_modules/x/index.js", "installed");
    await write("services/order/tsconfig.tsbuildinfo", "{}");
    await write("README.md", "docs");
    await write("dev/local/src/x.ts", "dev only");
    await write(".git/HEAD", "ref: refs/heads/other");
    expect(tag()).toBe(before);
  });

  it("is the same for every service: one build context, one tag", () => {
    const all = Object.values(tags());
    expect(all.length).toBeGreaterThan(1);
    expect(new Set(all).size).toBe(1);
    expect(all[0]).toMatch(/^[0-9a-f]{16}$/);
  });
});

describe(".dockerignore, read as Docker reads it", () => {
  it("lets through the allowlist and leaves out what is excluded below it", () => {
    const ignore = readDockerignore(repoRoot);
    for (const file of [
      "README.md",
      ".git/config",
      "dev/local/src/dev.ts",
      "services/order/dist/main.js",
      "services/lib/node_modules/x/index.js",
      "services/order/test/saga.test.ts",
      "node_modules/typescript/package.json",
    ]) {
      expect(ignore.ignores(file), file).toBe(true);
    }
    for (const file of [
      "package.json",
      "package-lock.json",
      "tsconfig.base.json",
      "services/order/src/main.ts",
      "services/order/migrations/001_orders.sql",
      "services/contracts/descriptor/meshcart.binpb",
    ]) {
      expect(ignore.ignores(file), file).toBe(false);
    }
  });

  it("sends what the Dockerfile copies from this checkout, and nothing of tests, builds or installs", () => {
    const files = contextFiles(repoRoot);
    expect(files).toContain("package-lock.json");
    expect(files).toContain("services/order/src/main.ts");
    expect(files).toContain("services/contracts/descriptor/meshcart.binpb");
    expect(files.filter((f) => !f.startsWith("services/") && !["package.json", "package-lock.json", "tsconfig.base.json"].includes(f))).toEqual([]);
    expect(files.filter((f) => /\/(test|dist|node_modules)\/|\.tsbuildinfo$/.test(f))).toEqual([]);
  });
});
