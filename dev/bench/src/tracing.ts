import * as grpc from "@grpc/grpc-js";

export interface TracingMode {
  id: "off" | "10%" | "100%";
  label: string;
  /** Fraction of new traces sampled; 0 for off. */
  ratio: number;
}

export const tracingModes: readonly TracingMode[] = [
  { id: "off", label: "tracing off", ratio: 0 },
  { id: "10%", label: "tracing 10 %", ratio: 0.1 },
  { id: "100%", label: "tracing 100 %", ratio: 1 },
];

/**
 * The OTEL_* variables of a mode, as services/lib/src/telemetry.ts reads
 * them. Off is how a service runs without a collector: no endpoint, so the
 * SDK samples nothing and exports nothing, but trace context still flows.
 * On, the standard sampler variables: parent-based, so a trace is sampled
 * once at its root (the first service it enters) and every hop follows.
 */
export function tracingEnv(mode: TracingMode, endpoint: string | undefined): Record<string, string> {
  if (mode.ratio === 0) {
    return { OTEL_EXPORTER_OTLP_ENDPOINT: "", OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "", OTEL_TRACES_SAMPLER: "", OTEL_TRACES_SAMPLER_ARG: "" };
  }
  if (!endpoint) throw new Error(`${mode.label} needs an OTLP endpoint`);
  return {
    OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "",
    OTEL_EXPORTER_OTLP_PROTOCOL: "grpc",
    ...(mode.ratio >= 1
      ? { OTEL_TRACES_SAMPLER: "parentbased_always_on", OTEL_TRACES_SAMPLER_ARG: "" }
      : { OTEL_TRACES_SAMPLER: "parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG: String(mode.ratio) }),
  };
}

const EXPORT_PATH = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/**
 * An OTLP/gRPC trace endpoint that accepts every export and keeps only its
 * size. Unlike dev/testing/src/otlp-receiver.ts it neither decodes nor keeps
 * spans: at 100 % sampling that would put a collector's CPU and memory on
 * the same cores as the services being measured, growing for the whole run.
 */
export class OtlpSink {
  exports = 0;
  bytes = 0;

  private constructor(
    private readonly server: grpc.Server,
    readonly port: number,
  ) {}

  static async start(): Promise<OtlpSink> {
    const server = new grpc.Server();
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
    );
    const sink = new OtlpSink(server, port);
    const definition: grpc.ServiceDefinition = {
      Export: {
        path: EXPORT_PATH,
        requestStream: false,
        responseStream: false,
        requestSerialize: (value: Buffer) => value,
        requestDeserialize: (bytes: Buffer) => bytes,
        // An empty ExportTraceServiceResponse: everything accepted.
        responseSerialize: () => Buffer.alloc(0),
        responseDeserialize: (bytes: Buffer) => bytes,
      },
    };
    server.addService(definition, {
      Export(call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) {
        sink.exports += 1;
        sink.bytes += call.request.length;
        callback(null, Buffer.alloc(0));
      },
    });
    return sink;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
  }
}
