// The walkthroughs of docs/walkthroughs as scripts: every ```sh block of a
// file, in order. make e2e runs them (scripts/deploy/e2e.sh), so the docs
// are the test. A block preceded by `<!-- e2e: name -->` also writes its
// stdout to $E2E_OUT/name.out for the assertions.
//
//   node scripts/deploy/walkthroughs.mjs docs/walkthroughs/retries.md   the script, on stdout
//   node scripts/deploy/walkthroughs.mjs --list                        the walkthroughs make e2e runs, in order
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/**
 * The order make e2e runs them in: the canary before the rate limit, then
 * tracing, then the dashboard, whose Jaeger links need the traces.
 */
export const walkthroughs = ["mtls", "authorization", "retries", "circuit-breaking", "canary", "rate-limiting", "tracing", "dashboard"].map(
  (name) => `docs/walkthroughs/${name}.md`,
);

/** The sh blocks of a markdown text: { name?: string, code: string }[]. */
export function blocks(markdown) {
  const out = [];
  const lines = markdown.split("\n");
  let pendingName;
  for (let i = 0; i < lines.length; i += 1) {
    const marker = /^<!-- e2e: ([a-z0-9-]+) -->$/.exec(lines[i].trim());
    if (marker) {
      pendingName = marker[1];
      continue;
    }
    if (/^```(sh|bash)\s*$/.test(lines[i])) {
      const code = [];
      for (i += 1; i < lines.length && !/^```\s*$/.test(lines[i]); i += 1) code.push(lines[i]);
      out.push({ name: pendingName, code: code.join("\n") });
      pendingName = undefined;
    } else if (lines[i].trim() !== "" && pendingName) {
      throw new Error(`<!-- e2e: ${pendingName} --> must be followed by a sh block`);
    }
  }
  return out;
}

/** A bash script running the blocks in order, saving the named ones' stdout. */
export function script(file) {
  const parts = [`# ${file}, as make e2e runs it`, 'mkdir -p "$E2E_OUT"'];
  for (const block of blocks(readFileSync(path.join(root, file), "utf8"))) {
    parts.push(block.name ? `{\n${block.code}\n} | tee "$E2E_OUT/${block.name}.out"` : block.code);
  }
  return `${parts.join("\n")}\n`;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const arg = process.argv[2];
  if (arg === "--list") console.log(walkthroughs.join("\n"));
  else if (arg) process.stdout.write(script(arg));
  else {
    console.error("usage: node scripts/deploy/walkthroughs.mjs <docs/walkthroughs/x.md> | --list");
    process.exit(2);
  }
}
