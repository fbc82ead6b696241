import { invalidArgument } from "./errors.js";

export const DEFAULT_PAGE_SIZE = 20;
export const MAX_PAGE_SIZE = 100;

/** Resolves a request's page_size: 0 means the default. */
export function pageSize(requested: number, field = "page_size"): number {
  if (!Number.isInteger(requested) || requested < 0 || requested > MAX_PAGE_SIZE) {
    throw invalidArgument([{ field, description: `must be from 0 to ${MAX_PAGE_SIZE}` }]);
  }
  return requested === 0 ? DEFAULT_PAGE_SIZE : requested;
}

/**
 * Page tokens are opaque to clients (base64url JSON of the last key seen),
 * so the keyset behind them can change without an API change.
 */
export function encodePageToken(position: Record<string, string | number>): string {
  return Buffer.from(JSON.stringify(position)).toString("base64url");
}

export function decodePageToken<T extends Record<string, string | number>>(
  token: string,
  isValid: (value: unknown) => value is T,
  field = "page_token",
): T | undefined {
  if (!token) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    value = undefined;
  }
  // A forged token is bad input however it is shaped, also when its keys
  // would reach a query: Postgres cannot hold NUL in text and would fail
  // the statement (found by fuzzing ListProducts).
  if (!isValid(value) || Object.values(value).some((v) => typeof v === "string" && v.includes("\u0000"))) {
    throw invalidArgument([{ field, description: "is not a token returned by this API" }]);
  }
  return value;
}
