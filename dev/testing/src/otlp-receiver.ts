import path from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { repoRoot } from "@meshcart/stack/paths.js";
import { sleep } from "@meshcart/lib";

/**
 * A real OTLP/gRPC trace receiver for tests: the collector's
 * `opentelemetry.proto.collector.trace.v1.TraceService/Export`, from the
 * protocol's own .proto files (dev/testing/otlp-proto), on a loopback port. Point
 * services at it with `OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint` and
 * `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`, then read what they exported.
 */

export type AttributeValue = string | number | boolean | AttributeValue[] | undefined;

export interface ReceivedSpan {
  /** Lower-case hex, as in a traceparent. */
  traceId: string;
  spanId: string;
  /** Empty for a root span. */
  parentSpanId: string;
  name: string;
  /** SERVER, CLIENT, INTERNAL, PRODUCER or CONSUMER. */
  kind: string;
  /** The resource's service.name. */
  service: string;
  resource: Record<string, AttributeValue>;
  attributes: Record<string, AttributeValue>;
  events: { name: string; attributes: Record<string, AttributeValue> }[];
  links: { traceId: string; spanId: string; attributes: Record<string, AttributeValue> }[];
  /** UNSET, OK or ERROR. */
  status: string;
  statusMessage: string;
  startNs: bigint;
  endNs: bigint;
}

const PROTO_ROOT = path.join(repoRoot, "dev", "testing", "otlp-proto");
const SERVICE_FILE = "opentelemetry/proto/collector/trace/v1/trace_service.proto";

interface KeyValue {
  key: string;
  value?: AnyValue;
}
interface AnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string;
  doubleValue?: number;
  arrayValue?: { values?: AnyValue[] };
  kvlistValue?: { values?: KeyValue[] };
  bytesValue?: Buffer;
  value?: string;
}
interface WireSpan {
  traceId: Buffer;
  spanId: Buffer;
  parentSpanId: Buffer;
  name: string;
  kind: string;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes?: KeyValue[];
  events?: { name: string; attributes?: KeyValue[] }[];
  links?: { traceId: Buffer; spanId: Buffer; attributes?: KeyValue[] }[];
  status?: { code?: string; message?: string };
}
interface ExportRequest {
  resourceSpans?: {
    resource?: { attributes?: KeyValue[] };
    scopeSpans?: { spans?: WireSpan[] }[];
  }[];
}

export class OtlpReceiver {
  private readonly received: ReceivedSpan[] = [];
  /** Export calls answered. */
  exports = 0;

  private constructor(
    private readonly server: grpc.Server,
    readonly port: number,
  ) {}

  /** Listens on 127.0.0.1:`port` (any free port by default). */
  static async start(port = 0): Promise<OtlpReceiver> {
    const definition = protoLoader.loadSync(SERVICE_FILE, {
      includeDirs: [PROTO_ROOT],
      keepCase: false,
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
    });
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      opentelemetry: { proto: { collector: { trace: { v1: { TraceService: grpc.ServiceClientConstructor } } } } };
    };
    const service = loaded.opentelemetry.proto.collector.trace.v1.TraceService.service;
    const server = new grpc.Server();
    const bound = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (error, actual) => (error ? reject(error) : resolve(actual))),
    );
    const receiver = new OtlpReceiver(server, bound);
    server.addService(service, {
      Export(call: grpc.ServerUnaryCall<ExportRequest, unknown>, callback: grpc.sendUnaryData<unknown>) {
        receiver.accept(call.request);
        callback(null, {});
      },
    });
    return receiver;
  }

  /** The URL for OTEL_EXPORTER_OTLP_ENDPOINT. */
  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  spans(): ReceivedSpan[] {
    return [...this.received];
  }

  /** Polls until `check` returns something other than undefined for the spans received so far. */
  async waitFor<T>(what: string, check: (spans: ReceivedSpan[]) => T | undefined, timeoutMs = 15_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const result = check(this.spans());
      if (result !== undefined) return result;
      if (Date.now() > deadline) {
        const names = this.received.map((s) => `${s.service} ${s.kind} ${s.name}`).join("\n  ");
        throw new Error(`timed out waiting for ${what}; ${this.received.length} span(s) received:\n  ${names}`);
      }
      await sleep(50);
    }
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
  }

  private accept(request: ExportRequest): void {
    this.exports += 1;
    for (const resourceSpans of request.resourceSpans ?? []) {
      const resource = attributesOf(resourceSpans.resource?.attributes);
      for (const scope of resourceSpans.scopeSpans ?? []) {
        for (const span of scope.spans ?? []) {
          this.received.push({
            traceId: hex(span.traceId),
            spanId: hex(span.spanId),
            parentSpanId: hex(span.parentSpanId),
            name: span.name,
            kind: span.kind.replace("SPAN_KIND_", ""),
            service: String(resource["service.name"] ?? ""),
            resource,
            attributes: attributesOf(span.attributes),
            events: (span.events ?? []).map((e) => ({ name: e.name, attributes: attributesOf(e.attributes) })),
            links: (span.links ?? []).map((l) => ({ traceId: hex(l.traceId), spanId: hex(l.spanId), attributes: attributesOf(l.attributes) })),
            status: (span.status?.code ?? "STATUS_CODE_UNSET").replace("STATUS_CODE_", ""),
            statusMessage: span.status?.message ?? "",
            startNs: BigInt(span.startTimeUnixNano),
            endNs: BigInt(span.endTimeUnixNano),
          });
        }
      }
    }
  }
}

function hex(bytes: Buffer | undefined): string {
  return bytes ? Buffer.from(bytes).toString("hex") : "";
}

function attributesOf(list: KeyValue[] | undefined): Record<string, AttributeValue> {
  return Object.fromEntries((list ?? []).map((kv) => [kv.key, valueOf(kv.value)]));
}

function valueOf(value: AnyValue | undefined): AttributeValue {
  if (!value) return undefined;
  switch (value.value) {
    case "stringValue":
      return value.stringValue;
    case "boolValue":
      return value.boolValue;
    case "intValue":
      return Number(value.intValue);
    case "doubleValue":
      return value.doubleValue;
    case "arrayValue":
      return (value.arrayValue?.values ?? []).map(valueOf);
    default:
      return undefined;
  }
}
