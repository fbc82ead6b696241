import { readFileSync } from "node:fs";
import path from "node:path";

export const WALKTHROUGH_BEGIN = "<!-- walkthrough:begin -->";
export const WALKTHROUGH_END = "<!-- walkthrough:end -->";

/**
 * The grpcurl walkthrough, read from the README: the README shows it,
 * `make dev` prints it and the test suite runs it with bash against
 * `make dev`, so the three cannot drift apart.
 */
export function readWalkthrough(repoRoot: string): string {
  return extractWalkthrough(readFileSync(path.join(repoRoot, "README.md"), "utf8"));
}

export function extractWalkthrough(readme: string): string {
  const start = readme.indexOf(WALKTHROUGH_BEGIN);
  const end = readme.indexOf(WALKTHROUGH_END);
  if (start < 0 || end < start) throw new Error("README.md has no walkthrough markers");
  const block = /```sh\n([\s\S]*?)```/.exec(readme.slice(start, end));
  if (!block?.[1]) throw new Error("README.md's walkthrough has no ```sh block");
  return block[1];
}
