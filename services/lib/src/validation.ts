import { ScalarType, fromBinary, type DescMessage } from "@bufbuild/protobuf";
import { reflect, type ReflectMessage } from "@bufbuild/protobuf/reflect";
import { invalidArgument, type FieldViolation } from "./errors.js";
import { PAYMENT_METHODS, isPaymentMethod } from "./payment-methods.js";

const ID_PATTERN = /^[A-Za-z0-9._:-]+$/;
const CUSTOMER_PATTERN = /^[A-Za-z0-9._@-]+$/;
const MAX_CUSTOMER_ID = 64;

/** A customer id as every service accepts it (and a shopper token's subject): 1 to 64 characters of A-Z a-z 0-9 . _ @ -. */
export function isCustomerId(value: string): boolean {
  return value.length > 0 && value.length <= MAX_CUSTOMER_ID && CUSTOMER_PATTERN.test(value);
}
const SKU_PATTERN = /^[A-Za-z0-9._-]+$/;

/**
 * Collects every problem of a request before refusing it, so a client fixes
 * its input in one round trip. Handlers validate completely before touching
 * the database: a rejected request writes nothing.
 */
export class Violations {
  private readonly list: FieldViolation[] = [];

  add(field: string, description: string): this {
    this.list.push({ field, description });
    return this;
  }

  get count(): number {
    return this.list.length;
  }

  /** Throws INVALID_ARGUMENT with all collected violations, if any. */
  throwIfAny(): void {
    if (this.list.length > 0) throw invalidArgument(this.list);
  }

  /** A caller-chosen id or idempotency key. */
  id(field: string, value: string, max = 128): this {
    if (!value) return this.add(field, "is required");
    if (value.length > max) return this.add(field, `must be at most ${max} characters`);
    if (!ID_PATTERN.test(value)) return this.add(field, "may contain only letters, digits and . _ : -");
    return this;
  }

  customerId(field: string, value: string): this {
    if (!value) return this.add(field, "is required");
    if (value.length > MAX_CUSTOMER_ID) return this.add(field, `must be at most ${MAX_CUSTOMER_ID} characters`);
    if (!CUSTOMER_PATTERN.test(value)) return this.add(field, "may contain only letters, digits and . _ @ -");
    return this;
  }

  /** One of the test payment methods (payment-methods.ts). */
  paymentMethod(field: string, value: string): this {
    if (!value) return this.add(field, "is required");
    if (!isPaymentMethod(value)) return this.add(field, `must be one of ${PAYMENT_METHODS.join(", ")}`);
    return this;
  }

  sku(field: string, value: string): this {
    if (!value) return this.add(field, "is required");
    if (value.length > 64) return this.add(field, "must be at most 64 characters");
    if (!SKU_PATTERN.test(value)) return this.add(field, "may contain only letters, digits and . _ -");
    return this;
  }

  /** A whole number in [min, max]. */
  integer(field: string, value: number, min: number, max: number): this {
    if (!Number.isSafeInteger(value) || value < min || value > max) {
      return this.add(field, `must be a whole number from ${min} to ${max}`);
    }
    return this;
  }

  maxLength(field: string, value: string, max: number): this {
    if (value.length > max) this.add(field, `must be at most ${max} characters`);
    return this;
  }

  /**
   * Free text that is stored (a reason): bounded, and without NUL, which
   * Postgres cannot keep in text or jsonb and would refuse mid-transaction.
   */
  text(field: string, value: string, max: number): this {
    if (value.length > max) return this.add(field, `must be at most ${max} characters`);
    if (value.includes("\u0000")) return this.add(field, "must not contain NUL characters");
    return this;
  }

  /** A proto enum value that the service knows and that is not UNSPECIFIED. */
  knownEnum(field: string, value: number, known: readonly number[]): this {
    if (value === 0) return this.add(field, "is required");
    if (!known.includes(value)) return this.add(field, `unknown value ${value}`);
    return this;
  }

  /**
   * A list of SKU lines: 1 to `maxLines`, each SKU once, quantities in range
   * (the contracts' are ITEM_LINES, limits.ts). Field paths follow the proto
   * names, e.g. `items[2].quantity`.
   */
  itemLines(field: string, items: readonly { sku: string; quantity: number }[], limits: { maxLines: number; maxQuantity: number }): this {
    if (items.length === 0) return this.add(field, "must contain at least one item");
    if (items.length > limits.maxLines) return this.add(field, `must contain at most ${limits.maxLines} items`);
    const seen = new Set<string>();
    items.forEach((item, i) => {
      const before = this.count;
      this.sku(`${field}[${i}].sku`, item.sku);
      const validSku = this.count === before;
      this.integer(`${field}[${i}].quantity`, item.quantity, 1, limits.maxQuantity);
      // Only a valid SKU is quoted back: an invalid one has its own violation already.
      if (validSku && seen.has(item.sku)) this.add(`${field}[${i}].sku`, `duplicate SKU ${item.sku}`);
      seen.add(item.sku);
    });
    return this;
  }
}

export function validate(check: (v: Violations) => void): void {
  const violations = new Violations();
  check(violations);
  violations.throwIfAny();
}

const INT64_TYPES = new Set([ScalarType.INT64, ScalarType.UINT64, ScalarType.SINT64, ScalarType.FIXED64, ScalarType.SFIXED64]);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * Why a request's bytes could not become a message. The generated decoders
 * give numbers, not bigints, for 64-bit integers, and throw on one beyond
 * 2^53 (it cannot be represented exactly); they also throw on bytes that
 * are not protobuf at all. Both are the caller's bad input: decoded again
 * here with the schema (64-bit integers as bigints), an integer out of range
 * is named by its field path, e.g. `items[0].quantity`, and anything else is
 * a violation of the request as a whole.
 */
export function undecodableRequest(schema: DescMessage | undefined, bytes: Uint8Array): FieldViolation[] {
  const whole = (reason: string) => [{ field: "", description: `is not a valid ${schema?.typeName ?? "request"} message: ${reason}` }];
  if (!schema) return whole("it could not be decoded");
  let decoded: ReflectMessage;
  try {
    decoded = reflect(schema, fromBinary(schema, bytes));
  } catch (error) {
    return whole(error instanceof Error ? error.message : "it could not be decoded");
  }
  const violations = unsafeIntegers(decoded, "");
  return violations.length > 0 ? violations : whole("it could not be decoded");
}

function unsafeIntegers(message: ReflectMessage, path: string): FieldViolation[] {
  const found: FieldViolation[] = [];
  const check = (value: unknown, at: string) => {
    if (typeof value !== "bigint" && typeof value !== "string") return;
    const n = BigInt(value);
    if (n > MAX_SAFE || n < -MAX_SAFE) {
      found.push({ field: at, description: `must be a whole number from -${MAX_SAFE} to ${MAX_SAFE}; ${n} is out of range` });
    }
  };
  const nested = (value: unknown, at: string) => {
    if (value && typeof value === "object" && "desc" in value) found.push(...unsafeIntegers(value as ReflectMessage, at));
  };
  for (const field of message.fields) {
    if (!message.isSet(field)) continue;
    const at = path ? `${path}.${field.name}` : field.name;
    switch (field.fieldKind) {
      case "scalar":
        if (INT64_TYPES.has(field.scalar)) check(message.get(field), at);
        break;
      case "message":
        nested(message.get(field), at);
        break;
      case "list": {
        let i = 0;
        for (const item of message.get(field)) {
          if (field.listKind === "scalar" && INT64_TYPES.has(field.scalar)) check(item, `${at}[${i}]`);
          else if (field.listKind === "message") nested(item, `${at}[${i}]`);
          i += 1;
        }
        break;
      }
      case "map":
        for (const [key, value] of message.get(field)) {
          if (field.mapKind === "scalar" && INT64_TYPES.has(field.scalar)) check(value, `${at}[${String(key)}]`);
          else if (field.mapKind === "message") nested(value, `${at}[${String(key)}]`);
        }
        break;
      default:
        break;
    }
  }
  return found;
}
