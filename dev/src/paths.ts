import path from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The repository root. Both dev/src (run by vitest) and dev/dist (compiled)
 * sit two levels below it, so the same relative step works for either.
 */
export const repoRoot: string = path.resolve(fileURLToPath(new URL("../../", import.meta.url)));
