import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { anchors, brokenLinks, links, pages, slug } from "../../scripts/docs/links.mjs";

describe("the documentation's links", () => {
  it("resolve: every relative link of README.md, docs/ and the chart's README names a file, every anchor a heading", () => {
    const checked = pages();
    expect(checked).toEqual(expect.arrayContaining(["README.md", "docs/README.md", "docs/configuration.md", "docs/walkthroughs/README.md"]));
    expect(brokenLinks(), "fix these links (node scripts/docs/links.mjs lists them)").toEqual([]);
  });

  it("are what docs/README.md indexes: every page of docs/ is listed there", () => {
    const index = links(readPage("docs/README.md")).map((l) => path.posix.normalize(path.posix.join("docs", l.target.split("#")[0]!)));
    for (const page of pages().filter((p) => p.startsWith("docs/") && !p.startsWith("docs/walkthroughs/") && p !== "docs/README.md")) {
      expect(index, page).toContain(page);
    }
  });
});

describe("the link check", () => {
  const root = mkdtempSync(path.join(tmpdir(), "links-"));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it("ids headings as GitHub does", () => {
    expect(slug("Load: `make load`")).toBe("load-make-load");
    expect(slug("Reliability: `make verify` and `make chaos`")).toBe("reliability-make-verify-and-make-chaos");
    expect(slug("What the chart's [tests](x.md) check")).toBe("what-the-charts-tests-check");
    expect([...anchors("# A\n## Notes\n```\n# not a heading\n```\n## Notes\n")]).toEqual(["a", "notes", "notes-1"]);
  });

  it("finds a missing file, a missing anchor and an anchor into a folder; ignores code, other sites and good links", () => {
    mkdirSync(path.join(root, "docs", "sub"), { recursive: true });
    writeFileSync(
      path.join(root, "README.md"),
      [
        "# Top",
        "## Run it",
        "[ok](docs/a.md) [ok](docs/a.md#section-two) [ok](#run-it) [ok](docs/sub) [site](https://example.com/x.md)",
        "[gone](docs/missing.md) [no anchor](docs/a.md#nowhere)",
        "[a folder's anchor](docs/sub#x) [wrapped",
        "text](#top)",
        "`[code](docs/missing-in-code.md)`",
        "```sh",
        "[block](docs/missing-in-block.md)",
        "```",
      ].join("\n"),
    );
    writeFileSync(path.join(root, "docs", "a.md"), "# A\n\n## Section two\n\n[back](../README.md#top) [up](../../outside.md)\n");
    expect(brokenLinks(root)).toEqual([
      "README.md:4: docs/missing.md (no such file)",
      "README.md:4: docs/a.md#nowhere (no heading with this id)",
      "README.md:5: docs/sub#x (an anchor into something that is not a page)",
      "docs/a.md:5: ../../outside.md (outside the repository)",
    ]);
  });
});

function readPage(page: string): string {
  return readFileSync(fileURLToPath(new URL(`../../${page}`, import.meta.url)), "utf8");
}
