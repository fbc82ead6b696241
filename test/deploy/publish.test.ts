import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { parseAllDocuments } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readVersions, services } from "../../scripts/deploy/image-tag.mjs";
import { repoRoot, toolsBin } from "./support/paths.js";

const run = promisify(execFile);
const versions = readVersions();

/**
 * The release workflow (.github/workflows/release.yaml) runs
 * scripts/deploy/publish.sh on a version tag. It cannot push from here, so
 * its dry run is what is tested: the pushes it prints, and the chart it
 * packages all the same (with the real helm), whose defaults must install
 * exactly the images it pushes.
 */
describe("publishing a release (dry run)", () => {
  let dir: string;
  const env = () => ({
    PATH: `${toolsBin}:${path.dirname(process.execPath)}:/usr/bin:/bin`,
    HOME: dir,
    DRY_RUN: "1",
    REGISTRY: "ghcr.io/acme",
    RELEASE_DIR: path.join(dir, "release"),
    SOURCE_URL: "https://github.com/acme/meshcart",
  });
  const publish = (tag: string, extra: Record<string, string> = {}) =>
    run(path.join(repoRoot, "scripts/deploy/publish.sh"), [tag], { cwd: repoRoot, env: { ...env(), ...extra } });

  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "meshcart-publish-"));
    if (!existsSync(path.join(toolsBin, "helm"))) throw new Error("helm is missing: run `make tools` (make test installs it)");
  });

  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it("prints one multi-arch push per service image, then the chart's push", async () => {
    const { stdout } = await publish("v1.2.3");
    const lines = stdout.trimEnd().split("\n");
    expect(lines).toEqual([
      ...services().map(
        (s) =>
          `docker buildx build --platform linux/amd64,linux/arm64 --target ${s} --build-arg NODE_VERSION=${versions.NODE_VERSION} ` +
          `--build-arg IMAGE_VERSION=1.2.3 --label org.opencontainers.image.source=https://github.com/acme/meshcart --tag ghcr.io/acme/meshcart/${s}:1.2.3 --push .`,
      ),
      `helm push ${path.join(dir, "release", "meshcart-1.2.3.tgz")} oci://ghcr.io/acme/charts`,
    ]);
  });

  it("packages a chart whose defaults install exactly the published images", async () => {
    await publish("v1.2.3");
    const chart = path.join(dir, "release", "meshcart-1.2.3.tgz");
    const { stdout: metadata } = await run(path.join(toolsBin, "helm"), ["show", "chart", chart]);
    expect(metadata).toMatch(/^version: 1\.2\.3$/m);
    expect(metadata).toMatch(/^appVersion: 1\.2\.3$/m);
    const { stdout } = await run(path.join(toolsBin, "helm"), ["template", "meshcart", chart, "--kube-version", versions.KUBERNETES_SCHEMA_VERSION!], {
      maxBuffer: 32 * 1024 * 1024,
    });
    const images = new Set<string>();
    const walk = (node: unknown): void => {
      if (Array.isArray(node)) node.forEach(walk);
      else if (node && typeof node === "object") {
        for (const [key, value] of Object.entries(node)) {
          if (key === "image" && typeof value === "string") images.add(value);
          else walk(value);
        }
      }
    };
    for (const doc of parseAllDocuments(stdout)) walk(doc.toJSON());
    const ours = [...images].filter((i) => i.includes("/meshcart/") || i.startsWith("meshcart/"));
    expect(ours.sort()).toEqual(
      services()
        .map((s) => `ghcr.io/acme/meshcart/${s}:1.2.3`)
        .sort(),
    );
    // The dashboards (a symlink in the source tree) are in the package.
    const { stdout: files } = await run("tar", ["tzf", chart]);
    expect(files).toMatch(/^meshcart\/dashboards\/\S+\.json$/m);
  });

  it.each([
    ["a tag that is not a version", "release-1", {}, "usage: publish.sh vX.Y.Z"],
    ["a registry in upper case", "v1.2.3", { REGISTRY: "ghcr.io/Acme" }, "in lower case"],
    ["no registry", "v1.2.3", { REGISTRY: "" }, "REGISTRY is not set"],
  ])("refuses %s", async (_, tag, extra, message) => {
    const failure = await publish(tag, extra).then(
      () => undefined,
      (error: { code: number; stderr: string }) => error,
    );
    expect(failure?.code).toBe(1);
    expect(failure?.stderr).toContain(message);
  });
});
