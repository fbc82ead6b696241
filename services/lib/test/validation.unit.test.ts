import { describe, expect, it } from "vitest";
import { BadRequest, RichServerError, type PreconditionFailure } from "nice-grpc-error-details";
import { ServerError, Status, alreadyExists, failedPrecondition, invalidArgument, notFound, unavailable, type FieldViolation } from "../src/errors.js";
import { Violations, validate } from "../src/validation.js";
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, decodePageToken, encodePageToken, pageSize } from "../src/pagination.js";

/** What a thrown error tells a client: its status and its BadRequest field violations. */
function refusal(error: unknown): { code: Status; message: string; violations: FieldViolation[] } {
  expect(error).toBeInstanceOf(RichServerError);
  const rich = error as RichServerError;
  const badRequests = rich.extra.filter((d): d is BadRequest => d.$type === "google.rpc.BadRequest");
  expect(badRequests.length).toBeLessThanOrEqual(1);
  return {
    code: rich.code,
    message: rich.details,
    violations: (badRequests[0]?.fieldViolations ?? []).map((v) => ({ field: v.field, description: v.description })),
  };
}

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error("expected an error, but nothing was thrown");
}

describe("Violations", () => {
  it("throws nothing when there is no violation", () => {
    const v = new Violations()
      .id("reservation_id", "order-1:reserve")
      .customerId("customer_id", "ann@example.com")
      .sku("sku", "MESH-TSHIRT")
      .integer("quantity", 3, 1, 10)
      .maxLength("note", "short", 10)
      .knownEnum("state", 2, [1, 2, 3])
      .itemLines(
        "items",
        [
          { sku: "A", quantity: 1 },
          { sku: "B", quantity: 1000 },
        ],
        { maxLines: 50, maxQuantity: 1000 },
      );
    expect(v.count).toBe(0);
    expect(() => v.throwIfAny()).not.toThrow();
    expect(() => validate(() => undefined)).not.toThrow();
  });

  it("collects every violation of a request into one INVALID_ARGUMENT with a BadRequest", () => {
    const error = thrown(() =>
      validate((v) => {
        v.id("reservation_id", "");
        v.customerId("customer_id", "ann smith");
        v.itemLines(
          "items",
          [
            { sku: "MESH-MUG", quantity: 1 },
            { sku: "MESH-CAP", quantity: 0 },
            { sku: "MESH-MUG", quantity: 1001 },
            { sku: "bad sku!", quantity: 2 },
            { sku: "", quantity: 1 },
            { sku: "MESH-CAP", quantity: 1.5 },
          ],
          { maxLines: 50, maxQuantity: 1000 },
        );
        v.knownEnum("state", 9, [1, 2, 3]);
      }),
    );
    const { code, message, violations } = refusal(error);
    expect(code).toBe(Status.INVALID_ARGUMENT);
    expect(violations).toEqual([
      { field: "reservation_id", description: "is required" },
      { field: "customer_id", description: "may contain only letters, digits and . _ @ -" },
      { field: "items[1].quantity", description: "must be a whole number from 1 to 1000" },
      { field: "items[2].quantity", description: "must be a whole number from 1 to 1000" },
      { field: "items[2].sku", description: "duplicate SKU MESH-MUG" },
      { field: "items[3].sku", description: "may contain only letters, digits and . _ -" },
      { field: "items[4].sku", description: "is required" },
      { field: "items[5].quantity", description: "must be a whole number from 1 to 1000" },
      { field: "items[5].sku", description: "duplicate SKU MESH-CAP" },
      { field: "state", description: "unknown value 9" },
    ]);
    // The status message summarises the same list for clients without details support.
    expect(message).toBe(violations.map((v) => `${v.field}: ${v.description}`).join("; "));
  });

  it("checks the number of lines before the lines themselves", () => {
    const limits = { maxLines: 2, maxQuantity: 5 };
    expect(new Violations().itemLines("items", [], limits).count).toBe(1);
    expect(refusal(thrown(() => validate((v) => v.itemLines("items", [], limits)))).violations).toEqual([
      { field: "items", description: "must contain at least one item" },
    ]);
    const three = [
      { sku: "A", quantity: 1 },
      { sku: "A", quantity: 99 },
      { sku: "C", quantity: 1 },
    ];
    expect(refusal(thrown(() => validate((v) => v.itemLines("items", three, limits)))).violations).toEqual([
      { field: "items", description: "must contain at most 2 items" },
    ]);
  });

  it("bounds the length and the alphabet of ids and SKUs", () => {
    const ok = "a".repeat(128);
    expect(new Violations().id("id", ok).count).toBe(0);
    expect(new Violations().id("id", "x".repeat(10), 10).count).toBe(0);
    const v = new Violations()
      .id("id", ok + "a")
      .id("short_id", "x".repeat(11), 10)
      .id("spaced_id", "a b")
      .id("unicode_id", "ordér")
      .sku("sku", "S".repeat(65))
      .customerId("customer_id", "c".repeat(65))
      .maxLength("note", "1234567890x", 10)
      .maxLength("fine_note", "1234567890", 10);
    expect(v.count).toBe(7);
    expect(refusal(thrown(() => v.throwIfAny())).violations).toEqual([
      { field: "id", description: "must be at most 128 characters" },
      { field: "short_id", description: "must be at most 10 characters" },
      { field: "spaced_id", description: "may contain only letters, digits and . _ : -" },
      { field: "unicode_id", description: "may contain only letters, digits and . _ : -" },
      { field: "sku", description: "must be at most 64 characters" },
      { field: "customer_id", description: "must be at most 64 characters" },
      { field: "note", description: "must be at most 10 characters" },
    ]);
    // Characters legal in one kind are not in another.
    expect(new Violations().id("id", "a:b").count).toBe(0);
    expect(new Violations().sku("sku", "a:b").count).toBe(1);
    expect(new Violations().customerId("c", "a@b").count).toBe(0);
    expect(new Violations().id("id", "a@b").count).toBe(1);
  });

  it("refuses UNSPECIFIED and unknown enum values", () => {
    const v = new Violations().knownEnum("a", 0, [1, 2]).knownEnum("b", 3, [1, 2]).knownEnum("c", -1, [1, 2]).knownEnum("d", 2, [1, 2]);
    expect(refusal(thrown(() => v.throwIfAny())).violations).toEqual([
      { field: "a", description: "is required" },
      { field: "b", description: "unknown value 3" },
      { field: "c", description: "unknown value -1" },
    ]);
  });

  it("refuses numbers that are not safe whole numbers", () => {
    for (const value of [Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53, 0.5, -1, 11]) {
      expect(new Violations().integer("n", value, 0, 10).count, String(value)).toBe(1);
    }
    expect(new Violations().integer("n", 0, 0, 10).count).toBe(0);
    expect(new Violations().integer("n", 10, 0, 10).count).toBe(0);
  });
});

describe("error constructors", () => {
  it("invalidArgument carries a google.rpc.BadRequest detail with the violations", () => {
    const error = invalidArgument([
      { field: "a", description: "is required" },
      { field: "b[0].c", description: "is wrong" },
    ]);
    expect(error).toBeInstanceOf(ServerError);
    expect(error.code).toBe(Status.INVALID_ARGUMENT);
    expect(error.details).toBe("a: is required; b[0].c: is wrong");
    expect(error.extra).toHaveLength(1);
    const detail = error.extra[0] as BadRequest;
    expect(detail.$type).toBe("google.rpc.BadRequest");
    expect(detail.fieldViolations.map((v) => [v.field, v.description])).toEqual([
      ["a", "is required"],
      ["b[0].c", "is wrong"],
    ]);
    // It survives the wire encoding that errorDetailsServerMiddleware applies.
    const decoded = BadRequest.decode(BadRequest.encode(detail).finish());
    expect(decoded.fieldViolations.map((v) => v.field)).toEqual(["a", "b[0].c"]);
  });

  it("invalidArgument without violations still says what is wrong", () => {
    expect(invalidArgument([]).details).toBe("invalid request");
  });

  it("the other constructors map to their status codes", () => {
    const missing = notFound("product MESH-MUG");
    expect([missing.code, missing.details]).toEqual([Status.NOT_FOUND, "product MESH-MUG not found"]);

    const refused = failedPrecondition("not enough stock", [{ type: "STOCK", subject: "MESH-MUG", description: "2 available" }]);
    expect([refused.code, refused.details]).toEqual([Status.FAILED_PRECONDITION, "not enough stock"]);
    expect(refused.extra).toHaveLength(1);
    const failure = refused.extra[0] as PreconditionFailure;
    expect(failure.$type).toBe("google.rpc.PreconditionFailure");
    expect(failure.violations.map((v) => [v.type, v.subject, v.description])).toEqual([["STOCK", "MESH-MUG", "2 available"]]);
    expect(failedPrecondition("plain").extra).toEqual([]);

    const duplicate = alreadyExists("reservation r1 exists with other items");
    expect([duplicate.code, duplicate.details]).toEqual([Status.ALREADY_EXISTS, "reservation r1 exists with other items"]);
    const away = unavailable("try later");
    expect([away.code, away.details]).toEqual([Status.UNAVAILABLE, "try later"]);
  });
});

describe("pagination", () => {
  it("resolves page sizes: 0 means the default, the maximum is enforced", () => {
    expect(pageSize(0)).toBe(DEFAULT_PAGE_SIZE);
    expect(pageSize(1)).toBe(1);
    expect(pageSize(MAX_PAGE_SIZE)).toBe(MAX_PAGE_SIZE);
    for (const bad of [-1, MAX_PAGE_SIZE + 1, 2.5, Number.NaN]) {
      const { code, violations } = refusal(thrown(() => pageSize(bad)));
      expect(code).toBe(Status.INVALID_ARGUMENT);
      expect(violations).toEqual([{ field: "page_size", description: `must be from 0 to ${MAX_PAGE_SIZE}` }]);
    }
    expect(refusal(thrown(() => pageSize(-1, "limit"))).violations[0]?.field).toBe("limit");
  });

  type Position = { sku: string; n: number };
  const isPosition = (value: unknown): value is Position =>
    typeof value === "object" && value !== null && typeof (value as Position).sku === "string" && typeof (value as Position).n === "number";

  it("round-trips page tokens, which are opaque URL-safe strings", () => {
    const position = { sku: "MESH/ü+?=", n: 42 };
    const token = encodePageToken(position);
    expect(token).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(token).not.toContain("MESH");
    expect(decodePageToken(token, isPosition)).toEqual(position);
  });

  it("an empty token means the first page", () => {
    expect(decodePageToken("", isPosition)).toBeUndefined();
  });

  it("a forged or foreign token is INVALID_ARGUMENT on the token field", () => {
    const forged = [
      "not a token!",
      "%%%",
      Buffer.from("not json").toString("base64url"),
      Buffer.from("null").toString("base64url"),
      Buffer.from("[1,2]").toString("base64url"),
      encodePageToken({ sku: 7 }),
      encodePageToken({ other: "x" }),
      encodePageToken({ sku: "A", n: 1 }).slice(0, -3),
      // Well shaped, but a key no database text can hold (found by fuzzing).
      encodePageToken({ sku: "\u0000", n: 1 }),
    ];
    for (const token of forged) {
      const { code, violations } = refusal(thrown(() => decodePageToken(token, isPosition)));
      expect(code, token).toBe(Status.INVALID_ARGUMENT);
      expect(violations).toEqual([{ field: "page_token", description: "is not a token returned by this API" }]);
    }
    expect(refusal(thrown(() => decodePageToken("x", isPosition, "cursor"))).violations[0]?.field).toBe("cursor");
  });
});
