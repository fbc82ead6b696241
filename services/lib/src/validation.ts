import { invalidArgument, type FieldViolation } from "./errors.js";

const ID_PATTERN = /^[A-Za-z0-9._:-]+$/;
const CUSTOMER_PATTERN = /^[A-Za-z0-9._@-]+$/;
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
    if (value.length > 64) return this.add(field, "must be at most 64 characters");
    if (!CUSTOMER_PATTERN.test(value)) return this.add(field, "may contain only letters, digits and . _ @ -");
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

  /** A proto enum value that the service knows and that is not UNSPECIFIED. */
  knownEnum(field: string, value: number, known: readonly number[]): this {
    if (value === 0) return this.add(field, "is required");
    if (!known.includes(value)) return this.add(field, `unknown value ${value}`);
    return this;
  }

  /**
   * A list of SKU lines: 1 to `maxLines`, each SKU once, quantities in range.
   * Field paths follow the proto names, e.g. `items[2].quantity`.
   */
  itemLines(
    field: string,
    items: readonly { sku: string; quantity: number }[],
    limits: { maxLines: number; maxQuantity: number },
  ): this {
    if (items.length === 0) return this.add(field, "must contain at least one item");
    if (items.length > limits.maxLines) return this.add(field, `must contain at most ${limits.maxLines} items`);
    const seen = new Set<string>();
    items.forEach((item, i) => {
      this.sku(`${field}[${i}].sku`, item.sku);
      this.integer(`${field}[${i}].quantity`, item.quantity, 1, limits.maxQuantity);
      if (item.sku && seen.has(item.sku)) this.add(`${field}[${i}].sku`, `duplicate SKU ${item.sku}`);
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
