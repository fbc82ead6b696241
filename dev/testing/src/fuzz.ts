import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import {
  ScalarType,
  create,
  createFileRegistry,
  fromBinary,
  toBinary,
  type DescEnum,
  type DescField,
  type DescMessage,
  type DescMethod,
  type FileRegistry,
} from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import fc from "fast-check";
import { ClientError, Metadata, Status, createClientFactory, type CallOptions, type Channel } from "nice-grpc";
import { BadRequest, RichClientError, errorDetailsClientMiddleware } from "nice-grpc-error-details";

/**
 * Hostile-input testing driven by the contracts themselves: the RPCs come
 * from the descriptor set that `npm run generate` builds from proto/ (the
 * one reflection serves), and messages are generated from each request's
 * schema, so a new RPC or field is fuzzed without touching a test. Calls
 * travel as raw bytes, which lets a test send what no well-behaved client
 * would: integers the generated code cannot hold, bytes that are no
 * message, messages over the size limit.
 */

/** Where @meshcart/contracts keeps the descriptor set (its package.json `exports`). */
const DESCRIPTOR = createRequire(import.meta.url).resolve("@meshcart/contracts/meshcart.binpb");

let registry: FileRegistry | undefined;

export function meshcartRegistry(): FileRegistry {
  registry ??= createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(DESCRIPTOR)));
  return registry;
}

export interface Rpc {
  /** e.g. meshcart.inventory.v1.InventoryService */
  service: string;
  /** e.g. ReserveStock */
  method: string;
  /** e.g. /meshcart.inventory.v1.InventoryService/ReserveStock */
  path: string;
  input: DescMessage;
  output: DescMessage;
  serverStreaming: boolean;
  descriptor: DescMethod;
}

/** Every RPC of every meshcart service in the descriptor set (health and reflection are not ours). */
export function meshcartRpcs(): Rpc[] {
  const rpcs: Rpc[] = [];
  for (const type of meshcartRegistry()) {
    if (type.kind !== "service" || !type.typeName.startsWith("meshcart.")) continue;
    for (const method of type.methods) {
      if (method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming") {
        // Nothing here sends a request stream yet; fail loudly when one appears rather than skip it.
        throw new Error(`${type.typeName}/${method.name}: request streams are not fuzzed yet; extend dev/testing/src/fuzz.ts`);
      }
      rpcs.push({
        service: type.typeName,
        method: method.name,
        path: `/${type.typeName}/${method.name}`,
        input: method.input,
        output: method.output,
        serverStreaming: method.methodKind === "server_streaming",
        descriptor: method,
      });
    }
  }
  return rpcs;
}

/** A message of `schema` from a protobuf-es init object (64-bit integers as bigints), as bytes. */
export function encode(schema: DescMessage, init: Record<string, unknown>): Uint8Array {
  return toBinary(schema, create(schema, init as never));
}

/** A decoded response, as a plain object keyed by the fields' JSON-ish local names. */
export function decode(schema: DescMessage, bytes: Uint8Array): Record<string, unknown> {
  return fromBinary(schema, bytes) as unknown as Record<string, unknown>;
}

/**
 * A length-delimited field the schema does not know (number 4000), `size`
 * bytes long: every decoder skips it, so it makes a message of any size
 * without changing what it means.
 */
export function unknownFieldPadding(size: number): Uint8Array {
  const tag = varint((4000 << 3) | 2);
  const length = varint(size);
  const out = new Uint8Array(tag.length + length.length + size);
  out.set(tag, 0);
  out.set(length, tag.length);
  out.fill(0x61, tag.length + length.length);
  return out;
}

function varint(value: number): Uint8Array {
  const bytes: number[] = [];
  let v = value;
  while (v > 0x7f) {
    bytes.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  bytes.push(v);
  return Uint8Array.from(bytes);
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

// ---------------------------------------------------------------- calling

export interface Outcome {
  code: Status;
  details: string;
  /** The BadRequest field violations that came with the status, if any. */
  violations: { field: string; description: string }[];
  /** The response messages (one for unary calls), still encoded. */
  responses: Uint8Array[];
}

const identity = (bytes: Uint8Array) => bytes;

/**
 * Calls `rpc` with `bytes` exactly as given, bypassing the generated
 * encoders, and reports how it ended instead of throwing.
 */
export async function callRaw(channel: Channel, rpc: Rpc, bytes: Uint8Array, options: CallOptions = {}): Promise<Outcome> {
  const definition = {
    call: {
      path: rpc.path,
      requestStream: false,
      responseStream: rpc.serverStreaming,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
      options: {},
    },
  } as const;
  const responses: Uint8Array[] = [];
  try {
    if (rpc.serverStreaming) {
      const client = rawClients.create({ call: { ...definition.call, responseStream: true as const } }, channel);
      for await (const response of client.call(bytes, options)) responses.push(response);
    } else {
      const client = rawClients.create({ call: { ...definition.call, responseStream: false as const } }, channel);
      responses.push(await client.call(bytes, options));
    }
    return { code: Status.OK, details: "", violations: [], responses };
  } catch (error) {
    if (!(error instanceof ClientError)) throw error;
    const violations =
      error instanceof RichClientError
        ? error.extra
            .filter((d): d is BadRequest => d.$type === BadRequest.$type)
            .flatMap((d) => d.fieldViolations.map(({ field, description }) => ({ field, description })))
        : [];
    return { code: error.code, details: error.details, violations, responses };
  }
}

const rawClients = createClientFactory().use(errorDetailsClientMiddleware);

/** Call options with metadata, abandoned after `timeoutMs` so that a hung service fails the test instead of stalling it. */
export function withMetadata(entries: Record<string, string>, timeoutMs = 20_000): CallOptions {
  return { metadata: Metadata(entries), signal: AbortSignal.timeout(timeoutMs) };
}

// ---------------------------------------------------------------- generating

export interface Vocabulary {
  /**
   * Strings worth trying in any string field, read each time a value is
   * generated (so ids that earlier calls created can join in): known SKUs,
   * payment methods, currency codes, ids of things that exist.
   */
  strings(): readonly string[];
  /**
   * Keys of the services' page tokens (base64url JSON): forged tokens with
   * these keys and hostile values get past the shape check into the query.
   */
  tokenKeys: readonly string[];
  /**
   * Values that make sense in one field (by its proto name, e.g. `sku`,
   * `payment_method`), tried about half the time in that field so that
   * generated requests get past validation into the code behind it.
   */
  forField?(name: string): readonly string[];
}

const INT32_EDGES = [0, 1, -1, 2, 19, 20, 21, 99, 100, 101, 1000, 1001, 2 ** 31 - 1, -(2 ** 31)];
const INT64_EDGES = [
  0n,
  1n,
  -1n,
  50n,
  51n,
  1000n,
  1001n,
  3600n,
  3601n,
  1_000_000n,
  1_000_001n,
  100_000_000n,
  100_000_001n,
  2n ** 31n,
  2n ** 32n,
  2n ** 53n - 1n,
  2n ** 53n,
  2n ** 53n + 1n,
  -(2n ** 53n) - 1n,
  2n ** 63n - 1n,
  -(2n ** 63n),
];
const ODD_STRINGS = ["", " ", "\u0000", "a\u0000b", "\u{1F600}", "é", "\uFEFF", "../../etc/passwd", "'; DROP TABLE orders; --", "%s%n%x", "null", "0", "-1"];

function pick<T>(list: () => readonly T[]): fc.Arbitrary<T | undefined> {
  return fc.nat().map((n) => {
    const items = list();
    return items.length === 0 ? undefined : items[n % items.length];
  });
}

function stringArbitrary(vocabulary: Vocabulary, fieldName: string): fc.Arbitrary<string> {
  const generic = anyString(vocabulary);
  if (!vocabulary.forField) return generic;
  const hinted = pick(() => vocabulary.forField?.(fieldName) ?? []);
  return fc.oneof(
    generic,
    fc.tuple(hinted, generic).map(([hint, other]) => hint ?? other),
  );
}

function anyString(vocabulary: Vocabulary): fc.Arbitrary<string> {
  const known = pick(() => vocabulary.strings()).map((s) => s ?? "");
  const token = fc
    .record(
      Object.fromEntries(
        vocabulary.tokenKeys.map((key) => [
          key,
          fc.oneof(
            fc.string({ unit: "binary", maxLength: 20 }),
            fc.constantFrom("\u0000", "+275760-09-13T00:00:00.000Z", "2020", "Tue, 01 Jan 2030 00:00:00 GMT", "-000001-01-01T00:00:00.000Z"),
            known,
            fc.double(),
            fc.integer(),
            fc.constantFrom(1e300, -1, 0, 2 ** 53 + 2),
          ),
        ]),
      ),
      { requiredKeys: [] },
    )
    .map((position) => Buffer.from(JSON.stringify(position)).toString("base64url"));
  return fc.oneof(
    { weight: 6, arbitrary: known },
    { weight: 3, arbitrary: fc.stringMatching(/^[A-Za-z0-9._:@-]{1,40}$/) },
    { weight: 2, arbitrary: fc.string({ unit: "binary", maxLength: 40 }) },
    { weight: 2, arbitrary: fc.constantFrom(...ODD_STRINGS) },
    { weight: 1, arbitrary: known.map((s) => `${s}\u0000`) },
    { weight: 1, arbitrary: fc.constantFrom(65, 129, 501, 513, 4096, 200_000).map((n) => "x".repeat(n)) },
    { weight: 1, arbitrary: token },
  );
}

function int64Arbitrary(unsigned: boolean): fc.Arbitrary<bigint> {
  const edges = unsigned ? [...INT64_EDGES.filter((n) => n >= 0n), 2n ** 64n - 1n] : INT64_EDGES;
  return fc.oneof(
    { weight: 4, arbitrary: fc.bigInt({ min: 1n, max: 5n }) },
    { weight: 3, arbitrary: fc.bigInt({ min: unsigned ? 0n : -5n, max: 1_001n }) },
    { weight: 3, arbitrary: fc.constantFrom(...edges) },
    { weight: 1, arbitrary: unsigned ? fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) : fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }) },
  );
}

function scalarArbitrary(field: DescField & { scalar: ScalarType }, vocabulary: Vocabulary): fc.Arbitrary<unknown> {
  switch (field.scalar) {
    case ScalarType.STRING:
      return stringArbitrary(vocabulary, field.name);
    case ScalarType.BYTES:
      return fc.uint8Array({ maxLength: 64 });
    case ScalarType.BOOL:
      return fc.boolean();
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return fc.oneof(fc.constantFrom(...INT32_EDGES), fc.integer());
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return fc.oneof(fc.constantFrom(0, 1, 20, 100, 101, 2 ** 32 - 1), fc.nat({ max: 2 ** 32 - 1 }));
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return int64Arbitrary(false);
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return int64Arbitrary(true);
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return fc.double();
    default:
      throw new Error(`${String(field)}: this scalar type has no generator`);
  }
}

/** Known values and numbers the contract never named (proto3 enums are open). */
function enumArbitrary(type: DescEnum): fc.Arbitrary<number> {
  return fc.oneof(fc.constantFrom(...type.values.map((v) => v.number)), fc.integer(), fc.constantFrom(-1, type.values.length, 2 ** 31 - 1));
}

const MAX_DEPTH = 4;

function singleArbitrary(field: DescField, vocabulary: Vocabulary, depth: number): fc.Arbitrary<unknown> {
  switch (field.fieldKind) {
    case "scalar":
      return scalarArbitrary(field, vocabulary);
    case "enum":
      return enumArbitrary(field.enum);
    case "message":
      return depth >= MAX_DEPTH ? fc.constant(undefined) : messageArbitrary(field.message, vocabulary, depth + 1);
    default:
      throw new Error(`${field.toString()}: not a singular field`);
  }
}

function itemArbitrary(field: DescField & { fieldKind: "list" }, vocabulary: Vocabulary, depth: number): fc.Arbitrary<unknown> {
  switch (field.listKind) {
    case "scalar":
      return scalarArbitrary(field as DescField & { scalar: ScalarType }, vocabulary);
    case "enum":
      return enumArbitrary(field.enum);
    case "message":
      return messageArbitrary(field.message, vocabulary, depth + 1);
  }
}

function fieldArbitrary(field: DescField, vocabulary: Vocabulary, depth: number): fc.Arbitrary<unknown> {
  if (field.fieldKind === "list") {
    const item = itemArbitrary(field, vocabulary, depth);
    return fc.oneof(
      { weight: 8, arbitrary: fc.array(item, { maxLength: 3 }) },
      { weight: 1, arbitrary: fc.array(item, { minLength: 49, maxLength: 52 }) },
      // Huge: the same element many times (cheap to generate, heavy to validate).
      { weight: 1, arbitrary: fc.tuple(item, fc.constantFrom(1_000, 20_000)).map(([x, n]) => Array.from({ length: n }, () => x)) },
    );
  }
  if (field.fieldKind === "map") {
    // No meshcart request has a map yet; small random ones when one appears.
    const key = field.mapKey === ScalarType.STRING ? fc.string({ maxLength: 10 }) : fc.integer({ min: 0, max: 1000 });
    const value =
      field.mapKind === "message"
        ? messageArbitrary(field.message, vocabulary, depth + 1)
        : field.mapKind === "enum"
          ? enumArbitrary(field.enum)
          : scalarArbitrary(field as DescField & { scalar: ScalarType }, vocabulary);
    return fc.array(fc.tuple(key, value), { maxLength: 3 }).map((entries) => Object.fromEntries(entries));
  }
  return singleArbitrary(field, vocabulary, depth);
}

/**
 * protobuf-es init objects for `schema`: every field may be unset, each
 * oneof has one member set or none, nested messages recurse (bounded).
 */
export function messageArbitrary(schema: DescMessage, vocabulary: Vocabulary, depth = 0): fc.Arbitrary<Record<string, unknown>> {
  const parts: Record<string, fc.Arbitrary<unknown>> = {};
  for (const field of schema.fields) {
    if (field.oneof) continue;
    parts[field.localName] = fieldArbitrary(field, vocabulary, depth);
  }
  for (const oneof of schema.oneofs) {
    parts[oneof.localName] = fc.oneof(
      ...oneof.fields.map((member) => singleArbitrary(member, vocabulary, depth).map((value) => ({ case: member.localName, value }))),
    );
  }
  return fc.record(parts, { requiredKeys: [] }) as fc.Arbitrary<Record<string, unknown>>;
}

/**
 * Paths of the 64-bit integer fields reachable in `schema`, with an init
 * object that sets just that field to `value` (lists get one element):
 * what a JSON client such as grpcurl sends as a large int64 string.
 */
export function int64Fields(schema: DescMessage, value: bigint, depth = 0): { path: string; init: Record<string, unknown> }[] {
  const found: { path: string; init: Record<string, unknown> }[] = [];
  if (depth > MAX_DEPTH) return found;
  const is64 = (t: ScalarType) => [ScalarType.INT64, ScalarType.UINT64, ScalarType.SINT64, ScalarType.FIXED64, ScalarType.SFIXED64].includes(t);
  const fits = (t: ScalarType) => value >= 0n || ![ScalarType.UINT64, ScalarType.FIXED64].includes(t);
  const place = (field: DescField, inner: unknown) =>
    field.oneof ? { [field.oneof.localName]: { case: field.localName, value: inner } } : { [field.localName]: inner };
  for (const field of schema.fields) {
    if (field.fieldKind === "scalar" && is64(field.scalar) && fits(field.scalar)) {
      found.push({ path: field.name, init: place(field, value) });
    } else if (field.fieldKind === "list" && field.listKind === "scalar" && is64(field.scalar) && fits(field.scalar)) {
      found.push({ path: `${field.name}[0]`, init: place(field, [value]) });
    } else if (field.fieldKind === "message") {
      for (const nested of int64Fields(field.message, value, depth + 1)) found.push({ path: `${field.name}.${nested.path}`, init: place(field, nested.init) });
    } else if (field.fieldKind === "list" && field.listKind === "message") {
      for (const nested of int64Fields(field.message, value, depth + 1))
        found.push({ path: `${field.name}[0].${nested.path}`, init: place(field, [nested.init]) });
    }
  }
  return found;
}

/** FUZZ_RUNS raises the number of runs per property (the normal suite keeps it small); FUZZ_SEED repeats a run. */
export function fuzzParameters(defaultRuns: number): fc.Parameters<unknown> {
  const runs = Number(process.env.FUZZ_RUNS ?? "");
  const seed = Number(process.env.FUZZ_SEED ?? "");
  return {
    numRuns: Number.isInteger(runs) && runs > 0 ? runs : defaultRuns,
    ...(Number.isInteger(seed) && process.env.FUZZ_SEED ? { seed } : {}),
    // A failure names its seed and path (fast-check's report), so it can be replayed with FUZZ_SEED.
    verbose: 1,
  };
}
