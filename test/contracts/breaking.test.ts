import { execFile } from "node:child_process";
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { repoRoot } from "../deploy/support/paths.js";

const run = promisify(execFile);
const buf = path.join(repoRoot, "node_modules", ".bin", "buf");
const baseline = path.join(repoRoot, "proto", "released-api.binpb");

/**
 * The breaking-change gate CI relies on: buf compares the contracts with
 * the committed image of the released API, so a change that breaks clients
 * fails and a compatible extension passes.
 */
describe("buf breaking against the released API", () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function copyOfContracts(): Promise<string> {
    dir = await mkdtemp(path.join(os.tmpdir(), "meshcart-contracts-"));
    await cp(path.join(repoRoot, "proto"), path.join(dir, "proto"), { recursive: true });
    await cp(path.join(repoRoot, "buf.yaml"), path.join(dir, "buf.yaml"));
    return dir;
  }

  async function breaking(workspace: string): Promise<{ ok: boolean; output: string }> {
    try {
      const { stdout, stderr } = await run(buf, ["breaking", "--against", baseline], { cwd: workspace });
      return { ok: true, output: stdout + stderr };
    } catch (error) {
      const failed = error as { stdout?: string; stderr?: string };
      return { ok: false, output: `${failed.stdout ?? ""}${failed.stderr ?? ""}` };
    }
  }

  async function edit(workspace: string, file: string, from: string, to: string): Promise<void> {
    const target = path.join(workspace, "proto", file);
    const text = await readFile(target, "utf8");
    expect(text).toContain(from);
    await writeFile(target, text.replace(from, to));
  }

  it("passes for the contracts as they are", async () => {
    expect(await breaking(await copyOfContracts())).toMatchObject({ ok: true });
  });

  it("fails when a field changes its number", async () => {
    const workspace = await copyOfContracts();
    await edit(
      workspace,
      "meshcart/inventory/v1/inventory.proto",
      "  string sku = 1;\n}\n\n// Response of GetProduct.",
      "  string sku = 9;\n}\n\n// Response of GetProduct.",
    );
    const result = await breaking(workspace);
    expect(result.ok).toBe(false);
    expect(result.output).toMatch(/GetProductRequest/);
  });

  it("passes for a compatible extension (a new field)", async () => {
    const workspace = await copyOfContracts();
    await edit(
      workspace,
      "meshcart/order/v1/order.proto",
      "  string reason = 2;\n}\n\n// Response of CancelOrder.",
      "  string reason = 2;\n  // A note for the test.\n  string note = 3;\n}\n\n// Response of CancelOrder.",
    );
    expect(await breaking(workspace)).toMatchObject({ ok: true });
  });
});

describe("the storefront's public contract", () => {
  it("imports none of the internal APIs, so they can change without changing it", async () => {
    const proto = await readFile(path.join(repoRoot, "proto/meshcart/storefront/v1/storefront.proto"), "utf8");
    const imports = [...proto.matchAll(/^import "([^"]+)";/gm)].map((m) => m[1]);
    expect(imports.length).toBeGreaterThan(0);
    expect(imports.filter((file) => /^meshcart\/(order|payment|inventory)\//.test(file!))).toEqual([]);
    expect(proto).not.toMatch(/\bmeshcart\.(order|payment|inventory)\.v1\./);
  });
});
