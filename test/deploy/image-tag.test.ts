import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { imageTag, readDockerignore } from "../../scripts/deploy/dockerfile.mjs";
import { repoRoot } from "./support/paths.js";

/**
 * Image tags come from the files an image is built from (the real Dockerfile
 * and .dockerignore, on a small copy of the tree), so `make deploy` rolls
 * out a changed service and leaves the others alone.
 */
describe("content-derived image tags", () => {
  let context: string;
  const services = ["inventory", "order"];
  const tagsOf = () => Object.fromEntries(services.map((s) => [s, imageTag(context, s, { SERVICE: s, NODE_VERSION: "24.0.0" })]));
  const write = async (file: string, text: string) => {
    await fs.mkdir(path.dirname(path.join(context, file)), { recursive: true });
    await fs.writeFile(path.join(context, file), text);
  };

  beforeEach(async () => {
    context = await fs.mkdtemp(path.join(os.tmpdir(), "meshcart-tag-"));
    for (const file of ["Dockerfile", ".dockerignore"]) await fs.copyFile(path.join(repoRoot, file), path.join(context, file));
    for (const file of ["package.json", "package-lock.json", "tsconfig.base.json"]) await write(file, `{"${file}": 1}`);
    for (const workspace of ["lib", ...services]) {
      await write(`services/${workspace}/package.json`, `{"name": "${workspace}"}`);
      await write(`services/${workspace}/src/main.ts`, `export const name = "${workspace}";`);
      await write(`services/${workspace}/test/main.test.ts`, "test");
    }
    await write("services/lib/descriptor/meshcart.binpb", "descriptor");
  });

  afterEach(async () => {
    await fs.rm(context, { recursive: true, force: true });
  });

  it("changes only the tag of the service whose source changed", async () => {
    const before = tagsOf();
    await write("services/order/src/main.ts", "export const name = 'order, changed';");
    const after = tagsOf();
    expect(after.order).not.toBe(before.order);
    expect(after.inventory).toBe(before.inventory);
  });

  it("changes every tag when what they share changes (lib, the lock file, the Dockerfile, the build args)", async () => {
    const before = tagsOf();
    await write("services/lib/src/main.ts", "export const shared = 2;");
    const afterLib = tagsOf();
    for (const s of services) expect(afterLib[s]).not.toBe(before[s]);
    await write("package-lock.json", '{"lockfileVersion": 3}');
    const afterLock = tagsOf();
    for (const s of services) expect(afterLock[s]).not.toBe(afterLib[s]);
    expect(imageTag(context, "order", { SERVICE: "order", NODE_VERSION: "24.1.0" })).not.toBe(afterLock.order);
  });

  it("ignores what never enters an image: tests, build output, installs, other folders", async () => {
    const before = tagsOf();
    await write("services/order/test/main.test.ts", "changed");
    await write("services/order/dist/main.js", "built");
    await write("services/order/node_modules/x/index.js", "installed");
    await write("services/order/tsconfig.tsbuildinfo", "{}");
    await write("README.md", "docs");
    await write("dev/src/x.ts", "dev only");
    expect(tagsOf()).toEqual(before);
  });

  it("reads .dockerignore as Docker does: the allowlist, then exclusions below it", () => {
    const ignore = readDockerignore(repoRoot);
    expect(ignore.ignores("README.md")).toBe(true);
    expect(ignore.ignores(".git/config")).toBe(true);
    expect(ignore.ignores("dev/src/dev.ts")).toBe(true);
    expect(ignore.ignores("package.json")).toBe(false);
    expect(ignore.ignores("services/order/src/main.ts")).toBe(false);
    expect(ignore.ignores("services/order/migrations/001_orders.sql")).toBe(false);
    expect(ignore.ignores("services/order/dist/main.js")).toBe(true);
    expect(ignore.ignores("services/lib/node_modules/x/index.js")).toBe(true);
    expect(ignore.ignores("services/order/test/saga.test.ts")).toBe(true);
  });
});
