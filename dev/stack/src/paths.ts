import path from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The repository root. Both dev/stack/src (run by vitest) and dev/stack/dist
 * (compiled) sit three levels below it, so the same relative step works for
 * either.
 */
export const repoRoot: string = path.resolve(fileURLToPath(new URL("../../../", import.meta.url)));
