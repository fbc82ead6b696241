#!/usr/bin/env node
// Checks the links between the repository's Markdown pages: every relative
// link of README.md, docs/**/*.md and the chart's README names a file or
// folder that exists, and every #anchor a heading of the page it points to
// (GitHub's heading ids). Links to other sites are not fetched.
//
//   node scripts/docs/links.mjs     one line per broken link; exit 1 if any
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const repoRoot = fileURLToPath(new URL("../../", import.meta.url));

/** The pages whose links are checked, relative to the repository's root. */
export function pages(root = repoRoot) {
  const found = ["README.md", "helm/meshcart/README.md"];
  const walk = (dir) => {
    for (const entry of readdirSync(path.join(root, dir), { withFileTypes: true })) {
      const rel = path.posix.join(dir, entry.name);
      if (entry.isDirectory()) walk(rel);
      else if (entry.name.endsWith(".md")) found.push(rel);
    }
  };
  walk("docs");
  return found.filter((page) => existsSync(path.join(root, page)));
}

/** A page's text without fenced code blocks and inline code, where brackets are not links. */
function prose(markdown) {
  return markdown
    .replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, (block) => block.replace(/[^\n]/g, " "))
    .replace(/`[^`\n]*`/g, (code) => " ".repeat(code.length));
}

/** GitHub's id for a heading: lower case, punctuation dropped, spaces as hyphens. */
export function slug(heading) {
  return heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1")
    .replace(/[`*_~]/g, (c) => (c === "_" ? c : ""))
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, "")
    .replace(/ /g, "-");
}

/** The ids of a page's headings, numbered as GitHub numbers repeated ones. */
export function anchors(markdown) {
  const ids = new Set();
  const seen = new Map();
  const text = markdown.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, "");
  for (const match of text.matchAll(/^#{1,6}[ \t]+(.+?)[ \t#]*$/gm)) {
    const base = slug(match[1]);
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    ids.add(count === 0 ? base : `${base}-${count}`);
  }
  return ids;
}

/** The relative links of a page: [text](target) and ![alt](target), with their line. */
export function links(markdown) {
  const found = [];
  const text = prose(markdown);
  for (const match of text.matchAll(/!?\[[^[\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
    const target = match[1];
    if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue;
    found.push({ target, line: text.slice(0, match.index).split("\n").length });
  }
  return found;
}

/** Every link that does not resolve, as "page:line: target (why)". */
export function brokenLinks(root = repoRoot) {
  const broken = [];
  const cache = new Map();
  const idsOf = (file) => {
    if (!cache.has(file)) cache.set(file, anchors(readFileSync(file, "utf8")));
    return cache.get(file);
  };
  for (const page of pages(root)) {
    const file = path.join(root, page);
    for (const { target, line } of links(readFileSync(file, "utf8"))) {
      const [pathPart, anchor] = target.split("#", 2);
      const resolved = pathPart ? path.resolve(path.dirname(file), decodeURIComponent(pathPart)) : file;
      const where = `${page}:${line}: ${target}`;
      if (path.relative(root, resolved).startsWith("..")) broken.push(`${where} (outside the repository)`);
      else if (!existsSync(resolved)) broken.push(`${where} (no such file)`);
      else if (anchor !== undefined) {
        if (statSync(resolved).isDirectory() || !resolved.endsWith(".md")) broken.push(`${where} (an anchor into something that is not a page)`);
        else if (!idsOf(resolved).has(anchor)) broken.push(`${where} (no heading with this id)`);
      }
    }
  }
  return broken;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const broken = brokenLinks();
  for (const line of broken) console.error(line);
  if (broken.length > 0) process.exit(1);
  console.log(`every relative link and anchor of ${pages().length} pages resolves`);
}
