import { Writable } from "node:stream";
import { SignJWT } from "jose";
import { ClientError, Status, type ServerError } from "nice-grpc";
import { PreconditionFailure, RetryInfo, RichClientError, RichServerError } from "nice-grpc-error-details";
import { describe, expect, it } from "vitest";
import { DEMO_TOKENS, createLogger, loadConfig, mintShopperToken, type ConfigError } from "@meshcart/lib";
import { localServices } from "@meshcart/stack/services.js";
import { edgeError } from "../src/backends.js";
import { checkStorefrontConfig, storefrontConfig } from "../src/config.js";
import { effectiveDeadline, partDeadline } from "../src/deadlines.js";
import { orderRequestId } from "../src/request-ids.js";
import { TokenRejected, TokenVerifier, bearerToken } from "../src/tokens.js";

const settings = { secret: "unit-test-signing-key-0123456789abcdef", issuer: "meshcart-test", audience: "meshcart-storefront-test" };
const verifier = new TokenVerifier(settings);

async function rejection(token: string): Promise<string> {
  const error = await verifier.verify(token).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(TokenRejected);
  return (error as TokenRejected).message;
}

describe("tokens", () => {
  it("accepts a token it minted, with the subject as the customer", async () => {
    const token = await mintShopperToken({ ...settings, customerId: "carol@example.com", ttlSeconds: 60 });
    expect(await verifier.verify(token)).toEqual({ customerId: "carol@example.com" });
  });

  it("refuses an expired token", async () => {
    const token = await mintShopperToken({ ...settings, customerId: "alice", ttlSeconds: 60, now: new Date(Date.now() - 3_600_000) });
    expect(await rejection(token)).toMatch(/expired/);
  });

  it("refuses a token signed with another key", async () => {
    const token = await mintShopperToken({ ...settings, secret: "another-signing-key-0123456789abcdef", customerId: "alice", ttlSeconds: 60 });
    expect(await rejection(token)).toMatch(/signature/);
  });

  it("refuses another audience or issuer", async () => {
    expect(await rejection(await mintShopperToken({ ...settings, audience: "someone-else", customerId: "alice", ttlSeconds: 60 }))).toMatch(/aud/);
    expect(await rejection(await mintShopperToken({ ...settings, issuer: "someone-else", customerId: "alice", ttlSeconds: 60 }))).toMatch(/iss/);
  });

  it("refuses a token without exp, or whose subject is not a customer id", async () => {
    const key = new TextEncoder().encode(settings.secret);
    const base = () => new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setIssuer(settings.issuer).setAudience(settings.audience);
    expect(await rejection(await base().setSubject("alice").sign(key))).toMatch(/exp/);
    expect(await rejection(await base().setSubject("not a customer").setExpirationTime("1h").sign(key))).toMatch(/subject/);
    expect(await rejection(await base().setExpirationTime("1h").sign(key))).toMatch(/sub/);
  });

  it('refuses malformed tokens and "alg: none"', async () => {
    expect(await rejection("not-a-jwt")).toMatch(/malformed/);
    const header = Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url");
    const claims = Buffer.from(
      JSON.stringify({ sub: "alice", iss: settings.issuer, aud: settings.audience, exp: Math.floor(Date.now() / 1000) + 60 }),
    ).toString("base64url");
    expect(await rejection(`${header}.${claims}.`)).toMatch(/algorithm|malformed/);
  });

  it("reads Bearer authorization headers and refuses other schemes", () => {
    expect(bearerToken(undefined)).toBeUndefined();
    expect(bearerToken("Bearer abc.def.ghi")).toBe("abc.def.ghi");
    expect(bearerToken("bearer abc.def.ghi")).toBe("abc.def.ghi");
    expect(() => bearerToken("Basic YWxpY2U6cHc=")).toThrow(TokenRejected);
    expect(() => bearerToken("Bearer")).toThrow(TokenRejected);
  });

  it("make dev runs the storefront with the key, issuer and audience make token signs with", async () => {
    const env = localServices.find((s) => s.name === "storefront")!.env;
    const config = loadConfig(storefrontConfig, { ...env });
    const token = await mintShopperToken({ ...DEMO_TOKENS, customerId: "alice", ttlSeconds: 60 });
    const demo = new TokenVerifier({ secret: config.STOREFRONT_JWT_SECRET, issuer: config.STOREFRONT_JWT_ISSUER, audience: config.STOREFRONT_JWT_AUDIENCE });
    expect(await demo.verify(token)).toEqual({ customerId: "alice" });
  });
});

describe("configuration", () => {
  it("has no default signing key, refuses a short one, and never prints it", () => {
    expect(() => loadConfig(storefrontConfig, {})).toThrow(/STOREFRONT_JWT_SECRET/);
    const short = "short-but-secret-value";
    const error = (() => {
      try {
        loadConfig(storefrontConfig, { STOREFRONT_JWT_SECRET: short });
      } catch (e) {
        return e as ConfigError;
      }
      throw new Error("expected a ConfigError");
    })();
    expect(error.message).toMatch(/at least 32 characters/);
    expect(error.message).not.toContain(short);
  });

  it("refuses a default deadline above the cap", () => {
    const config = loadConfig(storefrontConfig, {
      STOREFRONT_JWT_SECRET: settings.secret,
      STOREFRONT_DEFAULT_DEADLINE_MS: "10000",
      STOREFRONT_MAX_DEADLINE_MS: "5000",
    });
    expect(() => checkStorefrontConfig(config)).toThrow(/STOREFRONT_DEFAULT_DEADLINE_MS/);
  });
});

describe("request ids", () => {
  it("namespaces a shopper's request_id by customer, readably when it can", () => {
    expect(orderRequestId("alice", "checkout-1")).toBe("alice:checkout-1");
    expect(orderRequestId("bob", "checkout-1")).not.toBe(orderRequestId("alice", "checkout-1"));
  });

  it("hashes what would not be a valid order request_id, keeping shoppers apart", () => {
    const valid = /^[A-Za-z0-9._:-]{1,128}$/;
    const email = orderRequestId("carol@example.com", "checkout-1");
    const long = orderRequestId("dave", "x".repeat(128));
    for (const id of [email, long]) {
      expect(id).toMatch(valid);
      expect(id).not.toContain(":");
    }
    expect(orderRequestId("carol@example.com", "checkout-1")).toBe(email);
    expect(orderRequestId("erin@example.com", "checkout-1")).not.toBe(email);
    // The separator keeps "ab"+"c" and "a"+"bc" apart.
    expect(orderRequestId("a@b", "c")).not.toBe(orderRequestId("a@", "bc"));
  });
});

describe("deadlines", () => {
  const policy = { defaultMs: 5_000, maxMs: 30_000, streamMaxMs: 600_000 };
  const now = 1_000_000;

  it("gives a call without a deadline the default, and a stream its own", () => {
    expect(effectiveDeadline(undefined, "unary", policy, now).getTime()).toBe(now + 5_000);
    expect(effectiveDeadline(undefined, "stream", policy, now).getTime()).toBe(now + 600_000);
  });

  it("keeps a shorter deadline and caps a longer one", () => {
    expect(effectiveDeadline(new Date(now + 2_000), "unary", policy, now).getTime()).toBe(now + 2_000);
    expect(effectiveDeadline(new Date(now + 3_600_000), "unary", policy, now).getTime()).toBe(now + 30_000);
    expect(effectiveDeadline(new Date(now + 3_600_000), "stream", policy, now).getTime()).toBe(now + 600_000);
  });

  it("ends an optional part in time to answer with the others", () => {
    expect(partDeadline(new Date(now + 5_000), 2_000, now).getTime()).toBe(now + 2_000);
    const tight = partDeadline(new Date(now + 1_000), 2_000, now).getTime();
    expect(tight).toBeLessThan(now + 1_000);
    expect(tight).toBeGreaterThan(now);
  });
});

describe("internal errors at the edge", () => {
  const lines: string[] = [];
  const logger = createLogger({
    service: "test",
    version: "test",
    level: "info",
    destination: new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString());
        done();
      },
    }),
  });
  const path = "/meshcart.order.v1.OrderService/CreateOrder";

  it("passes refusals through with their message and details", () => {
    const violation = PreconditionFailure.fromPartial({ violations: [{ type: "STATE", subject: "ord_1", description: "not confirmed" }] });
    const mapped = edgeError(new RichClientError(path, Status.FAILED_PRECONDITION, "order is REJECTED", [violation]), "order", logger);
    expect(mapped).toBeInstanceOf(RichServerError);
    expect((mapped as RichServerError).code).toBe(Status.FAILED_PRECONDITION);
    expect((mapped as RichServerError).details).toBe("order is REJECTED");
    expect((mapped as RichServerError).extra).toEqual([violation]);
    for (const code of [Status.NOT_FOUND, Status.ALREADY_EXISTS, Status.INVALID_ARGUMENT]) {
      expect((edgeError(new ClientError(path, code, "why"), "order", logger) as ServerError).code).toBe(code);
    }
  });

  it("passes shed load through as RESOURCE_EXHAUSTED, with its message and RetryInfo", () => {
    const retry = RetryInfo.fromPartial({ retryDelay: { seconds: 0, nanos: 250_000_000 } });
    const busy = "the shop is busy: checkouts are at capacity; try again in about 250 ms";
    const mapped = edgeError(new RichClientError(path, Status.RESOURCE_EXHAUSTED, busy, [retry]), "order", logger) as RichServerError;
    expect(mapped).toBeInstanceOf(RichServerError);
    expect(mapped.code).toBe(Status.RESOURCE_EXHAUSTED);
    expect(mapped.details).toBe(busy);
    expect(mapped.extra).toEqual([retry]);
  });

  it("makes transient faults UNAVAILABLE, keeps timeouts, hides the rest as INTERNAL", () => {
    for (const code of [Status.UNAVAILABLE, Status.ABORTED]) {
      const mapped = edgeError(new ClientError(path, code, "connection refused"), "payment", logger) as ServerError;
      expect(mapped.code).toBe(Status.UNAVAILABLE);
      expect(mapped.details).toBe("payment is unavailable, try again");
    }
    const hint = "the order goes on";
    expect(edgeError(new ClientError(path, Status.DEADLINE_EXCEEDED, "x"), "order", logger, { [Status.DEADLINE_EXCEEDED]: hint })).toMatchObject({
      code: Status.DEADLINE_EXCEEDED,
      details: hint,
    });
    for (const code of [Status.INTERNAL, Status.PERMISSION_DENIED, Status.UNAUTHENTICATED, Status.UNKNOWN]) {
      const mapped = edgeError(new ClientError(path, code, "secret internals"), "order", logger) as ServerError;
      expect(mapped.code).toBe(Status.INTERNAL);
      expect(mapped.details).not.toContain("secret internals");
    }
    expect(lines.some((line) => line.includes("secret internals") && line.includes('"level":"error"'))).toBe(true);
  });

  it("leaves errors that are not statuses to the error boundary", () => {
    const abort = new Error("aborted");
    expect(edgeError(abort, "order", logger)).toBe(abort);
  });
});
