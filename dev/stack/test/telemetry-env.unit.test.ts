import { afterEach, describe, expect, it } from "vitest";
import { localServices, localTelemetry, serviceEnv } from "../src/services.js";

describe("make dev's tracing settings", () => {
  const saved = { ...process.env };
  afterEach(() => {
    for (const key of ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]) {
      if (saved[key] === undefined) delete process.env[key];
      else process.env[key] = saved[key];
    }
  });

  it("sends every service's spans to a local OTLP/gRPC collector", () => {
    delete process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
    delete process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
    for (const service of localServices) {
      expect(serviceEnv(service, { databaseUrl: "postgres://db/x", logLevel: "info" })).toMatchObject({
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://localhost:4317",
        OTEL_EXPORTER_OTLP_PROTOCOL: "grpc",
      });
    }
  });

  it("leaves a developer's own collector settings alone", () => {
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = "http://collector.example:4318";
    const env = serviceEnv(localServices[0]!, { databaseUrl: "postgres://db/x", logLevel: "info" });
    for (const key of Object.keys(localTelemetry)) expect(env).not.toHaveProperty(key);
  });
});
