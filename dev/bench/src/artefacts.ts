import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";

export interface ArtefactSize {
  /** Sum of the sizes of the files the image adds on top of its Node base image. */
  bytes: number;
  files: number;
  /** How long assembling it took (npm ci twice, tsc): the cost of measuring, not a result. */
  assembleSeconds: number;
}

interface Assembler {
  assembleImage(options: { context: string; scratch: string; runEnv?: Record<string, string> }): Promise<{ root: string; commands: Record<string, string[]> }>;
}

/**
 * Each service's production artefact, as the Dockerfile builds it,
 * assembled without Docker by the artefact test's own code
 * (test/deploy/support/assemble.ts) and measured. Every service's target is
 * the one runtime stage with its own command, so the image is assembled
 * and measured once, and each service with a target gets that size. Loaded
 * at run time: that code lives outside this workspace (Node runs the .ts
 * directly, stripping its types).
 */
export async function artefactSizes(repoRoot: string, services: readonly string[], log: (line: string) => void): Promise<Map<string, ArtefactSize>> {
  const { assembleImage } = (await import(pathToFileURL(path.join(repoRoot, "test/deploy/support/assemble.ts")).href)) as Assembler;
  const scratch = await fs.mkdtemp(path.join(os.tmpdir(), "meshcart-bench-artefact-"));
  try {
    log("assembling the services' image (one runtime stage; each service's target adds only its command)");
    const began = Date.now();
    const image = await assembleImage({
      context: repoRoot,
      scratch,
      // As the artefact test: npm reads its cache first; what it installs is the same.
      runEnv: { npm_config_prefer_offline: "true", npm_config_update_notifier: "false", npm_config_audit: "false", npm_config_fund: "false" },
    });
    const missing = services.filter((service) => !image.commands[service]);
    if (missing.length > 0) throw new Error(`the Dockerfile has no target for ${missing.join(", ")}`);
    const size: ArtefactSize = { ...(await treeSize(image.root)), assembleSeconds: (Date.now() - began) / 1000 };
    return new Map(services.map((service) => [service, size]));
  } finally {
    await fs.rm(scratch, { recursive: true, force: true });
  }
}

/** Apparent size (what the files hold, not the disk blocks they take) and file count of a folder. */
export async function treeSize(root: string): Promise<{ bytes: number; files: number }> {
  let bytes = 0;
  let files = 0;
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) await walk(full);
      else {
        bytes += (await fs.lstat(full)).size;
        files += 1;
      }
    }
  };
  await walk(root);
  return { bytes, files };
}

/** The Node binary every image carries in its base layer: the floor under any Node service's footprint on disk. */
export async function nodeBinaryBytes(): Promise<number> {
  return (await fs.stat(process.execPath)).size;
}
