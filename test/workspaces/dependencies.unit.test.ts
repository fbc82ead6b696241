import { readFileSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { repoRoot } from "../deploy/support/paths.js";

/**
 * Every workspace declares the packages its code imports: its sources in
 * `dependencies` (what its image or its users install), its tests in either.
 * npm hoists everything to the root's node_modules, so an undeclared import
 * works here and breaks wherever the workspace is installed alone. Vitest
 * is the exception: every workspace's tests run under the root's vitest
 * (vitest.config.ts), which provides it.
 */

const RUNNER = "vitest";

const workspaces: string[] = (JSON.parse(readFileSync(path.join(repoRoot, "package.json"), "utf8")) as { workspaces: string[] }).workspaces;

function sourceFiles(dir: string): string[] {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return [];
  }
  return entries.flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return ["node_modules", "dist", "fixtures"].includes(name) ? [] : sourceFiles(full);
    return /\.(ts|mts|mjs)$/.test(name) ? [full] : [];
  });
}

/** The packages the files import (static and dynamic imports of bare specifiers), by package name. */
function importedPackages(files: string[]): Set<string> {
  const names = new Set<string>();
  for (const file of files) {
    for (const [, specifier] of readFileSync(file, "utf8").matchAll(/(?:\bfrom|\bimport)\s*\(?\s*"([^"]+)"/g)) {
      if (!/^(@[a-z0-9-]+\/)?[a-z0-9][a-z0-9._/-]*$/.test(specifier!) || specifier!.startsWith("node:")) continue;
      const parts = specifier!.split("/");
      const name = specifier!.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0]!;
      // A string in a test that only looks like an import (a fixture's text) names no installed package.
      if (name !== RUNNER && isInstalled(name)) names.add(name);
    }
  }
  return names;
}

function isInstalled(name: string): boolean {
  try {
    return statSync(path.join(repoRoot, "node_modules", name, "package.json")).isFile();
  } catch {
    return false;
  }
}

describe("workspace dependencies", () => {
  it.each(workspaces)("%s declares every package it imports", (workspace) => {
    const manifest = JSON.parse(readFileSync(path.join(repoRoot, workspace, "package.json"), "utf8")) as {
      name: string;
      dependencies?: Record<string, string>;
      devDependencies?: Record<string, string>;
    };
    const runtime = new Set([manifest.name, ...Object.keys(manifest.dependencies ?? {})]);
    const any = new Set([...runtime, ...Object.keys(manifest.devDependencies ?? {})]);
    const fromSources = [...importedPackages(sourceFiles(path.join(repoRoot, workspace, "src")))].filter((name) => !runtime.has(name));
    const fromTests = [...importedPackages(sourceFiles(path.join(repoRoot, workspace, "test")))].filter((name) => !any.has(name));
    expect({ sourcesImportUndeclared: fromSources, testsImportUndeclared: fromTests }).toEqual({ sourcesImportUndeclared: [], testsImportUndeclared: [] });
  });
});
