import { describe, expect, it } from "vitest";
import { documentedValues, schemaText } from "../../scripts/deploy/values-docs.mjs";

// The chart's values are documented once, by values.yaml's comments; make
// lint (scripts/check-generated.sh) keeps the schema's descriptions and the
// chart README's table as the generator writes them. This checks the
// generator itself.
describe("the chart's values documentation (scripts/deploy/values-docs.mjs)", () => {
  it("takes a value's text from its # -- comment, continued lines included, and tells sections from values", () => {
    const values = documentedValues(
      [
        "# Not documentation.",
        "# -- Images.",
        "image:",
        "  # -- Prefix,",
        "  # continued.",
        "  repository: meshcart",
        "  # -- Shown whole.",
        "  resources:",
        "    limits: {memory: 1Gi}",
        "",
      ].join("\n"),
    );
    expect(values.map((v) => [v.key, v.description, v.section])).toEqual([
      ["image", "Images.", true],
      ["image.repository", "Prefix, continued.", false],
      ["image.resources", "Shown whole.", false],
    ]);
    expect(values[2]!.value).toEqual({ limits: { memory: "1Gi" } });
  });

  it("refuses a value without a comment, one the schema does not declare, and a declared one values.yaml lacks", () => {
    expect(() => documentedValues("# -- Images.\nimage:\n  # -- Prefix.\n  repository: meshcart\n  pullPolicy: Always\n")).toThrow(
      'image.pullPolicy has no "# --" comment',
    );
    expect(() => schemaText(documentedValues("# -- Not in the schema.\nreplica: 3\n"))).toThrow("does not declare replica");
    expect(() => schemaText(documentedValues("# -- Only this.\nclusterDomain: x\n"))).toThrow("declares image, which values.yaml neither sets nor documents");
  });
});
