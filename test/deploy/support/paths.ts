import path from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root (test/deploy/support is three levels below it). */
export const repoRoot = path.resolve(fileURLToPath(new URL("../../../", import.meta.url)));

/** Pinned tools: `scripts/tools.sh` installs them here. */
export const toolsBin = path.join(repoRoot, ".tools", "bin");
